"""What every framework bridge shares: live tensors planned as the file route plans them.

A bridge (:mod:`vsconf.torch`, :mod:`vsconf.jax`, :mod:`vsconf.keras`) knows its tensors by
name, shape and dtype -- never by a file -- and writes values where they live.  Here those
tensors become an adapter like a state dict's (roles and a bias's weight read from names, the
same hints), so that a bridge's plan, for the same names, shapes, dtypes and spec, is the one
``vsconf.apply`` makes for the same tensors saved in a file, and its values the same bits.
A bridge may add what its framework knows better than names (the axes of a module's weight),
used only under ``layout: auto``, where the file route would guess.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import arguments
from vsconf.api import base_shapes
from vsconf.draw import generate_chunks
from vsconf.engine import FanHint, Plan, make_plan
from vsconf.errors import ModelError
from vsconf.fans import Axes
from vsconf.files import Transaction, little_endian_bytes
from vsconf.formats.names import NamedTensors
from vsconf.lock import build_lock, compare_lock, read_lock, write_lock
from vsconf.outputs import same_file, writable_target
from vsconf.matching import TensorInfo
from vsconf.spec import Spec


class LiveTensors(NamedTensors):
    """Tensors that live in a framework: names, shapes and dtypes, and the aliases that name
    one tensor twice (tied parameters, planned once under the first name).

    ``axes``: name -> (axes, what says so), the fan axes a framework knows (read under
    ``layout: auto``).  ``roles``: name -> (role, what says so), the roles it knows (a module's
    class), which are no guess; the other tensors' roles are read from their names.
    """

    path = None

    def __init__(self, infos: Sequence[TensorInfo], aliases: Mapping[str, str] | None = None,
                 axes: Mapping[str, tuple[Axes, str]] | None = None, roles: Mapping[str, tuple[str, str]] | None = None):
        self._infos = list(infos)
        self.aliases = dict(aliases or {})
        self._axes = dict(axes or {})
        self._roles = dict(roles or {})

    def tensors(self) -> list[TensorInfo]:
        guessed = super().tensors()
        if not self._roles:
            return guessed
        out = []
        for info in guessed:
            known = self._roles.get(info.name)
            if known is not None:
                info = TensorInfo(info.name, info.shape, info.dtype, info.consumers, known[0], known[1], False)
            out.append(info)
        return out

    def hints(self) -> Mapping[str, FanHint]:
        hints = super().hints()
        if not self._axes:
            return hints
        return _WithAxes(hints, self._axes)

    def read(self, name: str) -> np.ndarray:  # a bridge reads its framework's tensors itself
        raise NotImplementedError(name)


class _WithAxes(Mapping[str, FanHint]):
    """State-dict hints with the axes a framework knows (read under ``layout: auto``)."""

    def __init__(self, base: Mapping[str, FanHint], axes: Mapping[str, tuple[Axes, str]]):
        self._base, self._axes = base, axes

    def __getitem__(self, name: str) -> FanHint:
        if name not in self._axes:
            return self._base[name]
        hint = self._base.get(name)
        axes, source = self._axes[name]
        return FanHint(axes=axes, source=source, weight=hint.weight if hint is not None else None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def last_two_axes(infos: Sequence[TensorInfo], source: str) -> dict[str, tuple[Axes, str]]:
    """``(..., in, out)`` for every tensor of rank 2 or more: the axes of a framework whose
    weights are kept that way (Keras, Flax), with what says so."""
    return {info.name: (Axes(in_axes=-2, out_axes=-1), source) for info in infos if len(info.shape) >= 2}


FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a framework's dtype name: ml_dtypes' for bfloat16; a dtype NumPy
    lacks (complex32, quantised...) as ``uint8``, which is not float and never filled."""
    if name in FLOATS:
        from vsconf.dtypes import dtype_named

        return dtype_named(name)
    try:
        return np.dtype(name)
    except TypeError:
        return np.dtype("uint8")


