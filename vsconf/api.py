"""The Python API: plan, apply and verify, over any model an adapter can open.

Arguments are checked here, at the boundary: a wrong type raises ``TypeError`` naming
the argument, a bad value ``ValueError``; everything about the files themselves is a
:class:`~vsconf.errors.VsconfError`.  ``apply`` checks every path before any work
starts, and writes the output, its data file and the lock in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from vsconf import checkpoint, statedict, streams
from vsconf.adapters import Adapter, Progress
from vsconf.engine import Plan, PlanEntry, auto_fans, consumer_labels, generate, generate_chunks, make_plan
from vsconf.errors import ModelError, Problem
from vsconf.files import Transaction, default_output, describe_os_error, is_data_name, little_endian_bytes, regular_file
from vsconf.initializers import array_limit, check_array_size, float_dtype
from vsconf.lock import build_lock, compare_lock, read_lock, write_lock
from vsconf.schedule import available_cores
from vsconf.spec import Spec, load_spec
from vsconf.streams import MAX_SEED

SpecLike = Union[Spec, str, os.PathLike]
# Threads beyond this only cost memory: the values never depend on the count.
MAX_JOBS = 1024


# --------------------------------------------------------------------------- argument checks


def _path_argument(value: Any, name: str, *, optional: bool = False) -> Path | None:
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str):
            if not text or "\0" in text:
                raise ValueError(f"Argument `{name}` must be a non-empty path without NUL characters. Received: {value!r}")
            return Path(text)
    expected = "a path (str or os.PathLike)" + (" or None" if optional else "")
    raise TypeError(f"Argument `{name}` must be {expected}. Received: {_type_name(value)}")


def _spec_argument(spec: Any, seed: int | None) -> Spec:
    if not isinstance(spec, Spec):
        spec = load_spec(_path_argument(spec, "spec"))
    return spec if seed is None else spec.with_seed(seed)


def _spec_file(spec: Spec) -> Path | None:
    """The file a spec was loaded from, if it still exists (a parsed string has none)."""
    return Path(spec.source) if os.path.isfile(spec.source) else None


def _seed_argument(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"Argument `seed` must be an integer or None. Received: {_type_name(seed)}")
    if not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"Argument `seed` must satisfy 0 <= seed < 2**63. Received: {_short(int(seed))}")
    return int(seed)


def _jobs_argument(jobs: Any) -> int:
    if jobs is None:
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)):
        raise TypeError(f"Argument `jobs` must be a positive integer or None. Received: {_type_name(jobs)}")
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"Argument `jobs` must be from 1 to {MAX_JOBS}, or None. Received: {_short(int(jobs))}")
    return int(jobs)


def _flag_argument(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be True or False. Received: {_type_name(value)}")
    return bool(value)


def _type_name(value: Any) -> str:
    return "None" if value is None else f"{type(value).__name__} {_short(value)}"


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value))) if abs(value) < 10**4000 else 'thousands of'} digits"
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**4000 else "a huge integer"
    return text if len(text) <= 80 else text[:77] + "..."


def default_jobs() -> int:
    """Every core this process may use."""
    return available_cores()


# --------------------------------------------------------------------------- opening models


UNTIE_MODES = ("all", "conflicts")


def _untie_argument(value: Any) -> bool | str:
    """``untie``: False, True (= "all": every shared float tensor), "all" or "conflicts"
    (only the shared tensors whose consumers disagree)."""
    if isinstance(value, str):
        if value not in UNTIE_MODES:
            raise ValueError(f"Argument `untie` must be True, False, 'all' or 'conflicts'. Received: {_short(value)}")
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `untie` must be True, False, 'all' or 'conflicts'. Received: {_type_name(value)}")
    return "all" if value else False


@contextlib.contextmanager
def open_model(
    model: Any, *, materialize: bool = False, untie: bool | str = False, spec_untie: str | None = None
) -> Iterator[Adapter]:
    """The adapter for ``model``: a ``.onnx``/``.npz``/``.safetensors`` path or a dict of arrays.

    ``untie`` (the caller's) wins over ``spec_untie`` (the spec's ``untie:``), which only
    applies to ONNX models: a state dict has no shared tensors.
    """
    materialize = _flag_argument(materialize, "materialize")
    untie = _untie_argument(untie)
    if isinstance(model, Mapping):
        if materialize or untie:
            raise ValueError("Arguments `materialize` and `untie` apply to ONNX models only")
        adapter = statedict.DictStateDict(model)
    else:
        path = _model_path(model)
        if path.suffix == ".onnx":
            from vsconf.onnx import OnnxModel

            adapter = OnnxModel(path, materialize=materialize, untie=untie or spec_untie or False)
        else:
            if materialize or untie:
                raise ModelError(
                    f"{path}: materialize and untie apply to ONNX models only",
                    cli_message=f"{path}: --materialize and --untie apply to ONNX models only",
                )
            adapter = checkpoint.open_checkpoint(path) if checkpoint.is_checkpoint_model(path) else statedict.open_state_dict(path)
    try:
        yield adapter
    finally:
        adapter.close()


def _model_path(model: Any) -> Path:
    """A model file, or a shapes manifest or sharded checkpoint folder (checked on opening)."""
    path = _path_argument(model, "model")
    return path if checkpoint.is_checkpoint_model(path) else regular_file(path, "model")


def _plan_of(adapter: Adapter, spec: Spec) -> Plan:
    return make_plan(adapter.tensors(), spec, adapter.hints(), target=adapter.target, untied=adapter.untied)


def plan(
    model: Any, spec: SpecLike, *, seed: int | None = None, materialize: bool = False, untie: bool | str = False
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
    spec = _spec_argument(spec, _seed_argument(seed))
    with open_model(model, materialize=materialize, untie=untie, spec_untie=spec.untie) as adapter:
        return _plan_of(adapter, spec)


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
    with open_model(model, materialize=materialize) as adapter:
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
        output: The file written.
        plan: The :class:`~vsconf.Plan` it followed.
        lock: The lock's contents when one was written, else None.
        notes: Files the old output named that were not removed, and why.

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


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (or would, once created)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _writable_target(path: Path, what: str) -> None:
    """The folder of ``path`` must exist, and ``path`` must not be a folder or special file."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelError(f"{path}: cannot write the {what}: the folder {folder} does not exist")
    if os.path.lexists(path) and not os.path.isfile(path):
        kind = "a folder" if os.path.isdir(path) else "not a regular file"
        raise ModelError(f"{path}: cannot write the {what}: it is {kind}")


