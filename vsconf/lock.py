"""Lock files: what an apply produced, per tensor, so that ``vsconf verify`` can prove it later."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vsconf.engine import Plan
from vsconf.errors import ModelError
from vsconf.files import atomic_path, little_endian_bytes

LOCK_FORMAT = 1
_RECORDED = ("shape", "dtype", "rule", "init", "seed", "fan_in", "fan_out", "std", "limit", "value")


def tensor_sha256(array: np.ndarray) -> str:
    """SHA-256 of the tensor's bytes: C order, little-endian."""
    return hashlib.sha256(little_endian_bytes(array)).hexdigest()


def build_lock(plan: Plan, digests: Mapping[str, str], model: str) -> dict[str, Any]:
    import vsconf

    tensors = []
    for entry in plan:
        if entry.name not in digests:
            continue
        record = {k: v for k, v in entry.as_dict().items() if k in ("name",) + _RECORDED and v is not None}
        record["sha256"] = digests[entry.name]
        tensors.append(record)
    return {
        "vsconf_lock": LOCK_FORMAT,
        "vsconf": vsconf.__version__,
        "numpy": np.__version__,
        "model": model,
        "seed": plan.seed,
        "spec_sha256": plan.spec_sha256,
        "tensors": tensors,
        "kept": [entry.name for entry in plan if not entry.changes],
    }


def write_lock(path: Path, lock: Mapping[str, Any]) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")


def read_lock(path: Path) -> dict[str, Any]:
    try:
        lock = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the lock: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}:{exc.colno}: the lock is not JSON: {exc.msg}") from None
    if not isinstance(lock, dict) or lock.get("vsconf_lock") != LOCK_FORMAT or not isinstance(lock.get("tensors"), list):
        raise ModelError(f"{path}: not a vsconf lock file (format {LOCK_FORMAT})")
    return lock


def compare_lock(lock: Mapping[str, Any], plan: Plan, digests: Mapping[str, str]) -> list[str]:
    """Every way the model and plan disagree with the lock, one line each."""
    problems = []
    if lock.get("spec_sha256") != plan.spec_sha256:
        problems.append(
            f"the lock was made from spec sha256 {lock.get('spec_sha256')}, this spec is {plan.spec_sha256}"
        )
    entries = {entry.name: entry.as_dict() for entry in plan}
    for record in lock["tensors"]:
        name = record.get("name")
        if name not in entries:
            problems.append(f"{name}: in the lock but not in the model")
            continue
        for key in _RECORDED:
            if key in record and record[key] != entries[name].get(key):
                problems.append(f"{name}: {key} is {entries[name].get(key)!r}, the lock says {record[key]!r}")
        if name in digests and record.get("sha256") != digests[name]:
            problems.append(f"{name}: sha256 {digests[name]} differs from the lock's {record.get('sha256')}")
    return problems
