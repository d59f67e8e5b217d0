"""Stream 2's float32 Box-Muller normals: accuracy against float64 math on the same raw
words, the distribution, and the rule that keeps it identical on every CPU."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from vsconf import boxmuller, streams
from vsconf.boxmuller import normal_pairs

F32_EPS = float(np.finfo(np.float32).eps)


def _reference(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same transform in float64 with libm's log/cos/sin, from the same float32 u."""
    low = (raw & np.uint64(0xFFFFFFFF)).astype(np.float64)
    high = raw >> np.uint64(32)
    u = (low.astype(np.float32) * np.float32(2.0**-32) + np.float32(2.0**-33)).astype(np.float64)
    quarter = (high >> np.uint64(30)).astype(np.float64)
    t = ((high & np.uint64(0xFFFFFF)).astype(np.float64) * 2.0**-24 - 0.5) * (math.pi / 2)
    radius = np.sqrt(-2.0 * np.log(u))
    angle = t + quarter * (math.pi / 2)
    return radius * np.cos(angle), radius * np.sin(angle)


def _pairs(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.empty(raw.size, np.float32), np.empty(raw.size, np.float32)
    normal_pairs(raw, x, y)
    return x, y


def test_agrees_with_float64_math_on_the_same_words():
    raw = np.random.SFC64(7).random_raw(1 << 20)
    x, y = _pairs(raw)
    rx, ry = _reference(raw)
    for got, want in ((x, rx), (y, ry)):
        # float32 evaluation of a ~20-step formula: a few units in the last place of the
        # radius (<= 6.8), so within 64 eps relative to max(|z|, 1)
        error = np.abs(got.astype(np.float64) - want) / np.maximum(np.abs(want), 1.0)
        assert error.max() < 64 * F32_EPS


def test_extreme_words():
    # low word 0: the smallest u, the largest radius; all ones: u = 1, radius 0
    words = np.array([0, 0xFFFFFFFF, 0xFFFFFFFF_00000000, 0x40000000_00000000, 0x80000000_00000000,
                      0xC0000000_00000000, 0x00FFFFFF_00000000, 0xFFFFFFFF_FFFFFFFF], dtype=np.uint64)
    x, y = _pairs(words)
    rx, ry = _reference(words)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    np.testing.assert_allclose(x, rx, rtol=64 * F32_EPS, atol=64 * F32_EPS)
    np.testing.assert_allclose(y, ry, rtol=64 * F32_EPS, atol=64 * F32_EPS)
    assert math.isclose(float(np.hypot(x[0], y[0])), math.sqrt(66 * math.log(2)), rel_tol=1e-6)


def test_distribution_is_standard_normal():
    n = 1 << 22
    values = streams.draw(3, "dist", (n,), np.dtype(np.float32), "untruncated_normal", 1.0, stream=2).astype(np.float64)
    # moments: tolerances of 5 standard errors for this n
    assert abs(values.mean()) < 5 / math.sqrt(n)
    assert abs(values.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((values**4).mean() - 3) < 5 * math.sqrt(96 / n)
    assert abs((values**3).mean()) < 5 * math.sqrt(15 / n)
    # Kolmogorov-Smirnov against the normal CDF; 1.95 / sqrt(n) is the 0.1% critical value
    ordered = np.sort(values)[:: 1 << 6]
    empirical = (np.arange(ordered.size) * (1 << 6) + 0.5) / n
    cdf = 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in ordered]))
    assert np.abs(cdf - empirical).max() < 1.95 / math.sqrt(n) + (1 << 6) / n


def test_truncated_stays_inside_two_deviations_with_the_right_variance():
    n = 1 << 21
    values = streams.draw(5, "trunc", (n,), np.dtype(np.float32), "truncated_normal", 1.0, stream=2).astype(np.float64)
    assert np.abs(values).max() < 2.0
    # variance of a standard normal truncated at +-2
    phi, big_phi = math.exp(-2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    expected = 1 - 2 * 2 * phi / (2 * big_phi - 1)
    # the fourth central moment of the truncated normal is below 3 var**2
    assert abs(values.var() - expected) < 5 * math.sqrt(2 / n) * expected


def test_pairs_are_independent():
    raw = np.random.SFC64(11).random_raw(1 << 21)
    x, y = _pairs(raw)
    n = x.size
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(n)
    assert abs(np.corrcoef(x**2, y**2)[0, 1]) < 5 / math.sqrt(n)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_stream_two_is_scaled_in_float32_and_rounded_once(dtype):
    # the contract: z (float32) * float32(std), rounded to the target once
    key = streams.stream_key(1, "w")
    values = streams.draw_flat(key, 1000, 0, 1000, np.dtype(dtype), "untruncated_normal", 0.3, stream=2)
    unit = streams.draw_flat(key, 1000, 0, 1000, np.dtype(np.float32), "untruncated_normal", 1.0, stream=2)
    np.testing.assert_array_equal(values, (unit * np.float32(0.3)).astype(dtype))


def test_only_exactly_rounded_operations():
    # Every NumPy call in the module must be one IEEE 754 rounds exactly (or an integer or
    # bit operation): no log, exp, sin, cos, power... whose kernels differ between CPUs.
    allowed = {"multiply", "add", "subtract", "divide", "sqrt", "maximum", "negative", "right_shift",
               "left_shift", "bitwise_and", "bitwise_xor", "copyto", "empty", "float32", "uint32", "int32", "pi"}
    tree = ast.parse(Path(boxmuller.__file__).read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "np"}
    used -= {"ndarray", "uint64", "little_endian"}
    assert used <= allowed, used - allowed


def _naive_truncated_block(key: int, block: int, count: int) -> np.ndarray:
    """Stream 2's truncated normal block, written out the plain way from the definition."""
    gen = np.random.Generator(np.random.SFC64(np.random.SeedSequence(key, spawn_key=(block,))))

    def normals(words: int) -> np.ndarray:  # a block's layout: the cosines, then the sines
        x, y = _pairs(gen.bit_generator.random_raw(words))
        return np.concatenate([x, y])

    values = normals(-(-count // 2))[:count]
    left = [i for i in range(count) if abs(values[i]) >= 2]
    while left:
        accepted = [v for v in normals((len(left) + 1) // 2 + len(left) // 16 + 32) if abs(v) < 2]
        for position, value in zip(list(left), accepted):
            values[position] = value
            left.remove(position)
    return values


@pytest.mark.parametrize("count", [1, 7, 1000, streams.BLOCK_SIZE])
def test_truncated_blocks_follow_the_definition(count):
    key = streams.stream_key(9, f"t{count}")
    total = 3 * streams.BLOCK_SIZE if count == streams.BLOCK_SIZE else 2 * streams.BLOCK_SIZE + count
    drawn = streams.draw_flat(key, total, 0, total, np.dtype(np.float32), "truncated_normal", 1.0, jobs=2, stream=2)
    for block in range(3):
        size = min(streams.BLOCK_SIZE, total - block * streams.BLOCK_SIZE)
        expected = _naive_truncated_block(key, block, size)
        np.testing.assert_array_equal(drawn[block * streams.BLOCK_SIZE : block * streams.BLOCK_SIZE + size], expected)