def _resolve_output(model: Path, output: Path | None, spec: Spec, *, in_place: bool, force: bool) -> Path:
    """Where ``apply`` writes, refusing to overwrite anything it was not asked to."""
    if in_place:
        if output is not None:
            raise ValueError("Give either `output` or `in_place=True`, not both")
        return model
    target = output if output is not None else default_output(model)
    _writable_target(target, "output")
    if _same_file(target, model):
        raise ModelError(
            f"{target}: the output is the input model; pass in_place=True to replace it",
            cli_message=f"{target}: the output is the input model; use --in-place to replace it",
        )
    spec_file = _spec_file(spec)
    if spec_file is not None and _same_file(target, spec_file):
        raise ModelError(f"{target}: the output would replace the spec")
    if target.exists() and not force:
        raise ModelError(
            f"{target}: exists; pass force=True to overwrite it, or another output",
            cli_message=f"{target}: exists; use --force to overwrite it, or -o to write elsewhere",
        )
    return target


def _check_lock(lock: Path, guarded: Mapping[str, Path], output: Path, *, force: bool) -> None:
    """The lock never replaces a file that the run reads or writes, nor any file without ``force``."""
    _writable_target(lock, "lock")
    for what, path in guarded.items():
        if _same_file(lock, path):
            raise ModelError(f"{lock}: the lock would replace {what}")
    if lock.parent.resolve() == output.parent.resolve() and is_data_name(lock.name, output.name):
        raise ModelError(f"{lock}: the lock would take the name of the output's data file")
    if lock.exists() and not force:
        raise ModelError(
            f"{lock}: exists; pass force=True to overwrite it",
            cli_message=f"{lock}: exists; use --force to overwrite it",
        )


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
    scheduler: str = "threads",
    dask_workers: int | None = None,
    shard_size: int | str | None = None,
    task_size: int | str | None = None,
) -> ApplyResult:
    """Initialize the model file ``model`` into ``output`` (default ``<stem>.init<suffix>``).

    The input is never modified unless ``in_place``.  The output, its external data
    and the lock are written to temporary files beside their targets and renamed into
    place together once all are complete.  Every path is checked before any work starts.

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` file, a sharded safetensors
            checkpoint (its folder or ``*.safetensors.index.json``), or a shapes manifest
            (``*.shapes.json``/``.yaml``), whose checkpoint is created.
        spec: A :class:`~vsconf.Spec`, or the path of a spec file.
        output: Where to write; default ``<stem>.init<suffix>`` beside ``model`` (a folder
            ``<stem>.init`` for a manifest or a sharded checkpoint).  A folder -- an
            existing one, a path ending in ``/``, a name without a suffix, or
            ``*.safetensors.index.json`` -- receives a sharded safetensors checkpoint.
        in_place: Replace ``model`` itself (atomically); excludes ``output``.
        force: Overwrite an existing output (and lock).
        seed: Use this seed instead of the spec's.
        jobs: Threads generating values (the values never depend on it); default every core.
        lock: Also write a lock file: per tensor its config, fans, std/limit and SHA-256.
        materialize: ONNX: turn weights stripped into ``ConstantOfShape`` nodes into initializers.
        untie: ONNX: give each consumer of a shared weight its own copy.
        progress: Called as ``progress(done, total, name)`` after each tensor (each task,
            for a sharded checkpoint).
        scheduler: Sharded checkpoints: where tasks run -- ``"threads"`` (``jobs`` of them),
            ``"processes"`` (a local pool of ``jobs``) or a Dask scheduler's address
            (``"tcp://host:8786"``).  The output bytes never depend on it.
        dask_workers: Sharded checkpoints: start a local Dask cluster of this many workers.
        shard_size: Sharded checkpoints: the largest shard, in bytes or as ``"5GB"`` (the
            default, as Hugging Face's ``max_shard_size``), ``"500MB"``, ``"2GiB"``.
        task_size: Sharded checkpoints: the bytes one task writes at most (default 64 MiB).

    Returns:
        An :class:`ApplyResult`.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a bad value, or both ``output`` and ``in_place``.
        SpecError: The spec does not load.
        MatchError: The rules do not fit the model.
        ModelError: The model cannot be read, or an output cannot be written: it exists
            and ``force`` is not set, it is the input or the spec, its folder is missing...

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
    path = _model_path(model)
    output_path = _path_argument(output, "output", optional=True)
    lock_path = _path_argument(lock, "lock", optional=True)
    in_place, force = _flag_argument(in_place, "in_place"), _flag_argument(force, "force")
    jobs = _jobs_argument(jobs)
    if progress is not None and not callable(progress):
        raise TypeError(f"Argument `progress` must be callable or None. Received: {_type_name(progress)}")
    spec = _spec_argument(spec, _seed_argument(seed))
    where, shard_bytes, task_bytes = checkpoint.options(scheduler, dask_workers, shard_size, task_size, jobs)
    if checkpoint.takes_over(path, output):  # seed checkpoints: manifests, sharded folders
        if materialize or untie:
            raise ModelError(
                f"{path}: materialize and untie apply to ONNX models only",
                cli_message=f"{path}: --materialize and --untie apply to ONNX models only",
            )
        return checkpoint.apply_checkpoint(
            path, spec, output, in_place=in_place, force=force, jobs=jobs, lock=lock_path, progress=progress,
            scheduler=where, shard_bytes=shard_bytes, task_bytes=task_bytes,
        )
    if (scheduler, dask_workers, shard_size, task_size) != ("threads", None, None, None):
        where = output_path or path  # the output is what these options cannot shape
        raise ModelError(
            f"{where}: scheduler, dask_workers, shard_size and task_size apply to sharded checkpoint outputs",
            cli_message=f"{where}: --scheduler, --dask-workers, --shard-size and --task-size apply to sharded checkpoint outputs (-o FOLDER/)",
        )
    target = _resolve_output(path, output_path, spec, in_place=in_place, force=force)
    digests: dict[str, str] = {}

    def values(entry: PlanEntry) -> Iterator[np.ndarray] | None:
        chunks = generate_chunks(entry, jobs=jobs)
        if chunks is None or lock_path is None:
            return chunks
        return _hashed(chunks, entry.name, digests)

    with open_model(path, materialize=materialize, untie=untie, spec_untie=spec.untie) as adapter:
        guarded = {"the input model": path, "the output": target}
        spec_file = _spec_file(spec)
        if spec_file is not None:
            guarded["the spec"] = spec_file
        for file in adapter.files():
            guarded.setdefault(f"{file.name}, which the input model reads", file)
        for file in adapter.files():
            if not in_place and _same_file(target, file):
                raise ModelError(f"{target}: the output would replace {file.name}, which the input model reads")
        stale, notes = adapter.stale_data_files(target)
        for file in list(stale):  # a data file's name is no proof: never the spec, the lock or the input
            for what, other in (("the spec", spec_file), ("the lock", lock_path), ("the input model", path)):
                if other is not None and _same_file(file, other) and file in stale:
                    stale.remove(file)
                    notes.append(f"kept {file.name}: it is {what}")
        if lock_path is not None:
            for file in stale:
                guarded.setdefault(f"{file.name}, which the old output names", file)
            _check_lock(lock_path, guarded, target, force=force)
        the_plan = _plan_of(adapter, spec)
        lock_data = None
        with Transaction() as transaction:
            adapter.write(target, the_plan, values, _metadata(spec), progress, transaction)
            if lock_path is not None:
                lock_data = build_lock(the_plan, digests, model=target.name)
                write_lock(transaction.stage(lock_path), lock_data, lock_path)
            transaction.commit()
    for file in stale:
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            notes.append(f"{file}: could not remove the old output's data file: {describe_os_error(exc)}")
    return ApplyResult(target, the_plan, lock_data, tuple(notes))


def _hashed(chunks: Iterator[np.ndarray], name: str, digests: dict[str, str]) -> Iterator[np.ndarray]:
    """Pass ``chunks`` on; once all have passed, ``digests[name]`` is their SHA-256."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(little_endian_bytes(chunk))
        yield chunk
    digests[name] = digest.hexdigest()


