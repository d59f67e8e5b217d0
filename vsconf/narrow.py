"""Rounding to float16 and bfloat16, done by vsconf itself on the bit patterns.

NumPy and ml_dtypes round float64 to the 16-bit floats in their own ways, and the ways
change between releases: ml_dtypes 0.7 rounds float64 -> bfloat16 once, where 0.6 and
earlier went through float32 (two roundings), so the same draw gave other bytes.  vsconf's
bytes must not depend on the versions installed, so every float16 and bfloat16 value it
makes -- the scaled draws of every stream version and the constants -- is rounded here,
with unsigned-integer NumPy operations, which are exact on every machine and version:

* **float16** from float64 or from float32: round to nearest, ties to even, once, from
  the source's own precision (what IEEE 754 and NumPy's casts do).
* **bfloat16** from float32: round to nearest, ties to even.
* **bfloat16** from float64: round to float32 first (the hardware IEEE cast, which no
  library version changes), then to bfloat16, each to nearest even -- two roundings, as
  ml_dtypes up to 0.6 did, so that the bytes vsconf 0.1 wrote stay.

Both formats: zero keeps its sign; results below the smallest normal are rounded as
subnormals (never flushed); magnitudes from the overflow threshold (the largest finite
value plus half its ulp) up become infinity, as do infinities; every NaN becomes the
quiet NaN with its sign (float16 ``0x7E00``, bfloat16 ``0x7FC0``).

>>> import numpy as np
>>> [hex(b) for b in to_bits(np.array([1.0, -2.0, 65519.9, 65520.0, 2.0**-25]), "float16")]
['0x3c00', '0xc000', '0x7bff', '0x7c00', '0x0']
>>> hex(to_bits(np.array([1 + 2.0**-8 + 2.0**-30]), "bfloat16")[0])   # via float32: a tie, kept even
'0x3f80'
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NARROW = ("float16", "bfloat16")
# Elements per pass: the work arrays (about 400 KB for float64 sources) stay in the
# core's cache, where NumPy's integer loops run at memory speed.
_PASS = 16384


@dataclass(frozen=True)
class _Format:
    """An IEEE-style binary format: where its fields are, as the rounding needs them."""

    uint: type  # the unsigned integer of its width
    width: int
    mantissa: int  # stored significand bits
    bias: int

    @property
    def inf(self) -> int:
        return ((1 << (self.width - self.mantissa - 1)) - 1) << self.mantissa

    @property
    def nan(self) -> int:
        """The quiet NaN, positive: the top significand bit set."""
        return self.inf | (1 << (self.mantissa - 1))


_FLOAT64 = _Format(np.uint64, 64, 52, 1023)
_FLOAT32 = _Format(np.uint32, 32, 23, 127)
_TARGETS = {"float16": _Format(np.uint16, 16, 10, 15), "bfloat16": _Format(np.uint16, 16, 7, 127)}


@dataclass(frozen=True)
class _Rounding:
    """One (source, target) pair and its constants, NumPy scalars of the source's width."""

    source: _Format
    target: _Format
    c: dict[str, np.generic]


def _rounding(src: _Format, dst: _Format) -> _Rounding:
    shift = src.mantissa - dst.mantissa
    rebias = (src.bias - dst.bias) << src.mantissa  # target exponent 0 in source bits
    # Source magnitudes in [low, high) round to a normal target or to the largest finite
    # one; the rest (zeros, subnormal results, overflow, inf, NaN) are rare and take the
    # exact slow path.
    low = rebias + (1 << src.mantissa)
    high = rebias + ((dst.inf - 1) << shift) + (1 << (shift - 1))
    u = src.uint
    constants = {
        "shift": u(shift),
        "one": u(1),
        "magnitude": u((1 << (src.width - 1)) - 1),
        "low": u(low),
        "span": u(high - low),
        # x + (half - 1) - rebias, modulo the width: adding it and the kept bit's parity,
        # then shifting, rounds to nearest even and rebiases in one go.
        "bias": u((((1 << (shift - 1)) - 1) - rebias) % (1 << src.width)),
        "sign_shift": u(src.width - 16),
        "sign": u(0x8000),
    }
    return _Rounding(src, dst, constants)