def same_bits(have: np.ndarray, expected: np.ndarray) -> bool:
    """Whether a live tensor holds exactly the expected values: shape, dtype and bytes."""
    return have.shape == expected.shape and have.dtype == expected.dtype and (
        np.ascontiguousarray(have).reshape(-1).view(np.uint8).tobytes()
        == np.ascontiguousarray(expected).reshape(-1).view(np.uint8).tobytes()
    )


def load(spec: Any, seed: int | None, given: Mapping[str, Any] | None) -> Spec:
    """The spec a bridge applies: a :class:`Spec` or a spec file's path, with ``seed`` and ``vars``."""
    return arguments.spec(spec, arguments.seed(seed), given)


def plan_live(tensors: LiveTensors, spec: Spec) -> Plan:
    """The plan of live tensors, as the file route makes it for the same tensors."""
    return make_plan(
        tensors.tensors(), spec, tensors.hints(), target="state_dict", aliases=tensors.aliases, base_shapes=base_shapes(spec),
    )


def digest(array: np.ndarray) -> str:
    """The SHA-256 a lock records: the bytes a file would hold."""
    return hashlib.sha256(little_endian_bytes(array)).hexdigest()


def lock_target(lock: str | os.PathLike[str] | None, spec: Spec, *, force: bool) -> Path | None:
    """The lock's path, checked before a bridge changes anything (as ``apply`` checks it):
    a file that may be written, not the spec, and not an existing file unless ``force``."""
    path = arguments.path(lock, "lock", optional=True)
    if path is None:
        return None
    writable_target(path, "lock")
    if spec.source and os.path.lexists(spec.source) and same_file(path, Path(spec.source)):
        raise ModelError(f"{path}: the lock would replace the spec")
    if os.path.lexists(path) and not force:
        raise ModelError(f"{path}: exists; pass force=True to overwrite it")
    return path


def difference(have: np.ndarray, expected: np.ndarray) -> str | None:
    """How a live tensor differs from the values a spec makes, in words; None when its bits
    are the same."""
    if have.shape != expected.shape or have.dtype != expected.dtype:
        return f"it is {have.dtype.name}{list(have.shape)}, the spec makes {expected.dtype.name}{list(expected.shape)}"
    if same_bits(have, expected):
        return None
    wide_have, wide_expected = have.astype(np.float64), expected.astype(np.float64)
    unequal = ~((wide_have == wide_expected) | (np.isnan(wide_have) & np.isnan(wide_expected)))
    unequal |= np.signbit(wide_have) != np.signbit(wide_expected)  # -0.0 is not the 0.0 the spec makes
    with np.errstate(invalid="ignore"):
        worst = float(np.nanmax(np.abs(wide_have - wide_expected)[unequal], initial=0.0))
    return f"{int(np.count_nonzero(unequal))} of {have.size} elements differ from what the spec produces (max |difference| {worst:.6g})"


def whole_digest(entry: Any, jobs: int) -> str:
    """The SHA-256 of everything ``entry`` makes, drawn a chunk at a time (bounded memory):
    what a lock records for a tensor of which this process holds only a shard."""
    sha = hashlib.sha256()
    for chunk in generate_chunks(entry, jobs=jobs):
        sha.update(little_endian_bytes(chunk))
    return sha.hexdigest()


def save_lock(plan: Plan, digests: Mapping[str, str], lock: str | os.PathLike[str], model: str, *, force: bool = False) -> Path:
    """Write the lock of a bridge's run atomically, as ``apply --lock`` writes one: never
    over an existing file unless ``force``."""
    path = arguments.path(lock, "lock")
    data = build_lock(plan, dict(digests), model=model)
    with Transaction(force=force) as transaction:
        transaction.make_parents(path.parent)
        write_lock(transaction.stage(path), data, path)
        transaction.commit()
    return path


def check_lock(lock: str | os.PathLike[str], plan: Plan, digests: Mapping[str, str]) -> list:
    path = arguments.path(lock, "lock")
    return compare_lock(read_lock(path), plan, digests, source=str(path))
