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


_CHUNK = 1 << 20


def _chunks(values: np.ndarray):
    flat = np.asarray(values).reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        yield flat[start : start + _CHUNK].astype(np.float64)


def mean_and_std(values: np.ndarray) -> tuple[float, float]:
    """The sample mean and std (ddof 0) in float64, two passes a chunk at a time: what
    ``values.astype(np.float64).std()`` says, without a float64 copy of a 100M-element
    tensor and its temporaries (5.8 s for VGG-19's biggest weight here)."""
    n = np.asarray(values).size
    mean = math.fsum(float(chunk.sum()) for chunk in _chunks(values)) / n
    squares = 0.0
    for chunk in _chunks(values):
        chunk -= mean
        squares += float(np.dot(chunk, chunk))
    return mean, math.sqrt(squares / n)


def assert_std(values: np.ndarray, expected_std: float, distribution: str) -> None:
    """Sample std within Z standard errors: se(s) ~= sigma * sqrt((kurtosis - 1) / (4 n))."""
    n = np.asarray(values).size
    std = mean_and_std(values)[1]
    se = expected_std * math.sqrt((kurtosis(distribution) - 1) / (4 * n))
    assert abs(std - expected_std) <= Z * se, (std, expected_std, se)


def assert_mean_zero(values: np.ndarray, expected_std: float) -> None:
    mean = mean_and_std(values)[0]
    assert abs(mean) <= Z * expected_std / math.sqrt(np.asarray(values).size), (mean, expected_std)


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
