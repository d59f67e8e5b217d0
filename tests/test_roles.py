"""Roles (what each tensor is), the safe defaults they allow, and shared tensors whose
consumers disagree (issue 10): models built in code, one per kind of consumer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_builders import make_model, model, run, save, tensor, value

import vsconf
from vsconf.cli import main
from vsconf.errors import MatchError, SpecError
from vsconf.matching import TensorInfo
from vsconf.spec import parse_spec
from vsconf.formats.names import guess_roles

ROOT = Path(__file__).resolve().parent.parent
F32 = np.float32


def spec_of(rules: str, head: str = "") -> vsconf.Spec:
    return parse_spec(f"vsconf: 1\nseed: 5\n{head}rules:\n{rules}", source="spec.yaml")


EVERYTHING = spec_of("  - match: '*'\n    init: he_normal\n")


def roles(path: Path) -> dict[str, tuple[str, str]]:
    return {r["name"]: (r["role"], r["role_from"]) for r in vsconf.inspect(path)}


def ones(*shape):
    return np.ones(shape, F32)


# --------------------------------------------------------------------------- roles from consumers


def _conv_bn(opset: int):
    """Conv -> BatchNormalization (statistics named by the opset) -> Mul by an exporter scalar."""
    return model(
        [
            helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"),
            helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"], ["b"], name="bn"),
            helper.make_node("Mul", ["b", "half"], ["y"], name="mul"),
        ],
        [value("x", [1, 2, 5, 5])],
        [value("y", [1, 4, 3, 3])],
        [
            tensor("conv.weight", np.full((4, 2, 3, 3), 0.1, F32)),
            tensor("conv.bias", np.zeros(4, F32)),
            tensor("bn.weight", ones(4)),
            tensor("bn.bias", np.zeros(4, F32)),
            tensor("bn.running_mean", np.zeros(4, F32)),
            tensor("bn.running_var", ones(4)),
            tensor("half", np.array(0.5, F32)),
        ],
        opset=opset,
    )


@pytest.mark.parametrize("opset", [9, 13, 15, 17])
def test_batchnorm_roles_at_every_opset_naming(tmp_path, opset):
    found = roles(save(_conv_bn(opset), tmp_path / "m.onnx"))
    statistic = "mean" if opset < 14 else "input_mean"
    assert found["conv.weight"] == ("weight", "Conv W (conv)")
    assert found["conv.bias"] == ("bias", "Conv B (conv)")
    assert found["bn.weight"] == ("norm_scale", "BatchNormalization scale (bn)")
    assert found["bn.bias"] == ("norm_bias", "BatchNormalization B (bn)")
    assert found["bn.running_mean"] == ("running_stat", f"BatchNormalization {statistic} (bn)")
    assert found["half"] == ("constant", "a scalar")


NORMS = [
    ("LayerNormalization", 17, ["Scale", "B"], {}),
    ("GroupNormalization", 21, ["scale", "bias"], {"num_groups": 2}),
    ("InstanceNormalization", 17, ["scale", "B"], {}),
]


@pytest.mark.parametrize("op, opset, inputs, attributes", NORMS, ids=[n[0] for n in NORMS])
def test_normalization_scales_and_shifts(tmp_path, op, opset, inputs, attributes):
    shape = [1, 4, 3] if op != "LayerNormalization" else [2, 4]
    param = [4]
    built = model(
        [helper.make_node(op, ["x", "s", "b"], ["y"], name="norm", **attributes)],
        [value("x", shape)],
        [value("y", shape)],
        [tensor("s", ones(*param)), tensor("b", np.zeros(param, F32))],
        opset=opset,
    )
    found = roles(save(built, tmp_path / "m.onnx"))
    assert found == {"s": ("norm_scale", f"{op} {inputs[0]} (norm)"), "b": ("norm_bias", f"{op} {inputs[1]} (norm)")}


def test_linear_as_matmul_and_add_gives_a_bias_after_its_weight(tmp_path):
    built = model(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Add", ["h", "fc.bias"], ["y"], name="add")],
        [value("x", [2, 3])],
        [value("y", [2, 4])],
        [tensor("w", ones(3, 4)), tensor("fc.bias", np.zeros(4, F32))],
    )
    found = roles(save(built, tmp_path / "m.onnx"))
    assert found["w"] == ("weight", "MatMul B (mm)")
    assert found["fc.bias"] == ("bias", "Add B (add) after a weight")


def test_a_packed_bias_split_across_projections_is_a_bias(tmp_path):
    """MultiheadAttention's in_proj_bias as the dynamo exporter writes it: Split, then one
    Add per projection."""
    nodes = [helper.make_node("Split", ["in_proj_bias"], ["bq", "bk", "bv"], axis=0, num_outputs=3, name="split")]
    for part in ("q", "k", "v"):
        nodes += [helper.make_node("MatMul", ["x", f"w{part}"], [f"m{part}"], name=f"mm_{part}"),
                  helper.make_node("Add", [f"m{part}", f"b{part}"], [part], name=f"add_{part}")]
    built = model(nodes, [value("x", [2, 4])], [value(p, [2, 4]) for p in "qkv"],
                  [tensor("in_proj_bias", np.zeros(12, F32))] + [tensor(f"w{p}", ones(4, 4)) for p in "qkv"], opset=18)
    records = {r["name"]: r for r in vsconf.inspect(save(built, tmp_path / "m.onnx"))}
    assert records["in_proj_bias"]["role"] == "bias"
    assert records["in_proj_bias"]["role_from"] in {f"Add B (add_{p}) after a weight" for p in "qkv"}
    assert len(records["in_proj_bias"]["consumers"]) == 3


def test_tensors_that_are_no_parameters_are_constants(tmp_path):
    """A Constant node's value, a float tensor used as indices (through a Cast), an LSTM's
    initial state, an additive attention mask, and a tensor nothing reads."""
    built = model(
        [
            helper.make_node("Constant", [], ["eps"], value=helper.make_tensor("v", TensorProto.FLOAT, [2], [1e-5, 1e-5])),
            helper.make_node("Cast", ["positions"], ["pos_i"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "pos_i"], ["emb"], name="lookup"),
            helper.make_node("LSTM", ["emb", "W", "R", "", "", "h0"], ["", "h"], hidden_size=2, name="lstm"),
            helper.make_node("MatMul", ["q", "k"], ["scores"], name="qk"),
            helper.make_node("Add", ["scores", "mask"], ["masked"], name="mask_add"),
            helper.make_node("Softmax", ["masked"], ["attn"], axis=-1),
            helper.make_node("Add", ["attn", "eps"], ["out"]),
        ],
        [value("q", [2, 2]), value("k", [2, 2])],
        [value("h", [1, 2, 2]), value("out", [2, 2])],
        [
            tensor("positions", np.array([[0.0, 1.0]], F32)),
            tensor("table", ones(3, 4)),
            tensor("W", ones(1, 8, 4)),
            tensor("R", ones(1, 8, 2)),
            tensor("h0", np.zeros((1, 2, 2), F32)),
            tensor("mask", np.array([[0, -1e9], [0, 0]], F32)),
            tensor("unused", ones(3)),
        ],
    )
    found = roles(save(built, tmp_path / "m.onnx"))
    assert found["eps"] == ("constant", "a Constant node")
    assert found["positions"] == ("constant", "read only as Gather indices (lookup)")
    assert found["table"] == ("embedding", "Gather data (lookup)")
    assert found["h0"] == ("constant", "read only as LSTM initial_h (lstm)")
    assert found["mask"] == ("constant", "added to attention scores (a mask or position bias): Add B (mask_add)")
    assert found["unused"] == ("constant", "read by no node")
    assert found["W"][0] == found["R"][0] == "weight"


def test_a_normalization_written_out_in_elementary_ops(tmp_path):
    """RMSNorm as x * rsqrt(mean(x^2) + eps) * weight, then a shift: a scale and a bias."""
    built = model(
        [
            helper.make_node("Mul", ["x", "x"], ["sq"]),
            helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1]),
            helper.make_node("Add", ["ms", "eps"], ["ms_eps"]),
            helper.make_node("Sqrt", ["ms_eps"], ["rms"]),
            helper.make_node("Div", ["x", "rms"], ["normed"]),
            helper.make_node("Mul", ["normed", "norm.weight"], ["scaled"], name="scale"),
            helper.make_node("Add", ["scaled", "norm.shift"], ["y"], name="shift"),
            helper.make_node("Add", ["y", "pos_embed"], ["z"], name="pos"),
        ],
        [value("x", [2, 4])],
        [value("z", [2, 4])],
        [tensor("eps", np.array([1e-6], F32)), tensor("norm.weight", ones(4)), tensor("norm.shift", np.zeros(4, F32)),
         tensor("pos_embed", ones(2, 4))],
        opset=17,
    )
    found = roles(save(built, tmp_path / "m.onnx"))
    assert found["norm.weight"] == ("norm_scale", "Mul B (scale) after a normalization")
    assert found["norm.shift"] == ("norm_bias", "Add B (shift) after a normalization's scale")
    assert found["eps"] == ("constant", "a scalar")
    assert found["pos_embed"] == ("other", "read by Add B (pos)")  # a parameter of no kind vsconf names


def test_prelu_slope_is_a_parameter_of_its_own_kind(tmp_path):
    built = model([helper.make_node("PRelu", ["x", "slope"], ["y"], name="act")], [value("x", [2, 3])], [value("y", [2, 3])],
                  [tensor("slope", np.array([0.25], F32))])
    assert roles(save(built, tmp_path / "m.onnx"))["slope"] == ("other", "PRelu slope (act)")


def _attention23(path: Path) -> Path:
    """ONNX's own Attention (opset 23): Q, K and V are activations; a stored K is no weight."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("Attention", ["q", "memory_k", "memory_v"], ["a"], name="attn"),
        helper.make_node("Add", ["a", "out.bias"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "g", [value("x", [1, 2, 3, 4])], [value("y", [1, 2, 3, 4])],
        [tensor("wq", ones(4, 4)), tensor("memory_k", ones(1, 2, 5, 4)), tensor("memory_v", ones(1, 2, 5, 4)),
         tensor("out.bias", np.zeros(4, F32))],
    )
    # opset 23 is newer than the builders allow (they pin what old onnxruntimes run): this
    # model is only planned, never run
    built = onnx.ModelProto(ir_version=11, graph=graph, opset_import=[helper.make_opsetid("", 23)])
    onnx.checker.check_model(built)
    path.write_bytes(built.SerializeToString())
    return path


def test_onnx_attention_keys_are_not_weights_and_lend_no_fans(tmp_path):
    path = _attention23(tmp_path / "attn.onnx")
    found = roles(path)
    assert found["memory_k"] == ("constant", "read only as Attention K (attn)")
    assert found["wq"] == ("weight", "MatMul B (q_proj)")
    records = {r["name"]: r for r in vsconf.inspect(path)}
    assert records["memory_k"]["fans_from"].startswith("tf (auto: no fan rule for Attention K")
    # the bias after an ONNX Attention has no weight beside it (com.microsoft.Attention's would)
    spec = spec_of("  - match: out.bias\n    fans_from: weight\n    init: torch_default\n")
    with pytest.raises(MatchError, match=r"tensor 'out.bias': it takes `fans_from: weight`, but no weight reads alongside it"):
        vsconf.plan(path, spec)
    plan = vsconf.plan(path, EVERYTHING)
    assert plan.entry("memory_k").action == "keep" and "constants" in plan.entry("memory_k").reason


def test_contrib_attention_weights_keep_their_row(tmp_path):
    node = helper.make_node("Attention", ["x", "qkv.weight", "qkv.bias"], ["y"], domain="com.microsoft", num_heads=2, name="attn")
    graph = helper.make_graph([node], "g", [value("x", [1, 3, 4])], [value("y", [1, 3, 4])],
                              [tensor("qkv.weight", ones(4, 12)), tensor("qkv.bias", np.zeros(12, F32))])
    built = make_model(graph, (("", 17), ("com.microsoft", 1)))
    path = tmp_path / "ms.onnx"
    path.write_bytes(built.SerializeToString())
    found = roles(path)
    assert found == {"qkv.weight": ("weight", "com.microsoft.Attention weights (attn)"),
                     "qkv.bias": ("bias", "com.microsoft.Attention bias (attn)")}
    spec = spec_of("  - match: qkv.bias\n    fans_from: weight\n    init: torch_default\n")
    assert vsconf.plan(path, spec).entry("qkv.bias").fan_in == 4


# --------------------------------------------------------------------------- safe defaults


def test_star_keeps_statistics_and_constants_and_the_model_stays_finite(tmp_path):
    path = save(_conv_bn(15), tmp_path / "m.onnx")
    plan = vsconf.plan(path, EVERYTHING)
    actions = {e.name: e.action for e in plan}
    assert actions == {"conv.weight": "fill", "conv.bias": "fill", "bn.weight": "fill", "bn.bias": "fill",
                       "bn.running_mean": "keep", "bn.running_var": "keep", "half": "keep"}
    assert plan.entry("bn.running_var").reason == (
        "running_stat (BatchNormalization input_var (bn)): rules[0] (line 4) selects by glob/regex, and such rules do not "
        "fill running statistics; name the tensor, or add `role: running_stat` (or `role: any`) to the rule"
    )
    assert plan.entry("half").reason.startswith("constant (a scalar): rules[0] (line 4) selects by glob/regex")
    out = vsconf.apply(path, EVERYTHING, tmp_path / "out.onnx").output
    assert np.isfinite(run(out)[0]).all()
    kept = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    assert kept["bn.running_var"].tolist() == [1, 1, 1, 1] and float(kept["half"]) == 0.5
    # opting in fills them: a variance drawn from a He normal is negative somewhere, and the output is NaN
    opted = vsconf.apply(path, spec_of("  - match: '*'\n    role: any\n    init: he_normal\n"), tmp_path / "any.onnx").output
    assert not np.isfinite(run(opted)[0]).all()


@pytest.mark.parametrize(
    "rule",
    [
        "  - match: bn.running_var\n    init: ones\n",  # the literal name
        "  - match: 'bn.*'\n    role: running_stat\n    init: ones\n",  # the role, named
        "  - match: 'bn.running_*'\n    role: any\n    init: ones\n",  # every role
        "  - op: BatchNormalization\n    input: input_var\n    init: ones\n",  # the formal input, named
        "  - role: running_stat\n    init: ones\n",  # the role alone
    ],
)
def test_each_way_of_opting_in_fills_a_running_statistic(tmp_path, rule):
    plan = vsconf.plan(save(_conv_bn(15), tmp_path / "m.onnx"), spec_of(rule))
    assert plan.entry("bn.running_var").action == "constant"


def test_a_role_filter_selects_by_what_the_tensor_is(tmp_path):
    path = save(_conv_bn(15), tmp_path / "m.onnx")
    plan = vsconf.plan(path, spec_of("  - match: '*'\n    role: [bias, norm_bias]\n    init: zeros\n"))
    assert {e.name for e in plan if e.action == "constant"} == {"conv.bias", "bn.bias"}


def test_a_glob_that_only_reaches_protected_tensors_warns_and_fills_nothing(tmp_path):
    path = save(_conv_bn(15), tmp_path / "m.onnx")
    plan = vsconf.plan(path, spec_of("  - match: 'bn.running_*'\n    init: zeros\n"))
    assert [e.action for e in plan if e.name.startswith("bn.running")] == ["keep", "keep"]
    assert [warning.format("warning") for warning in plan.warnings] == [
        "spec.yaml: rules[0] (line 4): warning: fills nothing; it matches only tensors that rules selecting by glob, "
        "regex or op do not fill: 'bn.running_mean' (running_stat), 'bn.running_var' (running_stat); add "
        "`role: running_stat` (or `role: any`) to fill them",
    ]
    assert [warning.rule for warning in plan.warnings] == [0]


def test_plan_table_lists_roles_and_why_tensors_are_kept(tmp_path, capsys):
    path = save(_conv_bn(15), tmp_path / "m.onnx")
    spec = tmp_path / "spec.yaml"
    spec.write_text("vsconf: 1\nseed: 5\nrules:\n  - match: '*'\n    init: he_normal\n")
    assert main(["plan", str(path), str(spec)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split()[:4] == ["name", "shape", "dtype", "role"]
    assert any(r.split()[:4] == ["bn.running_var", "[4]", "float32", "running_stat"] for r in rows)
    assert "kept by the safe defaults:\n  bn.running_mean: running_stat (BatchNormalization input_mean (bn))" in out
    records = json.loads((capsys.readouterr(), main(["plan", str(path), str(spec), "--format", "json"]), capsys.readouterr().out)[2])
    assert {r["name"]: r["role"] for r in records}["half"] == "constant"


# --------------------------------------------------------------------------- shared tensors


def _two_convs_one_bias(second_in: int):
    """One zero bias read by two Convs (the TorchScript exporter merges equal tensors)."""
    return model(
        [
            helper.make_node("Conv", ["x", "a.weight", "zeros"], ["a"], name="a", pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["x2", "b.weight", "zeros"], ["b"], name="b", pads=[1, 1, 1, 1]),
        ],
        [value("x", [1, 2, 4, 4]), value("x2", [1, second_in, 4, 4])],
        [value("a", [1, 3, 4, 4]), value("b", [1, 3, 4, 4])],
        [tensor("a.weight", ones(3, 2, 3, 3)), tensor("b.weight", ones(3, second_in, 3, 3)), tensor("zeros", np.zeros(3, F32))],
    )


TORCH_BIAS = "  - op: Conv\n    input: B\n    fans_from: weight\n    init: torch_default\n"


def test_a_shared_bias_whose_layers_differ_is_an_error_naming_each(tmp_path):
    path = save(_two_convs_one_bias(8), tmp_path / "m.onnx")
    with pytest.raises(MatchError) as caught:
        vsconf.plan(path, spec_of(TORCH_BIAS))
    assert str(caught.value) == (
        "spec.yaml: rules[0] (line 4): tensor 'zeros': it takes `fans_from: weight`, but its consumers' weights disagree: "
        "Conv B (a) has weight 'a.weight' with (fan_in, fan_out) = (18, 27); "
        "Conv B (b) has weight 'b.weight' with (fan_in, fan_out) = (72, 27); "
        "vsconf never fills a shared tensor from one consumer's view: add `untie: conflicts` to the spec "
        "to give each consumer its own copy"
    )


@pytest.mark.parametrize("how", ["spec", "api"])
def test_untie_conflicts_gives_each_layer_its_own_bias(tmp_path, how):
    path = save(_two_convs_one_bias(8), tmp_path / "m.onnx")
    spec = spec_of(TORCH_BIAS, "untie: conflicts\n") if how == "spec" else spec_of(TORCH_BIAS)
    untie = False if how == "spec" else "conflicts"
    plan = vsconf.plan(path, spec, untie=untie)
    assert plan.untied == {"zeros": ("zeros:a", "zeros:b")}
    assert (plan.entry("zeros:a").fan_in, plan.entry("zeros:b").fan_in) == (18, 72)
    assert plan.entry("zeros:a").untied_from == "zeros"
    result = vsconf.apply(path, spec, tmp_path / "out.onnx", untie=untie)
    assert all(np.isfinite(o).all() for o in run(result.output))
    assert vsconf.verify(result.output, spec) == []


def test_a_tie_whose_consumers_agree_stays_tied(tmp_path):
    path = save(_two_convs_one_bias(2), tmp_path / "m.onnx")
    for spec in (spec_of(TORCH_BIAS), spec_of(TORCH_BIAS, "untie: conflicts\n")):
        plan = vsconf.plan(path, spec)
        assert plan.untied == {} and plan.entry("zeros").fan_in == 18
        assert len(plan.entry("zeros").consumers) == 2
    assert vsconf.plan(path, spec_of(TORCH_BIAS), untie=True).untied == {"zeros": ("zeros:a", "zeros:b")}


def _bias_and_norm_shift():
    """One zero vector as a Conv's bias and a BatchNorm's shift and running mean."""
    return model(
        [
            helper.make_node("Conv", ["x", "w", "zeros"], ["c"], name="conv"),
            helper.make_node("BatchNormalization", ["c", "ones", "zeros", "zeros", "ones"], ["y"], name="bn"),
        ],
        [value("x", [1, 2, 3, 3])],
        [value("y", [1, 4, 1, 1])],
        [tensor("w", ones(4, 2, 3, 3)), tensor("zeros", np.zeros(4, F32)), tensor("ones", ones(4))],
        opset=15,
    )


def test_consumers_that_disagree_on_role_are_an_error_and_untie_by_input(tmp_path, capsys):
    path = save(_bias_and_norm_shift(), tmp_path / "m.onnx")
    spec = tmp_path / "spec.yaml"
    spec.write_text("vsconf: 1\nseed: 5\nrules:\n  - op: Conv\n    input: B\n    init: zeros\n")
    assert main(["plan", str(path), str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vsconf: error: ") and "Traceback" not in err
    assert (
        "tensor 'zeros': its consumers disagree on its role: Conv B (conv) reads it as bias; "
        "BatchNormalization B (bn) reads it as norm_bias; BatchNormalization input_mean (bn) reads it as running_stat"
    ) in err
    assert main(["plan", str(path), str(spec), "--untie", "conflicts"]) == 0
    out = capsys.readouterr().out
    # one node reads "ones" twice, as scale and as running variance: one copy per input
    assert "  ones -> ones:bn:1, ones:bn:4" in out
    assert "  zeros -> zeros:conv, zeros:bn:2, zeros:bn:3" in out
    plan = vsconf.plan(path, spec_of("  - match: '*'\n    init: he_normal\n"), untie="conflicts")
    assert {e.name: (e.role, e.action) for e in plan} == {
        "w": ("weight", "fill"),
        "zeros:conv": ("bias", "fill"),
        "zeros:bn:2": ("norm_bias", "fill"),
        "zeros:bn:3": ("running_stat", "keep"),
        "ones:bn:1": ("norm_scale", "fill"),
        "ones:bn:4": ("running_stat", "keep"),
    }


def test_the_untie_argument_is_checked():
    with pytest.raises(ValueError, match=r"Argument `untie` must be True, False, 'all' or 'conflicts'. Received: 'some'"):
        vsconf.plan({"w": ones(2, 2)}, EVERYTHING, untie="some")
    with pytest.raises(TypeError, match=r"Argument `untie` must be True, False, 'all' or 'conflicts'. Received: int 1"):
        vsconf.plan({"w": ones(2, 2)}, EVERYTHING, untie=1)
    # the spec's `untie: conflicts` means nothing to a state dict, and is no error there
    assert vsconf.plan({"w": ones(2, 2)}, spec_of("  - match: '*'\n    init: zeros\n", "untie: conflicts\n")).untied == {}


# --------------------------------------------------------------------------- the spec


def test_role_and_untie_errors_are_located():
    text = "vsconf: 1\nseed: 1\nuntie: conflict\nrules:\n  - match: '*'\n    role: [weight, biass]\n    init: zeros\n  - role: 3\n    init: zeros\n"
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "s.yaml")
    assert [p.format() for p in caught.value.problems] == [
        "s.yaml:3:8: untie: 'conflict' is not one of 'conflicts'; did you mean 'conflicts'?",
        "s.yaml:6:20: rules[0].role[1]: 'biass' is not one of 'weight', 'bias', 'embedding', 'norm_scale', 'norm_bias', "
        "'running_stat', 'constant', 'other', 'any'; did you mean 'bias'?",
        "s.yaml:8:11: rules[1].role: expected a string or a list, got an integer (3)",
    ]


def test_new_keys_leave_old_specs_digests_alone():
    old = spec_of("  - match: '*'\n    init: zeros\n")
    assert "untie" not in old.canonical() and "role" not in old.canonical()["rules"][0]
    new = spec_of("  - match: '*'\n    role: weight\n    init: zeros\n", "untie: conflicts\n")
    assert new.canonical()["untie"] == "conflicts" and new.canonical()["rules"][0]["role"] == ["weight"]
    assert parse_spec(new.canonical_json()).sha256 == new.sha256


# --------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize(
    "name, shape, role",
    [
        ("layer1.0.bn1.running_mean", (8,), "running_stat"),
        ("bn1.running_var", (8,), "running_stat"),
        ("batch_normalization/moving_variance", (8,), "running_stat"),
        ("bn1.weight", (8,), "norm_scale"),
        ("h.0.ln_1.bias", (8,), "norm_bias"),
        ("encoder.layer.0.output.LayerNorm.weight", (8,), "norm_scale"),
        ("dense/gamma", (8,), "norm_scale"),
        ("conv1.weight", (8, 3, 3, 3), "weight"),
        ("dense/kernel", (3, 8), "weight"),
        ("fc.bias", (8,), "bias"),
        ("lstm.bias_hh_l0", (8,), "bias"),
        ("transformer.wte.weight", (50, 8), "embedding"),
        ("bert.embeddings.word_embeddings.weight", (50, 8), "embedding"),
        ("h.0.attn.masked_bias", (), "constant"),
        ("cls_token", (1, 1, 8), "other"),
    ],
)
def test_state_dict_roles_follow_naming_conventions(name, shape, role):
    found = guess_roles([TensorInfo(name, shape, np.dtype("float32"))])[0]
    assert (found.role, found.role_guessed) == (role, True)
    assert found.role_from.startswith("name: ")


def test_a_downsample_norm_is_known_by_its_sibling_statistics():
    infos = [TensorInfo(f"layer2.0.downsample.1.{leaf}", (8,), np.dtype("float32")) for leaf in ("weight", "bias", "running_mean")]
    assert [i.role for i in guess_roles(infos)] == ["norm_scale", "norm_bias", "running_stat"]


def test_star_on_a_state_dict_keeps_running_statistics_and_says_it_guessed(capsys):
    arrays = dict(np.load(ROOT / "examples" / "small_cnn.npz"))
    out = vsconf.apply_state_dict(arrays, EVERYTHING)
    for name in arrays:
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert np.array_equal(out[name], arrays[name]), name
    assert not np.array_equal(out["conv1.weight"], arrays["conv1.weight"])
    assert main(["plan", str(ROOT / "examples" / "small_cnn.npz"), str(ROOT / "configs" / "he_cnn.yaml")]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("bn1.running_var "))
    assert row.split()[:5] == ["bn1.running_var", "[16]", "float32", "running_stat", "(guess)"]
