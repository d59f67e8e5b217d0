"""The Python API: plan, apply and verify, over any model an adapter can open.

Arguments are checked here, at the boundary: a wrong type raises ``TypeError`` naming
the argument, a bad value ``ValueError``; everything about the files themselves is a
:class:`~vsconf.errors.VsconfError`.  ``apply`` checks every path before any work
starts, and writes the output, its data file and the lock in one transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import arguments, formats, outputs, record, streams
from vsconf.arguments import SpecLike
from vsconf.draw import generate, generate_chunks
from vsconf.engine import Plan, PlanEntry, auto_fans, consumer_labels, make_plan
from vsconf.errors import ModelError, Problem
from vsconf.files import Transaction, copy_file, little_endian_bytes, parent_folder, same_bytes
from vsconf.formats import safetensors, sharded
from vsconf.formats.manifest import ShapesManifest, require_filled
from vsconf.formats.npz import write_state_npz
from vsconf.formats.protocol import Adapter, Layout, Progress, Writing
from vsconf.formats.statedict import DictStateDict
from vsconf.initializers import array_limit, check_array_size, float_dtype
from vsconf.lock import build_lock, compare_lock, hashed, read_lock, write_lock
from vsconf.schedule import Scheduler
from vsconf.spec import Spec
from vsconf.spec.sidefiles import read_base_shapes



# --------------------------------------------------------------------------- opening models


def base_shapes(spec: Spec) -> dict[str, tuple[int | None, ...]] | None:
    """μP's base shapes for ``spec`` (its ``base_shapes:`` file or ``base_model:``, relative to
    the spec's folder), or None when it names neither.  A dimension None in a ``.bsh`` file
    (mup writes None for a dimension that does not scale) is the tensor's own."""
    written = spec.base_shapes or spec.base_model
    if written is None:
        return None
    folder = arguments.spec_file(spec)
    path = Path(written) if Path(written).is_absolute() or folder is None else folder.parent / written
    if spec.base_model is not None:
        with formats.open_model(path) as adapter:
            return {tensor.name: tuple(tensor.shape) for tensor in adapter.tensors()}
    return read_base_shapes(path, spec.source)


def plan_of(adapter: Adapter, spec: Spec) -> Plan:
    return make_plan(
        adapter.tensors(), spec, adapter.hints(), target=adapter.target, untied=adapter.untied, aliases=adapter.aliases,
        base_shapes=base_shapes(spec),
    )


def plan(
    model: Any,
    spec: SpecLike,
    *,
    seed: int | None = None,
    materialize: bool = False,
    untie: bool | str = False,
    vars: Mapping[str, Any] | None = None,
) -> Plan:
    r"""Which rule fills which tensor, with fans and std or limit, and each tensor's role;
    nothing is generated.  ``untie``: True or "all" gives every consumer of a shared ONNX
    tensor its own copy, "conflicts" only those whose consumers disagree (as the spec's
    ``untie: conflicts``); the plan's ``untied`` says which.

    Planning reads the model's structure, never its weights (what ``vsconf plan`` prints).

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` path, or a dict of arrays.
        spec: A :class:`~vsconf.Spec`, or the path of a spec file.
        seed: Use this seed instead of the spec's.
        materialize: ONNX: plan the weights stripped into ``ConstantOfShape`` nodes as
            initializers.
        untie: ONNX: False, True/"all" or "conflicts", as above.
        vars: Numbers the spec's expressions read, over its ``vars:`` (``--vars``/``--var``).

    Returns:
        The :class:`~vsconf.Plan`: one :class:`~vsconf.PlanEntry` per tensor, and warnings.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a bad value.
        SpecError: The spec does not load.
        MatchError: The rules do not fit the model (every problem at once).
        ModelError: The model cannot be read.

    Example:
        >>> import vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 7\nrules:\n  - match: '*'\n    init: he_normal\n")
        >>> entry = vsconf.plan("model.onnx", spec).entry("fc.weight")    # layout: auto
        >>> entry.shape, entry.fan_in, entry.fan_out, entry.fans_from     # a Gemm's B is [in, out]
        ((8, 4), 8, 4, 'Gemm B (transB=0) (fc)')
        >>> vsconf.plan("model.onnx", "init.yaml").entry("fc.weight").fans_from   # layout: torch
        'torch'
    """
    spec = arguments.spec(spec, arguments.seed(seed), vars)
    with formats.open_model(model, materialize=materialize, untie=untie, spec_untie=spec.untie) as adapter:
        return plan_of(adapter, spec)


