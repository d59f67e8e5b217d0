"""Property tests: whatever bytes a ``.onnx`` file holds, ``vsconf.plan``, ``vsconf.apply``
and ``vsconf.verify`` end in a :class:`vsconf.VsconfError` or succeed -- never another
exception (a MemoryError only when --materialize made a tensor of some GiB) -- what
``apply`` writes loads with ``onnx.load`` and passes ``onnx.checker`` whenever the input
did, and ``apply`` changes no file but its output and removes none but the old output's
own data files.

Three sources of hostile models: random bytes; byte-level mutations (flip, insert,
delete, overwrite) of real models; and structured mutations of a parsed model -- dims,
data_type, raw_data and typed-field lengths, external-data keys and values, attributes
of any type on any node, renamed inputs, reordered nodes, op types, opset versions,
recorded seeds, ConstantOfShape shapes, names that are not UTF-8 -- with an existing
``out.onnx`` naming data files of every kind.  ``tests/fuzzing.py`` says how to run it long.
"""

from __future__ import annotations

import contextlib
import re
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from bad_inputs.common import onnx_model
from fuzzing import FUZZ, mutated_bytes
from hypothesis import event, given
from hypothesis import strategies as st
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import vsconf
from vsconf.spec import parse_spec

SPEC = parse_spec(
    "vsconf: 1\nseed: 7\nrules:\n  - match: '*'\n    optional: true\n    init: he_normal\n", source="spec.yaml"
)
FIXTURES = Path(__file__).parent / "fixtures"
REAL = [onnx_model().SerializeToString(), (FIXTURES / "torch_cnn_torchscript.onnx").read_bytes()]


def _checker_accepts(path: Path) -> bool:
    try:
        onnx.checker.check_model(str(path))
    except Exception:  # the checker's own errors, protobuf's, or whatever onnx raises on garbage
        return False
    return True


def exercise(
    data: bytes,
    files: dict[str, bytes] | None = None,
    *,
    materialize: bool = False,
    untie: bool = False,
    old_output: bytes | None = None,
) -> None:
    """plan, apply and verify ``data`` as ``model.onnx`` (with ``files`` beside it, and
    ``old_output`` as an existing ``out.onnx`` that apply replaces): only VsconfError may
    escape; an output exists only if it is a model onnx can load; and apply removes no
    file but the old output's own data files."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "work"
        folder.mkdir()
        (folder.parent / "outside.bin").write_bytes(b"outside")
        model = folder / "model.onnx"
        model.write_bytes(data)
        for name, content in (files or {}).items():
            (folder / name).write_bytes(content)
        output = folder / "out.onnx"
        if old_output is not None:
            output.write_bytes(old_output)
            (folder / "out.onnx.data").write_bytes(bytes(64))
        with _memory_limited(), contextlib.suppress(vsconf.VsconfError):
            vsconf.plan(model, SPEC, materialize=materialize, untie=untie)  # never allocates a tensor
        before = _contents(folder.parent)
        try:
            with _memory_limited():
                vsconf.apply(model, SPEC, output, force=True, materialize=materialize, untie=untie)
        except vsconf.VsconfError as exc:
            assert _contents(folder.parent) == before
            event(f"refused: {_gist(exc)}")
            return
        except MemoryError:
            # --materialize may rightly make a tensor of some GiB (up to 1 TiB), and filling
            # it takes that much memory: the one failure that is not vsconf's to refuse.
            assert materialize
            assert _contents(folder.parent) == before
            event("out of memory (materialized)")
            return
        event("applied")
        after = _contents(folder.parent)
        for name, content in before.items():
            if name == "work/out.onnx":
                continue
            if re.fullmatch(r"work/out\.onnx(\.[0-9a-f]{8})?\.data", name):
                assert after.get(name, content) == content, name  # removed or kept, never rewritten
            else:
                assert after.get(name) == content, name
        onnx.load(str(output))
        if _checker_accepts(model):
            onnx.checker.check_model(str(output))
        with _memory_limited(), contextlib.suppress(vsconf.VsconfError):
            vsconf.verify(output, SPEC, untie=untie)


@contextlib.contextmanager
def _memory_limited(extra: int = 3 << 30):
    """At most ``extra`` more bytes of address space while inside: a hostile model must not
    take the machine's memory (a failed allocation is a MemoryError instead)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * resource.getpagesize() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _gist(exc: Exception) -> str:
    """The kind of refusal, for ``--hypothesis-show-statistics``: the message without names and numbers."""
    text = str(exc).split(": ", 1)[-1]
    return " ".join(word for word in text.split()[:6] if not any(c.isdigit() or c in "'[" for c in word))


