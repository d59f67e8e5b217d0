from __future__ import annotations

import math

import numpy as np
import pytest

import vsconf
from vsconf.draw import generate, generate_chunks
from vsconf.engine import FanHint, make_plan
from vsconf.formats.names import state_dict_hints
from vsconf.errors import MatchError
from vsconf.fans import Axes
from vsconf.matching import Consumer, TensorInfo
from vsconf.spec import parse_spec

F32 = np.dtype(np.float32)


def spec_of(rules: str, **top):
    head = "".join(f"{k}: {v}\n" for k, v in top.items())
    return parse_spec(f"vsconf: 1\nseed: 11\n{head}rules:\n{rules}", source="init.yaml")


def t(name, shape, dtype=F32, consumers=()):
    return TensorInfo(name, tuple(shape), np.dtype(dtype), tuple(consumers))


def test_plan_records_fans_and_spread_per_layout():
    rules = "  - match: '*'\n    init: he_uniform\n"
    tensors = [t("conv.weight", (32, 16, 3, 3))]
    torch = make_plan(tensors, spec_of(rules, layout="torch")).entry("conv.weight")
    assert (torch.fan_in, torch.fan_out, torch.fans_from) == (144, 288, "torch")
    assert torch.limit == pytest.approx(math.sqrt(3 * 2 / 144), rel=1e-15)
    assert torch.std is None and torch.action == "fill" and torch.seed == 11
    tf = make_plan(tensors, spec_of(rules, layout="tf")).entry("conv.weight")
    assert (tf.fan_in, tf.fan_out, tf.fans_from) == (16 * 96, 3 * 512, "tf")


def test_auto_layout_on_state_dicts_is_tf_with_one_warning_naming_the_rules():
    spec = spec_of(
        "  - match: '*.bias'\n    init: zeros\n  - match: 'a.*'\n    init: he_normal\n  - match: '*'\n    init: lecun_normal\n"
    )
    plan = make_plan([t("a.weight", (4, 8)), t("a.bias", (8,)), t("b.weight", (8, 2))], spec)
    assert plan.entry("a.weight").fans_from == "tf (auto)"
    assert plan.entry("a.weight").fan_in == 4
    assert [warning.format("warning") for warning in plan.warnings] == [
        "init.yaml: warning: layout: auto reads state-dict shapes with the tf rule (..., in, out) for "
        "rules[1] (line 6), rules[2] (line 8); write `layout: torch` for PyTorch state dicts ([out, in, k...])",
    ]
    # Rank < 2 reads the same under both rules: no warning for a spec that only touches vectors.
    vectors = make_plan([t("a.bias", (8,))], spec_of("  - match: '*'\n    init: he_normal\n"))
    assert vectors.warnings == ()


def test_explicit_axes_win_over_the_layout():
    spec = spec_of("  - match: '*'\n    init: {preset: he_normal, axes: {in: [2], out: [1], batch: [0]}}\n", layout="torch")
    entry = make_plan([t("lstm.W", (2, 40, 7))], spec).entry("lstm.W")
    assert (entry.fan_in, entry.fan_out, entry.fans_from) == (7, 40, "axes")
    assert entry.std == pytest.approx(math.sqrt(2 / 7), rel=1e-15)


def test_axes_that_do_not_fit_the_tensor_are_reported():
    spec = spec_of("  - match: '*'\n    init: {axes: {in: [3], out: [0]}}\n")
    with pytest.raises(MatchError, match=r"rules\[0\] \(line 4\): tensor 'w': Axis 3 in `in` is out of range for a tensor of rank 2"):
        make_plan([t("w", (3, 3))], spec)


def test_fans_from_weight_uses_the_sibling_weight_in_state_dicts():
    spec = spec_of("  - match: '*'\n    fans_from: weight\n    init: torch_default\n", layout="torch")
    tensors = [t("fc.weight", (10, 300)), t("fc.bias", (10,))]
    plan = make_plan(tensors, spec, state_dict_hints(tensors))
    bias = plan.entry("fc.bias")
    assert (bias.fan_in, bias.fan_out) == (300, 10)
    assert bias.fans_from == "weight fc.weight (torch)"
    assert bias.limit == pytest.approx(1 / math.sqrt(300), rel=1e-15)  # PyTorch's bias bound
    with pytest.raises(MatchError, match=r"tensor 'head.bias': it takes `fans_from: weight`, but no weight reads alongside it \(expected 'head.weight'\)"):
        make_plan([t("head.bias", (3,))], spec, state_dict_hints([t("head.bias", (3,))]))


def test_consumer_hints_and_conflicts():
    spec = spec_of("  - match: '*'\n    init: glorot_uniform\n")
    hints = {"w": FanHint(axes=Axes(in_axes=0, out_axes=1), source="Gemm B (transB=0)")}
    entry = make_plan([t("w", (5, 3))], spec, hints, target="onnx").entry("w")
    assert (entry.fan_in, entry.fan_out, entry.fans_from) == (5, 3, "Gemm B (transB=0)")
    plain = make_plan([t("v", (5, 3))], spec, {}, target="onnx").entry("v")
    assert plain.fans_from == "tf (auto: no known consumer)"
    conflict = {"w": FanHint(conflict="Conv W (n1) and MatMul B (n2) disagree: (8, 2) vs (2, 8)")}
    with pytest.raises(MatchError, match=r"tensor 'w': Conv W \(n1\) and MatMul B \(n2\) disagree.*give the rule explicit `axes`"):
        make_plan([t("w", (5, 3))], spec, conflict, target="onnx")


