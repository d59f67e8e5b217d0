"""vsconf.narrow against an independent reference: exact rational arithmetic (fractions)
rounds each value to nearest, ties to even, and struct encodes the result.  Every 16-bit
pattern round-trips; ties, subnormal boundaries and the overflow threshold are sampled
on purpose; nothing here asks NumPy or ml_dtypes to round."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsconf import narrow

# (significand bits stored, minimum normal exponent, maximum exponent) of each format.
FORMATS = {"float16": (10, -14, 15), "bfloat16": (7, -126, 127), "float32": (23, -126, 127)}
INF = {"float16": 0x7C00, "bfloat16": 0x7F80}
NAN = {"float16": 0x7E00, "bfloat16": 0x7FC0}
TARGET_DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def round_exact(x: float | Fraction, fmt: str) -> Fraction | float:
    """``x`` rounded to nearest, ties to even, into ``fmt``: a Fraction, or +-inf on overflow."""
    mantissa, emin, emax = FORMATS[fmt]
    magnitude = abs(Fraction(x))
    if magnitude == 0:
        return Fraction(0)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    quantum = Fraction(2) ** (max(exponent, emin) - mantissa)  # subnormals share emin's step
    rounded = round(magnitude / quantum) * quantum  # round() of a Fraction: ties to even
    if rounded >= Fraction(2) ** (emax + 1):
        return math.copysign(math.inf, x)
    return rounded if x > 0 else -rounded


def encode(value: Fraction | float, negative: bool, fmt: str) -> int:
    """The 16-bit pattern of a value that ``fmt`` represents exactly."""
    if isinstance(value, float):  # infinity
        return INF[fmt] | (0x8000 if negative else 0)
    if fmt == "float16":
        bits = struct.unpack("<H", struct.pack("<e", float(value)))[0]
    else:
        bits = struct.unpack("<I", struct.pack("<f", float(value)))[0] >> 16
    return bits | (0x8000 if negative else 0)


def reference(x: float, fmt: str, source: str) -> int:
    """The pattern the documented rule gives for ``x`` (a float64 or float32 value)."""
    negative = math.copysign(1.0, x) < 0
    if math.isnan(x):
        return NAN[fmt] | (0x8000 if negative else 0)
    if math.isinf(x):
        return INF[fmt] | (0x8000 if negative else 0)
    if fmt == "bfloat16" and source == "float64":  # through float32 first
        x = round_exact(x, "float32")
        if isinstance(x, float):
            return INF[fmt] | (0x8000 if negative else 0)
    return encode(round_exact(x, fmt), negative, fmt)


def patterns_of(values: np.ndarray) -> list[int]:
    return [int(b) for b in values]


# --------------------------------------------------------------------------- every 16-bit pattern


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("source", [np.float64, np.float32])
def test_every_pattern_round_trips(fmt, source):
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    if fmt == "float16":
        # exact widening: struct decodes each half
        wide = np.array([struct.unpack("<e", struct.pack("<H", int(b)))[0] for b in bits], dtype=np.float64)
    else:
        with np.errstate(invalid="ignore"):  # the NaN patterns
            wide = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    with np.errstate(invalid="ignore"):
        got = narrow.to_bits(wide.astype(source), fmt)
    magnitude = bits & 0x7FFF
    is_nan = magnitude > INF[fmt]
    np.testing.assert_array_equal(got[~is_nan], bits[~is_nan])
    np.testing.assert_array_equal(got[is_nan], (bits[is_nan] & 0x8000) | NAN[fmt])


# --------------------------------------------------------------------------- chosen hard cases


def _float64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _float32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _hard_cases(fmt: str, source: str) -> list[float]:
    """Midpoints between neighbours of ``fmt`` and one source ulp either side, at every
    exponent including the subnormal ones, the overflow threshold, and double-rounding traps."""
    mantissa, emin, emax = FORMATS[fmt]
    to_source = _float64 if source == "float64" else _float32
    cases = []
    for exponent in range(emin - mantissa - 2, emax + 2):
        for step in (0, 1, 2, 3, (1 << mantissa) - 1):
            step_value = Fraction(2) ** (max(exponent, emin) - mantissa)
            low = Fraction(2) ** exponent + step * step_value if exponent >= emin else step * step_value
            mid = low + step_value / 2
            for value in (mid, low):
                approx = float(value)
                if math.isinf(approx):
                    continue
                if source == "float32":
                    approx = float(np.float32(approx)) if abs(approx) < 3.4e38 else 3.4028234663852886e38
                cases.append(approx)
                bits = struct.unpack("<Q" if source == "float64" else "<I", struct.pack("<d" if source == "float64" else "<f", approx))[0]
                cases += [to_source(bits - 1), to_source(bits + 1)] if bits > 0 else [to_source(bits + 1)]
    limit = 3.4028234663852886e38 if source == "float32" else 1.7976931348623157e308
    cases += [0.0, -0.0, 5e-324 if source == "float64" else 1e-45, limit, -limit, math.inf, -math.inf, math.nan, -math.nan]
    if fmt == "bfloat16" and source == "float64":
        # a float32 tie after the first rounding: rounding once would go up, twice goes to even
        cases += [1 + 2.0**-8 + 2.0**-30, 1 + 2.0**-8 - 2.0**-30, -(1 + 3 * 2.0**-8 + 2.0**-40), 2.0**-130 * (1 + 2.0**-8 + 2.0**-40)]
    return cases


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("source", ["float64", "float32"])
def test_ties_subnormal_boundaries_and_overflow_follow_the_rule(fmt, source):
    cases = _hard_cases(fmt, source)
    values = np.array(cases, dtype=source)
    assert patterns_of(narrow.to_bits(values, fmt)) == [reference(float(v), fmt, source) for v in values]


def test_bfloat16_from_float64_rounds_twice_and_that_is_not_once():
    # 1 + 2**-8 + 2**-30: float32 cannot hold the 2**-30, so it becomes the bfloat16 tie
    # 1 + 2**-8, which goes to even (1.0).  Rounded once, it would be above the tie.
    x = 1 + 2.0**-8 + 2.0**-30
    assert narrow.to_bits(np.array([x]), "bfloat16")[0] == 0x3F80
    assert encode(round_exact(x, "bfloat16"), False, "bfloat16") == 0x3F81


# --------------------------------------------------------------------------- random values


@settings(max_examples=300, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("source", ["float64", "float32"])
@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_random_values_follow_the_rule(fmt, source, data):
    width, from_bits = (64, _float64) if source == "float64" else (32, _float32)
    any_float = st.floats(width=width, allow_nan=True, allow_infinity=True) | st.integers(0, 2**width - 1).map(from_bits)
    values = data.draw(st.lists(any_float, min_size=1, max_size=40))
    got = narrow.to_bits(np.array(values, dtype=source), fmt)
    assert patterns_of(got) == [reference(v, fmt, source) for v in values]


def test_a_million_random_float32_patterns_against_struct():
    # float32 -> float16 once through struct (CPython rounds float64 -> half to nearest
    # even; a float32 widens to float64 exactly), on every exponent's patterns
    rng = np.random.default_rng(19)
    bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    finite = np.isfinite(values) & (np.abs(values) < 65504)
    got = narrow.to_bits(values[finite], "float16")
    expected = [struct.unpack("<H", struct.pack("<e", float(v)))[0] for v in values[finite][:: 1 << 6]]
    assert patterns_of(got[:: 1 << 6]) == expected


# --------------------------------------------------------------------------- the array helpers


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("source", [np.float64, np.float32])
def test_scale_into_is_the_product_rounded_across_passes(fmt, source):
    # longer than one pass, with a ragged end: no state leaks from pass to pass
    count = 2 * narrow._PASS + 17
    values = np.random.default_rng(3).standard_normal(count).astype(source)
    factor = 0.037
    out = np.empty(count, TARGET_DTYPES[fmt])
    narrow.scale_into(values, factor, out)
    product = values * source(factor)
    np.testing.assert_array_equal(out.view(np.uint16), narrow.to_bits(product, fmt))
    sample = range(0, count, 997)
    assert [int(out.view(np.uint16)[i]) for i in sample] == [reference(float(product[i]), fmt, np.dtype(source).name) for i in sample]


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_constants_are_the_value_rounded_once_by_the_rule(fmt):
    dtype = TARGET_DTYPES[fmt]
    for value in (0.1, -1 / 3, 1e-7, 70000.0, 3, 2**60 + 1):
        made = narrow.full((2, 3), value, dtype)
        assert made.dtype == dtype and made.shape == (2, 3)
        assert set(patterns_of(made.view(np.uint16).ravel())) == {reference(float(value), fmt, "float64")}
        out = np.empty(5, dtype)
        narrow.fill(out, value)
        assert set(patterns_of(out.view(np.uint16))) == {reference(float(value), fmt, "float64")}


def test_wide_dtypes_are_left_to_the_ieee_cast():
    np.testing.assert_array_equal(narrow.full(4, 0.1, np.dtype(np.float32)), np.full(4, np.float32(0.1)))
    out = np.empty(3)
    narrow.fill(out, 0.25)
    assert out.tolist() == [0.25] * 3
    assert not narrow.is_narrow(np.float32) and narrow.is_narrow(np.float16) and narrow.is_narrow(ml_dtypes.bfloat16)


def test_only_float_sources_and_16_bit_targets():
    with pytest.raises(TypeError, match="float64 or float32 values"):
        narrow.to_bits(np.arange(3), "float16")
    with pytest.raises(TypeError, match="not float8_e4m3fn"):
        narrow.scale_into(np.zeros(2), 1.0, np.zeros(2, ml_dtypes.float8_e4m3fn))


def test_the_modules_examples_run():
    import doctest

    assert doctest.testmod(narrow) == (0, 3)
