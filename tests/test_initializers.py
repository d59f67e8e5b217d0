from __future__ import annotations

import json
import math
import re
import warnings
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest
from stats import assert_mean_zero, assert_std, truncated_normal_moments

import vsconf
from vsconf.initializers import PRESETS, TRUNCATED_NORMAL_STD, Constant, VarianceScaling, float_dtype

def fans_of(shape):
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def expected_var(scale, mode, shape):
    fan_in, fan_out = fans_of(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return scale / max(1, n)


def test_truncation_constant_is_the_std_of_a_unit_normal_truncated_at_two():
    m2, _ = truncated_normal_moments(2.0)
    assert math.sqrt(m2) == pytest.approx(TRUNCATED_NORMAL_STD, rel=1e-15)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
def test_sample_moments_and_bounds(mode, distribution):
    shape = (5, 6, 40, 100)  # 120000 samples; fan_in 1200, fan_out 3000
    init = VarianceScaling(scale=1.7, mode=mode, distribution=distribution, seed=11)
    values = init(shape)
    std = math.sqrt(expected_var(1.7, mode, shape))
    assert values.shape == shape and values.dtype == np.float32
    assert_std(values, std, distribution)
    assert_mean_zero(values, std)
    peak = np.abs(values).max()
    if distribution == "truncated_normal":
        bound = 2 * std / TRUNCATED_NORMAL_STD
        # Every sample inside the truncation, and the truncation is where it should be:
        # P(all of n samples below 0.99 * bound) is astronomically small.
        assert peak <= np.float32(bound)
        assert peak > 0.99 * bound
    elif distribution == "uniform":
        limit = math.sqrt(3) * std
        assert peak <= np.float32(limit)
        assert peak > 0.999 * limit
    else:
        assert peak > 2 * std / TRUNCATED_NORMAL_STD  # tails exist beyond the truncation point


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "uniform"])
def test_every_float_dtype(dtype, distribution):
    shape = (300, 400)
    values = VarianceScaling(2.0, "fan_in", distribution, seed=5)(shape, dtype=dtype)
    assert values.dtype == float_dtype(dtype)
    assert_std(values, math.sqrt(2.0 / 300), distribution)


def test_dtypes_accepted_in_every_spelling():
    assert float_dtype(np.float16) == np.float16
    assert float_dtype("half") == np.float16
    assert float_dtype(ml_dtypes.bfloat16) == np.dtype(ml_dtypes.bfloat16)
    assert float_dtype(np.dtype("float64")) == np.float64


@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
def test_lower_precision_rounds_the_same_stream(distribution):
    init = VarianceScaling(seed=3, distribution=distribution)
    wide = init((64, 64), dtype="float64")
    for dtype in ("float32", "float16", "bfloat16"):
        np.testing.assert_array_equal(init((64, 64), dtype=dtype), wide.astype(float_dtype(dtype)))


def test_zero_fans_use_max_one():
    values = VarianceScaling(scale=0.25, seed=1)((0, 5))
    assert values.shape == (0, 5)
    assert VarianceScaling(scale=0.25).variance((0, 5)) == 0.25
    assert VarianceScaling(scale=0.25).variance(()) == 0.25


def test_scalar_and_vector_shapes():
    assert VarianceScaling(seed=1)(()).shape == ()
    assert VarianceScaling(mode="fan_avg").variance((8,)) == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0}, "Argument `scale` must be a positive float. Received: 0"),
        ({"scale": -1.5}, "Argument `scale` must be a positive float. Received: -1.5"),
        ({"scale": "2"}, "Argument `scale` must be a positive float. Received: '2'"),
        ({"scale": float("nan")}, "Argument `scale` must be a positive float. Received: nan"),
        ({"scale": True}, "Argument `scale` must be a positive float. Received: True"),
        ({"mode": "fan-in"}, "Argument `mode` should be one of ('fan_in', 'fan_out', 'fan_avg'). Received: 'fan-in'"),
        ({"mode": "FAN_IN"}, "Received: 'FAN_IN'"),
        ({"distribution": "gaussian"}, "Argument `distribution` should be one of ('truncated_normal', 'untruncated_normal', 'uniform', 'normal'). Received: 'gaussian'"),
        ({"distribution": 3}, "Argument `distribution` should be one of .*Received: 3"),
        ({"seed": -1}, "Argument `seed` must satisfy 0 <= seed < 2\\*\\*63. Received: seed=-1"),
        ({"seed": 2**63}, "Received: seed=9223372036854775808"),
        ({"seed": 1.5}, "Argument `seed` must be an integer or None. Received: seed=1.5"),
        ({"seed": "7"}, "Received: seed='7'"),
        ({"dtype": "int32"}, "Argument `dtype` is expected to be floating point .*Received: int32."),
        ({"dtype": np.complex64}, "Received: complex64."),
        ({"dtype": "float8_e4m3fn"}, "Received: float8_e4m3fn."),
        ({"dtype": "no-such-type"}, "Received: no-such-type."),
    ],
)
def test_constructor_errors_name_the_received_value(kwargs, message):
    pattern = message if ".*" in message or "\\" in message else re.escape(message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match=pattern):
            VarianceScaling(**kwargs)


