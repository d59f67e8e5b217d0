"""PyTorch's ``calculate_gain``: the gain a nonlinearity asks of the weights before it.

A VarianceScaling init may say ``nonlinearity: tanh`` instead of a ``scale``: the scale is
the gain squared, so ``{preset: glorot_uniform, nonlinearity: tanh}`` is
``torch.nn.init.xavier_uniform_(w, gain=calculate_gain("tanh"))``, and ``{preset:
he_normal, nonlinearity: leaky_relu, negative_slope: 0.2}`` is ``kaiming_normal_``'s gain
for that slope.

>>> round(gain("tanh"), 6), gain("relu") ** 2, round(gain("leaky_relu", 0.2) ** 2, 6)
(1.666667, 2.0000000000000004, 1.923077)
"""

from __future__ import annotations

import math

# torch.nn.init.calculate_gain (torch/nn/init.py): the same names, the same numbers.
LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")
NONLINEARITIES = (*LINEAR, "tanh", "relu", "leaky_relu", "selu")
# leaky_relu's default slope in calculate_gain (and nn.LeakyReLU).
DEFAULT_NEGATIVE_SLOPE = 0.01


def gain(nonlinearity: str, negative_slope: float | None = None) -> float:
    """The recommended gain for ``nonlinearity``, as ``torch.nn.init.calculate_gain``."""
    if nonlinearity in LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = DEFAULT_NEGATIVE_SLOPE if negative_slope is None else negative_slope
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}; expected one of {', '.join(NONLINEARITIES)}")


def scale_of(nonlinearity: str, negative_slope: float | None = None) -> float:
    """The VarianceScaling scale of that gain: its square."""
    return gain(nonlinearity, negative_slope) ** 2
