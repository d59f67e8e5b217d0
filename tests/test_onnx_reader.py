"""The reader (``vsconf.formats.onnx.reader``): a model opens as a skeleton without its weights'
bytes, reads one tensor on demand, refuses what is not a model, and lets its file go."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import model, save, tensor, value

import vsconf
from vsconf.errors import ModelError
from vsconf.formats.onnx import OnnxModel
from vsconf.formats.onnx.reader import ModelFile
from vsconf.spec import parse_spec

SPEC = parse_spec("vsconf: 1\nseed: 3\nrules:\n  - match: '*'\n    init: he_normal\n", source="spec.yaml")


def _big_model(tmp_path, rows=2048, cols=1024):
    """A MatMul weight of 8 MiB (float32) inline, and a small bias."""
    weight = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) / 7
    built = model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        [value("x", [1, rows])],
        [value("y", [1, cols])],
        [tensor("w", weight), tensor("b", np.ones(cols, np.float32))],
    )
    return save(built, tmp_path / "big.onnx"), weight


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_skeleton_holds_markers_not_weights(tmp_path):
    path, weight = _big_model(tmp_path)
    opened = ModelFile(path)
    try:
        assert opened.model.ByteSize() < 1024 < path.stat().st_size
        w = opened.model.graph.initializer[0]
        assert opened.raw_size(w) == weight.nbytes
        source = opened.source(w, "w")
        assert (source.path, source.length) == (path, weight.nbytes)
        assert path.read_bytes()[source.offset : source.offset + source.length] == weight.tobytes()
    finally:
        opened.close()


def test_plan_and_inspect_read_no_weight(tmp_path, monkeypatch):
    path, _ = _big_model(tmp_path)

    def no_reads(*args):
        raise AssertionError("a tensor's bytes were read")

    monkeypatch.setattr(os, "pread", no_reads)
    plan = vsconf.plan(path, SPEC)
    assert plan.entry("w").fan_in == 2048
    assert [record["name"] for record in vsconf.inspect(path)] == ["w", "b"]


def test_read_gives_one_tensor_as_a_copy_and_close_lets_the_file_go(tmp_path):
    path, weight = _big_model(tmp_path)
    before = _open_fds()
    opened = OnnxModel(path)
    values = opened.read("w")
    np.testing.assert_array_equal(values, weight)
    opened.close()
    opened.close()  # closing twice is harmless
    assert _open_fds() == before
    np.testing.assert_array_equal(values, weight)  # a copy: still there after close


def test_a_refused_model_leaves_no_file_open(tmp_path):
    built = model(
        [helper.make_node("Relu", ["later"], ["y"]), helper.make_node("Relu", ["x"], ["later"])],
        [value("x", [4])],
        [value("y", [4])],
        [tensor("w", np.zeros(1000, np.float32))],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(built.SerializeToString())
    before = _open_fds()
    with pytest.raises(ModelError, match="which nothing defines before it"):
        OnnxModel(path)
    assert _open_fds() == before


def test_a_file_past_2_gib_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as handle:
        handle.truncate(2**31)  # sparse: no disk used
    with pytest.raises(ModelError, match=r"huge.onnx: not an ONNX model: it is larger than protobuf's 2 GiB limit$"):
        ModelFile(path)


def test_a_file_cut_inside_a_weight_is_not_a_model(tmp_path):
    path, _ = _big_model(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"not an ONNX model: protobuf cannot parse it$"):
        ModelFile(path)


def test_sizes_are_checked_against_the_bytes_a_marker_stands_for(tmp_path):
    path, _ = _big_model(tmp_path)
    built = onnx.load(str(path))
    built.graph.initializer[0].dims[0] = 2047  # 4 KiB fewer than raw_data holds
    path.write_bytes(built.SerializeToString())
    with pytest.raises(ModelError, match=r"tensor 'w': raw_data holds 8388608 bytes, its dims \[2047, 1024\] \(float32\) need 8384512$"):
        OnnxModel(path)


def test_a_weight_in_a_subgraph_and_a_constant_are_read_from_the_file(tmp_path):
    inner = np.arange(300, dtype=np.float32).reshape(3, 100)
    constant = np.arange(400, dtype=np.float64)
    then_graph = helper.make_graph([helper.make_node("MatMul", ["x", "inner.w"], ["t"])], "then", [], [value("t", [2, 100])], [tensor("inner.w", inner)])
    else_graph = helper.make_graph([helper.make_node("MatMul", ["x", "inner.w2"], ["e"])], "else", [], [value("e", [2, 100])], [tensor("inner.w2", inner)])
    built = model(
        [
            helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph),
            helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(constant, "kv")),
        ],
        [value("cond", [], TensorProto.BOOL), value("x", [2, 3])],
        [value("y", [2, 100]), value("k", [400], TensorProto.DOUBLE)],
    )
    opened = OnnxModel(save(built, tmp_path / "m.onnx"))
    try:
        np.testing.assert_array_equal(opened.read("inner.w2"), inner)
        np.testing.assert_array_equal(opened.read("k"), constant)
        assert opened.read("k").dtype == np.float64
    finally:
        opened.close()


# --------------------------------------------------------------------------- typed fields, read bit for bit


@pytest.mark.parametrize("type_name", ["FLOAT16", "BFLOAT16"])
def test_16_bit_floats_in_int32_data_are_their_bits(tmp_path, type_name):
    from vsconf.formats.onnx.checks import np_dtype
    from vsconf.formats.onnx.reader import typed_values

    # every sign, exponent and NaN corner; int32_data entries as onnx writes them (0..65535)
    bits = np.array([0x0000, 0x8000, 0x0001, 0x3C00, 0x7BFF, 0x7C00, 0xFC00, 0x7E01, 0xFFFF, 0x3F80, 0x7F7F], np.uint16)
    stored = TensorProto(name="w", data_type=getattr(TensorProto, type_name), dims=[11], int32_data=bits.tolist())
    values = typed_values(stored)
    assert values.dtype == np_dtype(stored.data_type) and values.dtype.name == type_name.lower()
    np.testing.assert_array_equal(values.view(np.uint16), bits)
    # what verify reads, and the bytes a copy to a data file takes
    node = helper.make_node("Identity", ["w"], ["y"])
    path = save(model([node], [], [value("y", [11], stored.data_type)], [stored]), tmp_path / "m.onnx")
    adapter = OnnxModel(path)
    try:
        np.testing.assert_array_equal(adapter.read("w").view(np.uint16), bits)
    finally:
        adapter.close()
    file = ModelFile(path)
    try:
        assert file.raw_bytes(stored, "w") == bits.astype("<u2").tobytes()
    finally:
        file.close()


def test_float32_and_float64_typed_fields_are_exact():
    from vsconf.formats.onnx.reader import typed_values

    values = [0.1, -3.5, 1e-45, 3.4028234663852886e38]
    single = typed_values(TensorProto(name="a", data_type=TensorProto.FLOAT, dims=[2, 2], float_data=values))
    double = typed_values(TensorProto(name="b", data_type=TensorProto.DOUBLE, dims=[4], double_data=values))
    assert single.dtype == np.float32 and single.shape == (2, 2) and single.ravel().tolist() == [float(np.float32(v)) for v in values]
    assert double.dtype == np.float64 and double.tolist() == values
