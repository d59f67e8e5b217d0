"""Every output loads in its format's reference reader, or is refused before writing.

Random valid models -- names from a wide alphabet (dots, slashes, spaces, non-ASCII,
control characters, NUL, a lone surrogate now and then, the formats' reserved words),
shapes of rank 0 to 5 with zero-sized and long axes, every float dtype and integers that
are copied through -- go through ``vsconf.apply`` into every output format: ``.npz``,
``.safetensors``, a sharded folder, ONNX.  Each output is read back with the library
users read it with (``numpy.load``, ``safetensors``, ``onnx.checker`` and onnxruntime)
and must hold exactly the names, shapes, dtypes and values the plan says; or ``apply``
refuses it with a :class:`~vsconf.ModelError` naming the output and the tensor, and
writes nothing.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import helper, numpy_helper
from onnx_builders import make_model

import vsconf
from fuzzing import FUZZ
from vsconf.initializers import float_dtype

pytestmark = pytest.mark.slow

SPEC = "vsconf: 1\nseed: 3\nlayout: torch\nunmatched: keep\nrules:\n  - match: 'w*'\n    optional: true\n    init: he_normal\n  - match: 'c*'\n    optional: true\n    init: {constant: 0.1}\n"
ALPHABET = st.one_of(
    st.sampled_from(list("wcab._/- :é日\\")),
    st.sampled_from(["\n", "\t", "\x1b", "\x7f", "\x00", "\u2028", "\ud800"]),
)
NAMES = st.one_of(
    st.text(ALPHABET, min_size=0, max_size=12),
    st.sampled_from(["__metadata__", "../up", "/abs", "C:drive", "x.npy", "w", "w.npy", ".."]),
)
SHAPES = st.one_of(
    st.lists(st.integers(0, 5), min_size=0, max_size=5),
    st.sampled_from([[0, 1 << 40], [1] * 12, [300], [2, 0, 7]]),
)
DTYPES = st.sampled_from(["float16", "bfloat16", "float32", "float64", "int64"])


def _array(shape, dtype: str, seed: int) -> np.ndarray:
    if dtype == "int64":
        return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    values = np.random.default_rng(seed).standard_normal(int(np.prod(shape)))
    return values.astype(np.float32).astype(float_dtype(dtype)).reshape(shape)


models = st.dictionaries(NAMES, st.tuples(SHAPES, DTYPES), min_size=1, max_size=6)


def _expected(plan, originals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for entry in plan:
        made = vsconf.slice_values(entry) if entry.changes else None
        out[entry.name] = originals[entry.name] if made is None else made
    return out


def _refused_cleanly(exc: vsconf.ModelError, folder: Path, before: set[str], names) -> None:
    text = str(exc)
    shown = [repr(name) for name in names] + [name.encode("utf-8", "backslashreplace").decode() for name in names]
    assert any(form in text for form in shown), text  # names the tensor
    assert set(os.listdir(folder)) == before  # wrote nothing


def _same(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(loaded) == set(expected)
    for name, array in expected.items():
        got = loaded[name]
        assert got.shape == array.shape and got.dtype == array.dtype, name
        assert got.tobytes() == array.tobytes(), name


def _npz_input(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with exactly these member names (what np.savez writes, without its own checks)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(name + ".npy"), buffer.getvalue())


def _safetensors_input(path: Path, arrays: dict[str, np.ndarray]) -> None:
    codes = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "int64": "I64"}
    header, offset, data = {}, 0, b""
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": codes[array.dtype.name], "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset, data = offset + len(raw), data + raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@FUZZ
@given(model=models, seed=st.integers(0, 3))
def test_npz_to_npz_loads_in_numpy(tmp_path_factory, model, seed):
    assume(all(dtype != "bfloat16" for _, dtype in model.values()))  # an .npz cannot hold bfloat16
    assume(all("\x00" not in name and "\ud800" not in name for name in model))  # not even as an input
    folder = tmp_path_factory.mktemp("npz")
    arrays = {name: _array(shape, dtype, seed) for name, (shape, dtype) in model.items()}
    _npz_input(folder / "m.npz", arrays)
    (folder / "spec.yaml").write_text(SPEC)
    before = set(os.listdir(folder))
    try:
        result = vsconf.apply(folder / "m.npz", folder / "spec.yaml", folder / "out.npz")
    except vsconf.ModelError as exc:
        _refused_cleanly(exc, folder, before, model)
        return
    with np.load(folder / "out.npz", allow_pickle=False) as loaded:
        _same({name: loaded[name] for name in loaded.files}, _expected(result.plan, arrays))


@FUZZ
@given(model=models, seed=st.integers(0, 3), sharded=st.booleans())
def test_safetensors_outputs_load_in_the_safetensors_library(tmp_path_factory, model, seed, sharded):
    import safetensors.numpy

    assume(all("\ud800" not in name and name != "__metadata__" for name in model))  # a valid input first
    folder = tmp_path_factory.mktemp("st")
    arrays = {name: _array(shape, dtype, seed) for name, (shape, dtype) in model.items()}
    _safetensors_input(folder / "m.safetensors", arrays)
    (folder / "spec.yaml").write_text(SPEC)
    output = str(folder / "out") + "/" if sharded else folder / "out.safetensors"
    result = vsconf.apply(folder / "m.safetensors", folder / "spec.yaml", output, **({"shard_size": 64} if sharded else {}))
    if sharded:
        index = json.loads((folder / "out" / "model.safetensors.index.json").read_text())
        loaded = {}
        for shard in sorted(set(index["weight_map"].values())):
            loaded.update(safetensors.numpy.load_file(str(folder / "out" / shard)))
        assert set(index["weight_map"]) == set(loaded)
    else:
        loaded = safetensors.numpy.load_file(str(folder / "out.safetensors"))
    _same(loaded, _expected(result.plan, arrays))


@FUZZ
@given(model=models, output=st.sampled_from(["out.npz", "out.safetensors", "out/"]))
def test_a_manifest_becomes_a_checkpoint_its_reader_loads(tmp_path_factory, model, output):
    import safetensors.numpy

    floats = {name: (shape, "float32" if dtype == "int64" else dtype) for name, (shape, dtype) in model.items()}
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "m.shapes.json").write_text(json.dumps({"tensors": {n: {"shape": s, "dtype": d} for n, (s, d) in floats.items()}}))
    (folder / "spec.yaml").write_text("vsconf: 1\nseed: 3\nrules:\n  - match: '*'\n    init: lecun_uniform\n")
    before = set(os.listdir(folder))
    try:
        result = vsconf.apply(folder / "m.shapes.json", folder / "spec.yaml", str(folder / output))
    except vsconf.ModelError as exc:
        if "bfloat16, which an .npz file cannot hold" in str(exc) or "a tensor name must be a non-empty string" in str(exc):
            return
        _refused_cleanly(exc, folder, before, floats)
        return
    expected = _expected(result.plan, {})
    if output == "out.npz":
        with np.load(folder / output, allow_pickle=False) as loaded:
            _same({name: loaded[name] for name in loaded.files}, expected)
    elif output == "out.safetensors":
        _same(safetensors.numpy.load_file(str(folder / output)), expected)
    else:
        loaded = {}
        for shard in (folder / "out").glob("*.safetensors"):
            loaded.update(safetensors.numpy.load_file(str(shard)))
        _same(loaded, expected)


ONNX_TYPES = {"float16": onnx.TensorProto.FLOAT16, "float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE, "int64": onnx.TensorProto.INT64}


@FUZZ
@given(model=models, seed=st.integers(0, 3), untie=st.booleans())
def test_onnx_outputs_pass_the_checker_and_run_in_onnxruntime(tmp_path_factory, model, seed, untie):
    """Each initializer reaches a graph output through Identity, so onnxruntime returns them all."""
    import onnxruntime

    names = [name for name, (_, dtype) in model.items() if dtype != "bfloat16" and name and "\ud800" not in name]
    assume(names)
    folder = tmp_path_factory.mktemp("onnx")
    arrays = {name: _array(model[name][0], model[name][1], seed) for name in names}
    initializers = [numpy_helper.from_array(array, name) for name, array in arrays.items()]
    nodes = [helper.make_node("Identity", [name], [f"out{k}"], name=f"id{k}") for k, name in enumerate(names)]
    outputs = [helper.make_tensor_value_info(f"out{k}", ONNX_TYPES[arrays[name].dtype.name], list(arrays[name].shape)) for k, name in enumerate(names)]
    graph = helper.make_graph(nodes, "g", [], outputs, initializers)
    onnx.save(make_model(graph, (("", 17),), ir_version=8), str(folder / "m.onnx"))
    (folder / "spec.yaml").write_text(SPEC)
    result = vsconf.apply(folder / "m.onnx", folder / "spec.yaml", folder / "out.onnx", untie=untie)
    onnx.checker.check_model(str(folder / "out.onnx"))
    session = onnxruntime.InferenceSession(str(folder / "out.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {})))
    expected = _expected(result.plan, arrays)
    _same({name: got[f"out{k}"] for k, name in enumerate(names)}, expected)
