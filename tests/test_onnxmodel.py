"""The ONNX adapter on hand-built graphs: every place a weight can live, fans from consumers,
external data, dtypes, and what the output promises (checker, onnxruntime, metadata)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import make_model, model, run, save, tensor, value

import vsconf
from vsconf.draw import generate_chunks
from vsconf.formats.protocol import Writing
from vsconf.errors import MatchError, ModelError
from vsconf.files import Transaction
from vsconf.formats.onnx import OnnxModel, writer
from vsconf.formats.onnx.reader import ModelFile
from vsconf.spec import parse_spec


def spec_of(rules: str, seed: int = 3, **top) -> vsconf.Spec:
    head = "".join(f"{k}: {v}\n" for k, v in top.items())
    return parse_spec(f"vsconf: 1\nseed: {seed}\n{head}rules:\n{rules}", source="spec.yaml")


EVERYTHING_HE = spec_of("  - match: '*'\n    init: he_normal\n")


def fans(plan, name):
    entry = plan.entry(name)
    return entry.fan_in, entry.fan_out


def loaded(path):
    return onnx.load(str(path))


def initializer(path, name):
    for graph_tensor in loaded(path).graph.initializer:
        if graph_tensor.name == name:
            return numpy_helper.to_array(graph_tensor)
    raise KeyError(name)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- fans from consumers


def test_matmul_with_batch_axes_excludes_them_from_the_fans(tmp_path):
    w = np.zeros((4, 16, 32), np.float32)  # four stacked experts, [K, N] each
    built = model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [value("x", [4, 8, 16])],
        [value("y", [4, 8, 32])],
        [tensor("w", w)],
    )
    path = save(built, tmp_path / "m.onnx")
    plan = vsconf.plan(path, EVERYTHING_HE)
    assert fans(plan, "w") == (16, 32)
    assert plan.entry("w").fans_from == "MatMul B (MatMul#0)"
    out = vsconf.apply(path, EVERYTHING_HE).output
    assert run(out)[0].shape == (4, 8, 32)


def test_matmul_weight_on_the_left(tmp_path):
    built = model(
        [helper.make_node("MatMul", ["w", "x"], ["y"])],
        [value("x", [16, 5])],
        [value("y", [32, 5])],
        [tensor("w", np.zeros((32, 16), np.float32))],
    )
    plan = vsconf.plan(save(built, tmp_path / "m.onnx"), EVERYTHING_HE)
    assert fans(plan, "w") == (16, 32)  # [M, K]: fan_in is the last axis
    assert plan.entry("w").consumers == ("MatMul.A (MatMul#0)",)


@pytest.mark.parametrize(
    ("trans_a", "trans_b", "a_shape", "b_shape", "a_fans", "b_fans"),
    [
        (0, 0, (6, 4), (4, 3), (4, 6), (4, 3)),
        (0, 1, (6, 4), (3, 4), (4, 6), (4, 3)),
        (1, 0, (4, 6), (4, 3), (4, 6), (4, 3)),
        (1, 1, (4, 6), (3, 4), (4, 6), (4, 3)),
    ],
)
def test_gemm_trans_a_and_trans_b(tmp_path, trans_a, trans_b, a_shape, b_shape, a_fans, b_fans):
    # Y[M=6, N=3] = op(A)[M, K=4] @ op(B)[K, N] + C: both operands stored as weights.
    built = model(
        [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a, transB=trans_b)],
        [],
        [value("y", [6, 3])],
        [tensor("a", np.zeros(a_shape, np.float32)), tensor("b", np.zeros(b_shape, np.float32)), tensor("c", np.zeros(3, np.float32))],
    )
    path = save(built, tmp_path / "g.onnx")
    plan = vsconf.plan(path, EVERYTHING_HE)
    assert fans(plan, "a") == a_fans and fans(plan, "b") == b_fans
    assert plan.entry("b").fans_from == f"Gemm B (transB={trans_b}) (Gemm#0)"
    assert plan.entry("a").fans_from == f"Gemm A (transA={trans_a}) (Gemm#0)"
    out = vsconf.apply(path, EVERYTHING_HE).output
    assert run(out)[0].shape == (6, 3)


@pytest.mark.parametrize(("op", "gates"), [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_w_and_r(tmp_path, op, gates):
    hidden, inputs, directions = 5, 7, 2
    w = np.zeros((directions, gates * hidden, inputs), np.float32)
    r = np.zeros((directions, gates * hidden, hidden), np.float32)
    b = np.zeros((directions, 2 * gates * hidden), np.float32)
    built = model(
        [helper.make_node(op, ["x", "W", "R", "B"], ["y"], hidden_size=hidden, direction="bidirectional")],
        [value("x", [3, 2, inputs])],
        [value("y", [3, directions, 2, hidden])],
        [tensor("W", w), tensor("R", r), tensor("B", b)],
    )
    path = save(built, tmp_path / "rnn.onnx")
    spec = spec_of(f"  - op: {op}\n    input: [W, R]\n    init: glorot_uniform\n  - op: {op}\n    input: B\n    init: zeros\n")
    plan = vsconf.plan(path, spec)
    # Keras's kernel fans: in = the input (or hidden) size, out = all gates; directions are a batch axis
    assert fans(plan, "W") == (inputs, gates * hidden)
    assert fans(plan, "R") == (hidden, gates * hidden)
    limit = plan.entry("W").limit
    assert limit == pytest.approx(math.sqrt(3 / ((inputs + gates * hidden) / 2)))
    out = vsconf.apply(path, spec).output
    assert np.abs(initializer(out, "W")).max() <= np.float32(limit)
    assert run(out)[0].shape == (3, directions, 2, hidden)


def _pytorch_style_lstm(hidden=3, inputs=4):
    """A PyTorch-style LSTM export: weight_ih [4H, I] re-ordered from (i, f, g, o) to ONNX's
    (i, o, f, c) by Slice + Concat, then Unsqueeze'd to [1, 4H, I]."""
    h = hidden
    nodes, inits = [], [tensor("lstm.weight_ih_l0", np.zeros((4 * h, inputs), np.float32))]
    pieces = []
    for gate, (start, end) in enumerate([(0, h), (3 * h, 4 * h), (h, 2 * h), (2 * h, 3 * h)]):
        inits += [tensor(f"s{gate}", np.array([start])), tensor(f"e{gate}", np.array([end]))]
        nodes.append(helper.make_node("Slice", ["lstm.weight_ih_l0", f"s{gate}", f"e{gate}", "axis0"], [f"gate{gate}"]))
        pieces.append(f"gate{gate}")
    inits += [tensor("axis0", np.array([0])), tensor("unsq_axes", np.array([0]))]
    nodes.append(helper.make_node("Concat", pieces, ["w_reordered"], axis=0))
    nodes.append(helper.make_node("Unsqueeze", ["w_reordered", "unsq_axes"], ["W"]))
    inits.append(tensor("lstm.weight_hh_l0", np.zeros((1, 4 * h, h), np.float32)))
    nodes.append(helper.make_node("LSTM", ["x", "W", "lstm.weight_hh_l0"], ["y"], hidden_size=h))
    return model(nodes, [value("x", [2, 1, inputs])], [value("y", [2, 1, 1, h])], inits)