_ROUNDINGS = {(s.width, name): _rounding(s, t) for s in (_FLOAT64, _FLOAT32) for name, t in _TARGETS.items()}
_SCRATCH = threading.local()


def is_narrow(dtype: np.dtype) -> bool:
    """Whether vsconf rounds values of ``dtype`` itself (float16, bfloat16)."""
    return np.dtype(dtype).name in NARROW


def _work(width: int) -> tuple[np.ndarray, ...]:
    """This thread's work arrays for ``width``-bit sources: a float product, two unsigned, a mask."""
    arrays = getattr(_SCRATCH, f"w{width}", None)
    if arrays is None:
        floats = np.float64 if width == 64 else np.float32
        uint = np.uint64 if width == 64 else np.uint32
        arrays = (np.empty(_PASS, floats), np.empty(_PASS, uint), np.empty(_PASS, uint), np.empty(_PASS, bool))
        setattr(_SCRATCH, f"w{width}", arrays)
    return arrays


def _round_bits(bits: np.ndarray, rounding: _Rounding, out: np.ndarray, w: np.ndarray, t: np.ndarray, mask: np.ndarray) -> None:
    """``out`` (uint16) = ``bits`` (a source format's patterns) rounded to nearest even."""
    c = rounding.c
    np.bitwise_and(bits, c["magnitude"], out=w)
    np.subtract(w, c["low"], out=t)
    np.greater_equal(t, c["span"], out=mask)  # below `low` wraps around: rare, both ends
    np.right_shift(w, c["shift"], out=t)
    np.bitwise_and(t, c["one"], out=t)  # the parity of the bit kept last: ties go to even
    np.add(w, t, out=w)
    np.add(w, c["bias"], out=w)
    np.right_shift(w, c["shift"], out=w)
    np.copyto(out, w, casting="unsafe")
    np.right_shift(bits, c["sign_shift"], out=t)
    np.bitwise_and(t, c["sign"], out=t)
    np.bitwise_or(out, t, out=out, casting="unsafe")
    if mask.any():
        rare = np.flatnonzero(mask)
        out[rare] = _round_rare(bits[rare], rounding)


def _round_rare(bits: np.ndarray, rounding: _Rounding) -> np.ndarray:
    """The exact rounding of any patterns, through the long way: zeros, subnormal results,
    overflow, infinities and NaNs (and normal ones too, which the tests use)."""
    src, dst = rounding.source, rounding.target
    big = bits.astype(np.uint64)
    magnitude = big & np.uint64((1 << (src.width - 1)) - 1)
    sign = ((big >> np.uint64(src.width - 16)) & np.uint64(0x8000)).astype(np.uint16)
    exponent = (magnitude >> np.uint64(src.mantissa)).astype(np.int64)
    significand = magnitude & np.uint64((1 << src.mantissa) - 1)
    significand = np.where(exponent > 0, significand | np.uint64(1 << src.mantissa), significand)
    # The value is significand * 2**(max(exponent, 1) - bias - mantissa); the target's
    # step at its own exponent decides how many bits go.
    target_exponent = np.maximum(exponent, 1) - src.bias + dst.bias  # biased, as a normal would have it
    drop = (src.mantissa - dst.mantissa) + np.maximum(1 - target_exponent, 0)
    drop = np.minimum(drop, src.mantissa + 2).astype(np.uint64)  # past that, everything rounds to 0
    half = np.uint64(1) << (drop - np.uint64(1))
    kept = (significand + half - np.uint64(1) + ((significand >> drop) & np.uint64(1))) >> drop
    # A subnormal result counts in steps of the smallest subnormal, a normal one
    # re-adds its exponent above the implicit bit: (exponent - 1) << mantissa + kept.
    normal_base = (np.maximum(target_exponent, 1) - 1).astype(np.uint64) << np.uint64(dst.mantissa)
    result = np.where(target_exponent >= 1, normal_base + kept, kept)
    result = np.minimum(result, np.uint64(dst.inf))  # overflow, inf
    result = np.where(magnitude > np.uint64(src.inf), np.uint64(dst.nan), result)
    return result.astype(np.uint16) | sign