def _metadata(spec: Spec) -> dict[str, str]:
    from vsconf._version import __version__

    return {
        "vsconf.version": __version__,
        "vsconf.seed": str(spec.seed),
        "vsconf.spec_sha256": spec.sha256,
        "vsconf.stream": str(spec.stream or streams.DEFAULT_STREAM),
    }


def apply_state_dict(
    mapping: Mapping[str, np.ndarray], spec: SpecLike, *, seed: int | None = None, jobs: int | None = None
) -> dict[str, np.ndarray]:
    r"""A new dict with the spec applied; the input dict and its arrays are untouched.

    The values are exactly those :func:`apply` writes for the same names, shapes and dtypes.

    Args:
        mapping: Tensor names to NumPy arrays (a PyTorch ``state_dict`` converted with
            ``{k: v.numpy() for k, v in ...}``).
        spec: A :class:`~vsconf.Spec`, or the path of a spec file.
        seed: Use this seed instead of the spec's.
        jobs: Threads generating values (the values never depend on it).

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
        raise TypeError(f"Argument `mapping` must be a mapping of names to arrays. Received: {_type_name(mapping)}")
    spec = _spec_argument(spec, _seed_argument(seed))
    jobs = _jobs_argument(jobs)
    adapter = statedict.DictStateDict(mapping)
    the_plan = _plan_of(adapter, spec)
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
    seed = _seed_argument(seed)
    jobs = _jobs_argument(jobs)
    lock_path = _path_argument(lock, "lock", optional=True)
    lock_data = read_lock(lock_path) if lock_path is not None else None
    if seed is None and lock_data is not None:
        seed = lock_data.get("seed")
    spec = _spec_argument(spec, seed)
    problems: list[Problem] = []
    digests: dict[str, str] = {}
    with open_model(model, untie=untie, spec_untie=spec.untie) as adapter:
        if seed is None and adapter.recorded_seed_problem is not None:
            raise ModelError(adapter.recorded_seed_problem)
        if seed is None and adapter.recorded_seed is not None:
            spec = spec.with_seed(adapter.recorded_seed)
        source = "" if adapter.path is None else str(adapter.path)
        stream, stream_problem = _verified_stream(spec, lock_data, adapter.recorded_stream, lock_path, source)
        if stream_problem is not None:
            problems.append(stream_problem)
        unrecorded = spec.stream is None and lock_data is None and adapter.recorded_stream is None
        the_plan = _plan_of(adapter, spec)
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
                if unrecorded and entry.action == "fill" and streams.uses_float32_normals(
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


def _verified_stream(
    spec: Spec, lock: Mapping[str, Any] | None, recorded: int | None, lock_path: Path | None, source: str
) -> tuple[int | None, Problem | None]:
    """The stream version to regenerate with (None: the spec's), and a problem when the records disagree.

    The version is, in order: the spec's own ``stream``, the lock's (a lock without one
    was made by vsconf 0.1: stream 1), the one the model recorded, the default.
    """
    from_lock = None if lock is None else lock.get("stream", 1)
    if spec.stream is not None:
        if from_lock is not None and from_lock != spec.stream:
            message = f"the lock was made with stream {from_lock}, the spec pins stream {spec.stream}"
            return None, Problem(str(lock_path), 0, 0, "", message)
        return None, None
    version = from_lock if from_lock is not None else recorded
    if version is None:
        return None, None
    if version not in streams.STREAMS:
        known = ", ".join(map(str, streams.STREAMS))
        where = f"{lock_path}: the lock" if from_lock is not None else f"{source}: the model's metadata"
        raise ModelError(f"{where} says the weights were drawn by stream {version}; this vsconf draws streams {known}")
    return version, None


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
