"""A spec applied to a live Keras 3 model: its weights filled where they live.

:func:`init_model` assigns a built model's weights, each by its ``variable.path``
(``dense/kernel``, ``net/lstm/lstm_cell/recurrent_kernel``; a ``Sequential`` prefixes its
own name, a functional ``Model`` does not), with the values the file route gives for the
same names: the bits ``vsconf.apply_state_dict`` returns for a dict of those paths, shapes
and dtypes.

* The weights are ``model.weights`` (trainable and not; a ``SeedGenerator``'s state is no
  weight).  A variable shared by two layers is one weight: filled once, under its first path.
* Non-trainable weights are what their names say: ``moving_mean`` and ``moving_variance``
  are running statistics, filled only when a rule names them (``role: running_stat``), as
  for a state dict.
* Any float dtype a variable has (``float32``, ``float16``, ``bfloat16`` -- a layer's
  ``dtype=`` or the global dtype policy); under ``mixed_float16`` and ``mixed_bfloat16`` the
  variables are ``float32``, and so are their values.
* Fans: the spec's layout decides, as for a file.  Keras keeps ``[in, out]`` and
  ``[*kernel, in, out]``: the recipes for Keras say ``layout: tf``.  ``layout: auto`` reads
  the tf rule too, which is Keras's own ``compute_fans`` for every weight, so no table of
  layer classes is needed (the torch bridge's ``MODULE_TABLE`` has no counterpart here:
  Keras names its weights by what they are -- ``kernel``, ``gamma``, ``moving_mean``,
  ``embeddings`` -- and the roles read from those names are right).

Any Keras 3 backend (JAX, torch, TensorFlow).  keras is imported when a function here is
first called, never by ``import vsconf``; choose the backend (``KERAS_BACKEND``) first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import bridge
from vsconf.draw import generate
from vsconf.engine import Plan
from vsconf.errors import ModelError, Problem
from vsconf.matching import TensorInfo



@dataclass(frozen=True)
class ModelResult:
    """What :func:`init_model` did: the plan (every weight, its rule and spread; a shared
    variable's later paths in ``plan.aliases``), the paths it filled, and the lock it wrote
    (or None)."""

    plan: Plan
    filled: tuple[str, ...]
    lock: Path | None = None


def _dtype_name(variable: Any) -> str:
    dtype = variable.dtype
    return dtype if isinstance(dtype, str) else getattr(dtype, "name", str(dtype))


def _weights(model: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The model's weights by path (the first path of each variable), and the aliases: later
    paths of a variable already named."""
    import keras

    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"Argument `model` must be a Keras 3 model or layer (keras.Model, keras.layers.Layer). Received: {type(model).__name__}")
    if not getattr(model, "built", True) or not hasattr(model, "weights"):
        raise ModelError(
            f"{getattr(model, 'name', type(model).__name__)}: the model is not built, so it has no weights "
            "yet: build it first (give it a keras.Input, call model.build(input_shape), or call it on data)"
        )
    weights = list(model.weights)
    if not weights:
        raise ModelError(f"{getattr(model, 'name', type(model).__name__)}: the model has no weights (is it built?)")
    first: dict[int, str] = {}
    variables: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for variable in weights:
        path = variable.path
        key = id(variable)
        if key in first:
            if path != first[key]:
                aliases[path] = first[key]
            continue
        if path in variables:
            raise ModelError(
                f"{model.name}: two weights have the path {path!r}: name the layers apart (a layer's name= is unique in a model)"
            )
        first[key] = path
        variables[path] = variable
    return variables, aliases


def _live(model: Any) -> tuple[bridge.LiveTensors, dict[str, Any]]:
    variables, aliases = _weights(model)
    infos = [TensorInfo(path, tuple(int(d) for d in v.shape), bridge.numpy_dtype(_dtype_name(v))) for path, v in variables.items()]
    return bridge.LiveTensors(infos, aliases, bridge.last_two_axes(infos, "Keras's compute_fans (..., in, out)")), variables