def test_init_seed_overrides_the_global_seed_and_with_seed_only_changes_the_global_one():
    spec = spec_of("  - match: 'a'\n    init: {preset: he_normal, seed: 99}\n  - match: 'b'\n    init: he_normal\n")
    tensors = [t("a", (4, 4)), t("b", (4, 4))]
    plan = make_plan(tensors, spec)
    assert (plan.entry("a").seed, plan.entry("b").seed) == (99, 11)
    moved = make_plan(tensors, spec.with_seed(12))
    assert (moved.entry("a").seed, moved.entry("b").seed) == (99, 12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("init", ["he_normal", "glorot_uniform", "{scale: 0.5, mode: fan_avg, distribution: untruncated_normal}", "{distribution: normal}"])
def test_engine_values_equal_the_initializer_called_with_the_tensor_name(dtype, init):
    spec = spec_of(f"  - match: '*'\n    init: {init}\n", layout="tf")
    dt = vsconf.initializers.float_dtype(dtype)
    entry = make_plan([t("layer.kernel", (3, 3, 8, 16), dt)], spec).entry("layer.kernel")
    vs = spec.rules[0].init
    initializer = vsconf.VarianceScaling.__new__(vsconf.VarianceScaling)
    initializer.__init__(vs.scale, vs.mode, "truncated_normal" if vs.distribution == "normal" else vs.distribution, seed=11)
    expected = initializer((3, 3, 8, 16), dtype=dtype, name="layer.kernel")
    np.testing.assert_array_equal(generate(entry), expected)


def test_values_do_not_depend_on_tensor_order_or_other_rules():
    tensors = [t("a.weight", (64, 32)), t("b.weight", (16, 16)), t("c.bias", (16,))]
    one = spec_of("  - match: '*.weight'\n    init: he_normal\n  - match: '*'\n    init: zeros\n")
    other = spec_of(
        "  - match: 'x'\n    optional: true\n    init: ones\n"
        "  - match: 'b.weight'\n    init: he_normal\n  - match: 'a.weight'\n    init: he_normal\n"
        "  - match: '*'\n    init: {constant: 3}\n"
    )
    first = {e.name: generate(e) for e in make_plan(tensors, one)}
    second = {e.name: generate(e) for e in make_plan(list(reversed(tensors)), other)}
    for name in ("a.weight", "b.weight"):
        np.testing.assert_array_equal(first[name], second[name])


def test_keep_unmatched_and_non_float_generate_nothing():
    spec = spec_of("  - match: 'k'\n    init: keep\n  - match: 'c'\n    init: {constant: 0.25}\n")
    plan = make_plan([t("k", (2,)), t("c", (2,)), t("u", (2,)), t("i", (2,), np.int32)], spec)
    assert [e.action for e in plan] == ["keep", "constant", "unmatched", "skip"]
    assert [generate(e) is None for e in plan] == [True, False, True, True]
    assert generate(plan.entry("c")).tolist() == [0.25, 0.25]


def test_plan_json_form():
    spec = spec_of("  - match: '*'\n    init: he_normal\n", layout="torch")
    entry = make_plan([t("w", (3, 2))], spec).entry("w")
    assert entry.as_dict() == {
        "name": "w",
        "shape": [3, 2],
        "dtype": "float32",
        "action": "fill",
        "rule": "rules[0] (line 5)",
        "init": {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None},
        "seed": 11,
        "fan_in": 2,
        "fan_out": 3,
        "fans_from": "torch",
        "std": 1.0,
        "consumers": [],
        "role": None,  # a bare TensorInfo: no adapter said what it is
        "role_from": None,
        "role_guessed": False,
    }


def test_consumers_are_listed():
    spec = spec_of("  - op: Conv\n    init: he_normal\n")
    tensor = t("w", (4, 2, 3, 3), consumers=[Consumer("Conv", "W", "conv_1")])
    entry = make_plan([tensor], spec, target="onnx").entry("w")
    assert entry.consumers == ("Conv.W (conv_1)",)


@pytest.mark.parametrize("step", [999, 65_536, 100_000, None])
def test_chunks_of_any_size_give_the_whole_tensor(step):


    spec = parse_spec("vsconf: 1\nseed: 4\nrules:\n  - match: w\n    init: he_normal\n  - match: c\n    init: {constant: 0.5}\n")
    tensors = [TensorInfo("w", (300, 700), np.dtype(np.float32)), TensorInfo("c", (5, 7), np.dtype(np.float16))]
    for entry in make_plan(tensors, spec):
        whole = generate(entry, jobs=2)
        chunks = list(generate_chunks(entry, jobs=3, step=step))
        assert all(c.ndim == 1 and c.dtype == whole.dtype for c in chunks)
        assert np.concatenate(chunks).tobytes() == whole.tobytes()
