"""From a plan entry to its values: the one step every writer, slice and task takes.

A :class:`~vsconf.engine.PlanEntry` says *what* a tensor gets -- an init with its seed,
fans and stream version.  A :class:`Draw` says it the way the streams take it: a constant,
or a stream kind with its parameter (std or limit) on the tensor's own stream key, its
dtype and size.  It is small and picklable, so a task carries it to a worker on another
machine; and any range or box of a tensor's values comes from it alone, equal to that part
of the whole (:mod:`vsconf.streams`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsconf import narrow, streams
from vsconf.engine import PlanEntry
from vsconf.initializers import check_array_size, float_dtype, sampling
from vsconf.inits import matrix
from vsconf.inits.formula import formula_part

# Kinds whose values are made box by box from the tensor's shape, not from a flat stream.
SHAPED = ("orthogonal", "identity", "dirac", "formula", "parts")


@dataclass(frozen=True, slots=True)
class Draw:
    """Everything a tensor's new values depend on.

    ``kind``: a stream kind of :mod:`vsconf.streams`, ``"constant"``, one of
    :data:`SHAPED` (values that depend on the tensor's shape: a matrix init, a formula, or
    ``parts`` each drawn as its own tensor); ``param``: the normal's std or the uniform
    limit, the constant, or an orthogonal or identity tensor's gain; ``key`` and ``stream``:
    the stream key and version (0 when nothing is drawn); ``dtype``: the tensor's dtype
    name; ``total``: its number of elements.
    """

    kind: str
    param: float
    key: int
    stream: int
    dtype: str
    total: int
    shift: float = 0.0  # added to every value: a normal's mean, a uniform's centre
    bounds: tuple[float, float] = streams.TRUNCATION_BOUNDS  # a truncated normal's, in its std
    zero_rows: tuple[int, ...] = ()  # rows (axis 0) set to zero after the draw
    row: int = 1  # elements a row holds (the product of the other axes)
    # The kinds computed from the tensor's shape (orthogonal, identity, dirac, formula, parts):
    shape: tuple[int, ...] = ()
    layout: str = ""  # orthogonal: torch or tf
    groups: int = 1  # dirac
    formula: str = ""  # formula: the expression, and the names it reads besides its indices
    names: tuple[tuple[str, Any], ...] = ()
    pieces: tuple[Draw, ...] = ()  # parts: each part's draw, cut along `axis`
    axis: int = 0

    @property
    def numpy_dtype(self) -> np.dtype:
        return float_dtype(self.dtype)

    @property
    def itemsize(self) -> int:
        return self.numpy_dtype.itemsize


def draw_of(entry: PlanEntry) -> Draw | None:
    """What ``entry``'s tensor is drawn from; None when it keeps its stored values."""
    if not entry.changes:
        return None
    total = math.prod(entry.shape)
    rows = {"zero_rows": entry.zero_rows, "row": math.prod(entry.shape[1:])} if entry.zero_rows else {}
    if entry.action == "constant":
        return Draw("constant", float(entry.value), 0, 0, entry.dtype, total, shape=tuple(entry.shape), **rows)
    if entry.distribution in SHAPED:
        return _shaped(entry, total, rows)
    kind, param = sampling(entry.distribution, entry.variance) if entry.param is None else (entry.distribution, entry.param)
    key = streams.stream_key(entry.seed, entry.drawn_as or entry.name)
    return Draw(
        kind, param, key, entry.stream or streams.DEFAULT_STREAM, entry.dtype, total,
        shift=entry.mean or 0.0, bounds=entry.bounds or streams.TRUNCATION_BOUNDS, shape=tuple(entry.shape), **rows,
    )


def _shaped(entry: PlanEntry, total: int, rows: dict[str, Any]) -> Draw:
    shape = tuple(entry.shape)
    if entry.distribution == "parts":
        pieces = tuple(draw_of(piece) for piece in entry.parts)
        assert all(piece is not None for piece in pieces)
        return Draw("parts", 0.0, 0, 0, entry.dtype, total, shape=shape, pieces=pieces, axis=entry.parts_axis or 0, **rows)  # type: ignore[arg-type]
    if entry.distribution == "orthogonal":
        key = streams.stream_key(entry.seed, entry.drawn_as or entry.name)
        return Draw(
            "orthogonal", float(entry.gain), key, entry.stream or streams.DEFAULT_STREAM, entry.dtype, total,
            shape=shape, layout=entry.layout or "tf", **rows,
        )
    if entry.distribution == "identity":
        return Draw("identity", float(entry.gain), 0, 0, entry.dtype, total, shape=shape, **rows)
    if entry.distribution == "dirac":
        return Draw("dirac", 1.0, 0, 0, entry.dtype, total, shape=shape, groups=int(entry.groups or 1), **rows)
    return Draw("formula", 0.0, 0, 0, entry.dtype, total, shape=shape, formula=entry.formula or "", names=entry.names, **rows)


