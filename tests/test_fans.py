from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsconf.fans import Axes, axes_fans, compute_fans, scaled_variance, tf_fans, torch_fans

# (shape, tf fans, torch fans): written out by hand from each framework's rule.
FAN_TABLE = [
    ((), (1, 1), (1, 1)),
    ((7,), (7, 7), (7, 7)),
    ((0,), (0, 0), (0, 0)),
    ((5, 3), (5, 3), (3, 5)),  # tf dense kernel [in, out]; torch Linear [out, in]
    ((4, 3, 5), (3 * 4, 5 * 4), (3 * 5, 4 * 5)),  # Conv1d
    ((3, 3, 16, 32), (144, 288), (3 * 512, 3 * 512)),
    ((32, 16, 3, 3), (3 * 512, 3 * 512), (144, 288)),  # torch Conv2d OIHW
    ((8, 4, 2, 3, 3), (3 * 64, 3 * 64), (4 * 18, 8 * 18)),  # Conv3d
    ((2, 3, 0, 4), (0, 24), (0, 0)),
]


@pytest.mark.parametrize(("shape", "tf", "torch"), FAN_TABLE)
def test_fan_table(shape, tf, torch):
    assert tf_fans(shape) == tf
    assert torch_fans(shape) == torch
    assert compute_fans(shape, "tf") == tf
    assert compute_fans(shape, "torch") == torch


AXES_TABLE = [
    # JAX's rule: unnamed axes are the receptive field of both fans.
    ((3, 3, 16, 32), Axes(), (144, 288)),
    ((32, 16, 3, 3), Axes(in_axes=1, out_axes=0), (144, 288)),
    ((32, 16, 3, 3), Axes(in_axes=-3, out_axes=-4), (144, 288)),
    # MatMul B with two batch axes: [experts, heads, K, N].
    ((4, 2, 64, 128), Axes(batch_axes=(0, 1)), (64, 128)),
    # Attention kernel [in, heads, head_dim] with two output axes.
    ((64, 8, 16), Axes(in_axes=0, out_axes=(1, 2)), (64, 128)),
    # LSTM W [dirs, 4H, I]: batch 0, in 2, out 1.
    ((2, 40, 7), Axes(in_axes=2, out_axes=1, batch_axes=0), (7, 40)),
    # Keras 3 input_axes/output_axes ignore the other axes.
    ((3, 64, 8, 16), Axes(in_axes=1, out_axes=(2, 3), rest="batch"), (64, 128)),
    ((3, 64, 8, 16), Axes(in_axes=1, out_axes=(2, 3)), (192, 384)),
]


@pytest.mark.parametrize(("shape", "axes", "fans"), AXES_TABLE)
def test_axes_table(shape, axes, fans):
    assert axes_fans(shape, axes) == fans
    assert compute_fans(shape, axes) == fans


def test_axes_from_mapping_defaults_follow_jax():
    assert Axes.from_mapping({}) == Axes(in_axes=(-2,), out_axes=(-1,), batch_axes=())
    assert Axes.from_mapping({"in": [1], "out": [0], "batch": [2]}).to_mapping() == {
        "in": [1],
        "out": [0],
        "batch": [2],
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_axes": (1, 1)}, "Axes `in` repeats an axis. Received: [1, 1]"),
        ({"in_axes": 0, "out_axes": 0}, "An axis is named in more than one of `in`, `out`, `batch`"),
        ({"in_axes": 0, "out_axes": 1, "batch_axes": 1}, "more than one of `in`, `out`, `batch`"),
        ({"in_axes": 1.5}, "Axes `in` must be integers. Received: 1.5"),
        ({"out_axes": [True]}, "Axes `out` must be integers. Received: [True]"),
        ({"rest": "ignore"}, "Axes `rest` must be 'receptive' or 'batch'"),
    ],
)
def test_axes_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Axes(**kwargs)


def test_axes_out_of_range_or_aliased_for_the_rank():
    with pytest.raises(ValueError, match="Axis 4 in `in` is out of range for a tensor of rank 4"):
        axes_fans((1, 2, 3, 4), Axes(in_axes=4, out_axes=0))
    with pytest.raises(ValueError, match="name the same axis twice for a tensor of rank 4"):
        axes_fans((1, 2, 3, 4), Axes(in_axes=-1, out_axes=3))
    with pytest.raises(ValueError, match="Unknown axes key"):
        Axes.from_mapping({"inputs": [0]})


def test_unknown_layout():
    with pytest.raises(ValueError, match="Unknown layout 'oihw'"):
        compute_fans((2, 2), "oihw")


@pytest.mark.parametrize(
    ("mode", "fans", "variance"),
    [
        ("fan_in", (4, 16), 2.0 / 4),
        ("fan_out", (4, 16), 2.0 / 16),
        ("fan_avg", (4, 16), 2.0 / 10),
        ("fan_avg", (1, 2), 2.0 / 1.5),
        ("fan_in", (0, 16), 2.0),  # max(1, fan): a zero fan leaves var = scale, as TF does
        ("fan_avg", (0, 1), 2.0),
    ],
)
def test_scaled_variance(mode, fans, variance):
    assert scaled_variance(2.0, mode, *fans) == pytest.approx(variance, rel=1e-15)


def test_scaled_variance_rejects_mode():
    with pytest.raises(ValueError, match="Received: fan-in"):
        scaled_variance(1.0, "fan-in", 1, 1)


dims = st.integers(min_value=0, max_value=9)
shapes = st.lists(dims, min_size=2, max_size=6).map(tuple)


@given(shapes)
def test_torch_rule_is_tf_rule_on_the_transposed_layout(shape):
    # torch [out, in, k...] holds the same kernel as tf [k..., in, out].
    tf_shape = shape[2:] + (shape[1], shape[0])
    assert torch_fans(shape) == tf_fans(tf_shape)


@given(shapes)
def test_default_axes_reproduce_tf_and_torch(shape):
    assert axes_fans(shape, Axes()) == tf_fans(shape)
    assert axes_fans(shape, Axes(in_axes=1, out_axes=0)) == torch_fans(shape)


@given(shapes, st.integers(min_value=0, max_value=9))
def test_batch_axes_count_in_neither_fan(shape, batch):
    stacked = (batch,) + shape
    assert axes_fans(stacked, Axes(batch_axes=0)) == tf_fans(shape)


@given(shapes)
def test_fans_are_permutation_covariant(shape):
    # Reversing the tensor and naming the mirrored axes gives the same fans.
    mirrored = tuple(reversed(shape))
    axes = Axes(in_axes=1, out_axes=0)  # mirrors of axes rank-2 and rank-1
    assert axes_fans(mirrored, axes) == tf_fans(shape)
