"""The adapter contract: what every model format gives the engine and the API.

An adapter opens one model -- an ONNX file, an ``.npz`` or ``.safetensors`` state dict, a
``dict`` of arrays, and the formats to come -- and does all of its I/O.  The engine sees
only what :meth:`Adapter.tensors` and :meth:`Adapter.hints` report (names, shapes, dtypes,
consumers, fan axes); the API asks the adapter to :meth:`~Adapter.read` a tensor back for
``verify`` and to :meth:`~Adapter.write` the output of ``apply``.  Adapters never do math:
the new values arrive as chunks from the engine.

:class:`Adapter` is the contract as a :class:`typing.Protocol`; :class:`AdapterBase` holds the
defaults most formats share (one file, nothing left behind, no recorded seed), so that
every adapter has the whole contract and the API never probes for a method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # the engine imports nothing from here; these are for the signatures
    from vsconf.engine import FanHint, Plan, PlanEntry
    from vsconf.files import Transaction
    from vsconf.matching import TensorInfo

# The new values of a plan entry's tensor as flat C-order chunks, or None to keep its
# stored values (see :func:`vsconf.draw.generate_chunks`).
Values = Callable[["PlanEntry"], "Iterator[np.ndarray] | None"]
# Called as progress(done, total, name) after each tensor is written.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Writing:
    """How an output's new values are written.

    Formats whose every byte's offset is known before writing (ONNX, ``.safetensors``)
    write by tasks (:mod:`vsconf.tasks`): ``scheduler`` runs them (None: one thread),
    ``task_bytes`` caps what one writes, and ``digests``, when given, receives the SHA-256
    of every new tensor's bytes, read back.  A format streamed by one writer (``.npz``: each
    zip member's header holds its CRC-32, known only once its bytes are) takes
    ``values(entry)`` instead: the new values as chunks, in the order it writes them.
    """

    values: Values
    scheduler: Any = None
    task_bytes: int | None = None
    digests: dict[str, str] | None = None


@dataclass(frozen=True)
class Layout:
    """Where a checkpoint's tensors lie: ``(file name, tensor names)`` per file, in order,
    and its index's name (None: one file, no index)."""

    files: tuple[tuple[str, tuple[str, ...]], ...]
    index: str | None


@runtime_checkable
class Adapter(Protocol):
    """One open model, in any format.  Opening it reads the structure, never the weights.

    Attributes:
        target: ``"onnx"`` or ``"state_dict"``: how ``layout: auto`` reads fans for it
            (from consumers, or the tf rule with a warning).
        path: The model's file; None for an in-memory dict.
        recorded_seed: The seed a previous ``apply`` recorded in the model's metadata,
            if any; ``verify`` uses it when no seed is given.
        recorded_seed_problem: Why the recorded seed is unusable (then ``recorded_seed`` is
            None); an error only when ``verify`` would need it.
        untied: The shared tensors the adapter gave one copy per consumer (ONNX ``untie``):
            name -> the copies' names.
        metadata: String metadata a checkpoint made from the model carries over (a
            safetensors header's ``__metadata__``, a manifest's ``metadata``).
        folder: The folder of a checkpoint read as a folder (its other files go beside a
            new checkpoint made from it), else None.
        aliases: Names that are another tensor (tied parameters, held once): name -> the
            tensor's name.
    """

    target: str
    path: Path | None
    recorded_seed: int | None
    recorded_seed_problem: str | None
    recorded_stream: int | None
    untied: Mapping[str, Sequence[str]]
    metadata: Mapping[str, str]
    folder: Path | None
    aliases: Mapping[str, str]

    def tensors(self) -> list[TensorInfo]:
        """Every tensor: name, shape, dtype and consumers, in the model's order."""
        ...

    def hints(self) -> Mapping[str, FanHint]:
        """What the format knows about fans beyond shapes, by tensor name."""
        ...

    def read(self, name: str) -> np.ndarray:
        """One tensor's stored values (raises :class:`~vsconf.errors.ModelError` if unreadable)."""
        ...

    def write(
        self,
        output: Path,
        plan: Plan,
        writing: Writing,
        metadata: Mapping[str, str],
        progress: Progress | None,
        transaction: Transaction,
    ) -> None:
        """Stage the model with new values as ``output`` in ``transaction``.

        ``writing`` says how the new values are made (:class:`Writing`: by tasks, or as
        chunks from ``writing.values(entry)``, None to copy the stored bytes); ``metadata``
        is recorded where the format has room for it.  Every file is staged with
        ``transaction.stage``; the caller commits.
        """
        ...

    def files(self) -> list[Path]:
        """Every file the model reads (itself, its data files): never an output."""
        ...

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        """Files of an old ``output`` that may be removed once it is replaced, and a note
        for each file it names that stays (and why)."""
        ...

    def layout(self) -> Layout | None:
        """How a checkpoint's tensors lie in its files, which a checkpoint made from it
        keeps (None: the model has no such layout)."""
        ...

    def close(self) -> None:
        """Release the model's files."""
        ...


class AdapterBase:
    """The defaults of the contract: a model in one file (or none), which leaves nothing
    behind when replaced, records no seed, unties nothing, and knows nothing of fans beyond
    shapes."""

    target = "state_dict"
    path: Path | None = None
    recorded_seed: int | None = None
    recorded_seed_problem: str | None = None
    recorded_stream: int | None = None
    untied: Mapping[str, Sequence[str]] = MappingProxyType({})
    metadata: Mapping[str, str] = MappingProxyType({})
    folder: Path | None = None
    aliases: Mapping[str, str] = MappingProxyType({})

    def hints(self) -> Mapping[str, FanHint]:
        return {}

    def layout(self) -> Layout | None:
        return None

    def files(self) -> list[Path]:
        """Every file the model is made of."""
        return [] if self.path is None else [self.path]

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        """One file per model: replacing it leaves nothing else behind."""
        return [], []

    def close(self) -> None:
        pass