@pytest.mark.parametrize("dtype", ["int8", np.int64, "complex128", "bool"])
def test_call_rejects_non_float_dtype(dtype):
    with pytest.raises(ValueError, match="Argument `dtype` is expected to be floating point"):
        VarianceScaling(seed=1)((2, 2), dtype=dtype)


@pytest.mark.parametrize("shape", [(-1, 2), (2.5,), ("a",)])
def test_call_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="non-negative integers"):
        VarianceScaling(seed=1)(shape)


def test_normal_is_a_deprecated_alias_kept_in_the_config():
    with pytest.warns(DeprecationWarning, match="`normal` is a deprecated alias for `truncated_normal`"):
        init = VarianceScaling(distribution="Normal", seed=4)
    assert init.get_config()["distribution"] == "normal"
    truncated = VarianceScaling(distribution="truncated_normal", seed=4)
    np.testing.assert_array_equal(init((30, 30)), truncated((30, 30)))


def test_distribution_names_are_lowercased():
    assert VarianceScaling(distribution="UNIFORM").distribution == "uniform"
    assert VarianceScaling(distribution="Untruncated_Normal").distribution == "untruncated_normal"


def test_constructor_dtype_is_deprecated_and_the_call_dtype_wins():
    with pytest.warns(DeprecationWarning, match="Passing `dtype` to the constructor is deprecated"):
        init = VarianceScaling(seed=1, dtype="float16")
    assert init((4, 4)).dtype == np.float16
    assert init((4, 4), dtype="float64").dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert VarianceScaling(seed=1)((4, 4)).dtype == np.float32


def test_get_config_has_exactly_tf1_keys_and_is_json():
    config = VarianceScaling(2.0, "fan_out", "uniform", seed=9).get_config()
    assert config == {
        "scale": 2.0,
        "mode": "fan_out",
        "distribution": "uniform",
        "seed": 9,
        "dtype": "float32",
    }
    assert json.loads(json.dumps(config)) == config


