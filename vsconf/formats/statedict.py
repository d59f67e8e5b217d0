"""A dict of NumPy arrays as a model: what :func:`vsconf.apply_state_dict` works on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from vsconf.engine import Plan, PlanEntry
from vsconf.files import Transaction
from vsconf.formats.names import NamedTensors, is_unicode
from vsconf.formats.npz import write_state_npz
from vsconf.formats.protocol import Writing
from vsconf.matching import TensorInfo


class DictStateDict(NamedTensors):
    """An in-memory ``dict[str, ndarray]`` (the Python API)."""

    path = None

    def __init__(self, mapping: Mapping[str, np.ndarray]):
        self._arrays = {}
        for name, value in mapping.items():
            if not isinstance(name, str):
                raise TypeError(f"State dict keys must be strings. Received: {type(name).__name__}")
            if not is_unicode(name):
                raise ValueError(f"State dict key {name!r} is not valid Unicode text (it holds a lone surrogate)")
            try:
                array = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"State dict value {name!r} is not an array: {exc}") from None
            if array.dtype.hasobject:
                raise TypeError(f"State dict value {name!r} is not an array of numbers (dtype object)")
            self._arrays[name] = array
        self._infos = [TensorInfo(name, a.shape, a.dtype) for name, a in self._arrays.items()]

    def read(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def write(
        self, output: Path, plan: Plan, writing: Writing, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        """Stage the dict as an ``.npz`` file: members in name order, stored, fixed timestamps."""
        write_state_npz(self, output, plan, writing.values, transaction, progress)

    def arrays(self, plan: Plan, generate: Callable[[PlanEntry], "np.ndarray | None"]) -> dict[str, np.ndarray]:
        """Every tensor after ``plan``: new values where it changes, a copy of the input's
        elsewhere (the new dict never shares memory with the caller's arrays)."""
        out = {}
        for entry in plan:
            array = generate(entry)
            out[entry.name] = self._arrays[entry.name].copy() if array is None else array
        return out