def test_look_through_slice_concat_unsqueeze(tmp_path):
    path = save(_pytorch_style_lstm(), tmp_path / "lstm.onnx")
    spec = spec_of("  - op: LSTM\n    input: [W, R]\n    init: glorot_uniform\n")
    plan = vsconf.plan(path, spec)
    entry = plan.entry("lstm.weight_ih_l0")
    assert (entry.fan_in, entry.fan_out) == (4, 12)  # [4H, I] stored: in = axis 1, out = axis 0
    assert entry.consumers == ("LSTM.W (LSTM#6)",)
    assert fans(plan, "lstm.weight_hh_l0") == (3, 12)
    # the int64 slice bounds are never touched
    assert plan.entry("s0").action == "skip"
    out = vsconf.apply(path, spec).output
    assert run(out)[0].shape == (2, 1, 1, 3)


def test_look_through_transpose_and_cast(tmp_path):
    # PyTorch's Linear without constant folding: weight [out=8, in=10] -> Transpose -> MatMul B
    built = model(
        [
            helper.make_node("Cast", ["fc.weight"], ["w32"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["w32"], ["wt"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "wt"], ["y"]),
        ],
        [value("x", [2, 10])],
        [value("y", [2, 8])],
        [tensor("fc.weight", np.zeros((8, 10), np.float16))],
    )
    path = save(built, tmp_path / "linear.onnx")
    spec = spec_of("  - op: MatMul\n    input: B\n    init: he_uniform\n")
    plan = vsconf.plan(path, spec)
    assert fans(plan, "fc.weight") == (10, 8)
    out = vsconf.apply(path, spec).output
    w = initializer(out, "fc.weight")
    assert w.dtype == np.float16 and w.shape == (8, 10)
    assert np.abs(w).max() <= np.float16(math.sqrt(6 / 10))
    assert run(out)[0].shape == (2, 8)


def test_fans_from_weight_follows_matmul_add(tmp_path):
    built = model(
        [helper.make_node("MatMul", ["x", "proj.w"], ["h"]), helper.make_node("Add", ["h", "proj.bias"], ["y"])],
        [value("x", [2, 300])],
        [value("y", [2, 6])],
        [tensor("proj.w", np.zeros((300, 6), np.float32)), tensor("proj.bias", np.zeros(6, np.float32))],
    )
    spec = spec_of("  - match: '*'\n    fans_from: weight\n    init: torch_default\n")
    plan = vsconf.plan(save(built, tmp_path / "m.onnx"), spec)
    bias = plan.entry("proj.bias")
    assert (bias.fan_in, bias.fan_out) == (300, 6)
    assert bias.fans_from == "weight proj.w (MatMul B (MatMul#0))"
    assert bias.limit == pytest.approx(1 / math.sqrt(300))
    assert bias.consumers == ("Add.B (Add#1)",)


def test_unknown_consumers_fall_back_to_tf_and_plan_says_why(tmp_path):
    built = model(
        [helper.make_node("PRelu", ["x", "slope"], ["y"])],
        [value("x", [2, 3])],
        [value("y", [2, 3])],
        [tensor("slope", np.zeros((2, 3), np.float32))],
    )
    plan = vsconf.plan(save(built, tmp_path / "p.onnx"), EVERYTHING_HE)
    entry = plan.entry("slope")
    assert (entry.fan_in, entry.fan_out) == (2, 3)
    assert entry.fans_from == "tf (auto: no fan rule for PRelu slope)"


def test_reshape_is_not_followed_and_plan_says_so(tmp_path):
    built = model(
        [helper.make_node("Reshape", ["w", "shape"], ["w2"]), helper.make_node("MatMul", ["x", "w2"], ["y"])],
        [value("x", [2, 6])],
        [value("y", [2, 2])],
        [tensor("w", np.zeros((3, 4), np.float32)), tensor("shape", np.array([6, 2]))],
    )
    entry = vsconf.plan(save(built, tmp_path / "r.onnx"), EVERYTHING_HE).entry("w")
    assert entry.fans_from == "tf (auto: no fan rule for Reshape data)"


# ---------------------------------------------------------------- shared weights


def _tied_embedding():
    # one [V=50, D=8] matrix: embedding lookup, and the LM head through a Transpose
    return model(
        [
            helper.make_node("Gather", ["emb", "ids"], ["h"]),
            helper.make_node("Transpose", ["emb"], ["emb_t"], perm=[1, 0]),
            helper.make_node("MatMul", ["h", "emb_t"], ["logits"], name="lm_head"),
        ],
        [value("ids", [2, 5], TensorProto.INT64)],
        [value("logits", [2, 5, 50])],
        [tensor("emb", np.zeros((50, 8), np.float32))],
    )


def test_shared_weight_with_conflicting_consumers_is_an_error_naming_them(tmp_path):
    path = save(_tied_embedding(), tmp_path / "tied.onnx")
    with pytest.raises(MatchError) as info:
        vsconf.plan(path, EVERYTHING_HE)
    assert str(info.value) == (
        "spec.yaml: rules[0] (line 4): tensor 'emb': its consumers disagree on fans: "
        "Gather data (Gather#0) gives (fan_in, fan_out) = (50, 8); "
        "MatMul B (lm_head) gives (fan_in, fan_out) = (8, 50); give the rule explicit `axes`"
    )


def test_shared_weight_with_explicit_axes_lists_all_consumers(tmp_path):
    path = save(_tied_embedding(), tmp_path / "tied.onnx")
    spec = spec_of("  - match: emb\n    init: {preset: lecun_normal, axes: {in: [1], out: [0]}}\n")
    entry = vsconf.plan(path, spec).entry("emb")
    assert (entry.fan_in, entry.fan_out, entry.fans_from) == (8, 50, "axes")
    assert entry.consumers == ("Gather.data (Gather#0)", "MatMul.B (lm_head)")


def test_untie_gives_each_consumer_its_own_copy(tmp_path):
    path = save(_tied_embedding(), tmp_path / "tied.onnx")
    spec = spec_of("  - match: 'emb*'\n    init: lecun_normal\n")
    plan = vsconf.plan(path, spec, untie=True)
    assert fans(plan, "emb:Gather#0") == (50, 8)
    assert fans(plan, "emb:Transpose#1") == (8, 50)
    out = vsconf.apply(path, spec, untie=True).output
    names = {t.name for t in loaded(out).graph.initializer}
    assert names == {"emb:Gather#0", "emb:Transpose#1"}
    assert not np.array_equal(initializer(out, "emb:Gather#0"), initializer(out, "emb:Transpose#1").T)
    assert run(out)[0].shape == (2, 5, 50)
    assert vsconf.verify(out, spec, untie=True) == []


# ---------------------------------------------------------------- where weights live


def test_subgraph_initializers_and_outer_weights_used_inside_if(tmp_path):
    then_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "outer.w"], ["t"])],
        "then",
        [],
        [value("t", [2, 4])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "inner.w"], ["e"])],
        "else",
        [],
        [value("e", [2, 4])],
        [tensor("inner.w", np.zeros((3, 4), np.float32))],
    )
    built = model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        [value("cond", [], TensorProto.BOOL), value("x", [2, 3])],
        [value("y", [2, 4])],
        [tensor("outer.w", np.zeros((3, 4), np.float32))],
    )
    path = save(built, tmp_path / "if.onnx")
    plan = vsconf.plan(path, EVERYTHING_HE)
    assert fans(plan, "outer.w") == (3, 4) and fans(plan, "inner.w") == (3, 4)
    assert plan.entry("inner.w").consumers == ("MatMul.B (MatMul#1)",)  # else_branch is walked first
    out = vsconf.apply(path, EVERYTHING_HE).output
    inner = loaded(out).graph.node[0].attribute
    else_tensor = next(a.g for a in inner if a.name == "else_branch").initializer[0]
    assert np.abs(numpy_helper.to_array(else_tensor)).max() > 0
    for cond in (True, False):
        result = run(out, {"cond": np.array(cond), "x": np.ones((2, 3), np.float32)})[0]
        assert result.shape == (2, 4) and np.isfinite(result).all()