def inspect(model: Any, *, materialize: bool = False) -> list[dict[str, Any]]:
    """Every tensor of ``model`` with its shape, dtype, consumers, role (and what decided
    it) and the fans ``layout: auto`` would read, as JSON-ready records (what ``vsconf
    inspect`` prints).  ``conflict``: why its consumers disagree (fans, role, or the
    weights ``fans_from: weight`` would read), else None.

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` path, or a dict of arrays.
        materialize: ONNX: list the weights stripped into ``ConstantOfShape`` nodes too.

    Returns:
        One dict per tensor, in the model's order, with the keys ``name``, ``shape``,
        ``dtype``, ``float``, ``consumers``, ``fan_in``, ``fan_out``, ``fans_from``,
        ``conflict``, ``role``, ``role_from`` and ``role_guessed``.

    Raises:
        TypeError: An argument has the wrong type.
        ModelError: The model cannot be read.

    Example:
        >>> import vsconf
        >>> for record in vsconf.inspect("model.onnx"):
        ...     print(record["name"], record["shape"], record["consumers"], record["fan_in"], record["fan_out"])
        fc.weight [8, 4] ['Gemm.B (fc)'] 8 4
        fc.bias [4] ['Gemm.C (fc)'] 4 4
    """
    records = []
    with formats.open_model(model, materialize=materialize) as adapter:
        hints = adapter.hints()
        for tensor in adapter.tensors():
            hint = hints.get(tensor.name)
            fan_in, fan_out, source = auto_fans(tensor, hint, adapter.target)
            records.append(
                {
                    "name": tensor.name,
                    "shape": list(tensor.shape),
                    "dtype": tensor.dtype.name,
                    "float": tensor.is_float,
                    "consumers": list(consumer_labels(tensor)),
                    "fan_in": fan_in,
                    "fan_out": fan_out,
                    "fans_from": source,
                    "conflict": _conflict(hint),
                    "role": tensor.role or None,
                    "role_from": tensor.role_from or None,
                    "role_guessed": tensor.role_guessed,
                }
            )
    return records


def _conflict(hint: Any) -> str | None:
    if hint is None:
        return None
    reasons = [r for r in (hint.conflict, hint.role_conflict) if r]
    if len({w for _, w in hint.weights}) > 1:
        reasons.append("its consumers read it beside different weights: " + "; ".join(f"{c}: {w!r}" for c, w in hint.weights))
    return "; ".join(reasons) or None


