"""normal, truncated_normal and uniform given by their own numbers (vsconf/inits/random.py),
nonlinearity gains (vsconf/inits/gains.py), and Keras's random classes.

Every statistical check is a two-sample Kolmogorov-Smirnov test against the framework's own
function on the same shape: the statistic D is compared with the critical value
c(alpha) * sqrt((n + m) / (n * m)) for alpha = 0.001, c(alpha) = sqrt(-ln(alpha / 2) / 2)
(the asymptotic Kolmogorov distribution), so a correct init fails one run in a thousand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vsconf
from vsconf import streams
from vsconf.draw import generate
from vsconf.errors import SpecError
from vsconf.inits.gains import gain
from vsconf.spec import parse_spec

from stats import same_distribution



def plan_of(init: str, shape=(64, 128), dtype=np.float32, stream: int | None = None, name: str = "w", layout: str = "torch"):
    spec = parse_spec(
        f"vsconf: 1\nseed: 11\nlayout: {layout}\n" + (f"stream: {stream}\n" if stream else "")
        + f"rules:\n  - match: '*'\n    init: {init}\n"
    )
    return vsconf.plan({name: np.zeros(shape, dtype)}, spec)


def values_of(init: str, **kwargs) -> np.ndarray:
    entry = plan_of(init, **kwargs).entries[0]
    return generate(entry)


# --------------------------------------------------------------------------- one stream, many parametrisations


@pytest.mark.parametrize("stream", streams.STREAMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
def test_normal_uniform_and_truncated_are_variance_scaling_draws_bit_for_bit(stream, dtype):
    from vsconf.initializers import float_dtype

    dtype = float_dtype(dtype) if isinstance(dtype, str) else dtype
    # fan_in 4 (torch layout, [out, in] = [64, 4]) and scale 1: the untruncated std is 0.5 exactly.
    vs_normal = values_of("{scale: 1.0, mode: fan_in, distribution: untruncated_normal}", shape=(64, 4), dtype=dtype, stream=stream)
    normal = values_of("{normal: {std: 0.5}}", shape=(64, 4), dtype=dtype, stream=stream)
    assert normal.tobytes() == vs_normal.tobytes()
    # fan_in 3, scale 1: the uniform limit is sqrt(3 * 1 / 3) = 1 exactly.
    vs_uniform = values_of("{scale: 1.0, mode: fan_in, distribution: uniform}", shape=(64, 3), dtype=dtype, stream=stream)
    uniform = values_of("{uniform: {low: -1.0, high: 1.0}}", shape=(64, 3), dtype=dtype, stream=stream)
    assert uniform.tobytes() == vs_uniform.tobytes()
    # VarianceScaling's truncated normal is cut at 2 of its underlying std: the same draw.
    vs_entry = plan_of("{scale: 2.0, mode: fan_in, distribution: truncated_normal}", shape=(64, 5), dtype=dtype, stream=stream).entries[0]
    truncated = values_of(f"{{truncated_normal: {{std: {vs_entry.param!r}}}}}", shape=(64, 5), dtype=dtype, stream=stream)
    assert truncated.tobytes() == generate(vs_entry).tobytes()


@pytest.mark.parametrize("init", ["{normal: {mean: 0.25, std: 0.5}}", "{truncated_normal: {mean: -1, std: 2, a: -3, b: 0.5}}", "{uniform: {low: 2, high: 5}}"])
@pytest.mark.parametrize("stream", streams.STREAMS)
def test_every_slice_equals_that_slice_of_the_whole(init, stream):
    entry = plan_of(init, shape=(70, 1100), stream=stream).entries[0]
    whole = generate(entry)
    for index in [(slice(3, 9), slice(None)), (slice(None), slice(1000, 1100)), (5, slice(7, 900)), (slice(69, 70), 1099)]:
        np.testing.assert_array_equal(vsconf.slice_values(entry, index), whole[index])


# --------------------------------------------------------------------------- against torch


torch = pytest.importorskip("torch")


def _torch(fill, shape=(256, 512)) -> np.ndarray:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    try:
        tensor = torch.empty(shape, dtype=torch.float64)
        fill(tensor)
        return tensor.numpy()
    finally:
        torch.random.set_rng_state(generator_state)


@pytest.mark.parametrize(
    "init, fill",
    [
        ("{normal: {mean: 0.1, std: 0.02}}", lambda t: torch.nn.init.normal_(t, mean=0.1, std=0.02)),
        ("{truncated_normal: {mean: 0, std: 1, a: -0.5, b: 1.5}}", lambda t: torch.nn.init.trunc_normal_(t, 0.0, 1.0, -0.5, 1.5)),
        ("{truncated_normal: {mean: 0, std: 0.02, a: -2, b: 2}}", lambda t: torch.nn.init.trunc_normal_(t, std=0.02)),
        ("{truncated_normal: {std: 0.5, cutoff: 3}}", lambda t: torch.nn.init.trunc_normal_(t, 0.0, 0.5, -1.5, 1.5)),
        ("{uniform: {low: -0.3, high: 0.7}}", lambda t: torch.nn.init.uniform_(t, -0.3, 0.7)),
        ("{preset: glorot_uniform, nonlinearity: tanh}", lambda t: torch.nn.init.xavier_uniform_(t, gain=torch.nn.init.calculate_gain("tanh"))),
        (
            "{preset: he_normal, distribution: untruncated_normal, nonlinearity: leaky_relu, negative_slope: 0.2}",
            lambda t: torch.nn.init.kaiming_normal_(t, a=0.2, nonlinearity="leaky_relu"),
        ),
        (
            "{preset: he_uniform, nonlinearity: relu}",
            lambda t: torch.nn.init.kaiming_uniform_(t, nonlinearity="relu"),
        ),
    ],
)
def test_each_init_draws_what_torch_draws(init, fill):
    ours = values_of(init, shape=(256, 512), dtype=np.float64)
    theirs = _torch(fill)
    ok, d, critical = same_distribution(ours, theirs)
    assert ok, f"{init}: KS D = {d:.5f} > {critical:.5f}"


def test_truncated_draws_stay_inside_their_bounds_and_keep_the_std_uncorrected():
    values = values_of("{truncated_normal: {mean: 1, std: 2, a: 0, b: 3}}", shape=(200, 500), dtype=np.float64)
    assert values.min() > 0 and values.max() < 3
    symmetric = values_of("{truncated_normal: {std: 1.0}}", shape=(400, 500), dtype=np.float64)
    # The samples' std of a unit normal cut at +-2 is 0.8796; nothing corrects it.  The std
    # estimate's standard error is about std / sqrt(2n): 6 of them is a one-in-a-billion miss.
    tolerance = 6 * 0.88 / math.sqrt(2 * symmetric.size)
    assert abs(symmetric.std() - vsconf.TRUNCATED_NORMAL_STD) < tolerance


# --------------------------------------------------------------------------- the spec


def test_gains_are_pytorch_s():
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "selu"):
        assert gain(name) == pytest.approx(torch.nn.init.calculate_gain(name), rel=1e-15)
    assert gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2), rel=1e-15)
    assert gain("leaky_relu") == pytest.approx(torch.nn.init.calculate_gain("leaky_relu"), rel=1e-15)


def test_a_nonlinearity_sets_the_scale_over_the_preset_and_the_defaults():
    spec = parse_spec(
        "vsconf: 1\nseed: 1\ndefaults: {scale: 7.0}\nrules:\n  - match: '*'\n    init: {preset: glorot_uniform, nonlinearity: tanh}\n"
    )
    assert spec.rules[0].init.scale == pytest.approx(25 / 9, rel=1e-15)
    assert spec.rules[0].init.mode == "fan_avg"


@pytest.mark.parametrize(
    "init, message",
    [
        ("{scale: 2.0, nonlinearity: relu}", "rules[0].init.nonlinearity: give either `scale` or `nonlinearity`"),
        ("{truncated_normal: {std: 1, a: 0.5, b: 0.4}}", "rules[0].init.truncated_normal.b: the upper bound 0.4 must be above the lower bound 0.5"),
        ("{truncated_normal: {std: 1, cutoff: 2, a: 0}}", "rules[0].init.truncated_normal.cutoff: give either `cutoff` or the bounds `a`/`b`, not both"),
        ("{truncated_normal: {std: 1, a: 4, b: 5}}", "rules[0].init.truncated_normal.a: the bounds keep 3.1e-05 of the normal"),
        ("{uniform: {low: 1, high: 1}}", "rules[0].init.uniform.high: high (1) must be above low (1)"),
        ("{normal: {std: 0}}", "rules[0].init.normal.std: must be > 0, got 0"),
        ("{uniform: {low: 1}}", "rules[0].init.uniform: missing required key 'high'"),
        ("{normal: {sd: 1}}", "rules[0].init.normal.sd: unknown key 'sd'"),
    ],
)
def test_bad_random_inits_are_located_errors(init, message):
    with pytest.raises(SpecError) as caught:
        parse_spec(f"vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {init}\n", "s.yaml")
    assert any(message in problem.format() for problem in caught.value.problems), [p.format() for p in caught.value.problems]


def test_warnings_for_a_truncation_that_never_happens_and_a_slope_that_does_nothing():
    spec = parse_spec(
        "vsconf: 1\nseed: 1\nrules:\n  - match: 'a'\n    init: {truncated_normal: {std: 0.02, a: -2, b: 2}}\n"
        "  - match: 'b'\n    init: {preset: he_normal, nonlinearity: relu, negative_slope: 0.1}\n",
        "s.yaml",
    )
    texts = [w.format("warning") for w in spec.warnings]
    assert any("rules[0].init.truncated_normal.a: warning: the bounds lie 100 standard deviations" in t and "never happens" in t for t in texts), texts
    assert any("rules[1].init.negative_slope: warning: `negative_slope` changes only leaky_relu's gain" in t for t in texts), texts


@pytest.mark.parametrize(
    "keras, ours",
    [
        ("{class_name: RandomNormal, config: {mean: 0.5, stddev: 0.1, seed: 3}}", "{normal: {mean: 0.5, std: 0.1}, seed: 3}"),
        ("{class_name: RandomNormal, config: {}}", "{normal: {std: 0.05}}"),
        ("{class_name: TruncatedNormal, config: {stddev: 0.2}}", "{truncated_normal: {std: 0.2, cutoff: 2}}"),
        ("{class_name: RandomUniform, config: {minval: -1, maxval: 2}}", "{uniform: {low: -1, high: 2}}"),
        ("{class_name: RandomUniform, config: {}}", "{uniform: {low: -0.05, high: 0.05}}"),
    ],
)
def test_keras_random_classes_mean_what_keras_means(keras, ours):
    assert values_of(keras).tobytes() == values_of(ours).tobytes()


def test_plan_shows_the_numbers_and_a_lock_verifies_them(tmp_path):
    np.savez(tmp_path / "m.npz", **{"a.weight": np.zeros((8, 4), np.float32), "b.weight": np.zeros((8, 4), np.float32)})
    (tmp_path / "s.yaml").write_text(
        "vsconf: 1\nseed: 5\nrules:\n  - match: a.weight\n    init: {normal: {mean: 0.5, std: 0.01}}\n"
        "  - match: b.weight\n    init: {uniform: {low: 0, high: 2}}\n"
    )
    plan = vsconf.plan(tmp_path / "m.npz", tmp_path / "s.yaml")
    a, b = plan.entry("a.weight"), plan.entry("b.weight")
    assert (a.distribution, a.mean, a.std) == ("untruncated_normal", 0.5, 0.01)
    assert (b.distribution, b.mean, b.limit) == ("uniform", 1.0, 1.0)
    result = vsconf.apply(tmp_path / "m.npz", tmp_path / "s.yaml", lock=tmp_path / "m.lock")
    assert vsconf.verify(result.output, tmp_path / "s.yaml", lock=tmp_path / "m.lock") == []
    records = {r["name"]: r for r in result.lock["tensors"]}
    assert records["a.weight"]["mean"] == 0.5 and records["b.weight"]["limit"] == 1.0
    with np.load(result.output) as loaded:
        assert 0 <= loaded["b.weight"].min() and loaded["b.weight"].max() < 2