def _source_of(values: np.ndarray) -> int:
    if values.dtype == np.float64:
        return 64
    if values.dtype == np.float32:
        return 32
    raise TypeError(f"vsconf rounds float64 or float32 values to 16 bits, not {values.dtype.name}")


def to_bits(values: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """The uint16 patterns of float64 or float32 ``values`` rounded to ``dtype``
    (``"float16"`` or ``"bfloat16"``) by the rule of this module; same shape."""
    values = np.asarray(values)
    out = np.empty(values.shape, np.uint16)
    scale_into(values.reshape(-1), None, out.reshape(-1), dtype if isinstance(dtype, str) else np.dtype(dtype).name)
    return out


def scale_into(values: np.ndarray, factor: float | None, out: np.ndarray, target: str | None = None, *, shift: float = 0.0) -> None:
    """``out = values * factor`` -- the product in ``values``' precision (float64 or float32),
    then rounded by this module's rule to ``out``'s dtype (float16 or bfloat16; or to
    ``target`` when ``out`` holds uint16 patterns).  Both 1-D of one length; ``factor``
    None leaves the values as they are; ``shift``, when not 0, is added to the product
    in the same precision before the rounding.  Works in passes of a few thousand elements
    through this thread's work arrays: no temporaries the size of ``values``."""
    width = _source_of(values)
    name = target or out.dtype.name
    if name not in _TARGETS:
        raise TypeError(f"vsconf rounds to float16 or bfloat16, not {name}")
    via_float32 = width == 64 and name == "bfloat16"
    rounding = _ROUNDINGS[(32 if via_float32 else width, name)]
    product, w, t, mask = _work(rounding.source.width)
    wide = _work(64)[0] if via_float32 else product
    bits_out = out.view(np.uint16)
    scale = None if factor is None else values.dtype.type(factor)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf and NaN are results here
        for lo in range(0, values.size, _PASS):
            n = min(_PASS, values.size - lo)
            source = values[lo : lo + n]
            if scale is not None:
                source = np.multiply(source, scale, out=wide[:n])
            if shift:
                source = np.add(source, values.dtype.type(shift), out=wide[:n])
            if via_float32:
                np.copyto(product[:n], source, casting="same_kind")  # the IEEE cast to float32
                source = product[:n]
            _round_bits(source.view(rounding.source.uint), rounding, bits_out[lo : lo + n], w[:n], t[:n], mask[:n])


def full(shape: int | Sequence[int], value: float, dtype: np.dtype) -> np.ndarray:
    """``np.full(shape, value, dtype)``, the value rounded by this module's rule when ``dtype``
    is float16 or bfloat16 (the value taken as a float64 first)."""
    dtype = np.dtype(dtype)
    if not is_narrow(dtype):
        return np.full(shape, value, dtype=dtype)
    return np.full(shape, _scalar_bits(value, dtype.name), dtype=np.uint16).view(dtype)


def fill(out: np.ndarray, value: float) -> None:
    """``out[...] = value``, rounded as :func:`full` does."""
    if is_narrow(out.dtype):
        out.view(np.uint16)[...] = _scalar_bits(value, out.dtype.name)
    else:
        out[...] = value


def _scalar_bits(value: float, name: str) -> np.uint16:
    return to_bits(np.array([float(value)], dtype=np.float64), name)[0]