# --------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply` did.

    Args:
        output: The file (or folder) written.
        plan: The :class:`~vsconf.Plan` it followed.
        lock: The lock's contents when one was written, else None.
        notes: Files of the replaced output that were kept, and why.
        details: What a folder output holds beyond the plan, in words: how its shards
            were laid out, which other files of the input folder were copied beside them.

    Raises:
        Nothing: made by :func:`apply`.

    Example:
        >>> import vsconf
        >>> result = vsconf.apply("model.npz", "init.yaml", output="out.npz")
        >>> result.output, result.plan.seed, result.lock, result.notes
        (PosixPath('out.npz'), 7, None, ())
    """

    output: Path
    plan: Plan
    lock: dict[str, Any] | None = None
    # Files the old output named that vsconf did not remove, and why.
    notes: tuple[str, ...] = field(default=())
    details: tuple[str, ...] = field(default=())


def apply(
    model: str | os.PathLike,
    spec: SpecLike,
    output: str | os.PathLike | None = None,
    *,
    in_place: bool = False,
    force: bool = False,
    seed: int | None = None,
    jobs: int | None = None,
    lock: str | os.PathLike | None = None,
    materialize: bool = False,
    untie: bool = False,
    progress: Progress | None = None,
    scheduler: str = "auto",
    dask_workers: int | None = None,
    shard_size: int | str | None = None,
    task_size: int | str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> ApplyResult:
    """Initialize the model ``model`` into ``output`` (default ``<stem>.init<suffix>``).

    The input is never modified unless ``in_place``, and nothing else is replaced or
    removed that the output does not own: a file output replaces only its own path (and
    the data files the old one named), a folder output only the checkpoint of the same
    name in that folder.  Every path is checked before any work starts; the output, its
    data files or shards and the lock are written to temporary files beside their targets
    and renamed into place together once all are complete, never over a file that
    appeared meanwhile unless ``force`` (missing parent folders are made then too).

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` file, a sharded safetensors
            checkpoint (its folder or ``*.safetensors.index.json``), or a shapes manifest
            (``*.shapes.json``/``.yaml``), whose checkpoint is created.
        spec: A :class:`~vsconf.Spec`, or the path of a spec file.
        output: Where to write; default ``<stem>.init<suffix>`` beside ``model`` (a folder
            ``<stem>.init`` for a manifest or a sharded checkpoint).  A folder -- an
            existing one, a path ending in ``/``, a name without a suffix, or
            ``*.safetensors.index.json`` -- receives a sharded safetensors checkpoint,
            beside whatever else it holds; made from a checkpoint folder, it keeps the
            input's shards and gets copies of the input folder's other files (configs,
            tokenizer files).
        in_place: Replace ``model`` itself (atomically); excludes ``output``.
        force: Replace an existing output (and lock).
        seed: Use this seed instead of the spec's.
        jobs: Threads generating values (the values never depend on it); default every core.
        lock: Also write a lock file: per tensor its config, fans, std/limit and SHA-256.
        materialize: ONNX: turn weights stripped into ``ConstantOfShape`` nodes into initializers.
        untie: ONNX: give each consumer of a shared weight its own copy.
        progress: Called as ``progress(done, total, name)`` after each tensor (each task,
            for a sharded checkpoint).
        scheduler: Where the tasks that write the output run -- ``"auto"`` (processes when
            the new values reach 1 GiB, ``jobs`` is 2 or more and the program is the
            command line, ``python -m`` or an interactive session; threads otherwise: a
            script gets processes by asking for them, under ``if __name__ == '__main__':``),
            ``"threads"`` (``jobs`` of them), ``"processes"`` (a local pool of ``jobs``) or a
            Dask scheduler's address (``"tcp://host:8786"``): for ONNX models (inline or
            external data), ``.safetensors`` files and sharded checkpoints; an ``.npz`` is
            written by one writer.  The output bytes never depend on it.
        dask_workers: Start a local Dask cluster of this many workers to run the tasks.
        shard_size: Sharded checkpoints: cut the tensors into shards of at most this many
            bytes, given as a number or as ``"5GB"`` (Hugging Face's ``max_shard_size``,
            the default for inputs without shards), ``"500MB"``, ``"2GiB"``.  Without it,
            a sharded input keeps its shards.
        task_size: The bytes one task writes at most (default 64 MiB).
        vars: Numbers the spec's expressions read, over its ``vars:`` (``--vars``/``--var``);
            the lock records the vars used.

    Returns:
        An :class:`ApplyResult`.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a bad value, or both ``output`` and ``in_place``.
        SpecError: The spec does not load.
        MatchError: The rules do not fit the model.
        ModelError: The model cannot be read, or an output cannot be written: it exists
            and ``force`` is not set, it is the input or the spec, it would replace a file
            the output does not own...

    Example:
        >>> import numpy as np, vsconf
        >>> result = vsconf.apply("model.npz", "init.yaml", lock="model.lock.json")
        >>> result.output
        PosixPath('model.init.npz')
        >>> weights = np.load("model.init.npz")
        >>> weights["fc.weight"].shape, float(weights["fc.bias"].max()), int(weights["steps"])
        ((4, 8), 0.0, 0)
        >>> vsconf.verify("model.init.npz", "init.yaml", lock="model.lock.json")
        []
    """
    path = formats.model_path(model)
    output_path = arguments.path(output, "output", optional=True)
    lock_path = arguments.path(lock, "lock", optional=True)
    in_place, force = arguments.flag(in_place, "in_place"), arguments.flag(force, "force")
    jobs = arguments.jobs(jobs)
    progress = arguments.progress(progress)
    spec = arguments.spec(spec, arguments.seed(seed), vars)
    where, shard_bytes, task_bytes = arguments.checkpoint_options(scheduler, dask_workers, shard_size, task_size, jobs)
    target = formats.output_target(path, output, in_place=in_place)
    if target.kind != "folder" and shard_size is not None:
        raise ModelError(
            f"{output_path or path}: shard_size applies to sharded checkpoint outputs",
            cli_message=f"{output_path or path}: --shard-size applies to sharded checkpoint outputs (-o FOLDER/)",
        )
    streamed = target.kind == "npz" or (target.kind == "model" and path.suffix == ".npz")
    if streamed and (scheduler not in ("auto", "threads") or (dask_workers, task_size) != (None, None)):
        where = output_path or path  # the output is what these options cannot shape
        raise ModelError(
            f"{where}: an .npz output is written by one writer, in order (each member's header holds its CRC-32): "
            "scheduler, dask_workers and task_size do not apply",
            cli_message=f"{where}: an .npz output is written by one writer, in order (each member's header holds its CRC-32): "
            "--scheduler, --dask-workers and --task-size do not apply",
        )
    if target.kind != "model" and (materialize or untie):
        raise ModelError(
            f"{path}: materialize and untie apply to ONNX models only",
            cli_message=f"{path}: --materialize and --untie apply to ONNX models only",
        )
    run = _Run(spec, jobs, lock_path, progress, force=force, in_place=in_place)
    if target.kind == "folder":
        run.check_folder(target, path)
    else:
        reads = run.reads(path)
        target = dataclasses.replace(
            target, path=outputs.resolve_file(path, target.path or output_path, in_place=in_place, force=force, reads=reads)
        )
        if target.kind == "unknown":
            formats.refuse_format(path, target.path)
    with formats.open_model(path, materialize=materialize, untie=untie, spec_untie=spec.untie) as adapter:
        if target.kind == "folder":
            return run.folder(adapter, path, target, where, shard_bytes, task_bytes)
        return run.file(adapter, path, target, where, task_bytes)


def new_bytes(plan: Plan) -> int:
    """The bytes of new values ``plan`` draws: what decides whether processes repay their start."""
    return sum(math.prod(entry.shape) * np.dtype(float_dtype(entry.dtype)).itemsize for entry in plan if entry.changes)


class _Run:
    """One ``apply``: the guards, the plan, the transaction, for each kind of output."""

    def __init__(self, spec: Spec, jobs: int, lock: Path | None, progress: Progress | None, *, force: bool, in_place: bool):
        self.spec, self.jobs, self.lock, self.progress = spec, jobs, lock, progress
        self.force, self.in_place = force, in_place
        self.digests: dict[str, str] = {}

    def reads(self, model: Path | None, adapter: Adapter | None = None) -> outputs.Reads:
        """What the run reads and never writes: the spec, ``model`` and the files of ``adapter``."""
        reads = outputs.Reads()
        reads.add(arguments.spec_file(self.spec), "the spec")
        reads.add(model, "the input model")
        for file in adapter.files() if adapter is not None else ():
            reads.add(file, f"{file.name}, which the input model reads")
        return reads

    def values(self, entry: PlanEntry) -> Iterator[np.ndarray] | None:
        chunks = generate_chunks(entry, jobs=self.jobs)
        if chunks is None or self.lock is None:
            return chunks
        return hashed(chunks, entry.name, self.digests)

    def plan(self, adapter: Adapter, model: Path) -> Plan:
        the_plan = plan_of(adapter, self.spec)
        if isinstance(adapter, ShapesManifest):
            require_filled(the_plan, model)
        return the_plan

    def metadata(self, adapter: Adapter) -> dict[str, str]:
        return {**adapter.metadata, **record.metadata(self.spec)}

    def stage_lock(self, transaction: Transaction, the_plan: Plan, output: Path) -> dict[str, Any] | None:
        if self.lock is None:
            return None
        lock_data = build_lock(the_plan, self.digests, model=output.name)
        transaction.make_parents(parent_folder(self.lock))
        write_lock(transaction.stage(self.lock), lock_data, self.lock)
        return lock_data

    def file(self, adapter: Adapter, model: Path, target: formats.Target, where: Scheduler, task_bytes: int | None) -> ApplyResult:
        """A file output: the model's own format, a manifest's ``.npz``, or one ``.safetensors``."""
        path = target.path
        inputs = [(model, "the input model")] + [(file, f"{file.name}, which the input model reads") for file in adapter.files()]
        if not self.in_place:
            for file in adapter.files():
                if outputs.same_file(path, file):
                    raise ModelError(f"{path}: the output would replace {file.name}, which the input model reads")
        # In place, the model's old data files are the output's own: they may go.
        reads = self.reads(None) if self.in_place else self.reads(model, adapter)
        if self.lock is not None:
            outputs.check_lock(self.lock, reads, path, force=self.force, taken=inputs)
        the_plan = self.plan(adapter, model)
        where = where.resolved(new_bytes(the_plan))
        metadata = self.metadata(adapter) if target.kind == "safetensors" else record.metadata(self.spec)

        def stale() -> tuple[list[Path], list[str]]:
            """The old output's data files, read again while the folder is locked."""
            old, kept = adapter.stale_data_files(path)
            removals = []
            for file in old:
                what = reads.what(file)
                if what is None and self.lock is not None and outputs.same_file(file, self.lock):
                    what = "the lock"
                if what is None:
                    removals.append(file)
                else:
                    kept.append(f"kept {file.name}: it is {what}")
            return removals, kept

        with Transaction(force=self.force, replaceable=[model] if self.in_place else []) as transaction:
            transaction.make_parents(parent_folder(path))
            if target.kind == "safetensors":
                layout = Layout(((path.name, tuple(entry.name for entry in the_plan)),), None)
                safetensors.write_checkpoint(
                    adapter, the_plan, layout, lambda name: transaction.stage(path), metadata=metadata,
                    scheduler=where, task_bytes=task_bytes, progress=self.progress,
                    digests=self.digests if self.lock is not None else None, where=path,
                )
            elif target.kind == "npz":
                write_state_npz(adapter, path, the_plan, self.values, transaction, self.progress)
            else:
                writing = Writing(self.values, where, task_bytes, self.digests if self.lock is not None else None)
                adapter.write(path, the_plan, writing, metadata, self.progress, transaction)
            lock_data = self.stage_lock(transaction, the_plan, path)
            transaction.commit(stale)
        return ApplyResult(path, the_plan, lock_data, tuple(transaction.notes))

    def check_folder(self, target: formats.Target, model: Path) -> None:
        """What a folder output can be refused for before the model is opened."""
        folder = target.path
        outputs.writable_folder(parent_folder(folder), folder, "output")
        if os.path.lexists(folder) and (os.path.islink(folder) or not os.path.isdir(folder)):
            raise ModelError(f"{folder}: cannot write the output folder: it exists and is not a folder")
        if self.in_place or not os.path.isdir(folder):
            return
        owned = sharded.owned(folder, target.prefix)
        source = sharded.index_file(model) or sharded.single_file(model) or model
        if outputs.same_file(parent_folder(source), folder) and source.name in owned.files:
            raise ModelError(
                f"{folder}: the output is the input model; pass in_place=True to replace it",
                cli_message=f"{folder}: the output is the input model; use --in-place to replace it",
            )
        outputs.guard_folder(folder, owned, (), outputs.Reads(), replace=self.force)

    def folder(
        self, adapter: Adapter, model: Path, target: formats.Target, where: Scheduler, shard_bytes: int | None, task_bytes: int | None
    ) -> ApplyResult:
        """A sharded checkpoint written into a folder, beside whatever else the folder holds."""
        folder, prefix = target.path, target.prefix
        source_folder = adapter.folder
        # In place, the input checkpoint's files are the output's own.
        reads = self.reads(None) if self.in_place else self.reads(model, adapter)
        the_plan = self.plan(adapter, model)
        where = where.resolved(new_bytes(the_plan))
        sizes = safetensors.describe(adapter, the_plan, folder)
        layout = sharded.output_layout(adapter, sizes, prefix=prefix, shard_bytes=shard_bytes, index=target.index_named)
        notes: list[str] = []
        copies = []
        if not self.in_place:
            for file in sharded.companion_files(adapter):
                there = folder / file.name
                if not os.path.lexists(there):
                    copies.append(file)
                elif not same_bytes(file, there):
                    notes.append(f"kept {there}: it differs from {file}, and vsconf replaces only the checkpoint's own files")
        names = [file.name for file in copies] + [name for name, _ in layout.files] + ([layout.index] if layout.index else [])

        def guard(new: Any) -> tuple[list[Path], list[str]]:
            return outputs.guard_folder(folder, sharded.owned(folder, prefix), new, reads, replace=self.force or self.in_place)

        guard(names)  # before any work; again when committing
        if self.lock is not None:
            old = sharded.owned(folder, prefix)
            taken = [(folder / name, f"{name}, a file of the output") for name in sorted(set(names) | old.files)]
            outputs.check_lock(self.lock, reads, folder, force=self.force, taken=taken)
        metadata = self.metadata(adapter)
        with Transaction(force=self.force) as transaction:
            transaction.make_parents(parent_folder(folder))
            step = outputs.FolderStep(folder, guard)
            transaction.add(step)
            for file in copies:
                copy_file(file, step.stage(file.name))
            safetensors.write_checkpoint(
                adapter, the_plan, layout, step.stage, metadata=metadata, scheduler=where, task_bytes=task_bytes,
                progress=self.progress, digests=self.digests if self.lock is not None else None, where=folder,
            )
            lock_data = self.stage_lock(transaction, the_plan, folder)
            transaction.commit()
        notes.extend(step.notes)
        notes.extend(transaction.notes)
        details = [sharded.layout_words(layout, shard_bytes, adapter.layout() is not None)]
        if copies:
            shown = ", ".join(file.name for file in copies[:4]) + (f" and {len(copies) - 4} more" if len(copies) > 4 else "")
            details.append(f"copied {len(copies)} other file{'s' if len(copies) != 1 else ''} of {source_folder}: {shown}")
        return ApplyResult(folder, the_plan, lock_data, tuple(notes), tuple(details))


def apply_state_dict(
    mapping: Mapping[str, np.ndarray],
    spec: SpecLike,
    *,
    seed: int | None = None,
    jobs: int | None = None,
    vars: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    r"""A new dict with the spec applied; the input dict and its arrays are untouched.

    The values are exactly those :func:`apply` writes for the same names, shapes and dtypes.

    Args:
        mapping: Tensor names to NumPy arrays (a PyTorch ``state_dict`` converted with
            ``{k: v.numpy() for k, v in ...}``).
        spec: A :class:`~vsconf.Spec`, or the path of a spec file.
        seed: Use this seed instead of the spec's.
        jobs: Threads generating values (the values never depend on it).
        vars: Numbers the spec's expressions read, over its ``vars:``.

    Returns:
        A new dict with every name of ``mapping``: new arrays where the plan fills or sets
        a tensor, copies of the input's elsewhere.

    Raises:
        TypeError: ``mapping`` is not a mapping of names to arrays, or another argument
            has the wrong type.
        ValueError: An argument has a bad value, or a new array would pass
            :func:`vsconf.initializers.array_limit` (this machine's memory; a broadcast
            view can claim more than that): the message names the tensor and the limit.
        SpecError: The spec does not load.
        MatchError: The rules do not fit the tensors.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nlayout: torch\nrules:\n  - match: '*'\n    init: torch_default\n")
        >>> state = {"fc.weight": np.zeros((16, 64), np.float32)}
        >>> arrays = vsconf.apply_state_dict(state, spec)
        >>> w = arrays["fc.weight"]
        >>> w.shape, w.dtype.name, bool(np.abs(w).max() <= 1 / 64 ** 0.5), float(state["fc.weight"].max())
        ((16, 64), 'float32', True, 0.0)
    """
    if not isinstance(mapping, Mapping):
        raise TypeError(f"Argument `mapping` must be a mapping of names to arrays. Received: {arguments.type_name(mapping)}")
    spec = arguments.spec(spec, arguments.seed(seed), vars)
    jobs = arguments.jobs(jobs)
    adapter = DictStateDict(mapping)
    the_plan = plan_of(adapter, spec)
    for entry in the_plan:  # every array of the new dict is made whole: none may pass the limit
        dtype = np.dtype(float_dtype(entry.dtype)) if entry.changes else adapter.read(entry.name).dtype
        check_array_size("mapping", entry.shape, dtype, f"{{{entry.name!r}: {dtype.name} array of shape {entry.shape}}}")
    return adapter.arrays(the_plan, lambda entry: generate(entry, jobs=jobs))


# --------------------------------------------------------------------------- verify


def verify(
    model: Any,
    spec: SpecLike,
    *,
    lock: str | os.PathLike | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    untie: bool = False,
    vars: Mapping[str, Any] | None = None,
) -> list[Problem]:
    r"""Regenerate what ``spec`` makes and compare it with the weights in ``model``.

    Values are compared chunk by chunk, so only one chunk of expected values is in
    memory at a time.  The seed is, in order: ``seed``, the lock's, the one the model
    recorded in its metadata (ONNX, ``.safetensors``), the spec's.

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` path, or a dict of arrays.
        spec: A :class:`~vsconf.Spec`, or the path of a spec file.
        lock: A lock file written by ``apply(..., lock=...)``: its seed is used, and every
            recorded field and SHA-256 is compared too.
        seed: The seed the model was made with, when it is not the spec's.
        jobs: Threads regenerating values (the result does not depend on it).
        untie: The model was made with ``untie=True`` (ONNX).
        vars: The vars the model was made with; default the lock's (a spec file only).

    Returns:
        One :class:`~vsconf.Problem` per difference, each naming the tensor and the file
        (the model, or the lock for a lock's field); an empty list when everything matches.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a bad value (``seed``, ``jobs``).
        SpecError: The spec does not load.
        MatchError: The spec's rules do not fit the model.
        ModelError: The model or the lock cannot be read.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 7\nrules:\n  - match: '*'\n    init: he_normal\n")
        >>> weights = vsconf.apply_state_dict({"fc.weight": np.zeros((4, 3), np.float32)}, spec)
        >>> vsconf.verify(weights, spec)
        []
        >>> weights["fc.weight"][0, 0] += 1
        >>> (problem,) = vsconf.verify(weights, spec)
        >>> problem.tensor, problem.message.startswith("1 of 12 elements differ from what the spec produces")
        ('fc.weight', True)
    """
    seed = arguments.seed(seed)
    jobs = arguments.jobs(jobs)
    lock_path = arguments.path(lock, "lock", optional=True)
    lock_data = read_lock(lock_path) if lock_path is not None else None
    if seed is None and lock_data is not None:
        seed = lock_data.get("seed")
    if vars is None and lock_data is not None and isinstance(lock_data.get("vars"), dict) and not isinstance(spec, Spec):
        vars = lock_data["vars"]  # the lock's vars reproduce the run without its flags
    spec = arguments.spec(spec, seed, vars)
    problems: list[Problem] = []
    digests: dict[str, str] = {}
    with formats.open_model(model, untie=untie, spec_untie=spec.untie) as adapter:
        if seed is None and adapter.recorded_seed_problem is not None:
            raise ModelError(adapter.recorded_seed_problem)
        if seed is None and adapter.recorded_seed is not None:
            spec = spec.with_seed(adapter.recorded_seed)
        source = "" if adapter.path is None else str(adapter.path)
        stream, stream_problem = record.verified_stream(spec, lock_data, adapter.recorded_stream, lock_path, source)
        if stream_problem is not None:
            problems.append(stream_problem)
        unrecorded = spec.stream is None and lock_data is None and adapter.recorded_stream is None
        the_plan = plan_of(adapter, spec)
        if stream is not None:
            the_plan = the_plan.drawn_by(stream)
        limit = array_limit()
        for entry in the_plan:
            if not entry.changes:
                continue
            nbytes = math.prod(entry.shape) * np.dtype(float_dtype(entry.dtype)).itemsize
            if nbytes > limit:  # the stored tensor is read whole: check before reading
                raise ModelError(
                    f"{source}: tensor {entry.name!r}: verifying it reads {nbytes} bytes at once, more than {limit} bytes, "
                    "the most vsconf allocates (this machine's memory, or the process's address-space limit)"
                )
            actual = adapter.read(entry.name)
            digests[entry.name], difference = _compare(entry, actual, jobs)
            if difference:
                if lock_data is None and entry.expressions and spec.vars:
                    difference += (
                        "; its rule reads the vars " + ", ".join(f"{k}={v}" for k, v in spec.vars) + ": if the model was made "
                        "with others (--var, --vars), give the same ones, or verify with the run's --lock"
                    )
                elif unrecorded and entry.action == "fill" and streams.uses_float32_normals(
                    streams.LATEST_STREAM, np.dtype(float_dtype(entry.dtype)), entry.distribution
                ):
                    difference += (
                        "; nothing records the stream version, and this tensor's values differ between streams: "
                        f"if it was made with stream {streams.LATEST_STREAM}, add `stream: {streams.LATEST_STREAM}` to the spec"
                    )
                problems.append(Problem(source, 0, 0, "", difference, tensor=entry.name))
    if lock_data is not None:
        problems.extend(compare_lock(lock_data, the_plan, digests, source=str(lock_path)))
    return problems


def _compare(entry: PlanEntry, actual: np.ndarray, jobs: int) -> tuple[str, str | None]:
    """(SHA-256 of ``actual``, how it differs from what the spec makes or None), comparing
    chunk by chunk so that only one chunk of expected values is ever in memory."""
    digest = hashlib.sha256()
    expected_dtype = np.dtype(float_dtype(entry.dtype))
    if actual.dtype != expected_dtype or actual.shape != tuple(entry.shape):
        digest.update(little_endian_bytes(actual))
        made = f"{expected_dtype.name}{list(entry.shape)}"
        return digest.hexdigest(), f"it is {actual.dtype.name}{list(actual.shape)}, the spec makes {made}"
    flat = actual.reshape(-1)
    differ, worst, position = 0, 0.0, 0
    for chunk in generate_chunks(entry, jobs=jobs):
        part = flat[position : position + chunk.size]
        position += chunk.size
        stored = little_endian_bytes(part)
        digest.update(stored)
        if stored == little_endian_bytes(chunk):
            continue
        wide_a, wide_e = part.astype(np.float64), chunk.astype(np.float64)
        unequal = wide_a != wide_e
        differ += int(np.count_nonzero(unequal))
        with np.errstate(invalid="ignore"):
            worst = max(worst, float(np.nanmax(np.abs(wide_a - wide_e)[unequal])))
    if not differ:
        return digest.hexdigest(), None
    return digest.hexdigest(), f"{differ} of {flat.size} elements differ from what the spec produces (max |difference| {worst:.6g})"