def test_constant_node_weights_are_filled(tmp_path):
    w = helper.make_tensor("w_const", TensorProto.FLOAT, [4, 3, 3, 3], np.zeros(108, np.float32))
    built = model(
        [
            helper.make_node("Constant", [], ["conv.weight"], value=w),
            helper.make_node("Conv", ["x", "conv.weight"], ["y"]),
        ],
        [value("x", [1, 3, 8, 8])],
        [value("y", [1, 4, 6, 6])],
    )
    path = save(built, tmp_path / "c.onnx")
    plan = vsconf.plan(path, EVERYTHING_HE)
    assert fans(plan, "conv.weight") == (27, 36)
    out = vsconf.apply(path, EVERYTHING_HE).output
    node = loaded(out).graph.node[0]
    values = numpy_helper.to_array(node.attribute[0].t)
    # Conv W [4, 3, 3, 3] has torch's fans: the same stream as a torch-layout state dict
    torch_layout = spec_of("  - match: '*'\n    init: he_normal\n", layout="torch")
    same = vsconf.apply_state_dict({"conv.weight": np.zeros((4, 3, 3, 3), np.float32)}, torch_layout)
    np.testing.assert_array_equal(values, same["conv.weight"])
    assert run(out)[0].shape == (1, 4, 6, 6)


