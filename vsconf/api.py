"""The Python API: plan, apply and verify, over any model an adapter can open."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from vsconf import statedict
from vsconf.engine import Plan, PlanEntry, generate, make_plan
from vsconf.errors import ModelError
from vsconf.files import resolve_output
from vsconf.lock import build_lock, compare_lock, read_lock, tensor_sha256, write_lock
from vsconf.spec import Spec, load_spec

SpecLike = Union[Spec, str, os.PathLike]
Progress = Callable[[int, int, str], None]


def _spec(spec: SpecLike, seed: int | None = None) -> Spec:
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    return spec if seed is None else spec.with_seed(seed)


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def open_model(model: Any, *, materialize: bool = False, untie: bool = False) -> Iterator[Any]:
    """The adapter for ``model``: a ``.onnx``/``.npz``/``.safetensors`` path or a dict of arrays."""
    if isinstance(model, Mapping):
        adapter = statedict.DictStateDict(model)
    else:
        path = Path(model)
        if path.suffix == ".onnx":
            from vsconf.onnxmodel import OnnxModel

            adapter = OnnxModel(path, materialize=materialize, untie=untie)
        else:
            if materialize or untie:
                raise ModelError("--materialize and --untie apply to ONNX models only")
            adapter = statedict.open_state_dict(path)
    try:
        yield adapter
    finally:
        adapter.close()


def _plan_of(adapter: Any, spec: Spec) -> Plan:
    return make_plan(adapter.tensors(), spec, adapter.hints(), target=adapter.target)


def plan(model: Any, spec: SpecLike, *, seed: int | None = None, materialize: bool = False, untie: bool = False) -> Plan:
    """Which rule fills which tensor, with fans and std or limit; nothing is generated."""
    spec = _spec(spec, seed)
    with open_model(model, materialize=materialize, untie=untie) as adapter:
        return _plan_of(adapter, spec)


@dataclass(frozen=True)
class ApplyResult:
    output: Path
    plan: Plan
    lock: dict[str, Any] | None = None


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
) -> ApplyResult:
    """Initialize the model file ``model`` into ``output`` (default ``<stem>.init<suffix>``).

    The input is never modified unless ``in_place``; every write goes to a temporary
    file beside its target and is renamed into place.
    """
    spec = _spec(spec, seed)
    path = Path(model)
    target = resolve_output(path, Path(output) if output is not None else None, in_place=in_place, force=force)
    jobs = jobs or default_jobs()
    digests: dict[str, str] = {}

    def values(entry: PlanEntry) -> np.ndarray | None:
        array = generate(entry, jobs=jobs)
        if array is not None and lock is not None:
            digests[entry.name] = tensor_sha256(array)
        return array

    with open_model(path, materialize=materialize, untie=untie) as adapter:
        the_plan = _plan_of(adapter, spec)
        adapter.write(target, the_plan, values, _metadata(spec), progress)
    lock_data = None
    if lock is not None:
        lock_data = build_lock(the_plan, digests, model=target.name)
        write_lock(Path(lock), lock_data)
    return ApplyResult(target, the_plan, lock_data)


def _metadata(spec: Spec) -> dict[str, str]:
    import vsconf

    return {"vsconf.version": vsconf.__version__, "vsconf.seed": str(spec.seed), "vsconf.spec_sha256": spec.sha256}


def apply_state_dict(
    mapping: Mapping[str, np.ndarray], spec: SpecLike, *, seed: int | None = None, jobs: int | None = None
) -> dict[str, np.ndarray]:
    """A new dict with the spec applied; the input dict and its arrays are untouched."""
    spec = _spec(spec, seed)
    adapter = statedict.DictStateDict(mapping)
    the_plan = _plan_of(adapter, spec)
    jobs = jobs or default_jobs()
    return adapter.arrays(the_plan, lambda entry: generate(entry, jobs=jobs))


def verify(
    model: Any,
    spec: SpecLike,
    *,
    lock: str | os.PathLike | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    untie: bool = False,
) -> list[str]:
    """Every tensor whose values differ from what the spec produces (empty: all match)."""
    lock_data = read_lock(Path(lock)) if lock is not None else None
    if seed is None and lock_data is not None:
        seed = lock_data.get("seed")
    spec = _spec(spec, seed)
    jobs = jobs or default_jobs()
    problems: list[str] = []
    digests: dict[str, str] = {}
    with open_model(model, untie=untie) as adapter:
        if seed is None and getattr(adapter, "recorded_seed", None) is not None:
            spec = spec.with_seed(adapter.recorded_seed)
        the_plan = _plan_of(adapter, spec)
        for entry in the_plan:
            if not entry.changes:
                continue
            expected = generate(entry, jobs=jobs)
            actual = adapter.read(entry.name)
            digests[entry.name] = tensor_sha256(actual)
            problem = _difference(entry.name, expected, actual)
            if problem:
                problems.append(problem)
    if lock_data is not None:
        problems.extend(compare_lock(lock_data, the_plan, digests))
    return problems


def _difference(name: str, expected: np.ndarray, actual: np.ndarray) -> str | None:
    if actual.dtype != expected.dtype or actual.shape != expected.shape:
        return f"{name}: is {actual.dtype.name}{list(actual.shape)}, the spec makes {expected.dtype.name}{list(expected.shape)}"
    if actual.tobytes() == expected.tobytes():
        return None
    wide_a, wide_e = actual.astype(np.float64), expected.astype(np.float64)
    differ = int(np.count_nonzero(wide_a != wide_e))
    with np.errstate(invalid="ignore"):
        worst = float(np.nanmax(np.abs(wide_a - wide_e))) if differ else 0.0
    return f"{name}: {differ} of {actual.size} elements differ from what the spec produces (max |difference| {worst:.6g})"
