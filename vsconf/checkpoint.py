"""``apply`` for seed checkpoints: shapes manifests and sharded safetensors in, sharded
folders (or one ``.safetensors`` / ``.npz`` file) out, written by tasks on any scheduler.

:func:`vsconf.api.apply` hands over here when the model is a manifest or a sharded
checkpoint, or the output is a folder.  Every path is checked before any work starts, as
for the other outputs; the output folder is built as a temporary sibling and renamed into
place whole, with the lock in the same transaction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vsconf import api, manifest, sharded, tasks
from vsconf.engine import generate_chunks
from vsconf.errors import ModelError
from vsconf.files import Transaction
from vsconf.lock import build_lock, write_lock


def is_checkpoint_model(path: Path) -> bool:
    """A manifest, or a sharded checkpoint's index or folder (or a folder of one model.safetensors)."""
    return manifest.is_manifest(path) or path.name.endswith(sharded.INDEX_SUFFIX) or path.is_dir()


def open_checkpoint(path: Path) -> Any:
    """The adapter of a manifest or a sharded checkpoint."""
    if not os.path.lexists(path):
        raise ModelError(f"{path}: no such file")
    if manifest.is_manifest(path):
        return manifest.ShapesManifest(path)
    return sharded.open_sharded(path)


def options(
    scheduler: Any, dask_workers: Any, shard_size: Any, task_size: Any, jobs: int
) -> tuple[tasks.Scheduler, int, int]:
    """(where tasks run, shard bytes, task bytes) from ``apply``'s arguments, checked."""
    if not isinstance(scheduler, str):
        raise TypeError(f"Argument `scheduler` must be a string. Received: {type(scheduler).__name__}")
    if dask_workers is not None and (isinstance(dask_workers, bool) or not isinstance(dask_workers, int) or dask_workers < 1):
        raise ValueError(f"Argument `dask_workers` must be a positive integer or None. Received: {dask_workers!r}")
    try:
        where = tasks.parse_scheduler(scheduler, jobs, dask_workers)
    except ValueError as exc:
        raise ValueError(f"Argument `scheduler`: {exc}") from None
    sizes = []
    for name, value, default in (("shard_size", shard_size, sharded.DEFAULT_SHARD_BYTES), ("task_size", task_size, tasks.DEFAULT_TASK_BYTES)):
        if value is None:
            sizes.append(default)
        elif isinstance(value, str):
            try:
                sizes.append(sharded.parse_size(value))
            except ValueError as exc:
                raise ValueError(f"Argument `{name}`: {exc}") from None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            sizes.append(value)
        else:
            raise ValueError(f"Argument `{name}` must be a size in bytes or a string like '5GB'. Received: {value!r}")
    return where, sizes[0], sizes[1]


def takes_over(model: Path, output: str | os.PathLike | None) -> bool:
    """Whether :func:`apply_checkpoint` writes this model or this output."""
    if is_checkpoint_model(model):
        return True
    return output is not None and sharded.is_folder_output(output)


def _folder_of(model: Path) -> Path:
    """The folder a sharded checkpoint lives in (its own path when given as a folder)."""
    return model if model.is_dir() else (model.parent if str(model.parent) else Path("."))


def _output(model: Path, output: str | os.PathLike | None, in_place: bool) -> tuple[str, Path, str]:
    """(kind, target, shard prefix): kind ``folder``, ``safetensors`` or ``npz``."""
    is_manifest = manifest.is_manifest(model)
    if in_place:
        if output is not None:
            raise ValueError("Give either `output` or `in_place=True`, not both")
        if is_manifest:
            raise ModelError(
                f"{model}: a shapes manifest cannot be replaced by its checkpoint; pass output=",
                cli_message=f"{model}: a shapes manifest cannot be replaced by its checkpoint; use -o",
            )
        if not model.is_dir() and not model.name.endswith(sharded.INDEX_SUFFIX):
            raise ModelError(f"{model}: in-place applies to sharded checkpoints in a folder")
        folder = _folder_of(model)
        index = sharded.index_file(folder) if model.is_dir() else model
        prefix = index.name[: -len(sharded.INDEX_SUFFIX)] if index is not None else "model"
        return "folder", folder, prefix
    if output is None:
        if is_manifest:
            return "folder", manifest.default_output(model), "model"
        folder = _folder_of(model)
        folder = folder if folder.name else folder.resolve()
        return "folder", folder.with_name(folder.name + ".init"), "model"
    if sharded.is_folder_output(output):
        folder, prefix = sharded.folder_and_prefix(output)
        return "folder", folder, prefix
    target = Path(os.fspath(output))
    if target.suffix == ".safetensors":
        return "safetensors", target, "model"
    if target.suffix == ".npz" and is_manifest:
        return "npz", target, "model"
    expected = "a folder, a .safetensors or an .npz file" if is_manifest else "a folder or a .safetensors file"
    raise ModelError(f"{target}: the output of {model.name} is {expected}")