def test_initializers_that_are_graph_inputs_and_non_float_tensors(tmp_path):
    built = model(
        [helper.make_node("Reshape", ["x", "shape"], ["x2"]), helper.make_node("MatMul", ["x2", "w"], ["y"])],
        [value("x", [2, 3, 2]), value("w", [6, 4])],  # w is also a graph input (a default)
        [value("y", [2, 4])],
        [tensor("w", np.zeros((6, 4), np.float32)), tensor("shape", np.array([2, 6], np.int64))],
    )
    path = save(built, tmp_path / "m.onnx")
    out = vsconf.apply(path, EVERYTHING_HE).output
    assert np.abs(initializer(out, "w")).max() > 0
    np.testing.assert_array_equal(initializer(out, "shape"), [2, 6])
    assert {i.name for i in loaded(out).graph.input} == {"x", "w"}
    assert run(out)[0].shape == (2, 4)


def test_explicit_match_of_an_int_tensor_is_an_error(tmp_path):
    built = model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [value("x", [2, 3])],
        [value("y", [6])],
        [tensor("shape", np.array([6], np.int64))],
    )
    with pytest.raises(MatchError, match="tensor 'shape': it is int64; vsconf only fills float tensors"):
        vsconf.plan(save(built, tmp_path / "m.onnx"), spec_of("  - match: shape\n    init: zeros\n"))


# ---------------------------------------------------------------- dtypes


def _dense(dtype, name="w"):
    return model(
        [helper.make_node("MatMul", ["x", name], ["y"])],
        [value("x", [2, 64], helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))],
        [value("y", [2, 32], helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))],
        [tensor(name, np.zeros((64, 32), dtype))],
    )


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64])
def test_low_and_high_precision_weights_keep_dtype_and_dims(tmp_path, dtype):
    path = save(_dense(dtype), tmp_path / "m.onnx")
    out = vsconf.apply(path, EVERYTHING_HE).output
    stored = next(t for t in loaded(out).graph.initializer if t.name == "w")
    assert stored.data_type == helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    assert list(stored.dims) == [64, 32]
    assert len(stored.raw_data) == 64 * 32 * np.dtype(dtype).itemsize
    expected = vsconf.VarianceScaling(2.0, seed=3)((64, 32), dtype=np.dtype(dtype), name="w")
    np.testing.assert_array_equal(numpy_helper.to_array(stored), expected)
    onnx.checker.check_model(str(out))
    if dtype != ml_dtypes.bfloat16:  # onnxruntime's CPU MatMul has no bfloat16 kernel
        assert run(out)[0].shape == (2, 32)


# ---------------------------------------------------------------- external data


def _external_model(tmp_path, name="ext.onnx"):
    built = model(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        [value("x", [2, 64])],
        [value("y", [2, 16])],
        [tensor("w1", np.ones((64, 128), np.float32)), tensor("w2", np.ones((128, 16), np.float32)), tensor("small", np.ones(3, np.float32))],
    )
    path = tmp_path / name
    onnx.save(built, str(path), save_as_external_data=True, location=f"{name}.weights", size_threshold=0)
    return path


def test_external_data_in_and_a_fresh_data_file_out(tmp_path):
    path = _external_model(tmp_path)
    before = {p.name: sha(p) for p in tmp_path.iterdir()}
    spec = spec_of("  - match: 'w*'\n    init: glorot_uniform\n")
    out = vsconf.apply(path, spec).output
    assert {p.name: sha(p) for p in tmp_path.iterdir() if p.name in before} == before  # inputs untouched
    data = tmp_path / "ext.init.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "ext.init.onnx", data.name])
    assert os.stat(data).st_nlink == 1
    stored = {t.name: t for t in onnx.load(str(out), load_external_data=False).graph.initializer}
    locations = {t.name: {e.key: e.value for e in t.external_data}.get("location") for t in stored.values()}
    assert locations == {"w1": data.name, "w2": data.name, "small": None}  # 12 bytes stay inline
    onnx.checker.check_model(str(out))
    assert run(out)[0].shape == (2, 16)
    full = onnx.load(str(out))
    w1 = numpy_helper.to_array(next(t for t in full.graph.initializer if t.name == "w1"))
    assert np.abs(w1).max() <= np.float32(math.sqrt(3 / 96))
    np.testing.assert_array_equal(numpy_helper.to_array(next(t for t in full.graph.initializer if t.name == "small")), np.ones(3))
    assert vsconf.verify(out, spec) == []


def test_in_place_with_external_data_replaces_only_data_files_vsconf_named(tmp_path):
    path = _external_model(tmp_path)
    spec = spec_of("  - match: 'w*'\n    init: he_normal\n")
    result = vsconf.apply(path, spec, in_place=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    # ext.onnx.weights is not a name vsconf gives data files: it stays, and the result says so
    assert names == ["ext.onnx", "ext.onnx.data", "ext.onnx.weights"]
    assert result.notes == ("kept ext.onnx.weights: not a data file vsconf made for ext.onnx",)
    onnx.checker.check_model(str(path))
    assert vsconf.verify(path, spec) == []
    result = vsconf.apply(path, spec, in_place=True, seed=9)  # the data file is in use: a fresh name, then the old goes
    assert result.notes == ()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "ext.onnx.weights")
    assert len(names) == 2 and names[0] == "ext.onnx" and re.fullmatch(r"ext\.onnx\.[0-9a-f]{8}\.data", names[1])
    onnx.checker.check_model(str(path))
    assert run(path)[0].shape == (2, 16)


