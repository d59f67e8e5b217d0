"""A spec applied to a live ``torch.nn.Module``: the declarative ``model.apply(_init_weights)``.

:func:`init_module` fills a module's parameters (and the persistent buffers a rule names) in
place, under ``no_grad``, with the values the file route gives for the same names: the bits
``vsconf apply`` writes for the module's ``state_dict`` saved as a checkpoint.

* Names are ``state_dict``'s.  A tied parameter (``lm_head.weight`` is
  ``transformer.wte.weight``) is one tensor: filled once, under its first name, as
  ``save_pretrained`` keeps it, and left tied; the plan lists the other name as an alias.
* Any float dtype torch has (bfloat16 included); the caller converts nothing.
* On the ``meta`` device, the module is materialised first (``to_empty`` on ``device``), and
  its ties restored, then filled: a seed checkpoint without a checkpoint.  What no rule
  fills has no values then -- a buffer outside the state dict (a rotary embedding's
  ``inv_freq``), an integer counter, a tensor the spec keeps: the result names each, with a
  warning.
* A ``DTensor`` (FSDP2's ``fully_shard``, tensor parallel's ``parallelize_module``) is filled
  shard by shard: each rank computes only its local shard with
  :func:`vsconf.slice_values`, so the assembled tensor is the single-process one whatever the
  mesh and placements (an orthogonal init computes its whole matrix on each rank, once).

Roles and fans: a module's class says what its tensors are (:data:`MODULE_TABLE`: a
LayerNorm's ``weight`` is a norm scale, an Embedding's an embedding, whatever the module is
called), where a state dict can only guess from names; ``plan`` shows ``module LayerNorm
weight`` as the reason.  The spec's layout decides the fans, as for a file (``layout: torch``,
as the recipes say); under ``layout: auto`` the classes say which axes are in and out (a
ConvTranspose's ``[in, out, k...]``, transformers' ``Conv1D`` ``[in, out]``), and a class
outside the table gets torch's shape rule ``[out, in, k...]`` -- never the tf rule a state
dict's ``auto`` falls back to.

torch is imported when a function here is first called, never by ``import vsconf``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import bridge
from vsconf.draw import generate
from vsconf.engine import Plan
from vsconf.errors import ModelError, Problem
from vsconf.fans import Axes
from vsconf.matching import TensorInfo
from vsconf.slices import slice_values

# What a module's class says of its tensors: class name -> tensor -> (role, (in axis, out axis)
# or None).  The rest of a weight's axes are its receptive field.  A class is looked up along
# its MRO (MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear, a Linear), and
# any class whose name ends in "Norm" is a normalization (:data:`NORM`: BatchNorm*, LayerNorm,
# GroupNorm, RMSNorm, transformers' LlamaRMSNorm...).  A name ending in "_l" stands for an
# RNN's per-layer tensors (weight_ih_l0, weight_hh_l1_reverse).  Roles always count; axes
# are read under `layout: auto` only, where a class outside the table gets torch's shape rule.
_LINEAR = {"weight": ("weight", (1, 0)), "bias": ("bias", None)}
_TRANSPOSED = {"weight": ("weight", (0, 1)), "bias": ("bias", None)}  # [in, out/groups, k...]
_EMBEDDING = {"weight": ("embedding", (1, 0))}
_RNN = {
    **{f"weight_{gate}{layer}": ("weight", (1, 0)) for gate in ("ih", "hh", "hr") for layer in ("_l", "")},
    **{f"bias_{gate}{layer}": ("bias", None) for gate in ("ih", "hh") for layer in ("_l", "")},
}
_PER_LAYER = re.compile(r"(\w+_l)\d+(?:_reverse)?")
_NORM_CLASS = re.compile(r"Norm(?:[123]d)?$|^_NormBase$")  # LayerNorm, BatchNorm2d, LlamaRMSNorm; not LayerNormLinear
NORM: Mapping[str, tuple[str, None]] = {
    "weight": ("norm_scale", None), "bias": ("norm_bias", None),
    "running_mean": ("running_stat", None), "running_var": ("running_stat", None), "num_batches_tracked": ("running_stat", None),
}
MODULE_TABLE: Mapping[str, Mapping[str, tuple[str, tuple[int, int] | None]]] = {
    "Linear": _LINEAR, "Bilinear": _LINEAR,
    "Conv1d": _LINEAR, "Conv2d": _LINEAR, "Conv3d": _LINEAR,
    "ConvTranspose1d": _TRANSPOSED, "ConvTranspose2d": _TRANSPOSED, "ConvTranspose3d": _TRANSPOSED,
    "Embedding": _EMBEDDING, "EmbeddingBag": _EMBEDDING,
    "MultiheadAttention": {
        **{f"{p}_weight": ("weight", (1, 0)) for p in ("in_proj", "q_proj", "k_proj", "v_proj")},
        "in_proj_bias": ("bias", None), "bias_k": ("bias", None), "bias_v": ("bias", None),
    },
    "RNNBase": _RNN, "RNNCellBase": _RNN,  # RNN, LSTM, GRU and their cells
    "Conv1D": _TRANSPOSED,  # transformers' GPT-2 Conv1D stores [in, out]
}


def _table(cls: type) -> Mapping[str, tuple[str, tuple[int, int] | None]] | None:
    """The tensors' table of the first class along ``cls``'s MRO that has one."""
    for base in cls.__mro__:
        if base.__name__ in MODULE_TABLE:
            return MODULE_TABLE[base.__name__]
        if _NORM_CLASS.search(base.__name__):
            return NORM
    return None


def _row(table: Mapping[str, Any], leaf: str) -> Any:
    """``leaf``'s row: its own, or its RNN layer's (``weight_ih_l`` for ``weight_ih_l1_reverse``)."""
    if leaf in table:
        return table[leaf]
    per_layer = _PER_LAYER.fullmatch(leaf)
    return table.get(per_layer.group(1)) if per_layer else None


@dataclass(frozen=True)
class ModuleResult:
    """What :func:`init_module` did: the plan (every tensor, its rule and spread; the tied
    names in ``plan.aliases``), the names it filled, and the lock it wrote (or None)."""

    plan: Plan
    filled: tuple[str, ...]
    lock: Path | None = None
    # Tensors that were on `meta` and that no rule filled: materialised without values (buffers
    # outside the state dict, such as a rotary embedding's inv_freq, only the module computes).
    uninitialised: tuple[str, ...] = ()


def _torch() -> Any:
    import torch

    return torch


def _dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _state(module: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """``state_dict``'s tensors (parameters and persistent buffers) by name, the first name of
    each, and the aliases: later names of a tensor already named."""
    first: dict[int, str] = {}
    tensors: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in first:
            aliases[name] = first[key]
            continue
        first[key] = name
        tensors[name] = tensor
    return tensors, aliases


def _known(module: Any, tensors: Mapping[str, Any]) -> tuple[dict[str, tuple[Axes, str]], dict[str, tuple[str, str]]]:
    """What ``module``'s classes say of ``tensors`` (state_dict's names): the axes of each
    weight (a class outside :data:`MODULE_TABLE`: torch's shape rule, ``[out, in, k...]``)
    and the roles the table gives."""
    owners = dict(module.named_modules(remove_duplicate=False))
    axes: dict[str, tuple[Axes, str]] = {}
    roles: dict[str, tuple[str, str]] = {}
    for name, tensor in tensors.items():
        prefix, _, leaf = name.rpartition(".")
        owner = owners.get(prefix)
        cls = type(owner).__name__
        table = _table(type(owner)) if owner is not None else None
        role, pair = (_row(table, leaf) if table is not None else None) or (None, None)
        if role is not None:
            roles[name] = (role, f"module {cls} {leaf}")
        if pair is not None:
            axes[name] = (Axes(in_axes=pair[0], out_axes=pair[1]), f"{cls} {leaf}")
        elif tensor.ndim >= 2:
            axes[name] = (Axes(in_axes=1, out_axes=0), f"torch's shape rule ({cls} {leaf})")
    return axes, roles


def _check_module(module: Any) -> None:
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"Argument `module` must be a torch.nn.Module. Received: {type(module).__name__}")


def _live(module: Any) -> tuple[bridge.LiveTensors, dict[str, Any]]:
    _check_module(module)
    tensors, aliases = _state(module)
    infos = [TensorInfo(name, tuple(int(d) for d in t.shape), bridge.numpy_dtype(_dtype_name(t))) for name, t in tensors.items()]
    axes, roles = _known(module, tensors)
    return bridge.LiveTensors(infos, aliases, axes, roles), tensors


def plan_module(module: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None) -> Plan:
    """Which rule fills which of ``module``'s tensors, with fans and spread: what
    :func:`init_module` would do, nothing changed.  Arguments as :func:`init_module`'s."""
    live, _ = _live(module)
    return bridge.plan_live(live, bridge.load(spec, seed, vars))


def _to_torch(values: np.ndarray) -> Any:
    torch = _torch()
    if values.dtype.name == "bfloat16":  # NumPy's bfloat16 is ml_dtypes'; torch takes its bits
        return torch.from_numpy(np.ascontiguousarray(values).view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(values))


def _is_dtensor(tensor: Any) -> bool:
    return type(tensor).__name__ == "DTensor" and hasattr(tensor, "to_local")


def _local_index(tensor: Any) -> tuple[slice, ...]:
    """The box of the global tensor that this rank's shard of a DTensor holds."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
    return tuple(slice(int(o), int(o) + int(s)) for o, s in zip(offset, shape))


def _expected(entry: Any, target: Any, jobs: int) -> tuple[np.ndarray, Any]:
    """What ``entry`` makes for ``target`` and the tensor that holds it here: a DTensor's
    local shard and its slice of the values, else the whole tensor and all of them."""
    if _is_dtensor(target):
        return slice_values(entry, _local_index(target)), target.to_local()
    return generate(entry, jobs=jobs), target


def _materialise(module: Any, device: Any, aliases: Mapping[str, str]) -> None:
    """``to_empty`` a module with tensors on ``meta``, then tie again what was tied (it makes
    one new tensor per module)."""
    module.to_empty(device=device)
    for alias, name in aliases.items():
        owner, _, leaf = alias.rpartition(".")
        source_owner, _, source_leaf = name.rpartition(".")
        target = module.get_submodule(owner) if owner else module
        source = module.get_submodule(source_owner) if source_owner else module
        setattr(target, leaf, getattr(source, source_leaf))


def init_module(
    module: Any,
    spec: Any,
    *,
    vars: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: Any = None,
    jobs: int | None = None,
    lock: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> ModuleResult:
    """Fill ``module``'s tensors in place as ``spec`` says, with the file route's values.

    Args:
        module: A ``torch.nn.Module``: on any device, ``meta`` included; parameters may be
            DTensors (FSDP2, tensor parallel).
        spec: A :class:`~vsconf.Spec` or a spec file's path (a recipe such as
            ``configs/recipes/hf_llama.yaml``).
        vars: Numbers the spec's expressions read (``model.config.to_dict()`` as it is).
        seed: Use this seed instead of the spec's.
        device: Where a module on ``meta`` is materialised (default ``cpu``).
        jobs: Threads generating values (the values never depend on it).
        lock: Also write a lock file (per tensor its init, spread and SHA-256), as
            ``vsconf apply --lock``: the same file whatever the mesh.  Under
            ``torch.distributed``, rank 0 writes it (the others write nothing and return
            ``lock=None``); a DTensor's digest is that of the whole tensor, which rank 0
            draws once more, a chunk at a time, for it.
        force: Replace an existing lock.

    Returns:
        A :class:`ModuleResult`.

    Raises:
        SpecError, MatchError: as :func:`vsconf.plan`.
        ModelError: The lock may not be written, or two tensors that a rule fills share
            memory without being one tensor (views of one storage, an expanded tensor).
            Nothing has changed then.

    Example:
        >>> import torch, vsconf.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> spec = vsconf.parse_spec("vsconf: 1\\nseed: 1\\nlayout: torch\\nrules:\\n  - match: '*.weight'\\n    init: {normal: {std: 0.02}}\\n  - match: '*.bias'\\n    init: zeros\\n")
        >>> result = vsconf.torch.init_module(model, spec)
        >>> result.filled, float(model[0].bias.abs().max())
        (('0.weight', '0.bias'), 0.0)
    """
    from vsconf import arguments

    torch = _torch()
    _check_module(module)
    jobs = arguments.jobs(jobs)
    force = arguments.flag(force, "force")
    where = _device(device)
    spec = bridge.load(spec, seed, vars)
    writes_lock = lock is not None and _rank() == 0
    lock_path = bridge.lock_target(lock, spec, force=force) if writes_lock else arguments.path(lock, "lock", optional=True)
    live, tensors = _live(module)
    plan = bridge.plan_live(live, spec)  # a spec that cannot fill the module fails before it changes
    on_meta = [name for name, t in (*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)) if t.is_meta]
    if on_meta:  # materialised: the same names, shapes and dtypes (so the same plan), new tensors
        _materialise(module, where, plan.aliases)
        tensors, _ = _state(module)
    _check_memory(plan, tensors)
    filled, digests = [], {}
    with torch.no_grad():
        for entry in plan:
            if not entry.changes:
                continue
            target = tensors[entry.name]
            values, local = _expected(entry, target, jobs)
            local.copy_(_to_torch(values).reshape(local.shape))
            filled.append(entry.name)
            if writes_lock:
                digests[entry.name] = bridge.whole_digest(entry, jobs) if _is_dtensor(target) else bridge.digest(values)
    path = bridge.save_lock(plan, digests, lock_path, type(module).__name__, force=force) if writes_lock else None
    done = set(filled) | {alias for alias, name in plan.aliases.items() if name in set(filled)}
    uninitialised = tuple(dict.fromkeys(name for name in on_meta if name not in done))
    if uninitialised:
        warnings.warn(
            f"{len(uninitialised)} tensor(s) were on the meta device and no rule filled them, so they hold no values "
            f"({', '.join(uninitialised[:3])}{', ...' if len(uninitialised) > 3 else ''}): buffers outside the state "
            "dict only the module can compute again; give the others a rule",
            stacklevel=2,
        )
    return ModuleResult(plan, tuple(filled), path, uninitialised)


def _device(device: Any) -> Any:
    """Where a module on ``meta`` is materialised: ``device`` as torch reads it (default cpu)."""
    torch = _torch()
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (str, int, torch.device)) or isinstance(device, bool):
        raise TypeError(f"Argument `device` must be a torch.device, a str or an int. Received: {type(device).__name__}")
    try:
        found = torch.device(device)
    except RuntimeError:
        raise ValueError(f"Argument `device` must name a device torch knows (cpu, cuda:0...). Received: {device!r}") from None
    if found.type == "meta":
        raise ValueError("Argument `device` must be a device with memory, to materialise the module on. Received: 'meta'")
    return found


def _rank() -> int:
    """This process's rank under ``torch.distributed`` (0 when it is not in use)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _check_memory(plan: Plan, tensors: Mapping[str, Any]) -> None:
    """Refuse, before anything is written, tensors a rule fills whose elements share memory:
    an expanded tensor (a stride of 0), or two names whose memory overlaps without being one
    tensor (views of one storage): filling one would write over the other."""
    spans = []
    for entry in plan:
        if not entry.changes:
            continue
        tensor = tensors[entry.name]
        local = tensor.to_local() if _is_dtensor(tensor) else tensor
        if local.is_meta or local.numel() == 0:
            continue
        if any(stride == 0 and size > 1 for stride, size in zip(local.stride(), local.shape)):
            raise ModelError(f"tensor {entry.name!r}: its elements share memory (an expanded view), so no values fit it")
        start = local.storage_offset()
        end = start + 1 + sum((size - 1) * stride for size, stride in zip(local.shape, local.stride()))
        spans.append((local.untyped_storage().data_ptr(), start * local.element_size(), end * local.element_size(), entry.name))
    spans.sort()
    for (storage, _, end, name), (next_storage, next_start, _, next_name) in zip(spans, spans[1:]):
        if storage == next_storage and next_start < end:
            raise ModelError(
                f"tensors {name!r} and {next_name!r} share memory without being one tensor (views of one storage): "
                "filling one would write over the other; make them separate parameters, or tie them (one Parameter)"
            )


