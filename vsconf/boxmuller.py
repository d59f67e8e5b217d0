"""Standard normals in float32 from raw 64-bit words, bit-identical on every CPU.

Stream 2 (see :mod:`vsconf.streams`) draws normals by the Box–Muller transform: a word's
low 32 bits give the radius ``sqrt(-2 ln u)``, its high 32 bits the angle, and each word
yields two normals, ``r cos(angle)`` and ``r sin(angle)``.  ``log``, ``sin`` and ``cos``
are NumPy's own on no account: their vectorized kernels differ in the last bit between
CPUs (AVX2, AVX-512, NEON...).  Here every step is an operation IEEE 754 rounds exactly
-- ``+ - * /``, ``sqrt``, integer and bit operations, conversions of integers to float32 --
done one NumPy call at a time, so that no compiler can fuse two of them (an FMA rounds
once, not twice); the same words give the same bits on any machine.

* ``u = k1 * 2**-32 + 2**-33`` lies in (0, 1]: the smallest is 2**-33, so the largest
  radius is ``sqrt(66 ln 2)`` = 6.76 standard deviations (a normal passes it with
  probability 1.4e-11).
* ``ln u`` splits ``u`` as ``2**e * m`` with ``m`` in [sqrt(1/2), sqrt(2)) by integer
  operations on its bits (the reduction of musl's ``logf``), and
  ``ln m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, by its series to ``s**9``
  (|s| <= 0.172: the first term left out is below 7e-10).
* The angle: the top two bits of ``k2`` pick a quarter turn, its low 24 bits an angle
  ``t`` in [-pi/4, pi/4), whose sine and cosine come from their Taylor series to
  ``t**9`` and ``t**10`` (remainders below 2e-9).  A quarter turn maps ``(cos t, sin t)``
  to ``(-sin t, cos t)``: swaps and sign flips, done on the bits.

Against float64 ``log``/``sin``/``cos`` of the same words the normals agree to about 1e-6
relative (a few float32 units in the last place); the tests check it, and the
distribution.
"""

from __future__ import annotations

import threading

import numpy as np

_F = np.float32
_TWO_M32 = _F(2.0**-32)
_TWO_M33 = _F(2.0**-33)
# u's bits + this: the exponent of u / sqrt(1/2), and a mantissa to add back to sqrt(1/2)'s
_SQRT_HALF_BITS = 0x3F3504F3
_LN2 = _F(0.6931471805599453)
# ln m = s * (2 + s2 * (2/3 + s2 * (2/5 + s2 * (2/7 + s2 * 2/9))))
_LOG = (_F(2 / 9), _F(2 / 7), _F(2 / 5), _F(2 / 3), _F(2.0))
# t = (k2 & 0xFFFFFF) * 2**-24 * pi/2 - pi/4
_ANGLE_SCALE = _F(2.0**-24 * np.pi / 2)
_QUARTER_PI = _F(np.pi / 4)
# sin t = t + t * t2 * (-1/3! + t2 * (1/5! + t2 * (-1/7! + t2 / 9!)))
_SIN = (_F(1 / 362880), _F(-1 / 5040), _F(1 / 120), _F(-1 / 6))
# cos t = 1 + t2 * (-1/2! + t2 * (1/4! + t2 * (-1/6! + t2 * (1/8! - t2 / 10!))))
_COS = (_F(-1 / 3628800), _F(1 / 40320), _F(-1 / 720), _F(1 / 24), _F(-0.5), _F(1.0))


def _horner(z: np.ndarray, coefficients: tuple[np.float32, ...], out: np.ndarray) -> np.ndarray:
    """``out = c0 * z**(n-1) + ... + c_(n-1)``, one rounding per operation, in ``out``."""
    np.multiply(z, coefficients[0], out=out)
    for c in coefficients[1:-1]:
        np.add(out, c, out=out)
        np.multiply(out, z, out=out)
    np.add(out, coefficients[-1], out=out)
    return out


_SCRATCH = threading.local()


def _scratch(n: int) -> tuple[np.ndarray, ...]:
    """This thread's work arrays, ``n`` long: reused, because touching fresh pages costs
    more than the arithmetic on them."""
    buffers = getattr(_SCRATCH, "buffers", None)
    if buffers is None or buffers[0].size < n:
        buffers = _SCRATCH.buffers = (np.empty(n, _F), np.empty(n, _F), *(np.empty(n, np.uint32) for _ in range(4)))
    return tuple(buffer[:n] for buffer in buffers)