def test_force_over_a_previous_output_does_not_touch_the_input_data(tmp_path):
    path = _external_model(tmp_path)
    spec = spec_of("  - match: 'w*'\n    init: he_normal\n")
    vsconf.apply(path, spec)
    input_data = sha(tmp_path / "ext.onnx.weights")
    vsconf.apply(path, spec, force=True, seed=4)
    assert sha(tmp_path / "ext.onnx.weights") == input_data
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 4  # input, its data, output, the output's one data file
    onnx.checker.check_model(str(tmp_path / "ext.init.onnx"))
    assert vsconf.verify(tmp_path / "ext.init.onnx", spec) == []  # the recorded seed (4) is used


def test_outputs_past_the_protobuf_limit_get_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)  # stand-in for 2 GB
    path = save(_dense(np.float32), tmp_path / "big.onnx")
    out = vsconf.apply(path, EVERYTHING_HE).output
    assert (tmp_path / "big.init.onnx.data").stat().st_size >= 64 * 32 * 4
    onnx.checker.check_model(str(out))
    assert run(out)[0].shape == (2, 32)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    path = _external_model(tmp_path)
    built = onnx.load(str(path), load_external_data=False)
    for t in built.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.bin"
    path.write_bytes(built.SerializeToString())
    with pytest.raises(ModelError, match=r"tensor 'w1' has external data outside the model's folder: '../elsewhere.bin'"):
        vsconf.apply(path, spec_of("  - match: 'w*'\n    init: he_normal\n"))


# ---------------------------------------------------------------- the output's promises


def test_metadata_reapply_and_verify(tmp_path):
    path = save(_dense(np.float32), tmp_path / "m.onnx")
    out = vsconf.apply(path, EVERYTHING_HE).output
    props = {p.key: p.value for p in loaded(out).metadata_props}
    assert props == {
        "vsconf.version": vsconf.__version__,
        "vsconf.seed": "3",
        "vsconf.spec_sha256": EVERYTHING_HE.sha256,
        "vsconf.stream": "1",
    }
    again = vsconf.apply(out, EVERYTHING_HE, output=tmp_path / "again.onnx").output
    assert again.read_bytes() == out.read_bytes()
    assert vsconf.verify(out, EVERYTHING_HE) == []
    tampered = loaded(out)
    w = numpy_helper.to_array(tampered.graph.initializer[0]).copy()
    w[0, 0] += 1
    tampered.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    (tmp_path / "t.onnx").write_bytes(tampered.SerializeToString())
    assert [str(p) for p in vsconf.verify(tmp_path / "t.onnx", EVERYTHING_HE)] == [
        f"{tmp_path / 't.onnx'}: tensor 'w': 1 of 2048 elements differ from what the spec produces (max |difference| 1)"
    ]


def test_input_model_is_never_modified(tmp_path):
    path = save(_dense(np.float32), tmp_path / "m.onnx")
    before = sha(path)
    vsconf.apply(path, EVERYTHING_HE, lock=tmp_path / "lock.json")
    assert sha(path) == before
    lock = json.loads((tmp_path / "lock.json").read_text())
    assert [t["name"] for t in lock["tensors"]] == ["w"]


def test_unreadable_onnx_is_a_user_error(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage\xff\xff")
    with pytest.raises(ModelError, match="bad.onnx: not an ONNX model: protobuf cannot parse it"):
        vsconf.plan(tmp_path / "bad.onnx", EVERYTHING_HE)


def test_contrib_attention_weights(tmp_path):
    hidden = 8
    node = helper.make_node("Attention", ["x", "qkv.weight", "qkv.bias"], ["y"], domain="com.microsoft", num_heads=2)
    graph = helper.make_graph(
        [node],
        "g",
        [value("x", [1, 4, hidden])],
        [value("y", [1, 4, hidden])],
        [tensor("qkv.weight", np.zeros((hidden, 3 * hidden), np.float32)), tensor("qkv.bias", np.zeros(3 * hidden, np.float32))],
    )
    built = make_model(graph, (("", 17), ("com.microsoft", 1)))
    path = tmp_path / "attn.onnx"
    path.write_bytes(built.SerializeToString())
    spec = spec_of(
        "  - op: com.microsoft.Attention\n    input: weights\n    init: glorot_uniform\n"
        "  - op: com.microsoft.Attention\n    input: bias\n    init: zeros\n"
    )
    plan = vsconf.plan(path, spec)
    assert fans(plan, "qkv.weight") == (hidden, 3 * hidden)
    assert plan.entry("qkv.weight").consumers == ("com.microsoft.Attention.weights (Attention#0)",)
    assert plan.entry("qkv.bias").action == "constant"
    out = vsconf.apply(path, spec).output
    assert run(out)[0].shape == (1, 4, hidden)


def test_look_through_squeeze(tmp_path):
    built = model(
        [
            helper.make_node("Squeeze", ["w", "axes"], ["w2"]),
            helper.make_node("MatMul", ["x", "w2"], ["y"]),
        ],
        [value("x", [2, 8])],
        [value("y", [2, 4])],
        [tensor("w", np.zeros((1, 8, 4), np.float32)), tensor("axes", np.array([0]))],
    )
    path = save(built, tmp_path / "sq.onnx")
    entry = vsconf.plan(path, spec_of("  - match: w\n    init: he_normal\n")).entry("w")
    assert (entry.fan_in, entry.fan_out) == (8, 4)  # the squeezed axis is in neither fan
    assert run(vsconf.apply(path, spec_of("  - match: w\n    init: he_normal\n")).output)[0].shape == (2, 4)


def test_loop_body_initializers_are_found(tmp_path):
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "body.w"], ["h_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [value("i", [], TensorProto.INT64), value("cond_in", [], TensorProto.BOOL), value("h_in", [2, 4])],
        [value("cond_out", [], TensorProto.BOOL), value("h_out", [2, 4])],
        [tensor("body.w", np.zeros((4, 4), np.float32))],
    )
    built = model(
        [helper.make_node("Loop", ["trip", "cond", "h0"], ["h"], body=body)],
        [value("trip", [], TensorProto.INT64), value("cond", [], TensorProto.BOOL), value("h0", [2, 4])],
        [value("h", [2, 4])],
    )
    path = save(built, tmp_path / "loop.onnx")
    spec = spec_of("  - match: body.w\n    init: {preset: glorot_normal, scale: 0.5}\n")
    entry = vsconf.plan(path, spec).entry("body.w")
    assert (entry.fan_in, entry.fan_out, entry.fans_from) == (4, 4, "MatMul B (MatMul#1)")
    out = vsconf.apply(path, spec).output
    onnx.checker.check_model(str(out))
    result = run(out, {"trip": np.array(3), "cond": np.array(True), "h0": np.ones((2, 4), np.float32)})[0]
    assert result.shape == (2, 4) and np.isfinite(result).all()