# ---------------------------------------------------------------- bytes


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data):
    exercise(data)


@FUZZ
@given(mutated_bytes(REAL), st.booleans(), st.booleans())
def test_mutated_model_bytes(data, materialize, untie):
    exercise(data, materialize=materialize, untie=untie)


# ---------------------------------------------------------------- structured mutations

Mutation = Callable[[onnx.ModelProto, dict[str, bytes]], None]

int64s = st.one_of(st.integers(-3, 70), st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**31, 2**40, 2**62]))
names = st.one_of(st.sampled_from(["x", "w", "b", "y", "w2", "", "shape", "conv1.weight", "ghost"]), st.text(max_size=6))
key_values = st.one_of(
    st.sampled_from(["w.bin", "../w.bin", "/etc/passwd", "", "w.bin\0", "sub/w.bin", ".", "0", "48", "-1", "1e3"]),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=12),
)


def _tensors(model: onnx.ModelProto) -> list[TensorProto]:
    found = list(model.graph.initializer)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.TENSOR:
                found.append(attribute.t)
    return found


@st.composite
def tensor_mutation(draw) -> Mutation:
    """One change to one stored tensor's declared layout or data."""
    choice = draw(st.integers(0, 1000))
    kind = draw(st.sampled_from(["dims", "empty", "data_type", "raw_data", "typed", "external", "external_valid", "segment", "clear"]))
    dims = draw(st.lists(int64s, max_size=5))
    data_type = draw(st.integers(-1, 40))
    length = draw(st.integers(0, 200))
    field_name = draw(st.sampled_from(["float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"]))
    keys = draw(st.lists(st.tuples(st.sampled_from(["location", "offset", "length", "checksum", "bogus"]), key_values), max_size=4))
    data_file = draw(st.binary(max_size=300))
    clear_raw = draw(st.booleans())
    padding = draw(st.integers(0, 5000))
    tweak = draw(st.one_of(st.none(), st.tuples(st.sampled_from(["location", "offset", "length"]), key_values)))

    def mutate(model: onnx.ModelProto, files: dict[str, bytes]) -> None:
        tensors = _tensors(model)
        if not tensors:
            return
        t = tensors[choice % len(tensors)]
        if kind == "dims":
            t.ClearField("dims")
            t.dims.extend(dims)
        elif kind == "empty":  # no elements, so no data: whatever the other dims say
            for name in ("dims", "raw_data", "float_data", "int32_data", "int64_data"):
                t.ClearField(name)
            t.dims.extend([0, *dims])
        elif kind == "data_type":
            t.data_type = max(data_type, 0)
        elif kind == "raw_data":
            t.raw_data = (t.raw_data * 8)[:length] if t.raw_data else bytes(length)
        elif kind == "typed":
            t.ClearField("raw_data")
            values = [b"s"] * length if field_name == "string_data" else [1] * length
            getattr(t, field_name).extend(values)
        elif kind == "external":
            files["w.bin"] = data_file
            t.data_location = TensorProto.EXTERNAL
            if clear_raw:
                t.ClearField("raw_data")
            for key, value in keys or [("location", "w.bin")]:
                entry = t.external_data.add()
                entry.key, entry.value = key, value
        elif kind == "external_valid" and t.HasField("raw_data"):
            files["w.bin"] = files.get("w.bin", b"") + bytes(padding) + t.raw_data
            location = {"location": "w.bin", "offset": str(len(files["w.bin"]) - len(t.raw_data)), "length": str(len(t.raw_data))}
            if tweak is not None:
                location[tweak[0]] = tweak[1]
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for key, value in location.items():
                entry = t.external_data.add()
                entry.key, entry.value = key, value
        elif kind == "segment":
            t.segment.begin, t.segment.end = 0, length
        else:
            for name in ("raw_data", "float_data", "int32_data", "int64_data"):
                t.ClearField(name)

    return mutate


attribute_types = st.sampled_from([v for _, v in AttributeProto.AttributeType.items()])