def normal_pairs(raw: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Two standard normals per word of ``raw`` (uint64, n words) into ``x`` and ``y`` (float32, n)."""
    n = raw.size
    words = raw.view(np.uint32).reshape(n, 2)
    if not np.little_endian:
        words = words[:, ::-1]  # the low 32 bits first, whatever the machine
    a, b, e, mask, low, high = _scratch(n)
    e = e.view(np.int32)
    np.copyto(low, raw, casting="unsafe")  # uint64 to uint32 keeps the low 32 bits (faster than a strided copy)
    np.copyto(high, words[:, 1])  # contiguous copies: strided operands cost more than the copy
    x_bits, y_bits, a_bits = x.view(np.uint32), y.view(np.uint32), a.view(np.uint32)
    # ---- radius: sqrt(-2 ln u), u = low * 2**-32 + 2**-33 in (0, 1]
    np.multiply(low, _TWO_M32, out=x, dtype=_F, casting="unsafe")
    np.add(x, _TWO_M33, out=x)
    u_bits = x.view(np.int32)  # u > 0: its bits, as an int32, are positive
    np.subtract(u_bits, _SQRT_HALF_BITS, out=u_bits)
    np.right_shift(u_bits, 23, out=e)  # arithmetic shift: u = 2**e * m
    np.bitwise_and(u_bits, 0x007FFFFF, out=u_bits)
    np.add(u_bits, _SQRT_HALF_BITS, out=u_bits)  # x = m in [sqrt(1/2), sqrt(2))
    np.subtract(x, _F(1.0), out=y)
    np.add(x, _F(1.0), out=x)
    np.divide(y, x, out=y)  # y = s
    np.multiply(y, y, out=x)  # x = s**2
    _horner(x, _LOG, out=a)
    np.multiply(a, y, out=a)  # a = ln m
    np.multiply(e, _LN2, out=b, dtype=_F, casting="unsafe")
    np.add(b, a, out=b)  # b = ln u <= 0
    np.multiply(b, _F(-2.0), out=b)  # >= 0, but -0.0 where u = 1 (ln u = +0.0)
    np.add(b, _F(0.0), out=b)  # -0.0 + 0.0 is +0.0 by IEEE; a maximum's sign of zero is not
    np.sqrt(b, out=b)  # b = radius
    # ---- angle: a quarter turn q = high >> 30, and t in [-pi/4, pi/4) from the low 24 bits
    t_bits = e.view(np.uint32)
    np.bitwise_and(high, 0x00FFFFFF, out=t_bits)
    np.multiply(t_bits, _ANGLE_SCALE, out=x, dtype=_F, casting="unsafe")
    np.subtract(x, _QUARTER_PI, out=x)  # x = t
    np.multiply(x, x, out=y)  # y = t**2
    _horner(y, _SIN, out=a)
    np.multiply(a, y, out=a)
    np.multiply(a, x, out=a)
    np.add(a, x, out=a)  # a = sin t
    _horner(y, _COS, out=x)  # x = cos t
    # q = high >> 30 picks the quarter turn.  q = 0: (c, s); 1: (-s, c); 2: (-c, -s);
    # 3: (s, -c) -- swap for odd q (bit 30 of high), then signs: y < 0 for q in {2, 3}
    # (bit 31), x < 0 for q in {1, 2} (bit 31 xor bit 30)
    shifted = e.view(np.uint32)  # t's bits are spent
    np.left_shift(high, 1, out=shifted)  # bit 30 of high at bit 31
    np.right_shift(shifted.view(np.int32), 31, out=mask.view(np.int32))  # all ones where q is odd
    np.bitwise_xor(x_bits, a_bits, out=y_bits)
    np.bitwise_and(y_bits, mask, out=y_bits)
    np.bitwise_xor(x_bits, y_bits, out=x_bits)
    np.bitwise_xor(a_bits, y_bits, out=a_bits)
    np.multiply(x, b, out=x)
    np.multiply(a, b, out=y)
    np.bitwise_xor(shifted, high, out=shifted)
    np.bitwise_and(shifted, 0x80000000, out=shifted)  # x's sign
    np.bitwise_and(high, 0x80000000, out=high)  # y's sign
    np.bitwise_xor(x_bits, shifted, out=x_bits)
    np.bitwise_xor(y_bits, high, out=y_bits)
