"""One-sample Kolmogorov-Smirnov tests against the exact distributions vsconf draws from.

A null is a :class:`Null`: a normal (truncated to bounds in its own std, or not) or a
uniform, with its shift.  The statistic is computed against the distribution *as stored*:
a value of a float16 or bfloat16 tensor stands for every real number that rounds to it, so
the null's CDF is read at the midpoints to the value's neighbours in that dtype.  For a
discrete null this makes the test conservative (it never rejects more often than its
level); for float32 the midpoints are a hair from the value itself.

The p-value is the Kolmogorov distribution's with Stephens' correction for the sample
size, ``(sqrt(n) + 0.12 + 0.11 / sqrt(n)) * D``, accurate to a few percent from n = 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("truncated_normal", "untruncated_normal", "uniform")  # the draws a KS test has a CDF for
_erf = np.frompyfunc(math.erf, 1, 1)
_SQRT2 = math.sqrt(2.0)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z), exactly as ``math.erf`` gives it, for float64 arrays."""
    return 0.5 * (1.0 + _erf(np.asarray(z, np.float64) / _SQRT2).astype(np.float64))


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) if math.isfinite(z) else 0.0


def _cdf1(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


@dataclass(frozen=True)
class Null:
    """A distribution vsconf draws from: ``kind`` ``untruncated_normal`` (std ``param``),
    ``truncated_normal`` (a normal of std ``param`` cut to ``bounds``, in that std) or
    ``uniform`` (half-width ``param``), each shifted by ``shift``."""

    kind: str
    param: float
    shift: float = 0.0
    bounds: tuple[float, float] = (-2.0, 2.0)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.kind == "uniform":
            return np.clip((x - (self.shift - self.param)) / (2 * self.param), 0.0, 1.0)
        z = (x - self.shift) / self.param
        if self.kind == "untruncated_normal":
            return normal_cdf(z)
        lo, hi = self.bounds
        below, mass = _cdf1(lo), _cdf1(hi) - _cdf1(lo)
        return np.clip((normal_cdf(np.clip(z, lo, hi)) - below) / mass, 0.0, 1.0)

    @property
    def mean(self) -> float:
        if self.kind != "truncated_normal":
            return self.shift
        lo, hi = self.bounds
        mass = _cdf1(hi) - _cdf1(lo)
        return self.shift + self.param * (_phi(lo) - _phi(hi)) / mass

    @property
    def std(self) -> float:
        if self.kind == "uniform":
            return self.param / math.sqrt(3.0)
        if self.kind == "untruncated_normal":
            return self.param
        lo, hi = self.bounds
        mass = _cdf1(hi) - _cdf1(lo)
        lo_term = lo * _phi(lo) if math.isfinite(lo) else 0.0
        hi_term = hi * _phi(hi) if math.isfinite(hi) else 0.0
        first = (_phi(lo) - _phi(hi)) / mass
        return self.param * math.sqrt(max(1.0 + (lo_term - hi_term) / mass - first * first, 0.0))

    @property
    def support(self) -> tuple[float, float]:
        """The values the draw can take (before rounding to the tensor's dtype)."""
        if self.kind == "uniform":
            return self.shift - self.param, self.shift + self.param
        if self.kind == "truncated_normal":
            return self.shift + self.bounds[0] * self.param, self.shift + self.bounds[1] * self.param
        return -math.inf, math.inf

    def describe(self) -> str:
        shift = f"{self.shift:+.4g} " if self.shift else ""
        if self.kind == "uniform":
            low, high = self.support
            return f"uniform [{low:.4g}, {high:.4g}]"
        if self.kind == "untruncated_normal":
            return f"normal({shift}std {self.param:.4g})"
        low, high = self.support
        return f"truncated normal({shift}sigma {self.param:.4g}, cut to [{low:.4g}, {high:.4g}])"


def neighbours(values: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The midpoints from each value (held in ``dtype``) to its neighbours below and above:
    the interval of real numbers that round to it."""
    dtype = np.dtype(dtype)
    if dtype.name == "bfloat16":  # bfloat16 is float32's top half: step 1 << 16 in its bits
        bits = values.astype(np.float32).view(np.uint32).astype(np.int64)
        sign = np.where(values < 0, -1, 1) * (1 << 16)
        zero = values == 0
        up_bits = np.where(zero, 1 << 16, bits + sign)
        down_bits = np.where(zero, (1 << 31) | (1 << 16), bits - sign)
        up = up_bits.astype(np.uint32).view(np.float32).astype(np.float64)
        down = down_bits.astype(np.uint32).view(np.float32).astype(np.float64)
    else:
        held = values.astype(dtype)
        up = np.nextafter(held, np.asarray(np.inf, dtype)).astype(np.float64)
        down = np.nextafter(held, np.asarray(-np.inf, dtype)).astype(np.float64)
    x = values.astype(np.float64)
    return (x + down) / 2, (x + up) / 2


def statistic(sample: np.ndarray, null: Null, dtype: np.dtype) -> float:
    """The Kolmogorov-Smirnov distance between ``sample`` (finite values stored in
    ``dtype``) and ``null`` as that dtype rounds it."""
    x = np.sort(np.asarray(sample, np.float64).ravel())
    n = x.size
    unique, first = np.unique(x, return_index=True)
    after = np.append(first[1:], n) / n  # the ECDF just after each value
    before = first / n  # and just before it
    low, high = neighbours(unique, dtype)
    return float(max(np.max(after - null.cdf(high)), np.max(null.cdf(low) - before), 0.0))


def p_value(d: float, n: int) -> float:
    """P(D >= d) for a sample of ``n`` from the null (Kolmogorov, Stephens' correction)."""
    if n <= 0:
        return 1.0
    root = math.sqrt(n)
    lam = (root + 0.12 + 0.11 / root) * d
    if lam < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-16:
            break
    return min(max(2.0 * total, 0.0), 1.0)


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (m - rank):
            break
        rejected[index] = True
    return rejected
