"""The matrix inits: orthogonal, identity and dirac, as pure functions of a shape.

* :func:`orthogonal` -- torch ``orthogonal_`` / Keras ``Orthogonal``: the tensor seen as a
  matrix through the layout (torch ``[shape[0], prod(shape[1:])]``, tf
  ``[prod(shape[:-1]), shape[-1]]``), the Q of the QR factorization of a standard normal
  matrix drawn from the tensor's own stream, its columns' signs fixed by R's diagonal
  (so that Q is Haar-distributed), times ``gain``.
* :func:`identity` -- torch ``eye_`` / Keras ``Identity``: ``gain`` on the main diagonal of
  a 2-D tensor, zeros elsewhere.
* :func:`dirac` -- torch ``dirac_(tensor, groups)``: ones at the kernel centre of a 3-, 4-
  or 5-D convolution weight, ``[g * out_per_group + d, d, k0 // 2, ...]``.

Each has a ``*_part`` form (any box of the tensor) and a ``*_flat`` form (any range of
its elements in C order), equal to that box or range of the whole.  Identity and dirac
compute a box from its indices alone; orthogonal computes the whole matrix and keeps the
last :data:`CACHE_ENTRIES` of them (see :func:`orthogonal_part`).

**Bit-reproducible QR.**  LAPACK's QR (``np.linalg.qr``, torch, JAX) is not the same to
the bit across BLAS builds, SIMD paths and thread counts, so a lock's digest made on one
machine would fail ``verify`` on another.  The QR here is vsconf's own: blocked Householder
QR (compact WY, :data:`PANEL` reflectors a block) done entirely with NumPy *elementwise*
operations -- ``+ - * /`` on arrays, each correctly rounded by IEEE 754 in every SIMD path
and never fused (one operation per ufunc call, so nothing to contract into an FMA) --
and Python float scalars (``math.sqrt`` is correctly rounded).  Every sum is
:func:`_fold`, a pairwise tree of elementwise additions whose shape depends only on the
length summed.  No ``@``, ``dot``, ``einsum``, ``linalg`` or NumPy reduction touches a
float, because NumPy does not promise their order:

* ``np.add.reduce`` of a 1-D float64 array runs ``DOUBLE_pairwise_sum``
  (``numpy/_core/src/umath/loops_utils.h.src``): fewer than 8 elements in order from -0.0;
  up to 128 with eight accumulators combined as ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))``
  and the rest added in order; above that, split at half the length rounded down to a
  multiple of 8.  It is plain C, called from the reduce branch of ``DOUBLE_add``
  (``loops_arithm_fp.dispatch.cpp.src``, taken before any Highway SIMD code) in every
  dispatch target, unrolled so that vectorizing it does not reorder it: runtime SIMD
  dispatch does not change it.
* But the pairwise sum only sums what the iterator hands it.  Reductions are buffered
  (numpy/numpy#17649: the reduce machinery always asks for ``NPY_ITER_BUFFERED``, which
  cuts a long sum into buffer-sized chunks added one after another), and NumPy 2.3
  changed the iterator's buffer sizes -- its release notes say "For ``np.sum()`` such
  changes in buffersize may slightly change numerical results" (numpy/numpy#27883).  An
  ``axis=0`` reduction of a 2-D array adds whole rows in order only while the iterator
  keeps the reduced axis outermost, which is its choice, not a promise (a second axis of
  length 1 is dropped, and the pairwise sum runs instead).

So a sum's value here is fixed by this module alone.  The float64 normals come from
:func:`vsconf.streams.draw_flat` (float64 always: stream 2 draws float32 normals only for
tensors of at most 32 bits, so ``stream`` does not change an orthogonal tensor's values),
and the result is multiplied by ``gain`` in float64 and rounded once to the dtype --
float32 by the IEEE cast, float16/bfloat16 by :mod:`vsconf.narrow`.  What can still
change the bytes: a process whose floating-point unit flushes subnormals to zero (a
library built with ``-ffast-math`` can set that); the values here never come near the
subnormal range, so that too only matters in theory.

**Accuracy.**  Householder QR is backward stable: the computed Q is orthogonal to
O(rows x cols x eps) whatever the matrix's condition (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., sections 19.3 and 19.5), where modified Gram-Schmidt loses
orthogonality in proportion to the condition number, which for a square Gaussian matrix
grows like its size and has a heavy tail; Gram-Schmidt with reorthogonalization would be
as accurate but costs 4 rows x cols x min(rows, cols) flops against Householder's
8/3 x min**3 for a square matrix.  Measured: ``|QᵀQ - I|`` below 1e-14 for 2048 x 2048.

**Cost.**  About 2 x rows x cols x min(rows, cols) multiply-adds (the factorization and
forming Q), each two NumPy operations.  On a 2-core Xeon (AVX-512) with ``jobs=2``:
512 x 2048 in about 0.5 s, 1024 x 4096 in about 5 s, 2048 x 2048 in about 7 s; 4096 x 4096
would take about a minute, so matrices above :data:`MAX_ORTHOGONAL_ELEMENTS` (2048 x 2048)
are refused.  Memory: the float64 matrix and its Q (16 bytes an element) and a few MiB of
work arrays a thread, besides the cache.

>>> from vsconf import streams
>>> key = streams.stream_key(7, "rnn.weight_hh")
>>> w = orthogonal(key, (3, 5), layout="torch", gain=1.0, dtype="float64")
>>> bool(np.allclose(w @ w.T, np.eye(3), rtol=0, atol=1e-15))
True
>>> identity((2, 3), gain=2.0, dtype="float32")
array([[2., 0., 0.],
       [0., 2., 0.]], dtype=float32)
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vsconf import narrow, streams
from vsconf.dtypes import dtype_named
from vsconf.inits.random import written
from vsconf.threads import available_cores

Shape = tuple[int, ...]
Box = tuple[Shape, Shape]
LAYOUTS = ("tf", "torch")
DTYPES = ("float16", "bfloat16", "float32", "float64")
# 2048 x 2048 (or 1024 x 4096): about 7 s on 2 cores; the cost grows as rows x cols x
# min(rows, cols), so 4096 x 4096 would take about a minute.
MAX_ORTHOGONAL_ELEMENTS = 1 << 22
# Reflectors per block of the blocked QR.  Part of the values: another panel width groups
# the same arithmetic into other sums, so changing it changes the bytes (the golden digests
# in tests/test_matrix_inits.py would say so).
PANEL = 32
# Whole orthogonal tensors kept for *_part and *_flat calls: at most 4 x 32 MiB (float64 at
# the element limit).
CACHE_ENTRIES = 4
# Elements of one work array of a block update: a few MiB a thread, within the core's cache.
_WORK_ELEMENTS = 1 << 16


def _check_shape(shape: Sequence[int]) -> Shape:
    try:
        raw = tuple(shape)
        dims = tuple(int(d) for d in raw)
    except (TypeError, ValueError):
        raise ValueError(f"A shape is a sequence of integers. Received: shape={shape!r}") from None
    if any(d < 0 for d in dims) or any(isinstance(d, bool) or int(d) != d for d in raw):
        raise ValueError(f"A shape is a sequence of integers of at least 0. Received: shape={shape!r}")
    return dims


def _dtype_name(dtype: str | np.dtype | type) -> str:
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"The matrix inits fill {', '.join(DTYPES)} tensors. Received: dtype={name}")
    return name


def _check_gain(gain: float) -> float:
    if isinstance(gain, bool) or not isinstance(gain, (int, float, np.integer, np.floating)) or not math.isfinite(gain):
        raise ValueError(f"Argument `gain` must be a finite number. Received: gain={gain!r}")
    return float(gain)


def _check_box(shape: Shape, offset: Sequence[int], sizes: Sequence[int]) -> Box:
    start, size = tuple(int(o) for o in offset), tuple(int(s) for s in sizes)
    if len(start) != len(shape) or len(size) != len(shape):
        raise ValueError(f"Box of shape {size} at offset {start} and tensor shape {shape} differ in rank")
    for first, count, dim in zip(start, size, shape):
        if first < 0 or count < 0 or first + count > dim:
            raise ValueError(f"Box of shape {size} at offset {start} does not fit in {shape}")
    return start, size


def _check_range(total: int, start: int, stop: int) -> None:
    if not 0 <= start <= stop <= total:
        raise ValueError(f"Range {start}:{stop} does not fit in a tensor of {total} elements")


def flat_boxes(shape: Sequence[int], start: int, stop: int) -> list[Box]:
    """The boxes ``(offset, sizes)`` that cover elements ``start:stop`` (C order) of a tensor
    of ``shape``, in order: at most ``2 * rank - 1`` of them, a run of partial rows, whole
    rows, and the rest, at every level.

    Args:
        shape: The tensor's shape.
        start, stop: The range of flat indices, ``0 <= start <= stop <= prod(shape)``.

    Returns:
        The boxes; their elements, each box flattened in C order, are ``start:stop``.

    Raises:
        ValueError: The range does not fit in the tensor.

    Example:
        >>> flat_boxes((2, 3, 4), 5, 19)
        [((0, 1, 1), (1, 1, 3)), ((0, 2, 0), (1, 1, 4)), ((1, 0, 0), (1, 1, 4)), ((1, 1, 0), (1, 1, 3))]
    """
    shape = _check_shape(shape)
    _check_range(math.prod(shape), start, stop)
    return _boxes(shape, start, stop)


def _boxes(shape: Shape, start: int, stop: int) -> list[Box]:
    if start == stop:
        return []
    if not shape:
        return [((), ())]
    inner = math.prod(shape[1:])
    rest = shape[1:]
    first, last = start // inner, (stop - 1) // inner
    if first == last:  # inside one slice of the leading axis
        return [((first,) + o, (1,) + s) for o, s in _boxes(rest, start - first * inner, stop - first * inner)]
    boxes: list[Box] = []
    whole_from = first
    if start % inner:
        boxes += [((first,) + o, (1,) + s) for o, s in _boxes(rest, start % inner, inner)]
        whole_from += 1
    whole_to = stop // inner
    if whole_from < whole_to:
        boxes.append(((whole_from,) + (0,) * len(rest), (whole_to - whole_from,) + rest))
    if stop % inner:
        boxes += [((whole_to,) + o, (1,) + s) for o, s in _boxes(rest, 0, stop % inner)]
    return boxes


def _from_boxes(part: Callable[[Shape, Shape], np.ndarray], shape: Shape, start: int, stop: int, dtype: np.dtype) -> np.ndarray:
    """Elements ``start:stop`` of a tensor whose boxes ``part(offset, sizes)`` gives."""
    out = np.empty(stop - start, dtype=dtype)
    position = 0
    for offset, sizes in _boxes(shape, start, stop):
        piece = part(offset, sizes).reshape(-1)
        out[position : position + piece.size] = piece
        position += piece.size
    return out


def _round_into(values: np.ndarray, factor: float, out: np.ndarray) -> None:
    """``out = values * factor``, the product in float64, rounded once to ``out``'s dtype."""
    if narrow.is_narrow(out.dtype):
        narrow.scale_into(values, factor, out)
    else:
        np.multiply(values, np.float64(factor), out=out, casting="unsafe")


