"""vsconf: declarative, reproducible VarianceScaling initialization for ONNX models and state dicts.

The names below load on first use (PEP 562), so that ``import vsconf.cli`` stays light
and the command can install its signal handlers before NumPy and onnx load.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vsconf._version import __version__  # noqa: F401  (listed in __all__)


def _homes() -> dict[str, str]:
    """Each public name -> its module, read from the ``TYPE_CHECKING`` imports below: the
    one list of the public API, which type checkers and editors read too."""
    import ast

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


_HOME_OF = _homes()

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


if TYPE_CHECKING:  # the public names, for type checkers, editors and _homes()  # noqa: F401
    from vsconf.api import ApplyResult, apply, apply_state_dict, inspect, plan, verify
    from vsconf.auditing import Audit, Verdict, audit
    from vsconf.commands import plan_text
    from vsconf.tally import StatsRow, TensorStats, stats
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
