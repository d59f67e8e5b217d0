"""Computed tensors: ``{formula: EXPR}``, every element from an expression over its indices.

The expression (:mod:`vsconf.expr`) reads the element's indices ``i0, i1, ...`` and the
names the planner gives the tensor (vars, ``fan_in``, ``shape``, a regex's groups...); it
is evaluated vectorised over a box of the tensor at a time -- one NumPy operation per
operation of the expression, never a Python loop over elements -- in float64, and rounded
once to the tensor's dtype (float16/bfloat16 by :mod:`vsconf.narrow`'s rule).  A box, or a
flat range, equals that part of the whole: each element depends on its indices alone.

>>> import numpy as np
>>> formula_part("log(1 + i1)", {}, (2, 3), (0, 0), (2, 3), "float32")   # Mamba's A_log
array([[0.       , 0.6931472, 1.0986123],
       [0.       , 0.6931472, 1.0986123]], dtype=float32)
>>> formula_flat("i0", {}, (5,), 1, 4, "float64")
array([1., 2., 3.])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsconf import narrow
from vsconf.dtypes import dtype_named
from vsconf.expr import ExprError, index_grids, parsed
from vsconf.inits.matrix import flat_boxes
from vsconf.inits.random import written

# Elements evaluated at once when a plan checks a formula over its whole tensor.
CHECK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class FormulaInit:
    """``{formula: EXPR}``: the expression's text (a Param the planner resolves)."""

    formula: Any

    def canonical(self) -> dict[str, Any]:
        return {"formula": written(self.formula)}


def formula_part(
    text: str, names: Mapping[str, Any], shape: Sequence[int], offset: Sequence[int], sizes: Sequence[int], dtype: str | np.dtype
) -> np.ndarray:
    """The box of ``sizes`` at ``offset`` of the tensor of ``shape`` that ``text`` computes.

    Raises:
        ExprError: The expression has no finite value at some element of the box (the
            message names it by its indices).
    """
    sizes = tuple(int(s) for s in sizes)
    if len(shape) != len(sizes):
        raise ValueError(f"a box of rank {len(sizes)} in a tensor of rank {len(shape)}")
    value = parsed(text).evaluate({**names, **index_grids(sizes, tuple(offset))})
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), sizes)
    if not np.isfinite(values).all():
        where = tuple(int(i) + int(o) for i, o in zip(np.argwhere(~np.isfinite(values))[0], offset))
        raise ExprError(f"the value is not finite at index {list(where)}", 0)
    target = dtype_named(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    if not narrow.is_narrow(target):
        return values.astype(target)
    out = np.empty(sizes, dtype=target)
    narrow.scale_into(np.ascontiguousarray(values).reshape(-1), None, out.reshape(-1))
    return out


def formula_flat(text: str, names: Mapping[str, Any], shape: Sequence[int], start: int, stop: int, dtype: str | np.dtype) -> np.ndarray:
    """Elements ``start:stop`` (C order) of the tensor ``text`` computes, 1-D."""
    target = dtype_named(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    out = np.empty(stop - start, dtype=target)
    position = 0
    for offset, sizes in flat_boxes(tuple(shape), start, stop):
        piece = formula_part(text, names, shape, offset, sizes, target).reshape(-1)
        out[position : position + piece.size] = piece
        position += piece.size
    return out


def check_formula(text: str, names: Mapping[str, Any], shape: Sequence[int]) -> None:
    """Raise ExprError when the formula has no finite value somewhere in the tensor (a
    plan's check: every element is computed once, :data:`CHECK_ELEMENTS` at a time)."""
    total = int(np.prod(shape, dtype=np.int64)) if shape else 1
    for start in range(0, total, CHECK_ELEMENTS):
        formula_flat(text, names, shape, start, min(total, start + CHECK_ELEMENTS), "float64")
