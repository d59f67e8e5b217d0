"""vsconf: declarative, reproducible VarianceScaling initialization for ONNX models and state dicts."""

from __future__ import annotations

from vsconf._version import __version__
from vsconf.api import ApplyResult, apply, apply_state_dict, plan, verify
from vsconf.engine import Plan, PlanEntry
from vsconf.errors import MatchError, ModelError, Problem, SpecError, VsconfError
from vsconf.fans import Axes, compute_fans, scaled_variance
from vsconf.spec import Spec, load_spec, parse_spec
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


__all__ = [
    "ApplyResult",
    "CONSTANTS",
    "PRESETS",
    "TRUNCATED_NORMAL_STD",
    "Axes",
    "Constant",
    "MatchError",
    "ModelError",
    "Plan",
    "PlanEntry",
    "Problem",
    "Spec",
    "SpecError",
    "VarianceScaling",
    "VsconfError",
    "__version__",
    "apply",
    "apply_state_dict",
    "compute_fans",
    "load_spec",
    "ones",
    "parse_spec",
    "plan",
    "preset",
    "scaled_variance",
    "variance_scaling",
    "variance_scaling_initializer",
    "verify",
    "zeros",
]