def _shaped_box(draw: Draw, offset: Sequence[int], sizes: Sequence[int], jobs: int) -> np.ndarray:
    """The box of ``sizes`` at ``offset`` of a :data:`SHAPED` draw's tensor."""
    dtype = draw.numpy_dtype
    if draw.kind == "orthogonal":
        return matrix.orthogonal_part(
            draw.key, draw.shape, offset, sizes, layout=draw.layout, gain=draw.param, dtype=dtype, stream=draw.stream, jobs=jobs,
        )
    if draw.kind == "identity":
        return matrix.identity_part(draw.shape, offset, sizes, gain=draw.param, dtype=dtype)
    if draw.kind == "dirac":
        return matrix.dirac_part(draw.shape, offset, sizes, groups=draw.groups, dtype=dtype)
    if draw.kind == "formula":
        return formula_part(draw.formula, dict(draw.names), draw.shape, offset, sizes, dtype)
    # parts: each piece's share of the box, from the piece's own tensor
    out = np.empty(tuple(sizes), dtype)
    axis, low, high = draw.axis, offset[draw.axis], offset[draw.axis] + sizes[draw.axis]
    first = 0
    for piece in draw.pieces:
        length = piece.shape[axis]
        a, b = max(low, first), min(high, first + length)
        if a < b:
            inner_offset = list(offset)
            inner_offset[axis] = a - first
            inner_sizes = list(sizes)
            inner_sizes[axis] = b - a
            target = [slice(None)] * len(sizes)
            target[axis] = slice(a - low, b - low)
            out[tuple(target)] = part(piece, piece.shape, inner_offset, inner_sizes, jobs=jobs)
        first += length
    return out


def values(draw: Draw, start: int, stop: int, *, jobs: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Elements ``start:stop`` (C order) of the tensor, into ``out`` when given."""
    dtype = draw.numpy_dtype
    if draw.kind in SHAPED:
        out = np.empty(stop - start, dtype) if out is None else out[: stop - start]
        position = 0
        for offset, sizes in matrix.flat_boxes(draw.shape, start, stop):
            box = _shaped_box(draw, offset, sizes, jobs).reshape(-1)
            out[position : position + box.size] = box
            position += box.size
    elif draw.kind == "constant":
        out = np.empty(stop - start, dtype) if out is None else out[: stop - start]
        narrow.fill(out, draw.param)
    else:
        out = streams.draw_flat(
            draw.key, draw.total, start, stop, dtype, draw.kind, draw.param, jobs=jobs, out=out, stream=draw.stream,
            shift=draw.shift, bounds=draw.bounds,
        )
    for row in draw.zero_rows:  # zero is exact in every dtype: no rounding rule involved
        low, high = max(start, row * draw.row), min(stop, (row + 1) * draw.row)
        if low < high:
            out[low - start : high - start] = 0
    return out


def part(draw: Draw, full_shape: Sequence[int], offset: Sequence[int], shape: Sequence[int], *, jobs: int = 1) -> np.ndarray:
    """The box of ``shape`` at ``offset`` of the tensor of ``full_shape``."""
    dtype = draw.numpy_dtype
    if draw.kind in SHAPED:
        box = _shaped_box(draw, offset, shape, jobs)
    elif draw.kind == "constant":
        box = narrow.full(tuple(shape), draw.param, dtype)
    else:
        box = streams.draw_part(
            draw.key, shape, dtype, draw.kind, draw.param, full_shape=full_shape, offset=offset, jobs=jobs,
            stream=draw.stream, shift=draw.shift, bounds=draw.bounds,
        )
    for row in draw.zero_rows:
        if offset[0] <= row < offset[0] + shape[0]:
            box[row - offset[0]] = 0
    return box


def generate(entry: PlanEntry, *, jobs: int = 1) -> np.ndarray | None:
    """The new values of ``entry``'s tensor, or None when it keeps its values.

    Raises ValueError naming ``entry`` when the tensor would pass
    :func:`~vsconf.initializers.array_limit` (this machine's memory): writers stream big
    tensors with :func:`generate_chunks` instead.
    """
    draw = draw_of(entry)
    if draw is None:
        return None
    check_array_size("entry", entry.shape, draw.numpy_dtype, f"{entry.name!r} {list(entry.shape)}")
    return values(draw, 0, draw.total, jobs=jobs).reshape(entry.shape)


def chunk_elements(jobs: int, itemsize: int) -> int:
    """How many elements a chunk holds: 16 MiB, or more so that every thread has blocks."""
    per_round = jobs * streams.BLOCKS_PER_TASK * streams.BLOCK_SIZE
    return max((16 << 20) // itemsize, 2 * per_round)


def generate_chunks(entry: PlanEntry, *, jobs: int = 1, step: int | None = None) -> Iterator[np.ndarray] | None:
    """The new values of ``entry``'s tensor as flat C-order chunks of ``step`` elements, or
    None when it keeps its values.  Writers stream these; any ``step`` gives the same values."""
    draw = draw_of(entry)
    if draw is None:
        return None
    step = step or chunk_elements(jobs, draw.itemsize)
    return (values(draw, lo, min(draw.total, lo + step), jobs=jobs) for lo in range(0, draw.total, step))
