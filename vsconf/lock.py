"""Lock files: what an apply produced, per tensor, so that ``vsconf verify`` can prove it later."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vsconf._version import __version__
from vsconf.engine import Plan
from vsconf.errors import ModelError, Problem
from vsconf.files import describe_os_error, little_endian_bytes, regular_file
from vsconf.spec.expressions import var_problem
from vsconf.streams import MAX_SEED

LOCK_FORMAT = 1
# A lock names every tensor of one model: far below this, whatever the model.
MAX_LOCK_BYTES = 64 << 20
_RECORDED = (
    "shape", "dtype", "rule", "init", "seed", "fan_in", "fan_out", "std", "limit", "value", "mean", "bounds",
    "expressions", "gain", "groups", "layout", "formula", "parts",
)


def build_lock(plan: Plan, digests: Mapping[str, str], model: str) -> dict[str, Any]:
    tensors = []
    for entry in plan:
        if entry.name not in digests:
            continue
        record = {k: v for k, v in entry.as_dict().items() if k in ("name",) + _RECORDED and v is not None}
        record["sha256"] = digests[entry.name]
        tensors.append(record)
    return {
        "vsconf_lock": LOCK_FORMAT,
        "vsconf": __version__,
        "numpy": np.__version__,
        "model": model,
        "seed": plan.seed,
        "stream": plan.stream,
        "spec_sha256": plan.spec_sha256,
        **({"vars": dict(plan.vars)} if plan.vars else {}),
        "tensors": tensors,
        "kept": [entry.name for entry in plan if not entry.changes],
    }


def hashed(chunks: Iterator[np.ndarray], name: str, digests: dict[str, str]) -> Iterator[np.ndarray]:
    """Pass ``chunks`` on; once all have passed, ``digests[name]`` is their SHA-256."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(little_endian_bytes(chunk))
        yield chunk
    digests[name] = digest.hexdigest()


def write_lock(temp: Path, lock: Mapping[str, Any], target: Path) -> None:
    """Write ``lock`` as JSON into ``temp``, the staged file that will become ``target``."""
    try:
        Path(temp).write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{target}: cannot write the lock: {describe_os_error(exc)}") from None


def read_lock(path: Path) -> dict[str, Any]:
    """The lock at ``path``, its shape checked: every field ``compare_lock`` reads has its type."""
    regular_file(path, "lock")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_LOCK_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the lock: {describe_os_error(exc)}") from None
    if len(data) > MAX_LOCK_BYTES:
        raise ModelError(f"{path}: the lock is larger than {MAX_LOCK_BYTES >> 20} MiB; not a vsconf lock file")
    try:
        lock = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: the lock is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}:{exc.colno}: the lock is not JSON: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep; integers of thousands of digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
        raise ModelError(f"{path}: the lock is not a vsconf lock file: {reason}") from None
    problem = _lock_shape_problem(lock)
    if problem:
        raise ModelError(f"{path}: not a vsconf lock file (format {LOCK_FORMAT}): {problem}")
    return lock


def _lock_shape_problem(lock: Any) -> str | None:
    if not isinstance(lock, dict):
        return "expected a JSON object at the top"
    if lock.get("vsconf_lock") != LOCK_FORMAT:
        return f"`vsconf_lock` must be {LOCK_FORMAT}"
    seed = lock.get("seed")
    if "seed" in lock and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED):
        return "`seed` must be an integer, 0 <= seed < 2**63"
    stream = lock.get("stream", 1)
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 < stream < 10**6:
        return "`stream` must be a positive integer"
    if not isinstance(lock.get("spec_sha256", ""), str):
        return "`spec_sha256` must be a string"
    given = lock.get("vars", {})
    if not isinstance(given, dict) or any(var_problem(name, value) for name, value in given.items()):
        return "`vars` must be an object of names to finite numbers"
    tensors = lock.get("tensors")
    if not isinstance(tensors, list):
        return "`tensors` must be a list"
    for index, record in enumerate(tensors):
        if not isinstance(record, dict):
            return f"tensors[{index}] must be an object"
        if not isinstance(record.get("name"), str):
            return f"tensors[{index}].name must be a string"
        if not isinstance(record.get("sha256", ""), str):
            return f"tensors[{index}].sha256 must be a string"
    return None


def compare_lock(lock: Mapping[str, Any], plan: Plan, digests: Mapping[str, str], *, source: str = "<lock>") -> list[Problem]:
    """Every way the model and plan disagree with the lock ``source``, one record each.

    Args:
        lock: The lock, as :func:`read_lock` returns it.
        plan: The plan of the model being checked, made with the lock's seed.
        digests: SHA-256 of each tensor's bytes as they are in the model.
        source: The lock's file name, which every problem names.

    Returns:
        :class:`~vsconf.errors.Problem` records: the spec's digest first, then per tensor
        in the lock's order, each naming the tensor.
    """
    problems = []
    if lock.get("spec_sha256") != plan.spec_sha256:
        problems.append(
            Problem(source, 0, 0, "", f"the lock was made from spec sha256 {lock.get('spec_sha256')}, this spec is {plan.spec_sha256}")
        )
    entries = {entry.name: entry.as_dict() for entry in plan}
    for record in lock["tensors"]:
        name = record.get("name")
        if name not in entries:
            problems.append(Problem(source, 0, 0, "", "in the lock but not in the model", tensor=name))
            continue
        for key in _RECORDED:
            if key in record and record[key] != entries[name].get(key):
                message = f"{key} is {entries[name].get(key)!r}, the lock says {record[key]!r}"
                problems.append(Problem(source, 0, 0, "", message, tensor=name))
        if name in digests and record.get("sha256") != digests[name]:
            message = f"sha256 {digests[name]} differs from the lock's {record.get('sha256')}"
            problems.append(Problem(source, 0, 0, "", message, tensor=name))
    return problems
