"""What a checkpoint's values are: ``vsconf stats`` and :func:`vsconf.stats`.

Per tensor: the count, mean, std, min, max, the fraction of zeros and the number of
non-finite values; with a second model, the same for the difference (second minus first)
and the relative change ``||b - a|| / ||a||``.  Every format vsconf reads, one tensor at a
time: the memory held is the largest tensor's (twice, with a second model), never the
model's.  Sums are accumulated in float64 a chunk at a time, so a bfloat16 tensor of a
billion elements costs a chunk of float64, not eight bytes per element.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsconf import formats

_CHUNK = 1 << 20  # elements widened to float64 at a time


@dataclass(frozen=True)
class TensorStats:
    """What one tensor's values are.

    Args:
        count: Its number of elements.
        mean, std, min, max: Of its finite values (``std`` the population's); None for a
            tensor that is not float, or has no finite value.
        zeros: The fraction of its elements that are exactly zero.
        nonfinite: How many are NaN or infinite.

    Raises:
        Nothing.

    Example:
        >>> import numpy as np
        >>> from vsconf.tally import tensor_stats
        >>> tensor_stats(np.array([0.0, 2.0, np.inf], np.float32)).as_dict()
        {'count': 3, 'mean': 1.0, 'std': 1.0, 'min': 0.0, 'max': 2.0, 'zeros': 0.3333333333333333, 'nonfinite': 1}
    """

    count: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    zeros: float | None = None
    nonfinite: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count, "mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
            "zeros": self.zeros, "nonfinite": self.nonfinite,
        }


def _chunks(flat: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, flat.size, _CHUNK):
        yield flat[start : start + _CHUNK].astype(np.float64)


def tensor_stats(array: np.ndarray) -> TensorStats:
    """The :class:`TensorStats` of ``array`` (any shape; float or not)."""
    flat = np.asarray(array).reshape(-1)
    if flat.dtype.kind != "f" and flat.dtype.name != "bfloat16":
        return TensorStats(int(flat.size))
    return _streamed(lambda: _chunks(flat))


def _streamed(chunks: Callable[[], Iterator[np.ndarray]]) -> TensorStats:
    """The stats of the float64 values ``chunks()`` yields, in two passes (the second sums the
    squared deviations from the mean, never E[x^2] - mean^2)."""
    count = finite = zeros = nonfinite = 0
    total = 0.0
    low, high = math.inf, -math.inf
    for chunk in chunks():
        good = np.isfinite(chunk)
        bad = int(chunk.size - np.count_nonzero(good))
        if bad:
            nonfinite += bad
            chunk = chunk[good]
        count += chunk.size + bad
        finite += chunk.size
        if chunk.size:
            total += float(np.sum(chunk))
            low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
            zeros += int(chunk.size - np.count_nonzero(chunk))
    if not finite:
        return TensorStats(count, nonfinite=nonfinite, zeros=0.0 if count else None)
    mean = total / finite
    square = 0.0
    for chunk in chunks():
        chunk = chunk[np.isfinite(chunk)] if nonfinite else chunk
        square += float(np.sum((chunk - mean) ** 2))
    return TensorStats(count, mean, math.sqrt(square / finite), low, high, zeros / count, nonfinite)


@dataclass(frozen=True)
class StatsRow:
    """One name of :func:`vsconf.stats`.

    Args:
        name, shape, dtype: The tensor's.
        stats: Its values' :class:`TensorStats` in the first model (None: only the second
            has it).
        other: The second model's, when there is one.
        difference: The stats of ``second - first``, element by element; None where the
            shapes differ, a side lacks the name, or the tensor is not float.
        relative_change: ``||second - first|| / ||first||``.
        note: Why a comparison is missing (``only in the second model``...).

    Raises:
        Nothing.

    Example:
        >>> import numpy as np, vsconf
        >>> (row,) = vsconf.stats({"w": np.ones(4, np.float32)}, {"w": np.full(4, 1.5, np.float32)})
        >>> row.difference.mean, row.relative_change
        (0.5, 0.5)
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    stats: TensorStats | None
    other: TensorStats | None = None
    difference: TensorStats | None = None
    relative_change: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        out["stats"] = None if self.stats is None else self.stats.as_dict()
        if self.other is not None or self.difference is not None or self.note:
            out["other"] = None if self.other is None else self.other.as_dict()
            out["difference"] = None if self.difference is None else self.difference.as_dict()
            out["relative_change"] = self.relative_change
        if self.note:
            out["note"] = self.note
        return out


def stats(model: Any, other: Any = None) -> list[StatsRow]:
    """Per tensor of ``model``: count, mean, std, min, max, fraction of zeros, non-finite
    count; with ``other``, the same for it, for ``other - model``, and the relative change.

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` path, a sharded checkpoint, or a dict
            of arrays.
        other: A second model of any of those kinds (names matched exactly), or None.

    Returns:
        One :class:`StatsRow` per name, in ``model``'s order, then the names only ``other``
        holds.

    Raises:
        ModelError: A model cannot be read.

    Example:
        >>> import numpy as np, vsconf
        >>> a = {"w": np.array([[1.0, -1.0], [0.0, 2.0]], np.float32)}
        >>> (row,) = vsconf.stats(a, {"w": a["w"] * 1.5})
        >>> row.stats.mean, row.stats.zeros, row.difference.max, round(row.relative_change, 3)
        (0.5, 0.25, 1.0, 0.5)
    """
    with formats.open_model(model) as first:
        if other is None:
            return [_row(info, first.read(info.name)) for info in first.tensors()]
        with formats.open_model(other) as second:
            theirs = {info.name: info for info in second.tensors()}
            rows = []
            for info in first.tensors():
                mine = first.read(info.name)
                if info.name not in theirs:
                    rows.append(_row(info, mine, note="only in the first model"))
                    continue
                rows.append(_pair(info, mine, np.asarray(second.read(info.name))))
            names = {info.name for info in first.tensors()}
            for info in second.tensors():
                if info.name not in names:
                    rows.append(StatsRow(info.name, tuple(info.shape), info.dtype.name, None, tensor_stats(second.read(info.name)), note="only in the second model"))
            return rows


def _row(info: Any, values: np.ndarray, note: str = "") -> StatsRow:
    return StatsRow(info.name, tuple(info.shape), info.dtype.name, tensor_stats(values), note=note)


def _pair(info: Any, mine: np.ndarray, theirs: np.ndarray) -> StatsRow:
    mine = np.asarray(mine)
    own, other = tensor_stats(mine), tensor_stats(theirs)
    if mine.shape != theirs.shape:
        return StatsRow(info.name, tuple(info.shape), info.dtype.name, own, other, note=f"shapes differ: {list(mine.shape)} and {list(theirs.shape)}")
    if own.mean is None or other.mean is None:
        return StatsRow(info.name, tuple(info.shape), info.dtype.name, own, other, note="not float")
    flat_a, flat_b = mine.reshape(-1), theirs.reshape(-1)

    def differences() -> Iterator[np.ndarray]:
        for start in range(0, flat_a.size, _CHUNK):
            yield flat_b[start : start + _CHUNK].astype(np.float64) - flat_a[start : start + _CHUNK].astype(np.float64)

    norm_a = math.sqrt(sum(float(np.sum(chunk * chunk)) for chunk in _chunks(flat_a)))
    norm_d = math.sqrt(sum(float(np.sum(chunk * chunk)) for chunk in differences()))
    relative = norm_d / norm_a if norm_a else (0.0 if norm_d == 0 else math.inf)
    return StatsRow(info.name, tuple(info.shape), info.dtype.name, own, other, _streamed(differences), relative)