def verify_module(
    module: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None,
    lock: str | os.PathLike[str] | None = None, jobs: int | None = None,
) -> list[Problem]:
    """Every tensor of ``module`` that differs from what ``spec`` makes, and every
    disagreement with ``lock``; an empty list when all match.

    A DTensor is checked where it lives: each rank compares its own shard with its slice of
    the spec's values.  Its digest, checked against the lock, is that of the whole values
    the spec makes (which the shard was just shown to hold), drawn a chunk at a time on
    rank 0 only; the other ranks check the lock's records (init, fans, spread) and their own
    tensors.  Arguments as :func:`init_module`'s."""
    from vsconf import arguments

    torch = _torch()
    _check_module(module)
    jobs = arguments.jobs(jobs)
    spec = bridge.load(spec, seed, vars)
    lock_path = arguments.path(lock, "lock", optional=True)
    live, tensors = _live(module)
    plan = bridge.plan_live(live, spec)
    problems, digests = [], {}
    with torch.no_grad():
        for entry in plan:
            if not entry.changes:
                continue
            target = tensors[entry.name]
            expected, actual = _expected(entry, target, jobs)
            have = _to_numpy(actual.detach().cpu().contiguous(), expected.dtype)
            problem = bridge.difference(have, expected)
            if problem is not None:
                problems.append(Problem("", 0, 0, "", problem, tensor=entry.name))
            if lock_path is not None and not _is_dtensor(target):
                digests[entry.name] = bridge.digest(have)
            elif lock_path is not None and _rank() == 0:
                digests[entry.name] = bridge.whole_digest(entry, jobs)
    if lock_path is not None:
        problems.extend(bridge.check_lock(lock_path, plan, digests))
    return problems


def _to_numpy(tensor: Any, dtype: np.dtype) -> np.ndarray:
    torch = _torch()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(dtype)
    return tensor.numpy()