# --- orthogonal ---------------------------------------------------------------------------


def matrix_shape(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """The matrix ``(rows, cols)`` that :func:`orthogonal` sees a tensor of ``shape`` as.

    torch: ``[shape[0], prod(shape[1:])]``; tf (Keras): ``[prod(shape[:-1]), shape[-1]]``.

    Raises:
        ValueError: The layout is unknown, or the tensor has fewer than 2 dimensions (as
            torch and Keras refuse it).

    Example:
        >>> matrix_shape((64, 16, 3, 3), "torch"), matrix_shape((3, 3, 16, 64), "tf")
        ((64, 144), (144, 64))
    """
    shape = _check_shape(shape)
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; expected one of {LAYOUTS}")
    if len(shape) < 2:
        raise ValueError(f"Only tensors with 2 or more dimensions are supported. Received: shape={shape}")
    if layout == "torch":
        return shape[0], math.prod(shape[1:])
    return math.prod(shape[:-1]), shape[-1]


def check_orthogonal(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """:func:`matrix_shape`, refusing a matrix of more than :data:`MAX_ORTHOGONAL_ELEMENTS`
    elements (what :func:`orthogonal` would refuse), so that a plan can say so up front.

    Example:
        >>> check_orthogonal((4096, 4096), "torch")
        Traceback (most recent call last):
        ...
        ValueError: An orthogonal tensor of shape (4096, 4096) is a 4096 x 4096 matrix of 16777216 elements, above vsconf's limit of 4194304 (2048 x 2048): its QR costs rows x cols x min(rows, cols) and would take about a minute
    """
    rows, cols = matrix_shape(shape, layout)
    if rows * cols > MAX_ORTHOGONAL_ELEMENTS:
        side = math.isqrt(MAX_ORTHOGONAL_ELEMENTS)
        raise ValueError(
            f"An orthogonal tensor of shape {tuple(shape)} is a {rows} x {cols} matrix of {rows * cols} elements, "
            f"above vsconf's limit of {MAX_ORTHOGONAL_ELEMENTS} ({side} x {side}): its QR costs rows x cols x "
            f"min(rows, cols) and would take {_time_in_words(rows, cols)}"
        )
    return rows, cols


def _time_in_words(rows: int, cols: int) -> str:
    # 2048 x 2048 took about 7 s on the 2-core machine the limit was measured on.
    seconds = 7.0 * rows * cols * min(rows, cols) / 2048**3
    if seconds < 90:
        return "about a minute" if seconds >= 30 else f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} minutes"
    return f"about {seconds / 3600:.0f} hours"


def orthogonal(
    key: int,
    shape: Sequence[int],
    *,
    layout: str,
    gain: float,
    dtype: str | np.dtype,
    stream: int = streams.DEFAULT_STREAM,
    jobs: int = 1,
) -> np.ndarray:
    """An orthogonal (or semi-orthogonal) tensor: torch ``orthogonal_`` / Keras ``Orthogonal``.

    The tensor is a ``rows x cols`` matrix through the layout (:func:`matrix_shape`).  A
    standard normal matrix of that shape is drawn from stream ``key`` (its elements in C
    order, float64); the tall one of it and its transpose is factored as QR by vsconf's
    own Householder QR (see the module's docstring: the same bytes on every machine); Q's
    columns are multiplied by the signs of R's diagonal, which makes Q Haar-distributed
    (a zero on R's diagonal counts as +, where torch would zero the column: it never
    happens with continuous draws); Q is transposed back if the matrix is wide, reshaped
    to ``shape``, multiplied by ``gain`` in float64 and rounded once to ``dtype``.  Rows
    are orthonormal when ``rows <= cols``, columns otherwise.

    Cost: about ``2 * rows * cols * min(rows, cols)`` multiply-adds; 1024 x 4096 takes
    about 5 s on 2 cores with ``jobs=2``.  The result goes into a small cache that
    :func:`orthogonal_part` and :func:`orthogonal_flat` read.

    Args:
        key: The tensor's stream key (:func:`vsconf.streams.stream_key`).
        shape: At least 2 dimensions.
        layout: ``"torch"`` or ``"tf"``.
        gain: A finite multiplier.
        dtype: float16, bfloat16, float32 or float64 (a name or a dtype).
        stream: The stream version; checked, but the values do not depend on it (the
            draws are float64 in every version).
        jobs: Threads for the QR's block updates; the values never depend on it.

    Returns:
        A new array of ``shape`` and ``dtype``; a tensor with no elements is an empty array.

    Raises:
        ValueError: Fewer than 2 dimensions, an unknown layout, a matrix above
            :data:`MAX_ORTHOGONAL_ELEMENTS`, a gain that is not finite, another dtype, an
            unknown stream version.

    Example:
        >>> from vsconf import streams
        >>> w = orthogonal(streams.stream_key(1, "w"), (4, 2), layout="tf", gain=2.0, dtype="float64")
        >>> bool(np.allclose(w.T @ w, 4 * np.eye(2), rtol=0, atol=1e-14))
        True
    """
    return _whole_orthogonal(key, shape, layout, gain, dtype, stream, jobs).copy()


def orthogonal_part(
    key: int,
    shape: Sequence[int],
    offset: Sequence[int],
    sizes: Sequence[int],
    *,
    layout: str,
    gain: float,
    dtype: str | np.dtype,
    stream: int = streams.DEFAULT_STREAM,
    jobs: int = 1,
) -> np.ndarray:
    """The box of :func:`orthogonal`'s tensor of ``shape`` at ``offset`` of ``sizes``.

    The whole tensor is computed (a QR cannot be cut) and kept, as read-only arrays in its
    dtype, for the last :data:`CACHE_ENTRIES` distinct ``(key, shape, layout, gain, dtype,
    stream)`` in this process -- at most 4 x 32 MiB at the element limit -- so that a
    writer asking for a tensor chunk by chunk, from any number of threads, factors it once
    (threads asking for one tensor at once wait for the first).  Each process has its own
    cache: tasks of one tensor in other processes each factor it again.

    Args:
        key, shape, layout, gain, dtype, stream, jobs: As :func:`orthogonal` takes them.
        offset: Where the box starts, one index an axis.
        sizes: The box's shape.

    Returns:
        A new array of shape ``sizes``.

    Raises:
        ValueError: As :func:`orthogonal`; or the box does not fit in ``shape``.

    Example:
        >>> from vsconf import streams
        >>> key = streams.stream_key(3, "lstm.weight_hh")
        >>> whole = orthogonal(key, (8, 6), layout="torch", gain=1.0, dtype="float32")
        >>> part = orthogonal_part(key, (8, 6), (2, 1), (3, 4), layout="torch", gain=1.0, dtype="float32")
        >>> bool((part == whole[2:5, 1:5]).all())
        True
    """
    whole = _whole_orthogonal(key, shape, layout, gain, dtype, stream, jobs)
    start, size = _check_box(whole.shape, offset, sizes)
    return whole[tuple(slice(o, o + s) for o, s in zip(start, size))].copy()


def orthogonal_flat(
    key: int,
    shape: Sequence[int],
    start: int,
    stop: int,
    *,
    layout: str,
    gain: float,
    dtype: str | np.dtype,
    stream: int = streams.DEFAULT_STREAM,
    jobs: int = 1,
) -> np.ndarray:
    """Elements ``start:stop`` (C order) of :func:`orthogonal`'s tensor of ``shape``, 1-D;
    through the same cache as :func:`orthogonal_part`.

    Raises:
        ValueError: As :func:`orthogonal`; or the range does not fit in the tensor.

    Example:
        >>> from vsconf import streams
        >>> key = streams.stream_key(3, "w")
        >>> whole = orthogonal(key, (5, 7), layout="tf", gain=1.0, dtype="bfloat16")
        >>> chunk = orthogonal_flat(key, (5, 7), 10, 30, layout="tf", gain=1.0, dtype="bfloat16")
        >>> bool((chunk == whole.reshape(-1)[10:30]).all())
        True
    """
    whole = _whole_orthogonal(key, shape, layout, gain, dtype, stream, jobs)
    _check_range(whole.size, start, stop)
    return whole.reshape(-1)[start:stop].copy()


class _Cache:
    """The last few whole tensors, by their arguments; one computation a key at a time."""

    def __init__(self, entries: int):
        self.entries = entries
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._running: dict[tuple, threading.Event] = {}

    def get(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        while True:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    return self._done[key]
                running = self._running.get(key)
                if running is None:
                    running = self._running[key] = threading.Event()
                    break
            running.wait()  # another thread computes it: take its result (or compute, if it failed)
        try:
            value = compute()
            value.setflags(write=False)
            with self._lock:
                self._done[key] = value
                while len(self._done) > self.entries:
                    self._done.popitem(last=False)
            return value
        finally:
            with self._lock:
                del self._running[key]
            running.set()

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


_CACHE = _Cache(CACHE_ENTRIES)


def clear_cache() -> None:
    """Forget the whole orthogonal tensors :func:`orthogonal_part` keeps (their memory)."""
    _CACHE.clear()


def _whole_orthogonal(key: int, shape: Sequence[int], layout: str, gain: float, dtype: str | np.dtype, stream: int, jobs: int) -> np.ndarray:
    shape = _check_shape(shape)
    rows, cols = check_orthogonal(shape, layout)
    name, gain, stream = _dtype_name(dtype), _check_gain(gain), streams.check_stream(stream)
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
        raise ValueError(f"Argument `key` must be a stream key, an integer of at least 0. Received: key={key!r}")
    key = int(key)

    def compute() -> np.ndarray:
        out = np.zeros(shape, dtype=dtype_named(name))
        if out.size:
            q = _orthogonal_float64(key, rows, cols, stream, jobs)
            _round_into(q.reshape(-1), gain, out.reshape(-1))
        return out

    return _CACHE.get((key, shape, layout, gain, name, stream), compute)


def _orthogonal_float64(key: int, rows: int, cols: int, stream: int, jobs: int) -> np.ndarray:
    """The sign-fixed Q, ``rows x cols`` float64, of the normal matrix of stream ``key``."""
    total = rows * cols
    drawn = streams.draw_flat(key, total, 0, total, np.dtype(np.float64), "untruncated_normal", 1.0, jobs=jobs, stream=stream)
    drawn = drawn.reshape(rows, cols)
    workers = max(1, min(jobs, available_cores()))
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        if rows >= cols:
            return _householder_q(drawn, pool, workers)
        # Wide: the tall matrix is the transpose, and so is its Q.
        return np.ascontiguousarray(_householder_q(np.ascontiguousarray(drawn.T), pool, workers).T)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _fold(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """The sums of ``values`` along ``axis``, by a pairwise tree of elementwise additions.

    Each round adds the last ``h = n // 2`` entries onto the first ``h`` (entry ``i`` gets
    entry ``n - h + i``); an odd middle entry waits for the next round.  The tree depends
    on the length alone, and each addition is one IEEE operation in any SIMD path: the
    same bits on every machine.  Overwrites ``values``; returns a view into it.
    """
    count = values.shape[axis]
    if count == 0:
        return np.zeros(values.shape[:axis] + values.shape[axis + 1 :])
    lead = (slice(None),) * axis
    while count > 1:
        half = count // 2
        head = values[lead + (slice(0, half),)]
        np.add(head, values[lead + (slice(count - half, count),)], out=head)
        count -= half
    return values[lead + (0,)]


def _dots(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``rows @ vector`` for 2-D ``rows``, summed by :func:`_fold`."""
    return _fold(np.multiply(rows, vector), 1)


def _reflector(column: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The Householder reflector ``H = I - tau v vᵀ``, ``v[0] = 1``, with ``H column = beta e1``.

    LAPACK's ``dlarfg`` choice: ``beta = -sign(alpha) * |column|``, so that ``alpha - beta``
    adds magnitudes and nothing cancels; a column already zero below its first entry gets
    ``tau = 0`` (``H = I``) and ``beta = alpha``.  Norms need no scaling: the entries are
    normal draws and their transforms, far from overflow and underflow.
    """
    alpha = float(column[0])
    vector = np.zeros(column.size)
    vector[0] = 1.0
    below = column[1:]
    sigma = float(_fold(np.multiply(below, below))) if below.size else 0.0
    if sigma == 0.0:
        return vector, 0.0, alpha
    beta = -math.copysign(math.sqrt(alpha * alpha + sigma), alpha)
    np.divide(below, alpha - beta, out=vector[1:])
    return vector, (beta - alpha) / beta, beta


def _factor_panel(panel: np.ndarray) -> tuple[np.ndarray, list[float], list[float]]:
    """Householder QR of a panel given transposed (``width x length``, its columns as rows,
    overwritten), one reflector at a time: the reflectors as rows ``vt`` (zeros before their
    unit entry), their ``tau`` and R's diagonal ``beta``."""
    width, length = panel.shape
    vt = np.zeros((width, length))
    taus, betas = [], []
    for k in range(width):
        vector, tau, beta = _reflector(panel[k, k:])
        vt[k, k:] = vector
        taus.append(tau)
        betas.append(beta)
        if k + 1 < width and tau != 0.0:
            rest = panel[k + 1 :, k:]  # x <- x H for the panel's later columns
            scaled = _dots(rest, vector) * tau
            np.subtract(rest, np.multiply(scaled[:, None], vector[None, :]), out=rest)
    return vt, taus, betas


def _block_t(vt: np.ndarray, taus: Sequence[float]) -> np.ndarray:
    """The upper triangular T of ``H_1 ... H_b = I - V T Vᵀ`` (LAPACK ``dlarft``, forward,
    columnwise): ``T[k, k] = tau_k``, ``T[:k, k] = -tau_k T[:k, :k] V[:, :k]ᵀ v_k``."""
    t = np.zeros((len(taus), len(taus)))
    for k, tau in enumerate(taus):
        t[k, k] = tau
        if k and tau != 0.0:
            t[:k, k] = _dots(t[:k, :k], _dots(vt[:k], vt[k])) * -tau
    return t


# Rows of V that one product array covers when forming Vᵀ X: sums over a column's rows run
# pairwise within each run of this many rows and in order across the runs.  Part of the
# values, like PANEL.
SUM_ROWS = 16
# Columns of the target a thread updates at a time (any number gives the same values:
# columns are independent), and rows of its final product array.
_COLUMNS = 256
_UPDATE_ROWS = 16
# NumPy 2.3+ buffers a broadcast operation whose innermost axis is shorter than about a
# third of the buffer size (8192 elements by default), copying operands through buffers
# at a quarter of the speed; with a buffer this small it never does.  Values are unchanged
# (buffering only copies), and np.setbufsize is per thread.
_BUFFER = 256


@contextmanager
def _small_buffers() -> Iterator[None]:
    old = np.setbufsize(_BUFFER)
    try:
        yield
    finally:
        np.setbufsize(old)


def _apply_block(target: np.ndarray, v: np.ndarray, s: np.ndarray, pool: ThreadPoolExecutor | None, workers: int) -> None:
    """``target <- target - V (s (Vᵀ target))`` in place, for ``v`` = V (``length x width``).

    Each column of ``target`` is computed from itself, V and ``s`` alone, by the same
    operations whatever columns share its chunk, so chunks may go to any thread.  Every
    sum runs along the leading axis of a product array, so that :func:`_fold` adds
    contiguous halves, and every operation's innermost loop runs along the target's rows.
    """
    length, count = target.shape
    if count == 0:
        return
    width = v.shape[1]
    vt = np.ascontiguousarray(v.T)
    st = np.ascontiguousarray(s.T)
    step = max(1, min(_COLUMNS, -(-count // workers)))

    def update(first: int) -> None:
        block = target[:, first : first + step]
        columns = block.shape[1]
        scratch = np.empty(max(SUM_ROWS, _UPDATE_ROWS, width) * width * columns)

        def products(*shape: int) -> np.ndarray:
            return scratch[: math.prod(shape)].reshape(shape)

        w = np.empty((width, columns))  # Vᵀ block
        with _small_buffers():
            for row in range(0, length, SUM_ROWS):
                rows = min(SUM_ROWS, length - row)
                part = np.multiply(v[row : row + rows, :, None], block[row : row + rows, None, :], out=products(rows, width, columns))
                if row:
                    np.add(w, _fold(part), out=w)
                else:
                    w[...] = _fold(part)
            # s (Vᵀ block), copied out of the scratch that the next products reuse
            w = _fold(np.multiply(st[:, :, None], w[:, None, :], out=products(width, width, columns))).copy()
            for row in range(0, length, _UPDATE_ROWS):
                rows = block[row : row + _UPDATE_ROWS]
                part = np.multiply(vt[:, row : row + rows.shape[0], None], w[:, None, :], out=products(width, rows.shape[0], columns))
                np.subtract(rows, _fold(part), out=rows)

    firsts = range(0, count, step)
    if pool is None or len(firsts) == 1:
        for first in firsts:
            update(first)
    else:
        list(pool.map(update, firsts))


def _householder_q(a: np.ndarray, pool: ThreadPoolExecutor | None, workers: int) -> np.ndarray:
    """Q D of ``a = QR`` (``m x n``, ``m >= n``, C-contiguous float64, overwritten), D the
    signs of R's diagonal: the Q whose R has a positive diagonal.

    Blocked Householder QR: each panel of :data:`PANEL` columns is factored one reflector at
    a time (:func:`_factor_panel`), then its block reflector ``B = I - V T Vᵀ`` updates the
    columns to its right (``A <- Bᵀ A``); then Q D = B_1 ... B_K [D; 0] is accumulated
    backwards, each block acting on rows and columns from its own first column on.
    """
    m, n = a.shape
    signs = np.empty(n)
    blocks = []
    for j0 in range(0, n, PANEL):
        width = min(PANEL, n - j0)
        vt, taus, betas = _factor_panel(np.ascontiguousarray(a[j0:, j0 : j0 + width].T))
        signs[j0 : j0 + width] = [-1.0 if beta < 0 else 1.0 for beta in betas]
        t = _block_t(vt, taus)
        v = np.ascontiguousarray(vt.T)
        _apply_block(a[j0:, j0 + width :], v, np.ascontiguousarray(t.T), pool, workers)
        blocks.append((j0, v, t))
    q = np.zeros((m, n))
    q[np.arange(n), np.arange(n)] = signs
    for j0, v, t in reversed(blocks):
        # Columns before j0 are still columns of [D; 0], zero where this block acts.
        _apply_block(q[j0:, j0:], v, t, pool, workers)
    return q


# --- identity and dirac -------------------------------------------------------------------


def _value(value: float, dtype: np.dtype) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype``, rounded as vsconf rounds every constant."""
    return narrow.full((), value, dtype)


def identity(shape: Sequence[int], *, gain: float, dtype: str | np.dtype) -> np.ndarray:
    """``gain`` on the main diagonal of a 2-D tensor, zeros elsewhere: torch ``eye_`` (gain 1)
    and Keras ``Identity``, also for a matrix that is not square.

    Args:
        shape: Exactly 2 dimensions.
        gain: A finite number, rounded to ``dtype`` as vsconf rounds constants.
        dtype: float16, bfloat16, float32 or float64.

    Returns:
        A new array of ``shape`` and ``dtype``.

    Raises:
        ValueError: Not 2 dimensions (torch's message), a gain that is not finite, another dtype.

    Example:
        >>> identity((3, 2), gain=1.0, dtype="float64")
        array([[1., 0.],
               [0., 1.],
               [0., 0.]])
    """
    shape = _check_shape(shape)
    return identity_part(shape, (0,) * len(shape), shape, gain=gain, dtype=dtype)


def identity_part(shape: Sequence[int], offset: Sequence[int], sizes: Sequence[int], *, gain: float, dtype: str | np.dtype) -> np.ndarray:
    """The box of :func:`identity`'s tensor at ``offset`` of ``sizes``, made from its
    indices alone (the diagonal entries that fall in the box).

    Raises:
        ValueError: As :func:`identity`; or the box does not fit in ``shape``.

    Example:
        >>> identity_part((4, 4), (1, 2), (2, 2), gain=3.0, dtype="float32")
        array([[0., 0.],
               [3., 0.]], dtype=float32)
    """
    shape = _check_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported. Received: shape={shape}")
    (row0, col0), size = _check_box(shape, offset, sizes)
    value, out_dtype = _check_gain(gain), dtype_named(_dtype_name(dtype))
    out = np.zeros(size, dtype=out_dtype)
    first, last = max(row0, col0), min(row0 + size[0], col0 + size[1])
    if first < last:
        diagonal = np.arange(first, last)
        out[diagonal - row0, diagonal - col0] = _value(value, out_dtype)
    return out


def identity_flat(shape: Sequence[int], start: int, stop: int, *, gain: float, dtype: str | np.dtype) -> np.ndarray:
    """Elements ``start:stop`` (C order) of :func:`identity`'s tensor, 1-D, from the boxes of
    :func:`flat_boxes`.

    Example:
        >>> identity_flat((3, 3), 2, 7, gain=1.0, dtype="float32")
        array([0., 0., 1., 0., 0.], dtype=float32)
    """
    shape = _check_shape(shape)
    out_dtype = dtype_named(_dtype_name(dtype))
    identity_part(shape, (0,) * len(shape), (0,) * len(shape), gain=gain, dtype=dtype)  # the checks, on an empty box
    _check_range(math.prod(shape), start, stop)
    return _from_boxes(lambda o, s: identity_part(shape, o, s, gain=gain, dtype=out_dtype), shape, start, stop, out_dtype)


def dirac(shape: Sequence[int], *, groups: int = 1, dtype: str | np.dtype) -> np.ndarray:
    """torch ``dirac_(tensor, groups)``: a convolution weight ``[out, in, k...]`` that passes
    its inputs through, group by group.

    Zeros, and 1 at ``[g * out_per_group + d, d, k0 // 2, k1 // 2, ...]`` for every group
    ``g`` and ``d < min(out_per_group, in)``, where ``out_per_group = shape[0] // groups``.

    Args:
        shape: 3, 4 or 5 dimensions (1-, 2- or 3-D convolutions), torch's layout.
        groups: The convolution's groups; must divide ``shape[0]``.
        dtype: float16, bfloat16, float32 or float64.

    Returns:
        A new array of ``shape`` and ``dtype``.

    Raises:
        ValueError: Another rank or ``shape[0]`` not divisible by ``groups`` (torch's
            messages), ``groups`` not a positive integer, another dtype.

    Example:
        >>> dirac((4, 2, 3), groups=2, dtype="float32")[:, :, 1]
        array([[1., 0.],
               [0., 1.],
               [1., 0.],
               [0., 1.]], dtype=float32)
    """
    shape = _check_shape(shape)
    return dirac_part(shape, (0,) * len(shape), shape, groups=groups, dtype=dtype)


def _check_dirac(shape: Shape, groups: int) -> int:
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"Only tensors with 3, 4, or 5 dimensions are supported. Received: shape={shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"Argument `groups` must be a positive integer. Received: groups={groups!r}")
    if shape[0] % groups:
        raise ValueError(f"dim 0 must be divisible by groups. Received: shape={shape}, groups={groups}")
    return shape[0] // int(groups)


def dirac_part(shape: Sequence[int], offset: Sequence[int], sizes: Sequence[int], *, groups: int = 1, dtype: str | np.dtype) -> np.ndarray:
    """The box of :func:`dirac`'s tensor at ``offset`` of ``sizes``, made from its indices
    alone (the ones that fall in the box).

    Raises:
        ValueError: As :func:`dirac`; or the box does not fit in ``shape``.

    Example:
        >>> dirac_part((4, 4, 3, 3), (1, 0, 1, 1), (2, 4, 1, 1), dtype="float32")[:, :, 0, 0]
        array([[0., 1., 0., 0.],
               [0., 0., 1., 0.]], dtype=float32)
    """
    shape = _check_shape(shape)
    per_group = _check_dirac(shape, groups)
    start, size = _check_box(shape, offset, sizes)
    out_dtype = dtype_named(_dtype_name(dtype))
    out = np.zeros(size, dtype=out_dtype)
    centre = tuple(k // 2 for k in shape[2:])
    if out.size == 0 or not all(o <= c < o + s for c, o, s in zip(centre, start[2:], size[2:])):
        return out
    channel = np.arange(start[0], start[0] + size[0])
    within = channel % per_group  # d: the output channel's place in its group
    keep = (within < min(per_group, shape[1])) & (within >= start[1]) & (within < start[1] + size[1])
    index = (channel[keep] - start[0], within[keep] - start[1]) + tuple(c - o for c, o in zip(centre, start[2:]))
    out[index] = _value(1.0, out_dtype)
    return out


def dirac_flat(shape: Sequence[int], start: int, stop: int, *, groups: int = 1, dtype: str | np.dtype) -> np.ndarray:
    """Elements ``start:stop`` (C order) of :func:`dirac`'s tensor, 1-D, from the boxes of
    :func:`flat_boxes`.

    Example:
        >>> int(dirac_flat((2, 2, 3), 0, 12, dtype="float32").sum())
        2
    """
    shape = _check_shape(shape)
    _check_dirac(shape, groups)
    out_dtype = dtype_named(_dtype_name(dtype))
    _check_range(math.prod(shape), start, stop)
    return _from_boxes(lambda o, s: dirac_part(shape, o, s, groups=groups, dtype=out_dtype), shape, start, stop, out_dtype)


@dataclass(frozen=True)
class OrthogonalInit:
    """``{orthogonal: {gain: G, layout: L}}``: :func:`orthogonal` times ``gain``; ``layout``
    None means the spec's (``tf`` when the spec's is ``auto``); ``seed=None``: the spec's."""

    gain: Any = 1.0
    layout: str | None = None
    seed: int | None = None

    def canonical(self) -> dict[str, Any]:
        params: dict[str, Any] = {"gain": written(self.gain)}
        if self.layout is not None:
            params["layout"] = self.layout
        return {"orthogonal": params, "seed": self.seed}


@dataclass(frozen=True)
class IdentityInit:
    """``{identity: {gain: G}}``: :func:`identity` (2-D tensors)."""

    gain: Any = 1.0

    def canonical(self) -> dict[str, Any]:
        return {"identity": {"gain": written(self.gain)}}


@dataclass(frozen=True)
class DiracInit:
    """``{dirac: {groups: N}}``: :func:`dirac` (3- to 5-D convolution weights)."""

    groups: Any = 1

    def canonical(self) -> dict[str, Any]:
        return {"dirac": {"groups": written(self.groups)}}
