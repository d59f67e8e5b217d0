"""The ONNX adapter: an ONNX file's float tensors, their consumers, and a writer.

:class:`OnnxModel` ties the rooms together -- :mod:`~vsconf.formats.onnx.reader` opens the file as a
skeleton, :mod:`~vsconf.formats.onnx.checks` and :mod:`~vsconf.formats.onnx.graph` refuse what cannot be
used, :mod:`~vsconf.formats.onnx.rewrite` applies ``--materialize`` and ``--untie``,
:mod:`~vsconf.formats.onnx.graph` reads fans and roles from consumers, :mod:`~vsconf.formats.onnx.writer` writes.
``untie="conflicts"`` unties only the shared tensors whose consumers disagree (on fans, on
the weights ``fans_from: weight`` would read, or on role); ``untied`` says which.
All I/O and graph reading; the values come from the engine.  The contracts:

* **Every declared size is checked before any work**: each stored tensor -- the ones
  vsconf fills and the ones it merely copies, and every external tensor -- has its
  ``data_type``, ``dims`` and stored bytes checked against each other, and its external
  data against the data file, before anything is allocated.  Every refusal is a
  :class:`~vsconf.errors.ModelError` that starts with the model's path and names the
  tensor or node.
* **Opening costs the graph, not the weights**: ``tensors()``, ``hints()`` and the
  checks read no payload; ``read(name)`` reads one tensor (a copy).  ``close()`` releases
  the file.
* **Writing never touches a file vsconf did not create**; :meth:`OnnxModel.stale_data_files`
  says which files of a replaced output may be removed afterwards -- only data files
  vsconf itself named for that output.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from vsconf.formats.onnx import proto
from vsconf.formats.onnx.proto import TensorProto

from vsconf.formats.protocol import AdapterBase, Progress, Writing
from vsconf.engine import FanHint, Plan
from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error, is_data_name
from vsconf.matching import TensorInfo
from vsconf.formats.onnx import rewrite, writer
from vsconf.record import recorded_stream, seed_from_text
from vsconf.formats.onnx.checks import INT_TYPES, data_problem, element_count, layout_problem, plain, shown
from vsconf.formats.onnx.graph import (
    MAX_RANK,
    Stored,
    TooTangled,
    all_tensors,
    analyse,
    build_index,
    conflicts,
    external_locations,
    order_problem,
    stored_tensors,
)
from vsconf.formats.onnx.reader import ModelFile, resolved


class OnnxModel(AdapterBase):
    """An ONNX model file: its float tensors, their consumers, and a writer."""

    target = "onnx"

    def __init__(self, path: Path, *, materialize: bool = False, untie: bool | str = False):
        self.path = Path(path)
        self.base = self.path.parent
        self._file = ModelFile(self.path)
        try:
            self._open(materialize, untie)
        except BaseException:
            self._file.close()
            raise

    def _open(self, materialize: bool, untie: bool | str) -> None:
        model = self._file.model
        self.recorded_seed, self.recorded_seed_problem = _recorded_seed(self.path, model)
        self.recorded_stream = recorded_stream({prop.key: prop.value for prop in model.metadata_props})
        problem = order_problem(model)
        if problem:
            raise ModelError(f"{self.path}: {problem}")
        self._model = model
        self._stored = self._collect(model)
        for item in self._stored.values():  # every declared size, before any work
            self._check(item.name, item.proto)
        weights = {id(item.proto) for item in self._stored.values()}  # the items keep these protos alive
        for tensor in all_tensors(model.graph):
            if tensor.data_location == TensorProto.EXTERNAL and id(tensor) not in weights:
                self._check(tensor.name or "(unnamed)", tensor)
        self._input_locations = external_locations(model)
        # Materialized tensors hold no bytes until they are written: name -> fill value.
        self._fills: dict[str, np.ndarray] = {}
        if materialize:
            self._model, self._fills = rewrite.materialize(self._model, self._file, self._constant_ints)
            self._stored = self._collect(self._model)
        # Which shared tensors became which copies, for the plan and the summary.
        self.untied: dict[str, list[str]] = {}
        if untie is True or untie == "all":
            self._model, self._fills, self.untied = rewrite.untie(self._model, self._fills, where=self.path)
            self._stored = self._collect(self._model)
        self._infos, self._hints = self._analyse()
        if untie == "conflicts":
            disagreeing = conflicts(self._infos, self._hints)
            if disagreeing:
                self._model, self._fills, self.untied = rewrite.untie(self._model, self._fills, only=disagreeing, where=self.path)
                self._stored = self._collect(self._model)
                self._infos, self._hints = self._analyse()

    def _analyse(self) -> tuple[list[TensorInfo], dict[str, FanHint]]:
        try:
            return analyse(self._stored, build_index(self._model), self._constant_ints)
        except TooTangled as exc:
            raise ModelError(
                f"{self.path}: following the ops vsconf looks through (Identity, Cast, Transpose, Concat...) from its "
                f"{len(self._stored)} stored tensors to their consumers takes more than {exc.steps} steps, the limit"
            ) from None

    def close(self) -> None:
        self._file.close()

    def files(self) -> list[Path]:
        """The data files the input model reads (as the model names them, beside it)."""
        return [self.base / location for location in self._input_locations]

    def _collect(self, model: proto.ModelProto) -> dict[str, Stored]:
        stored, problem = stored_tensors(model)
        if problem:
            raise ModelError(f"{self.path}: {problem}")
        return stored

    def _check(self, name: str, tensor: TensorProto) -> None:
        """Refuse a tensor whose type, dims and stored bytes do not agree (external data too)."""
        problem = layout_problem(tensor) or data_problem(tensor, self._file.raw_size(tensor))
        if problem:
            raise ModelError(f"{self.path}: tensor {shown(name)}: {problem}")
        if tensor.data_location == TensorProto.EXTERNAL:
            self._file.external(tensor, name)

    # ------------------------------------------------------------------ what the engine sees

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def hints(self) -> dict[str, FanHint]:
        return dict(self._hints)

    def read(self, name: str) -> np.ndarray:
        """One stored tensor's values (a materialized one is made now)."""
        proto = self._stored[name].proto
        if name in self._fills:
            return np.full(tuple(proto.dims), self._fills[name])
        return self._file.array(proto, name)

    def _constant_ints(self, name: str) -> list[int] | None:
        """A small stored integer tensor's values (shapes, axes), or None: anything larger
        than a rank is never read."""
        item = self._stored.get(name)
        if item is None or item.proto.data_type not in INT_TYPES or element_count(item.proto) > MAX_RANK:
            return None
        try:
            return [int(v) for v in self.read(name).ravel()]
        except (ModelError, ValueError, TypeError):
            return None

    # ------------------------------------------------------------------ writing

    def write(
        self, output: Path, plan: Plan, writing: Writing, metadata: Mapping[str, str], progress: Progress | None, transaction: Transaction
    ) -> None:
        """Stage the model with new values as ``output`` in ``transaction`` (not committed),
        written by tasks (see :mod:`vsconf.formats.onnx.writer`)."""
        writer.write(
            self._file, self._model, self._fills, self.files(), output, plan, metadata, progress, transaction,
            scheduler=writing.scheduler, task_bytes=writing.task_bytes, digests=writing.digests,
        )

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        """The data files that may be removed once a new model has replaced ``output``, and
        a note for every other file the old ``output`` names (kept, and why).

        A file may go only if the model now at ``output`` names it as external data, it
        has the name vsconf gives data files for that output (``<output>.data`` or
        ``<output>.<8 hex>.data``, beside it), it is a regular file and not a symbolic
        link, and the input model does not name it (unless ``output`` is the input).
        """
        output = Path(output)
        if not os.path.lexists(output):
            return [], []
        in_place = resolved(output) == resolved(self.path)
        if in_place:
            locations = self._input_locations
        else:
            try:
                old = ModelFile(output)
            except ModelError:
                return [], [f"kept every file {output} names: it is not a readable ONNX model"]
            try:
                locations = external_locations(old.model)
            finally:
                old.close()
        input_files = set() if in_place else {resolved(path) for path in self.files()}
        stale: list[Path] = []
        notes: list[str] = []
        for location in locations:
            reason = self._keep_reason(output, location, input_files)
            if reason is None:
                stale.append(output.parent / location)
            elif reason:
                notes.append(f"kept {plain(location)}: {reason}")
        return stale, notes

    def _keep_reason(self, output: Path, location: str, input_files: set[Path | None]) -> str | None:
        """Why the old output's data file ``location`` stays; None if it may go, '' if it is not there."""
        if not is_data_name(location, output.name):
            return f"not a data file vsconf made for {output.name}"
        path = output.parent / location
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return ""
        except OSError as exc:
            return f"cannot look at it: {describe_os_error(exc)}"
        if stat.S_ISLNK(mode):
            return "it is a symbolic link"
        if not stat.S_ISREG(mode):
            return "not a regular file"
        if resolved(path) in input_files:
            return f"the input model {self.path.name} names it too"
        if resolved(path) == resolved(self.path):
            return "it is the input model"
        return None


def _recorded_seed(path: Path, model: proto.ModelProto) -> tuple[int | None, str | None]:
    """The ``vsconf.seed`` metadata as a seed, or why it is not one (an error only when used)."""
    for prop in model.metadata_props:
        if prop.key == "vsconf.seed":
            seed = seed_from_text(prop.value)
            if seed is None:
                return None, (
                    f"{path}: metadata vsconf.seed is {shown(prop.value)}, not a seed (0 <= seed < 2**63); "
                    "give the seed explicitly"
                )
            return seed, None
    return None, None