def apply_checkpoint(
    model: Path,
    spec: Any,
    output: str | os.PathLike | None,
    *,
    in_place: bool,
    force: bool,
    jobs: int,
    lock: Path | None,
    progress: Any,
    scheduler: tasks.Scheduler,
    shard_bytes: int,
    task_bytes: int,
) -> api.ApplyResult:
    """What :func:`vsconf.api.apply` does for seed checkpoints (arguments already checked)."""
    if model.suffix == ".onnx":
        raise ModelError(f"{output}: {model.name} is an ONNX model, written as .onnx, not as a sharded checkpoint")
    kind, target, prefix = _output(model, output, in_place)
    spec_file = api._spec_file(spec)
    if kind == "folder":
        if not in_place and os.path.exists(target) and api._same_file(target, _folder_of(model)) and not manifest.is_manifest(model):
            raise ModelError(
                f"{target}: the output is the input model; pass in_place=True to replace it",
                cli_message=f"{target}: the output is the input model; use --in-place to replace it",
            )
        sharded.check_output_folder(target, force=force, replacing_input=in_place)
    else:
        target = api._resolve_output(model, target, spec, in_place=False, force=force)
    notes: list[str] = []
    digests: dict[str, str] = {}
    with api.open_model(model) as adapter:
        guarded = {"the input model": model, "the output": target}
        if spec_file is not None:
            guarded["the spec"] = spec_file
        inputs = adapter.files()
        for file in inputs:
            guarded.setdefault(f"{file.name}, which the input model reads", file)
            inside = kind == "folder" and os.path.realpath(file).startswith(os.path.realpath(target) + os.sep)
            if (inside and not in_place) or (kind != "folder" and api._same_file(target, file)):
                raise ModelError(f"{target}: the output would replace {file.name}, which the input model reads")
        if lock is not None:
            if kind == "folder" and os.path.realpath(lock).startswith(os.path.realpath(target) + os.sep):
                raise ModelError(f"{lock}: the lock cannot go inside the output folder, which is replaced whole")
            api._check_lock(lock, guarded, target, force=force)
        the_plan = api._plan_of(adapter, spec)
        if isinstance(adapter, manifest.ShapesManifest):
            manifest.require_filled(the_plan, model)
        metadata = {**getattr(adapter, "metadata", {}), **api._metadata(spec)}
        lock_data = None
        with Transaction() as transaction:
            if kind == "npz":
                def values(entry):
                    chunks = generate_chunks(entry, jobs=jobs)
                    return chunks if chunks is None or lock is None else api._hashed(chunks, entry.name, digests)

                adapter.write(target, the_plan, values, metadata, progress, transaction)
            else:
                sharded.write_checkpoint(
                    adapter,
                    target,
                    the_plan,
                    single=kind == "safetensors",
                    metadata=metadata,
                    transaction=transaction,
                    shard_bytes=shard_bytes,
                    prefix=prefix,
                    scheduler=scheduler,
                    task_bytes=task_bytes,
                    progress=progress,
                    digests=digests if lock is not None else None,
                )
            if lock is not None:
                lock_data = build_lock(the_plan, digests, model=target.name)
                write_lock(transaction.stage(lock), lock_data, lock)
            transaction.commit()
    for old in transaction.displaced:
        notes.extend(sharded.discard_folder(old))
    return api.ApplyResult(target, the_plan, lock_data, tuple(notes))