@pytest.mark.parametrize(
    "init",
    [
        VarianceScaling(),
        VarianceScaling(0.5, "fan_avg", "untruncated_normal", seed=123),
        VarianceScaling(2.0, "fan_in", "uniform", seed=0, axes=vsconf.Axes(in_axes=1, out_axes=0)),
        VarianceScaling(1.0, "fan_in", "uniform", seed=1, axes=vsconf.Axes(0, (1, 2), rest="batch")),
    ],
)
def test_config_round_trip(init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rebuilt = VarianceScaling.from_config(json.loads(json.dumps(init.get_config())))
    assert rebuilt == init
    assert rebuilt.get_config() == init.get_config()


def test_from_config_accepts_tf1_output():
    # What tf.compat.v1.keras.initializers.VarianceScaling(...).get_config() returns.
    tf1 = {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None, "dtype": "float32"}
    with pytest.warns(DeprecationWarning):  # TF1's from_config passes dtype back in, and warns too
        init = VarianceScaling.from_config(tf1)
    assert init.get_config() == tf1
    tf1_normal = dict(tf1, distribution="normal", dtype="float64", seed=3)
    with pytest.warns(DeprecationWarning):
        init = VarianceScaling.from_config(tf1_normal)
    assert init.get_config() == tf1_normal
    assert init((2, 2)).dtype == np.float64


def test_from_config_accepts_keras3_output():
    keras = {
        "seed": 42,
        "scale": 1.0,
        "mode": "fan_avg",
        "distribution": "uniform",
        "input_axes": [1],
        "output_axes": [2, 3],
    }
    init = VarianceScaling.from_config(keras)
    # Keras ignores the axes it is not told about: fans (64, 128) for [3, 64, 8, 16].
    assert init.fans((3, 64, 8, 16)) == (64, 128)
    assert init.get_config() == dict(keras, dtype="float32")
    plain = VarianceScaling.from_config(dict(keras, input_axes=None, output_axes=None))
    assert plain.fans((3, 64, 8, 16)) == (3 * 64 * 8, 3 * 64 * 16)
    only_one = VarianceScaling.from_config(dict(keras, output_axes=None))
    assert only_one.axes is None  # Keras uses its axes only when both are given


def test_from_config_rejects_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match=r"Unknown VarianceScaling config key\(s\): \['gain'\]"):
        VarianceScaling.from_config({"scale": 1.0, "gain": 2})
    with pytest.raises(ValueError, match="serialized Keras SeedGenerator"):
        VarianceScaling.from_config({"seed": {"class_name": "SeedGenerator", "config": {"seed": 1}}})
    with pytest.raises(ValueError, match="not both"):
        VarianceScaling.from_config({"axes": {"in": [0]}, "input_axes": [0], "output_axes": [1]})


def test_partition_fans_come_from_the_full_shape():
    init = VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform", seed=2)
    info = SimpleNamespace(full_shape=(400, 50), var_offset=(100, 0))
    part = init((200, 50), partition_info=info)
    assert_std(part, math.sqrt(1 / 400), "uniform")
    np.testing.assert_array_equal(part, init((400, 50))[100:300])


def test_partition_without_offset_is_the_leading_slice():
    init = VarianceScaling(seed=2)
    info = SimpleNamespace(full_shape=(30, 7))
    np.testing.assert_array_equal(init((10, 7), partition_info=info), init((30, 7))[:10])


def test_unseeded_calls_draw_fresh_values():
    init = VarianceScaling()
    assert not np.array_equal(init((16, 16)), init((16, 16)))


def test_seeded_calls_repeat_and_names_separate_streams():
    init = VarianceScaling(seed=99)
    np.testing.assert_array_equal(init((16, 16)), init((16, 16)))
    assert not np.array_equal(init((16, 16), name="a"), init((16, 16), name="b"))
    assert not np.array_equal(init((16, 16)), VarianceScaling(seed=100)((16, 16)))


def test_aliases():
    assert vsconf.variance_scaling is VarianceScaling
    assert vsconf.variance_scaling_initializer is VarianceScaling


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(name):
    scale, mode, distribution = PRESETS[name]
    init = vsconf.preset(name, seed=8)
    assert (init.scale, init.mode, init.distribution, init.seed) == (scale, mode, distribution, 8)
    shape = (256, 512)
    assert_std(init(shape), math.sqrt(expected_var(scale, mode, shape)), distribution)


def test_torch_default_matches_pytorch_bound():
    # PyTorch: kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + a^2)), bound = gain * sqrt(3 / fan_in).
    fan_in = 300
    init = vsconf.preset("torch_default", seed=1)
    values = init((fan_in, 64))
    bound = math.sqrt(2 / (1 + 5)) * math.sqrt(3 / fan_in)
    assert np.abs(values).max() <= np.float32(bound)
    assert np.abs(values).max() > 0.99 * bound


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown preset 'he'"):
        vsconf.preset("he")


def test_constants():
    assert vsconf.zeros() == Constant(0.0)
    np.testing.assert_array_equal(vsconf.ones()((2, 3), dtype="bfloat16"), np.ones((2, 3), ml_dtypes.bfloat16))
    assert Constant(0.5)((3,)).tolist() == [0.5, 0.5, 0.5]
    assert Constant.from_config(Constant(2.0).get_config()) == Constant(2.0)
    with pytest.raises(ValueError, match="Argument `value` must be a number. Received: 'x'"):
        Constant("x")
