"""vsconf: declarative, reproducible VarianceScaling initialization for ONNX models and state dicts."""

from __future__ import annotations

from vsconf.errors import MatchError, ModelError, Problem, SpecError, VsconfError
from vsconf.fans import Axes, compute_fans, scaled_variance
from vsconf.initializers import (
    CONSTANTS,
    PRESETS,
    TRUNCATED_NORMAL_STD,
    Constant,
    VarianceScaling,
    ones,
    preset,
    variance_scaling,
    variance_scaling_initializer,
    zeros,
)

__version__ = "0.1.0"

__all__ = [
    "CONSTANTS",
    "PRESETS",
    "TRUNCATED_NORMAL_STD",
    "Axes",
    "Constant",
    "MatchError",
    "ModelError",
    "Problem",
    "SpecError",
    "VarianceScaling",
    "VsconfError",
    "__version__",
    "compute_fans",
    "ones",
    "preset",
    "scaled_variance",
    "variance_scaling",
    "variance_scaling_initializer",
    "zeros",
]
