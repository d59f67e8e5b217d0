"""The perturbations an audit must catch (#23), shared by tests/test_audit.py and
benchmarks/audit_power.py (which measures the smallest size at which each is caught).

Each builds, for about ``n`` elements and a seed, the spec rule a tensor ``w`` is audited
against and values that break it one way; with the words its reason must hold and the
alternative that must be named (or None).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vsconf.fans import compute_fans

RULE_NORMAL = "  - match: w\n    init: {normal: {std: 0.02}}\n"
RULE_HE = "  - match: w\n    init: he_normal\n"
RULE_TRUNC = "  - match: w\n    init: {truncated_normal: {std: 0.02, a: -0.04, b: 0.04}}\n"
RULE_CONST = "  - match: w\n    init: {constant: 0.1}\n"
RULE_ROWS = "  - match: w\n    init: {normal: {std: 0.02}}\n    zero_rows: [0]\n"


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan: float) -> np.ndarray:
    """TF1's truncated he_normal at ``fan``, drawn with NumPy."""
    count = math.prod(shape)
    std = math.sqrt(2.0 / fan) / 0.87962566103423978
    x = rng.standard_normal(count * 2 + 64)
    return (x[np.abs(x) < 2][:count] * std).reshape(shape).astype(np.float32)


def _side(n: int) -> int:
    return max(4, 4 * round(math.sqrt(n) / 4))


def _std(factor: float) -> Callable[[int, np.random.Generator], tuple[str, np.ndarray]]:
    return lambda n, rng: (RULE_NORMAL, (rng.normal(0, 0.02, (_side(n), _side(n))) * factor).astype(np.float32))


def _fan_out(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    side = _side(n)
    shape = (side // 2, side * 2)  # torch layout: fan_in side*2, fan_out side/2
    return RULE_HE, he_normal(rng, shape, compute_fans(shape, "torch")[1])


def _untruncated(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    side = _side(n)
    shape = (side // 2, side * 2)
    return RULE_HE, rng.normal(0, math.sqrt(2 / compute_fans(shape, "torch")[0]), shape).astype(np.float32)


def _uniform(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    limit = 0.02 * math.sqrt(3)
    return RULE_NORMAL, rng.uniform(-limit, limit, (_side(n), _side(n))).astype(np.float32)


def _tf_layout(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    side = _side(n)
    shape = (side // 4, side, 4)
    return RULE_HE, he_normal(rng, shape, compute_fans(shape, "tf")[0])


def _row(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    return RULE_ROWS, rng.normal(0, 0.02, (_side(n), _side(n))).astype(np.float32)


def _constant(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    return RULE_CONST, np.full((_side(n), _side(n)), 0.101, np.float32)


def _beyond(n: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    values = np.clip(rng.normal(0, 0.02, (_side(n), _side(n))), -0.039, 0.039).astype(np.float32)
    values[1, 1] = 0.05
    return RULE_TRUNC, values


# label -> (builder, words in the reason, an alternative named, or None)
PERTURBATIONS: dict[str, tuple[Callable[[int, np.random.Generator], tuple[str, np.ndarray]], str, str | None]] = {
    "std x1.05": (_std(1.05), "std 1.0", None),
    "std x1.14 (HF lecun_normal_)": (_std(1.14), "std 1.1", None),
    "fan_out instead of fan_in": (_fan_out, "x expected", "fan_out fits"),
    "untruncated instead of truncated": (_untruncated, "", "a normal of the same variance fits"),
    "uniform instead of normal": (_uniform, "", "a uniform of the same variance fits"),
    "tf layout's fans instead of torch's": (_tf_layout, "", "tf layout's fans"),
    "a zero row left random": (_row, "row 0 not zero", None),
    "a constant off by 1e-3": (_constant, "all", None),
    "one value beyond a bound": (_beyond, "1 value beyond the bound ±0.04", None),
}
