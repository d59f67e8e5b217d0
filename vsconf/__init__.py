"""vsconf: declarative, reproducible VarianceScaling initialization for ONNX models and state dicts.

The names below load on first use (PEP 562), so that ``import vsconf.cli`` stays light
and the command can install its signal handlers before NumPy and onnx load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vsconf._version import __version__  # noqa: F401  (listed in __all__)

_HOMES = {
    "vsconf.api": ("ApplyResult", "apply", "apply_state_dict", "inspect", "plan", "verify"),
    "vsconf.engine": ("Plan", "PlanEntry"),
    "vsconf.slices": ("slice_values",),
    "vsconf.errors": ("MatchError", "ModelError", "Problem", "SpecError", "VsconfError"),
    "vsconf.fans": ("Axes", "compute_fans", "scaled_variance"),
    "vsconf.spec": ("load_spec", "parse_spec"),
    "vsconf.spec.rules": ("Spec",),
    "vsconf.initializers": (
        "CONSTANTS",
        "PRESETS",
        "TRUNCATED_NORMAL_STD",
        "Constant",
        "VarianceScaling",
        "ones",
        "preset",
        "variance_scaling",
        "variance_scaling_initializer",
        "zeros",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted([*_HOME_OF, "__version__"])


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'vsconf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME_OF))


if TYPE_CHECKING:  # what type checkers and editors see  # noqa: F401
    from vsconf.api import ApplyResult, apply, apply_state_dict, inspect, plan, verify
    from vsconf.engine import Plan, PlanEntry
    from vsconf.slices import slice_values
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
    from vsconf.spec import load_spec, parse_spec
    from vsconf.spec.rules import Spec
