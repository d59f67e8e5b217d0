"""The wire-format walk (``vsconf.formats.onnx.wire``): a skeleton parses to the message protobuf
parses from the whole file, markers aside, on real models and on mutated bytes; splicing
a skeleton back gives exactly ``SerializeToString()`` of the whole model."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzzing import FUZZ, mutated_bytes
from hypothesis import event, given
from onnx import TensorProto, numpy_helper
from onnx_write_cases import CASES

from vsconf.formats.onnx import reader, wire
from vsconf.formats.onnx.reader import ModelFile
from vsconf.formats.onnx.wire import PAYLOAD_MIN, References, WireError, encode_varint, skeleton, splice


@dataclass(frozen=True)
class _Range:
    offset: int
    length: int


def _bases() -> list[bytes]:
    found = []
    for case in CASES:
        if case.id.startswith(("converted-", "light-", "example-")) or case.force_external:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            found.append(case.build(Path(tmp)).read_bytes())
    return found


BASES = _bases()


def _parsed(data: bytes) -> onnx.ModelProto | None:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:
        return None
    return model


def _walk(data: bytes) -> tuple[bytes, References]:
    references = References()
    return skeleton(data, len(data), lambda offset, length: references.add(_Range(offset, length))), references


def _restore(message, references: References, data: bytes) -> None:
    """Put the bytes each marker stands for back into ``message``, in place."""
    if isinstance(message, TensorProto) and message.HasField("raw_data"):
        found = references.find(message.raw_data)
        if found is not None:
            message.raw_data = data[found.offset : found.offset + found.length]
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        repeated = descriptor.is_repeated if hasattr(descriptor, "is_repeated") else descriptor.label == descriptor.LABEL_REPEATED
        for item in value if repeated else [value]:
            _restore(item, references, data)


def _spliced(model: onnx.ModelProto, references: References, data: bytes) -> bytes:
    pieces, size = splice(model.SerializeToString(), references)
    joined = b"".join(p if isinstance(p, bytes) else data[p.offset : p.offset + p.length] for p in pieces)
    assert len(joined) == size
    return joined


def _check_same_message(data: bytes) -> str:
    """The skeleton of ``data`` parses iff ``data`` does, to the same message once restored,
    and splices back to protobuf's serialization of it; what happened."""
    try:
        skeleton_bytes, references = _walk(data)
    except WireError:
        return "the walk refuses: the reader lets protobuf decide"
    full, skeletal = _parsed(data), _parsed(skeleton_bytes)
    assert (full is None) == (skeletal is None)
    if full is None:
        return "protobuf refuses both"
    expected = full.SerializeToString()
    assert _spliced(skeletal, references, data) == expected
    _restore(skeletal, references, data)
    assert skeletal.SerializeToString() == expected
    return "parsed"


@pytest.mark.parametrize("index", range(len(BASES)))
def test_skeletons_of_the_writer_cases_are_their_models(index):
    data = BASES[index]
    skeleton_bytes, _ = _walk(data)
    assert len(skeleton_bytes) <= len(data)  # typed fields (float_data...) stay in the skeleton
    assert _check_same_message(data) == "parsed"


def test_large_raw_data_become_markers_for_their_exact_bytes():
    weights = np.arange(1000, dtype=np.float32)
    model = onnx.ModelProto(ir_version=8, graph=onnx.GraphProto(initializer=[numpy_helper.from_array(weights, "w")]))
    data = model.SerializeToString()
    skeleton_bytes, references = _walk(data)
    parsed = _parsed(skeleton_bytes)
    found = references.find(parsed.graph.initializer[0].raw_data)
    assert data[found.offset : found.offset + found.length] == weights.tobytes()
    assert len(skeleton_bytes) < 100


def test_small_models_and_small_payloads_are_left_as_they_are():
    small = numpy_helper.from_array(np.arange(PAYLOAD_MIN // 4 - 1, dtype=np.float32), "b")
    data = onnx.ModelProto(ir_version=8, graph=onnx.GraphProto(initializer=[small] * 20)).SerializeToString()
    assert _walk(data)[0] == data


def test_markers_of_another_table_are_not_found():
    mine, other = References(), References()
    marker = other.add(_Range(0, 10))
    assert mine.find(marker) is None and other.find(marker) == _Range(0, 10)
    assert mine.find(b"x" * 24) is None
    extended = other.extended()
    assert extended.find(marker) == _Range(0, 10) and extended.find(extended.add(_Range(1, 2))) == _Range(1, 2)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31 - 1, 2**63 - 1, 2**64 - 1])
def test_varints_round_trip(value):
    encoded = encode_varint(value)
    assert wire._varint(encoded, 0, len(encoded)) == (value, len(encoded))


@pytest.mark.parametrize(
    "data",
    [
        b"\x3a\x05abc",  # graph: length past the end
        b"\x3a\x80",  # truncated varint
        b"\x3a" + b"\xff" * 11,  # overlong varint
        b"\x3b\x08\x01\x44",  # a group closed by another field's end tag
        b"\x3e",  # wire type 6
        b"\x02\x01a",  # field number 0
    ],
)
def test_bytes_that_are_not_wire_format_are_refused(data):
    data = data + bytes(PAYLOAD_MIN)  # long enough to be walked
    with pytest.raises(WireError):
        skeleton(data, len(data), lambda offset, length: b"")


def test_groups_are_skipped_like_protobuf_does():
    model = onnx.ModelProto(ir_version=8, graph=onnx.GraphProto(initializer=[numpy_helper.from_array(np.zeros(100, np.float32), "w")]))
    group = encode_varint((900 << 3) | 3) + b"\x08\x01" + b"\x01" + bytes(8) + encode_varint((900 << 3) | 4)
    assert _check_same_message(group + model.SerializeToString()) == "parsed"


def test_the_reader_lets_protobuf_decide_when_the_walk_cannot(tmp_path, monkeypatch):
    model = onnx.ModelProto(ir_version=8, opset_import=[onnx.helper.make_opsetid("", 17)])
    model.graph.initializer.append(numpy_helper.from_array(np.arange(100, dtype=np.float32), "w"))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())

    def refuse(*args):
        raise WireError("test")

    monkeypatch.setattr(reader, "skeleton", refuse)
    opened = ModelFile(path)
    try:
        assert opened.model.graph.initializer[0].raw_data == np.arange(100, dtype=np.float32).tobytes()
        np.testing.assert_array_equal(opened.array(opened.model.graph.initializer[0], "w"), np.arange(100))
    finally:
        opened.close()


@FUZZ
@given(mutated_bytes(BASES))
def test_mutated_models_parse_the_same_from_their_skeletons(data):
    event(_check_same_message(data))