@st.composite
def attribute_mutation(draw) -> Mutation:
    """An attribute of any type (or none) under a name that graph analysis reads."""
    choice = draw(st.integers(0, 1000))
    name = draw(st.sampled_from(["perm", "axes", "transA", "transB", "axis", "value", "to", "then_branch", "body"]))
    kind = draw(attribute_types)
    ints = draw(st.lists(int64s, max_size=6))
    number = draw(int64s)
    text = draw(st.binary(max_size=6))
    real = draw(st.floats(allow_nan=True))

    def mutate(model: onnx.ModelProto, files: dict[str, bytes]) -> None:
        nodes = list(model.graph.node)
        if not nodes:
            return
        node = nodes[choice % len(nodes)]
        attribute = node.attribute.add()
        attribute.name, attribute.type = name, kind
        attribute.ints.extend(ints)
        attribute.i = number
        attribute.s = text
        attribute.f = real
        if kind == AttributeProto.TENSOR:
            attribute.t.CopyFrom(numpy_helper.from_array(np.array(ints or [0], np.int64)))
        if kind == AttributeProto.GRAPH:
            attribute.g.CopyFrom(helper.make_graph([], "g", [], []))

    return mutate


@st.composite
def graph_mutation(draw) -> Mutation:
    """Renamed inputs, changed op types and domains, reordered or duplicated nodes, opsets,
    recorded seeds, and a ConstantOfShape with any shape."""
    choice = draw(st.integers(0, 1000))
    kind = draw(st.sampled_from(["input", "op", "domain", "reverse", "duplicate", "opset", "seed", "constant_of_shape", "drop_output"]))
    name = draw(names)
    op = draw(st.sampled_from(["Transpose", "Unsqueeze", "Squeeze", "Gather", "Gemm", "MatMul", "Conv", "Identity", "Concat", "Slice", "ConstantOfShape", "If", "Frobnicate", ""]))
    version = draw(int64s)
    seed_text = draw(st.one_of(st.text(max_size=10), st.integers(-(2**70), 2**70).map(str), st.just("9" * 5000)))
    shape = draw(st.lists(int64s, max_size=5))
    slot = draw(st.integers(0, 5))

    def mutate(model: onnx.ModelProto, files: dict[str, bytes]) -> None:
        graph = model.graph
        nodes = list(graph.node)
        node = nodes[choice % len(nodes)] if nodes else None
        if kind == "input" and node is not None and node.input:
            node.input[slot % len(node.input)] = name
        elif kind == "op" and node is not None:
            node.op_type = op
        elif kind == "domain" and node is not None:
            node.domain = name
        elif kind == "reverse":
            reordered = list(reversed(nodes))
            del graph.node[:]
            graph.node.extend(reordered)
        elif kind == "duplicate" and node is not None:
            graph.node.append(node)
        elif kind == "opset":
            model.opset_import[0].version = version
        elif kind == "seed":
            entry = model.metadata_props.add()
            entry.key, entry.value = "vsconf.seed", seed_text
        elif kind == "constant_of_shape":
            graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), "cos_shape"))
            graph.node.append(helper.make_node("ConstantOfShape", ["cos_shape"], ["cos_out"]))
        elif kind == "drop_output" and node is not None:
            del node.output[:]

    return mutate


# What an existing out.onnx names as external data: apply may remove only its own data files.
old_locations = st.one_of(
    st.sampled_from(["out.onnx.data", "out.onnx.0badc0de.data", "model.onnx", "w.bin", "../outside.bin", "spec.yaml"]),
    key_values,
)


@FUZZ
@given(
    st.sampled_from(REAL),
    st.lists(st.one_of(tensor_mutation(), attribute_mutation(), graph_mutation()), min_size=1, max_size=4),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.just("itself"), old_locations),
    st.one_of(st.none(), st.sampled_from([b"Gemm", b"fc", b"w", b"conv1.weight", b"Conv", b"x", b"pytorch", b"location", b"vsconf.seed"])),
)
def test_structured_mutations(base, mutations, materialize, untie, old, not_utf8):
    model = onnx.ModelProto()
    model.ParseFromString(base)
    files: dict[str, bytes] = {}
    for mutate in mutations:
        mutate(model, files)
    data = model.SerializeToString()
    if not_utf8 is not None:  # a name, op type, key or value that protobuf hands over as bytes
        data = data.replace(not_utf8, b"\xc9" + not_utf8[1:], 1)
    if old == "itself":
        old_output = data
    elif old is not None:
        named = onnx_model()
        tensor = named.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", old
        old_output = named.SerializeToString()
    else:
        old_output = None
    exercise(data, files, materialize=materialize, untie=untie, old_output=old_output)