# ---------------------------------------------------------------- every element type, as onnx writes it


def _identity_model(stored: TensorProto) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["t"], ["y"])], "g", [], [value("y", list(stored.dims), stored.data_type)], [stored]
    )
    return make_model(graph, (("", 21),), ir_version=10)


def _sample(data_type: int) -> np.ndarray:
    if data_type == TensorProto.STRING:
        return np.array([["a", "bc", "d"], ["e", "", "g"]], dtype=object)
    return (np.arange(6).reshape(2, 3) % 2).astype(helper.tensor_dtype_to_np_dtype(data_type))


_NOT_FILLED = [
    (name, code)
    for name, code in TensorProto.DataType.items()
    if code not in (TensorProto.UNDEFINED, TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
]


@pytest.mark.parametrize("layout", ["raw_data", "typed field", "external"])
@pytest.mark.parametrize(("type_name", "data_type"), _NOT_FILLED, ids=[n for n, _ in _NOT_FILLED])
def test_every_element_type_is_accepted_and_copied_byte_for_byte(tmp_path, type_name, data_type, layout):
    """No false refusals: however onnx itself stores a type (packed 4-bit and 2-bit values,
    float16 bits in int32_data, complex numbers as pairs), vsconf reads it and copies it."""
    array = _sample(data_type)
    if layout == "typed field":
        values = [s.encode() for s in array.flat] if data_type == TensorProto.STRING else array.flatten().tolist()
        stored = helper.make_tensor("t", data_type, [2, 3], values)
    else:
        stored = numpy_helper.from_array(array, "t")
    path = tmp_path / "m.onnx"
    if layout == "external":
        if data_type == TensorProto.STRING:
            pytest.skip("strings have no raw bytes to put in a data file")
        onnx.save(_identity_model(stored), str(path), save_as_external_data=True, location="m.bin", size_threshold=0)
    else:
        path.write_bytes(_identity_model(stored).SerializeToString())
    onnx.checker.check_model(str(path))
    out = vsconf.apply(path, EVERYTHING_HE_OPTIONAL).output
    onnx.checker.check_model(str(out))
    before, after = (numpy_helper.to_array(loaded(p).graph.initializer[0]) for p in (path, out))
    assert before.dtype == after.dtype and before.shape == after.shape
    assert before.tobytes() == after.tobytes() if data_type != TensorProto.STRING else (before == after).all()


EVERYTHING_HE_OPTIONAL = spec_of("  - match: '*'\n    optional: true\n    init: he_normal\n")


# ---------------------------------------------------------------- what is refused, and what is not


def _gemm() -> onnx.ModelProto:
    """A Linear layer whose weight (8 KiB) goes to a data file, and whose bias (128 bytes) does not."""
    built = model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")],
        [value("x", [1, 64])],
        [value("y", [1, 32])],
        [tensor("w", np.ones((64, 32), np.float32)), tensor("b", np.zeros(32, np.float32))],
    )
    return built


@pytest.mark.parametrize(
    ("recorded", "seed", "problem"),
    [
        ("7", 7, None),
        ("0007", 7, None),
        ("9223372036854775807", 2**63 - 1, None),
        ("9223372036854775808", None, "'9223372036854775808'"),
        ("-5", None, "'-5'"),
        (" 7", None, "' 7'"),
        ("7.0", None, "'7.0'"),
        ("٣", None, "'٣'"),  # a digit, but not ASCII
        ("9" * 5000, None, "'99999999999999999999'... (5000 characters)"),
    ],
    ids=["7", "leading-zeros", "max", "2**63", "negative", "space", "float", "arabic-digit", "5000-digits"],
)
def test_recorded_seed_is_an_int_or_a_problem_to_report_when_used(tmp_path, recorded, seed, problem):
    built = _gemm()
    entry = built.metadata_props.add()
    entry.key, entry.value = "vsconf.seed", recorded
    path = save(built, tmp_path / "m.onnx")
    opened = OnnxModel(path)
    assert opened.recorded_seed == seed
    if problem is None:
        assert opened.recorded_seed_problem is None
    else:
        assert opened.recorded_seed_problem == (
            f"{path}: metadata vsconf.seed is {problem}, not a seed (0 <= seed < 2**63); give the seed explicitly"
        )
        with pytest.raises(ModelError, match="not a seed"):
            vsconf.verify(path, EVERYTHING_HE)
        assert vsconf.verify(path, EVERYTHING_HE, seed=3) != []  # an explicit seed: the model opens


