"""A spec applied to a JAX pytree: Flax's ``model.init`` without its initializers.

:func:`init_params` takes a pytree of arrays, or of ``jax.ShapeDtypeStruct`` (what
``jax.eval_shape(model.init, key, x)`` returns: no memory spent), and returns a new pytree of
the same structure whose leaves hold the file route's values: the bits ``vsconf apply``
writes for the same names, shapes and dtypes saved as a checkpoint.

* Names are the leaves' key paths joined with ``.``: a dict key is itself, an attribute its
  name, a sequence index its number -- so Flax's ``{"params": {"Dense_0": {"kernel": ...}}}``
  gives ``params.Dense_0.kernel``.  A Flax metadata box (``nn.with_partitioning``'s
  ``Partitioned``) is one leaf named as its place, its value filled and the box kept.
* Any float dtype (bfloat16 included: JAX's bfloat16 is ml_dtypes', as vsconf's).  Leaves no
  rule fills (non-float, ``keep``, unmatched) are returned as they came; a
  ``ShapeDtypeStruct`` among them has no values to return and is an error naming it.
* Sharded: with a ``jax.sharding.Sharding`` per leaf (``sharding=``, or the leaf's own:
  a ``ShapeDtypeStruct``'s or a ``jax.Array``'s), a leaf is made by ``jax.make_array_from_callback``, each
  device's shard computed alone by :func:`vsconf.slice_values`, so the assembled array is
  the unsharded one whatever the mesh and partition specs.

Fans: the spec's layout decides, as for a file.  Flax (and Haiku, and ``jax.nn.initializers``)
keep kernels as ``[..., in, out]``: ``layout: tf``, which ``layout: auto`` also reads for a
pytree.

jax is imported when a function here is first called, never by ``import vsconf``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from vsconf import bridge
from vsconf.draw import generate
from vsconf.engine import Plan
from vsconf.errors import MatchError, Problem
from vsconf.matching import TensorInfo
from vsconf.slices import slice_values


def _jax() -> Any:
    import jax

    return jax


def _key_name(key: Any) -> str:
    tree_util = _jax().tree_util
    if isinstance(key, tree_util.DictKey):
        return str(key.key)
    if isinstance(key, tree_util.GetAttrKey):
        return str(key.name)
    if isinstance(key, tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key).lstrip(".").strip("[]'\"")


def _path_name(path: tuple) -> str:
    return ".".join(_key_name(key) for key in path)


def _boxed(leaf: Any) -> bool:
    """A Flax metadata box (``nn.with_partitioning``'s ``Partitioned``): one leaf, its value
    inside.  Flax is never imported here: a tree holding a box has imported it already."""
    meta = sys.modules.get("flax.core.meta")
    return meta is not None and isinstance(leaf, meta.AxisMetadata)


def _leaves(tree: Any) -> tuple[list[str], list[Any], Any, list[Any]]:
    """The names, leaves (a box's value in place of the box) and treedef of a pytree, and
    each leaf's box (None when it has none); two leaves of one name are an error."""
    pairs, treedef = _jax().tree_util.tree_flatten_with_path(tree, is_leaf=_boxed)
    names, leaves, boxes, seen = [], [], [], set()
    for path, leaf in pairs:
        name = _path_name(path)
        if name in seen:
            raise ValueError(f"Argument `params_or_shapes` has two leaves named {name!r} (key paths joined with '.')")
        seen.add(name)
        names.append(name)
        boxes.append(leaf if _boxed(leaf) else None)
        leaves.append(leaf.unbox() if _boxed(leaf) else leaf)
    return names, leaves, treedef, boxes


def _is_shape(leaf: Any) -> bool:
    return isinstance(leaf, _jax().ShapeDtypeStruct)


def _info(name: str, leaf: Any) -> TensorInfo:
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        leaf = np.asarray(leaf)
    return TensorInfo(name, tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype))


def _live(params: Any) -> tuple[bridge.LiveTensors, list[str], list[Any], Any, list[Any]]:
    names, leaves, treedef, boxes = _leaves(params)
    infos = [_info(name, leaf) for name, leaf in zip(names, leaves)]
    live = bridge.LiveTensors(infos, axes=bridge.last_two_axes(infos, "JAX's default axes (..., in, out)"))
    return live, names, leaves, treedef, boxes


def plan_params(params_or_shapes: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None) -> Plan:
    """Which rule fills which leaf of ``params_or_shapes``, with fans and spread: what
    :func:`init_params` would do, nothing made.  Arguments as :func:`init_params`'s."""
    live, _, _, _, _ = _live(params_or_shapes)
    return bridge.plan_live(live, bridge.load(spec, seed, vars))


def _shardings(sharding: Any, names: list[str], leaves: list[Any]) -> list[Any]:
    """One sharding (or None) per leaf: ``sharding`` itself, its pytree's leaf of the same
    name, else a ``ShapeDtypeStruct``'s or a ``jax.Array``'s own."""
    jax = _jax()
    Sharding = jax.sharding.Sharding
    if sharding is None:
        given = [None] * len(names)
    elif isinstance(sharding, Sharding):
        given = [sharding] * len(names)
    else:
        pairs, _ = jax.tree_util.tree_flatten_with_path(sharding, is_leaf=lambda x: x is None or isinstance(x, Sharding))
        by_name = {_path_name(path): leaf for path, leaf in pairs}
        for name, leaf in by_name.items():
            if leaf is not None and not isinstance(leaf, Sharding):
                where = f" at {name!r}" if name else ""
                raise TypeError(
                    "Argument `sharding` must be one jax.sharding.Sharding or a pytree of them (or None) shaped as the "
                    f"params. Received: {type(leaf).__name__}{where}"
                )
        if set(by_name) != set(names):
            extra, missing = sorted(set(by_name) - set(names)), sorted(set(names) - set(by_name))
            raise ValueError(
                "Argument `sharding` must be one jax.sharding.Sharding or a pytree of them (or None) shaped as the "
                f"params. Received: a pytree whose leaves differ (missing {missing[:5]}, extra {extra[:5]})"
            )
        given = [by_name[name] for name in names]
    out = []
    for chosen, leaf in zip(given, leaves):
        if chosen is None and (_is_shape(leaf) or isinstance(leaf, jax.Array)):
            chosen = getattr(leaf, "sharding", None)
        out.append(chosen)
    return out


def _sharded(entry: Any, sharding: Any) -> Any:
    """The leaf as ``sharding`` lays it out, each distinct shard computed once, alone."""
    jax = _jax()
    done: dict[tuple, np.ndarray] = {}

    def shard(index: tuple) -> np.ndarray:
        key = tuple((s.start, s.stop, s.step) if isinstance(s, slice) else s for s in index)
        if key not in done:
            done[key] = slice_values(entry, index)
        return done[key]

    return jax.make_array_from_callback(entry.shape, sharding, shard)


def _unfilled(entry: Any) -> Problem:
    why = "no rule fills" if entry.action != "keep" else "a rule keeps"
    if entry.action == "skip":
        why = f"of dtype {entry.dtype}, which vsconf never fills,"
    return Problem("", 0, 0, "", f"is a jax.ShapeDtypeStruct {why} (action {entry.action}): it has no values to return; "
                   "give a rule that fills it, or pass an array for it", tensor=entry.name)


def init_params(
    params_or_shapes: Any,
    spec: Any,
    *,
    sharding: Any = None,
    vars: Mapping[str, Any] | None = None,
    seed: int | None = None,
    lock: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Any:
    """A new pytree like ``params_or_shapes`` with the file route's values where ``spec`` fills.

    Args:
        params_or_shapes: A pytree of arrays (JAX or NumPy) or of ``jax.ShapeDtypeStruct``
            (``jax.eval_shape(model.init, key, x)``).  Leaf names are key paths joined with ``.``.
        spec: A :class:`~vsconf.Spec` or a spec file's path (``layout: tf`` for Flax kernels).
        sharding: None, one ``jax.sharding.Sharding`` for every filled leaf, or a pytree of
            them (None for a leaf left unsharded) shaped as the params.  Where this gives
            none, a ``ShapeDtypeStruct`` or ``jax.Array`` leaf keeps the sharding it has.
        vars: Numbers the spec's expressions read.
        seed: Use this seed instead of the spec's.
        lock: Also write a lock file (per tensor its init, spread and SHA-256), as
            ``vsconf apply --lock``: the same file whatever the shardings (a sharded leaf's
            digest is that of its whole values, drawn again a chunk at a time).  In a run of
            several processes, process 0 writes it.
        force: Replace an existing lock.

    Returns:
        A pytree of the same structure: a ``jax.Array`` for every filled leaf, the input
        leaf itself for every other.

    Raises:
        SpecError: The spec does not load.
        MatchError: The rules do not fit the leaves, or a ``ShapeDtypeStruct`` leaf is not
            filled (it has no values to keep): the error names each.
        ValueError, TypeError: ``sharding`` does not fit the params.

    Example:
        >>> import jax, numpy as np, vsconf, vsconf.jax
        >>> shapes = {"params": {"Dense_0": {"kernel": jax.ShapeDtypeStruct((4, 3), np.float32),
        ...                                  "bias": jax.ShapeDtypeStruct((3,), np.float32)}}}
        >>> spec = vsconf.parse_spec("vsconf: 1\\nseed: 1\\nlayout: tf\\nrules:\\n  - match: '*.kernel'\\n    init: lecun_normal\\n  - match: '*.bias'\\n    init: zeros\\n")
        >>> params = vsconf.jax.init_params(shapes, spec)
        >>> params["params"]["Dense_0"]["kernel"].shape, float(abs(params["params"]["Dense_0"]["bias"]).max())
        ((4, 3), 0.0)
    """
    from vsconf import arguments

    jax = _jax()
    force = arguments.flag(force, "force")
    spec = bridge.load(spec, seed, vars)
    writes_lock = lock is not None and jax.process_index() == 0
    lock_path = bridge.lock_target(lock, spec, force=force) if writes_lock else None
    live, names, leaves, treedef, boxes = _live(params_or_shapes)
    shardings = _shardings(sharding, names, leaves)
    plan = bridge.plan_live(live, spec)
    empty = [entry for entry, leaf in zip(plan, leaves) if not entry.changes and _is_shape(leaf)]
    if empty:
        raise MatchError([_unfilled(entry) for entry in empty])
    out, digests = [], {}
    for entry, leaf, leaf_sharding, box in zip(plan, leaves, shardings, boxes):
        if not entry.changes:
            out.append(leaf if box is None else box)
            continue
        if leaf_sharding is not None:
            array = _sharded(entry, leaf_sharding)
            if writes_lock:  # the whole values, drawn again a chunk at a time: no shard is gathered
                digests[entry.name] = bridge.whole_digest(entry, 1)
        else:
            values = generate(entry)
            array = jax.device_put(values)
            if writes_lock:
                digests[entry.name] = bridge.digest(values)
        out.append(array if box is None else box.replace_boxed(array))
    if writes_lock:
        bridge.save_lock(plan, digests, lock_path, type(params_or_shapes).__name__, force=force)
    return jax.tree_util.tree_unflatten(treedef, out)


def verify_params(
    params: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None,
    lock: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Every leaf of ``params`` that differs from what ``spec`` makes, and every disagreement
    with ``lock``; an empty list when all match.  A sharded ``jax.Array`` is compared shard by
    shard (those of this process), each against :func:`vsconf.slice_values` of its index."""
    jax = _jax()
    spec = bridge.load(spec, seed, vars)
    live, names, leaves, _, _ = _live(params)
    plan = bridge.plan_live(live, spec)
    problems, digests = [], {}
    for entry, leaf in zip(plan, leaves):
        if not entry.changes:
            continue
        if _is_shape(leaf):
            problems.append(Problem("", 0, 0, "", "is a jax.ShapeDtypeStruct: it has no values to verify", tensor=entry.name))
            continue
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
            # shard by shard (replicas too), each against its slice of the spec's values
            found = [d for s in leaf.addressable_shards if (d := bridge.difference(np.asarray(s.data), slice_values(entry, s.index)))]
            problem = None if not found else found[0] + (f" (one of {len(found)} shards that differ)" if len(found) > 1 else " (in one shard)")
            if lock is not None and (leaf.is_fully_addressable or jax.process_index() == 0):
                digests[entry.name] = bridge.whole_digest(entry, 1)  # what the shards were just shown to hold
        else:
            have = np.asarray(leaf)
            problem = bridge.difference(have, generate(entry))
            if lock is not None:
                digests[entry.name] = bridge.digest(have)
        if problem is not None:
            problems.append(Problem("", 0, 0, "", problem, tensor=entry.name))
    if lock is not None:
        problems.extend(bridge.check_lock(lock, plan, digests))
    return problems
