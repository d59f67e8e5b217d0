"""Any slice of a planned tensor, computed alone: sharding-invariant init inside frameworks.

Each rank of a training job asks for its own shard's index and gets exactly the values
that shard has in the whole tensor (the streams' partition == slice promise), without
computing the rest -- so the weights do not depend on the parallel layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vsconf.draw import draw_of
from vsconf.draw import part as box
from vsconf.engine import PlanEntry
from vsconf.initializers import check_array_size


def _bounds(index: Any, shape: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """(offset, sizes, axes to drop) of a basic index: ints, step-1 slices, one Ellipsis."""
    parts = index if isinstance(index, tuple) else (index,)
    if sum(part is Ellipsis for part in parts) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in parts:
        at = parts.index(Ellipsis)
        fill = len(shape) - (len(parts) - 1)
        parts = parts[:at] + (slice(None),) * max(fill, 0) + parts[at + 1 :]
    if len(parts) > len(shape):
        raise IndexError(f"too many indices for a tensor of shape {list(shape)}: {len(parts)} were indexed")
    parts = parts + (slice(None),) * (len(shape) - len(parts))
    offset, sizes, drop = [], [], []
    for axis, (part, dim) in enumerate(zip(parts, shape)):
        if isinstance(part, (int, np.integer)) and not isinstance(part, (bool, np.bool_)):
            position = int(part) + dim if part < 0 else int(part)
            if not 0 <= position < dim:
                raise IndexError(f"index {int(part)} is out of bounds for axis {axis} with size {dim}")
            offset.append(position)
            sizes.append(1)
            drop.append(axis)
        elif isinstance(part, slice):
            start, stop, step = part.indices(dim)
            if step != 1:
                raise ValueError(f"slice_values takes slices of step 1; axis {axis} has step {step}")
            offset.append(start)
            sizes.append(max(0, stop - start))
        else:
            raise TypeError(f"Argument `index` must hold ints and slices (basic indexing). Received: {type(part).__name__}")
    return offset, sizes, drop


def slice_values(plan_entry: PlanEntry, index: Any = ()) -> np.ndarray | None:
    """The values of a planned tensor at ``index``, computed without the rest of the tensor.

    Equal, bit for bit, to ``vsconf.draw.generate(plan_entry)[index]``: this is what lets
    each rank of a sharded training job fill only its own shard and still get the weights a
    single device would (``jax.make_array_from_callback``, a torch ``DTensor``'s local shard).

    Args:
        plan_entry: An entry of a :class:`~vsconf.Plan` (``plan.entry(name)``).
        index: NumPy basic indexing: an int, a slice of step 1, an Ellipsis, or a tuple of
            them; ``()`` (the default) is the whole tensor.

    Returns:
        The slice's values (ints drop their axis, as in NumPy), in the tensor's dtype; None
        for a tensor that keeps its stored values (``keep``, unmatched, not float), as
        :func:`vsconf.draw.generate` returns.

    Raises:
        TypeError: ``plan_entry`` is not a PlanEntry, or ``index`` holds something other than
            ints, slices and one Ellipsis.
        IndexError: An int is out of bounds, or there are more indices than axes.
        ValueError: A slice has a step other than 1, or the slice's array would pass
            :func:`vsconf.initializers.array_limit` (this machine's memory): the message
            names the request and the limit.

    Example:
        >>> import vsconf
        >>> plan = vsconf.plan("model.npz", "init.yaml")
        >>> entry = plan.entry("fc.weight")
        >>> shard = vsconf.slice_values(entry, (slice(0, 2), slice(None)))
        >>> shard.shape
        (2, 8)
        >>> bool((shard == vsconf.slice_values(entry)[:2]).all())
        True
    """
    if not isinstance(plan_entry, PlanEntry):
        raise TypeError(
            f"Argument `plan_entry` must be a vsconf.PlanEntry (an element of a Plan). Received: {type(plan_entry).__name__}"
        )
    if not plan_entry.changes:
        return None
    shape = tuple(plan_entry.shape)
    offset, sizes, drop = _bounds(index, shape)
    draw = draw_of(plan_entry)
    check_array_size("index", sizes, draw.numpy_dtype, f"{index!r} of {plan_entry.name!r} {list(shape)}")
    values = box(draw, shape, offset, sizes)
    return values.reshape([size for axis, size in enumerate(sizes) if axis not in drop])