def test_ir3_models_without_opset_import_are_refused_but_ir2_ones_are_not(tmp_path):
    built = _gemm()
    del built.opset_import[:]
    built.ir_version = 3
    (tmp_path / "m.onnx").write_bytes(built.SerializeToString())
    with pytest.raises(ModelError, match=r"m.onnx: not an ONNX model: it imports no operator set \(opset_import is empty\)$"):
        OnnxModel(tmp_path / "m.onnx")
    built.ir_version = 2  # before IR 3 there was no opset_import: opset 1 is implied
    (tmp_path / "m.onnx").write_bytes(built.SerializeToString())
    assert [t.name for t in OnnxModel(tmp_path / "m.onnx").tensors()] == ["w", "b"]


def test_materialize_a_scalar_shape(tmp_path):
    built = model(
        [helper.make_node("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.array([2.5], np.float32)))],
        [],
        [value("c", [])],
        [tensor("shape", np.array([], np.int64))],
    )
    opened = OnnxModel(save(built, tmp_path / "m.onnx"), materialize=True)
    assert [(t.name, t.shape) for t in opened.tensors()] == [("c", ())]
    assert opened.read("c") == np.float32(2.5)


def test_a_node_reading_one_weight_twice_is_untied_once(tmp_path):
    built = model(
        [helper.make_node("Add", ["w", "w"], ["s"], name="twice"), helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [value("x", [2, 4])],
        [value("s", [4, 4]), value("y", [2, 4])],
        [tensor("w", np.ones((4, 4), np.float32))],
    )
    opened = OnnxModel(save(built, tmp_path / "m.onnx"), untie=True)
    assert [t.name for t in opened.tensors()] == ["w:twice", "w:mm"]


def test_constant_ints_never_reads_a_large_tensor(tmp_path, monkeypatch):
    built = model(
        [helper.make_node("Unsqueeze", ["w", "axes"], ["w3"]), helper.make_node("MatMul", ["x", "w3"], ["y"])],
        [value("x", [1, 2, 4])],
        [value("y", [1, 2, 3])],
        [tensor("w", np.ones((4, 3), np.float32)), tensor("axes", np.zeros(100_000, np.int64))],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(built.SerializeToString())
    monkeypatch.setattr(ModelFile, "array", lambda *args: pytest.fail("a 100,000-element tensor was read"))
    opened = OnnxModel(path)
    assert opened.hints()["w"].source == "tf (auto: cannot follow Unsqueeze (Unsqueeze#0))"


# ---------------------------------------------------------------- writing: a transaction, and what may be removed


def _external_gemm(tmp_path, name: str, location: str) -> Path:
    path = tmp_path / name
    onnx.save(_gemm(), str(path), save_as_external_data=True, location=location, size_threshold=0)
    return path


class _Recording(Transaction):
    def __init__(self):
        super().__init__()
        self.targets = []

    def stage(self, target):
        self.targets.append(Path(target).name)
        return super().stage(target)


def test_write_stages_the_data_file_before_the_model_and_does_not_commit(tmp_path):
    source = _external_gemm(tmp_path, "m.onnx", "m.onnx.data")
    opened = OnnxModel(source)
    plan = vsconf.plan(source, EVERYTHING_HE)
    output = tmp_path / "out.onnx"
    with _Recording() as transaction:
        opened.write(output, plan, Writing(generate_chunks), {"k": "v"}, None, transaction)
        assert transaction.targets == ["out.onnx.data", "out.onnx"]
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["m.onnx", "m.onnx.data"]
        transaction.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data", "out.onnx", "out.onnx.data"]
    onnx.checker.check_model(str(output))


def test_an_aborted_write_leaves_nothing(tmp_path, monkeypatch):
    from vsconf import schedule

    source = _external_gemm(tmp_path, "m.onnx", "m.onnx.data")
    opened = OnnxModel(source)
    plan = vsconf.plan(source, EVERYTHING_HE)

    def failing(task_list, scheduler, progress=None):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(schedule, "run", failing)
    with pytest.raises(RuntimeError), Transaction() as transaction:
        opened.write(tmp_path / "out.onnx", plan, Writing(generate_chunks), {}, None, transaction)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_the_new_data_file_never_takes_a_name_the_input_uses(tmp_path):
    source = _external_gemm(tmp_path, "m.onnx", "out.onnx.data")  # the input's data has the output's natural name
    before = sha(tmp_path / "out.onnx.data")
    result = vsconf.apply(source, EVERYTHING_HE, output=tmp_path / "out.onnx")
    assert sha(tmp_path / "out.onnx.data") == before
    data = [p.name for p in tmp_path.iterdir() if re.fullmatch(r"out\.onnx\.[0-9a-f]{8}\.data", p.name)]
    assert len(data) == 1
    assert onnx.load(str(result.output), load_external_data=False).graph.initializer[0].external_data[0].value == data[0]
    onnx.checker.check_model(str(result.output))


def _old_output(folder: Path, *locations: str) -> Path:
    """An out.onnx whose tensors name ``locations`` as external data."""
    built = _gemm()
    del built.graph.initializer[:]
    for k, location in enumerate(locations):
        stored = built.graph.initializer.add()
        stored.name, stored.data_type, stored.data_location = f"t{k}", TensorProto.FLOAT, TensorProto.EXTERNAL
        stored.dims.append(1)
        entry = stored.external_data.add()
        entry.key, entry.value = "location", location
    path = folder / "out.onnx"
    path.write_bytes(built.SerializeToString())
    return path


def test_stale_data_files_are_only_vsconfs_own_for_that_output(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    work = tmp_path / "work"
    work.mkdir()
    source = save(_gemm(), work / "m.onnx")
    for name in ("out.onnx.data", "out.onnx.0123abcd.data", "out.onnx.0123ABCD.data", "out.onnx.x.data", "spec.yaml", "m.onnx.data"):
        (work / name).write_bytes(b"x")
    os.symlink("../outside.txt", work / "out.onnx.deadbeef.data")
    (work / "out.onnx.cafecafe.data").mkdir()
    output = _old_output(
        work,
        "out.onnx.data",
        "out.onnx.0123abcd.data",
        "out.onnx.0123ABCD.data",
        "out.onnx.x.data",
        "spec.yaml",
        "m.onnx.data",
        "../outside.txt",
        str(outside),
        "out.onnx.deadbeef.data",
        "out.onnx.cafecafe.data",
        "out.onnx.00000000.data",  # named, but not there: nothing to remove, nothing to say
        "./out.onnx.data",
        "line\nbreak",
    )
    stale, notes = OnnxModel(source).stale_data_files(output)
    assert stale == [work / "out.onnx.data", work / "out.onnx.0123abcd.data"]
    assert notes == [
        "kept out.onnx.0123ABCD.data: not a data file vsconf made for out.onnx",
        "kept out.onnx.x.data: not a data file vsconf made for out.onnx",
        "kept spec.yaml: not a data file vsconf made for out.onnx",
        "kept m.onnx.data: not a data file vsconf made for out.onnx",
        "kept ../outside.txt: not a data file vsconf made for out.onnx",
        f"kept {outside}: not a data file vsconf made for out.onnx",
        "kept out.onnx.deadbeef.data: it is a symbolic link",
        "kept out.onnx.cafecafe.data: not a regular file",
        "kept ./out.onnx.data: not a data file vsconf made for out.onnx",
        "kept 'line\\nbreak': not a data file vsconf made for out.onnx",
    ]


def test_stale_data_files_spare_what_the_input_names(tmp_path):
    source = _external_gemm(tmp_path, "m.onnx", "out.onnx.data")
    output = _old_output(tmp_path, "out.onnx.data")
    assert OnnxModel(source).stale_data_files(output) == ([], ["kept out.onnx.data: the input model m.onnx names it too"])


def test_stale_data_files_in_place_are_the_inputs_own(tmp_path):
    source = _external_gemm(tmp_path, "m.onnx", "m.onnx.data")
    assert OnnxModel(source).stale_data_files(source) == ([tmp_path / "m.onnx.data"], [])


def test_stale_data_files_of_an_unreadable_or_missing_output(tmp_path):
    opened = OnnxModel(save(_gemm(), tmp_path / "m.onnx"))
    assert opened.stale_data_files(tmp_path / "none.onnx") == ([], [])
    (tmp_path / "out.onnx").write_bytes(b"")
    assert opened.stale_data_files(tmp_path / "out.onnx") == (
        [],
        [f"kept every file {tmp_path / 'out.onnx'} names: it is not a readable ONNX model"],
    )


def test_materialize_allocates_nothing_until_written(tmp_path, monkeypatch):
    def constant_of_shape(shape):
        return model(
            [helper.make_node("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.array([2.5], np.float32)))],
            [],
            [value("c", list(shape))],
            [tensor("shape", np.array(shape, np.int64))],
        )

    keep = spec_of("  - match: c\n    init: keep\n")
    huge = save(constant_of_shape([2**17, 2**20]), tmp_path / "huge.onnx")  # 512 GiB of float32
    assert vsconf.plan(huge, keep, materialize=True).entry("c").shape == (2**17, 2**20)
    monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)  # stand-in for 2 GB: the fill goes to a data file
    path = save(constant_of_shape([300, 300]), tmp_path / "m.onnx")
    out = vsconf.apply(path, keep, materialize=True).output
    onnx.checker.check_model(str(out))
    stored = onnx.load(str(out)).graph.initializer[0]
    assert stored.name == "c" and (numpy_helper.to_array(stored) == np.float32(2.5)).all()
    assert (tmp_path / "m.init.onnx.data").stat().st_size == 300 * 300 * 4


def test_external_attribute_tensors_come_inline(tmp_path):
    """onnx can put any tensor attribute in a data file, not only weights; the output may be
    in another folder, so those come inline."""
    from onnx.external_data_helper import convert_model_to_external_data

    built = model(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.array([2.5], np.float32), "fill")),
            helper.make_node("Add", ["c", "x"], ["y"]),
        ],
        [value("x", [4, 4])],
        [value("y", [4, 4])],
        [tensor("shape", np.array([4, 4], np.int64))],
    )
    convert_model_to_external_data(built, location="m.bin", size_threshold=0, convert_attribute=True)
    onnx.save(built, str(tmp_path / "m.onnx"))
    (tmp_path / "sub").mkdir()
    out = vsconf.apply(tmp_path / "m.onnx", EVERYTHING_HE_OPTIONAL, output=tmp_path / "sub" / "out.onnx").output
    onnx.checker.check_model(str(out))
    np.testing.assert_array_equal(run(out, {"x": np.zeros((4, 4), np.float32)})[0], np.full((4, 4), 2.5, np.float32))
    materialized = vsconf.apply(tmp_path / "m.onnx", EVERYTHING_HE_OPTIONAL, output=tmp_path / "sub" / "m2.onnx", materialize=True)
    assert materialized.plan.entry("c").action == "fill"
