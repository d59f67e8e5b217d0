"""Tables of the dtypes vsconf names, whose ml_dtypes entries load on first use.

``import ml_dtypes`` costs about a second with ml_dtypes 0.7 (it registers a score of
types with NumPy), so vsconf imports it only when a table hands out a dtype only it
defines -- bfloat16, the float8s -- not when a command merely starts or plans float32
tensors.  A :class:`DtypeTable` maps keys to dtype *names* (``"float32"``,
``"bfloat16"``); indexing it gives the NumPy dtype, importing ml_dtypes then if the name
is not NumPy's own.

>>> table = DtypeTable({"F32": "float32", "BF16": "bfloat16"})
>>> table["F32"], sorted(table), table.names["BF16"]
(dtype('float32'), ['BF16', 'F32'], 'bfloat16')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

import numpy as np


def dtype_named(name: str) -> np.dtype:
    """The dtype called ``name`` by NumPy (``float32``, ``bool``) or by ml_dtypes (``bfloat16``)."""
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # about a second with 0.7: only here, when a name needs it

        return np.dtype(getattr(ml_dtypes, name))


class DtypeTable(Mapping):
    """A read-only mapping of keys to dtypes, given as dtype names, each resolved on first use."""

    def __init__(self, names: Mapping[object, str]):
        self.names = MappingProxyType(dict(names))
        self._resolved: dict[object, np.dtype] = {}

    def __getitem__(self, key: object) -> np.dtype:
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolved[key] = dtype_named(self.names[key])
        return resolved

    def __iter__(self) -> Iterator[object]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, key: object) -> bool:
        return key in self.names

    def __repr__(self) -> str:
        return f"DtypeTable({dict(self.names)!r})"
