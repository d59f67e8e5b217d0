"""Sampling tolerances derived from the sample size, shared by the statistical tests."""

from __future__ import annotations

import math

import numpy as np

# Five standard errors: a correct sampler fails a check with probability ~6e-7.
Z = 5.0


def truncated_normal_moments(a: float = 2.0) -> tuple[float, float]:
    """E[z^2] and E[z^4] of a unit normal truncated to (-a, a), from the closed forms."""
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(a / math.sqrt(2))
    m2 = 1 - 2 * a * pdf / mass
    m4 = 3 * m2 - 2 * a**3 * pdf / mass
    return m2, m4


def kurtosis(distribution: str) -> float:
    """E[x^4] / E[x^2]^2 of each distribution vsconf draws."""
    if distribution == "uniform":
        return 9 / 5
    if distribution == "untruncated_normal":
        return 3.0
    m2, m4 = truncated_normal_moments()
    return m4 / m2**2


def assert_std(values: np.ndarray, expected_std: float, distribution: str) -> None:
    """Sample std within Z standard errors: se(s) ~= sigma * sqrt((kurtosis - 1) / (4 n))."""
    x = values.astype(np.float64).ravel()
    n = x.size
    se = expected_std * math.sqrt((kurtosis(distribution) - 1) / (4 * n))
    assert abs(x.std() - expected_std) <= Z * se, (x.std(), expected_std, se)


def assert_mean_zero(values: np.ndarray, expected_std: float) -> None:
    x = values.astype(np.float64).ravel()
    assert abs(x.mean()) <= Z * expected_std / math.sqrt(x.size), (x.mean(), expected_std)


# Two-sample Kolmogorov-Smirnov tests of an init against its framework's own function: the
# statistic D is compared with c(alpha) * sqrt((n + m) / (n * m)), alpha = 0.001,
# c(alpha) = sqrt(-ln(alpha / 2) / 2) (the asymptotic Kolmogorov distribution), so a correct
# init fails one run in a thousand.
ALPHA = 1e-3
C_ALPHA = math.sqrt(-math.log(ALPHA / 2) / 2)  # 1.9495...


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the ECDFs."""
    x, y = np.sort(np.ravel(x).astype(np.float64)), np.sort(np.ravel(y).astype(np.float64))
    grid = np.concatenate([x, y])
    return float(np.max(np.abs(np.searchsorted(x, grid, side="right") / x.size - np.searchsorted(y, grid, side="right") / y.size)))


def same_distribution(x: np.ndarray, y: np.ndarray) -> tuple[bool, float, float]:
    d = ks_statistic(x, y)
    critical = C_ALPHA * math.sqrt((x.size + y.size) / (x.size * y.size))
    return d <= critical, d, critical
