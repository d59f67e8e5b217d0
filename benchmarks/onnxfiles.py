"""The benchmark's inputs: a chain of MatMul weights as an inline or an external-data ONNX
model, the spec, the hand-written reference script, and per-tensor digests of outputs.

Neither model is ever held in memory whole.  The inline model is serialized piece by piece
-- the bytes are exactly those of ``ModelProto.SerializeToString()``, since protobuf writes
fields in field-number order -- and the external model's data file is written directly.
Every weight holds the same random block: the input values do not matter, as the spec
replaces them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 1
SPEC = f"""vsconf: 1
seed: {SEED}
rules:
  - match: "*"
    init: he_normal
"""
# he_normal: VarianceScaling(2.0, fan_in, truncated_normal); a MatMul weight [in, out] has fan_in = in.
HE_SCALE = 2.0
TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated at +-2 (README)

HAND_SCRIPT = '''\
"""What a user writes without vsconf: onnx.load, He normal with NumPy, from_array, onnx.save."""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

source, target = sys.argv[1], sys.argv[2]
model = onnx.load(source)
rng = np.random.default_rng(0)
for tensor in model.graph.initializer:
    weight = numpy_helper.to_array(tensor)
    std = np.sqrt(2.0 / weight.shape[0]) / 0.87962566103423978
    values = rng.standard_normal(weight.shape, dtype=np.float32)
    rejected = np.abs(values) >= 2.0
    while rejected.any():  # truncate at 2 std by resampling, as he_normal does
        values[rejected] = rng.standard_normal(int(rejected.sum()), dtype=np.float32)
        rejected = np.abs(values) >= 2.0
    values *= np.float32(std)
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
onnx.save(model, target)
'''


def weight_names(count: int) -> list[str]:
    return [f"layer{i:02d}.weight" for i in range(count)]


def he_param(dim: int) -> float:
    """The std of the underlying normal vsconf's he_normal uses for a [dim, dim] MatMul weight."""
    return float(np.sqrt(HE_SCALE / dim) / TRUNCATED_NORMAL_STD)


def _graph_parts(count: int, dim: int) -> tuple[onnx.GraphProto, onnx.GraphProto]:
    """The chain x -> MatMul w0 -> MatMul w1 -> ... -> y, split around the initializers:
    (nodes and name, inputs and outputs)."""
    names = weight_names(count)
    values = ["x"] + [f"h{i}" for i in range(count - 1)] + ["y"]
    nodes = [helper.make_node("MatMul", [values[i], name], [values[i + 1]], name=f"matmul{i}") for i, name in enumerate(names)]
    head = helper.make_graph(nodes, "chain", [], [])
    tail = onnx.GraphProto(
        input=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
        output=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])],
    )
    return head, tail


def _model_parts() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The model's fields before the graph (field 7), and after it (opset_import)."""
    head = onnx.ModelProto(ir_version=8, producer_name="vsconf-benchmark")
    tail = onnx.ModelProto(opset_import=[helper.make_opsetid("", 17)])
    return head, tail


def _block(dim: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((dim, dim), dtype=np.float32)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, length: int) -> bytes:
    """The key and length of a length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(length)


def write_inline_model(path: Path, count: int, dim: int) -> None:
    """``count`` [dim, dim] float32 weights as raw_data, holding one weight's bytes at a time."""
    block = _block(dim)
    headers = [
        TensorProto(name=name, dims=[dim, dim], data_type=TensorProto.FLOAT).SerializeToString() for name in weight_names(count)
    ]
    raw_key = _field(9, block.nbytes)  # TensorProto.raw_data, written after name (field 8)
    sizes = [len(header) + len(raw_key) + block.nbytes for header in headers]
    graph_head, graph_tail = (part.SerializeToString() for part in _graph_parts(count, dim))
    model_head, model_tail = (part.SerializeToString() for part in _model_parts())
    graph_size = len(graph_head) + sum(len(_field(5, size)) + size for size in sizes) + len(graph_tail)
    with open(path, "wb") as out:
        out.write(model_head + _field(7, graph_size) + graph_head)
        for header, size in zip(headers, sizes):  # GraphProto.initializer is field 5
            out.write(_field(5, size) + header + raw_key)
            out.write(memoryview(block).cast("B"))
        out.write(graph_tail + model_tail)


def write_external_model(path: Path, data_name: str, count: int, dim: int) -> None:
    """``count`` [dim, dim] float32 weights in ``data_name`` beside ``path``, written one at a time."""
    block = _block(dim)
    initializers = []
    with open(path.parent / data_name, "wb") as data:
        for name in weight_names(count):
            tensor = TensorProto(name=name, dims=[dim, dim], data_type=TensorProto.FLOAT, data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", data.tell()), ("length", block.nbytes)):
                tensor.external_data.add(key=key, value=str(value))
            initializers.append(tensor)
            data.write(memoryview(block).cast("B"))
    head, tail = _graph_parts(count, dim)
    model_head, model_tail = _model_parts()
    model = onnx.ModelProto()
    model.MergeFrom(model_head)
    model.graph.MergeFrom(head)
    model.graph.initializer.extend(initializers)
    model.graph.MergeFrom(tail)
    model.MergeFrom(model_tail)
    path.write_bytes(model.SerializeToString())


def _region_digest(file: BinaryIO, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    file.seek(offset)
    while length > 0:
        chunk = file.read(min(length, 1 << 24))
        if not chunk:
            raise ValueError(f"{file.name}: ends before offset {offset} + {length}")
        digest.update(chunk)
        length -= len(chunk)
    return digest.hexdigest()


def _tensor_digests(path: Path) -> Iterator[tuple[str, str]]:
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            nbytes = int(np.prod(tensor.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            with open(path.parent / info["location"], "rb") as data:
                yield tensor.name, _region_digest(data, int(info.get("offset", 0)), nbytes)
        elif tensor.HasField("raw_data"):
            yield tensor.name, hashlib.sha256(tensor.raw_data).hexdigest()
        else:
            yield tensor.name, hashlib.sha256(numpy_helper.to_array(tensor).tobytes()).hexdigest()


def tensor_digests(path: Path) -> dict[str, str]:
    """SHA-256 of every initializer's little-endian bytes, by name (inline or external)."""
    return dict(_tensor_digests(path))


def remove_model(path: Path) -> None:
    """``path`` and every data file named after it (vsconf writes ``<output>[.<hex>].data``)."""
    for file in [path, *path.parent.glob(f"{path.name}*.data")]:
        file.unlink(missing_ok=True)