def plan_model(model: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None) -> Plan:
    """Which rule fills which of ``model``'s weights, with fans and spread: what
    :func:`init_model` would do, nothing changed.  Arguments as :func:`init_model`'s."""
    live, _ = _live(model)
    return bridge.plan_live(live, bridge.load(spec, seed, vars))


def _read(variable: Any, dtype: np.dtype) -> np.ndarray:
    """A variable's values as NumPy in ``dtype`` (a backend may hand bfloat16 back as float32:
    exact both ways)."""
    import keras

    values = np.asarray(keras.ops.convert_to_numpy(variable.value))
    return values if values.dtype == dtype else values.astype(dtype)


def init_model(
    model: Any,
    spec: Any,
    *,
    vars: Mapping[str, Any] | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    lock: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> ModelResult:
    """Assign ``model``'s weights as ``spec`` says, with the file route's values.

    Args:
        model: A built Keras 3 model (or layer): its ``weights`` are named by their ``path``.
        spec: A :class:`~vsconf.Spec` or a spec file's path (a recipe such as
            ``configs/recipes/keras_lstm.yaml``).
        vars: Numbers the spec's expressions read.
        seed: Use this seed instead of the spec's.
        jobs: Threads generating values (the values never depend on it).
        lock: Also write a lock file (per weight its init, spread and SHA-256), as
            ``vsconf apply --lock``.
        force: Replace an existing lock.

    Returns:
        A :class:`ModelResult`.

    Raises:
        TypeError: ``model`` is not a Keras layer or model.
        ModelError: The model is not built, or two of its weights share a path, or the lock may
            not be written (checked before any weight changes).
        SpecError, MatchError: as :func:`vsconf.plan`.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "jax")  # doctest: +SKIP
        >>> import keras, vsconf, vsconf.keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")], name="net")
        >>> spec = vsconf.parse_spec("vsconf: 1\\nseed: 1\\nlayout: tf\\nrules:\\n  - match: '*/kernel'\\n    init: {normal: {std: 0.02}}\\n  - match: '*/bias'\\n    init: zeros\\n")
        >>> vsconf.keras.init_model(model, spec).filled
        ('net/fc/kernel', 'net/fc/bias')
    """
    from vsconf import arguments

    jobs = arguments.jobs(jobs)
    force = arguments.flag(force, "force")
    spec = bridge.load(spec, seed, vars)
    lock_path = bridge.lock_target(lock, spec, force=force)
    live, variables = _live(model)
    plan = bridge.plan_live(live, spec)
    filled, digests = [], {}
    for entry in plan:
        if not entry.changes:
            continue
        variable = variables[entry.name]
        values = generate(entry, jobs=jobs)
        variable.assign(np.ascontiguousarray(values).reshape(tuple(int(d) for d in variable.shape)))
        filled.append(entry.name)
        if lock is not None:
            digests[entry.name] = bridge.digest(values)
    path = bridge.save_lock(plan, digests, lock_path, getattr(model, "name", type(model).__name__), force=force) if lock_path is not None else None
    return ModelResult(plan, tuple(filled), path)


def verify_model(
    model: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None,
    lock: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Every weight of ``model`` whose bytes differ from what ``spec`` makes, and every
    disagreement with ``lock``; an empty list when all match.  Arguments as :func:`init_model`'s."""
    spec = bridge.load(spec, seed, vars)
    live, variables = _live(model)
    plan = bridge.plan_live(live, spec)
    problems, digests = [], {}
    for entry in plan:
        if not entry.changes:
            continue
        expected = generate(entry)
        have = _read(variables[entry.name], expected.dtype).reshape(expected.shape)
        if lock is not None:
            digests[entry.name] = bridge.digest(have)
        problem = bridge.difference(have, expected)
        if problem is not None:
            problems.append(Problem("", 0, 0, "", problem, tensor=entry.name))
    if lock is not None:
        problems.extend(bridge.check_lock(lock, plan, digests))
    return problems
