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

Fans: the spec's layout decides, as for a file (``layout: torch`` for PyTorch modules, as the
recipes say).  Under ``layout: auto`` the module's classes say which axes are in and out
(:data:`MODULE_AXES`), where a state dict could only guess.

torch is imported when a function here is first called, never by ``import vsconf``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import bridge
from vsconf.draw import generate
from vsconf.engine import Plan
from vsconf.errors import Problem
from vsconf.fans import Axes
from vsconf.matching import TensorInfo
from vsconf.slices import slice_values

# Module classes whose weights' axes are known: class name -> parameter -> (in axes, out axes).
# The rest of the axes are the receptive field.  Read under `layout: auto` only.
MODULE_AXES: Mapping[str, Mapping[str, tuple[int, int]]] = {
    "Linear": {"weight": (1, 0)},
    "Bilinear": {"weight": (1, 0)},
    "Conv1d": {"weight": (1, 0)}, "Conv2d": {"weight": (1, 0)}, "Conv3d": {"weight": (1, 0)},
    "ConvTranspose1d": {"weight": (0, 1)}, "ConvTranspose2d": {"weight": (0, 1)}, "ConvTranspose3d": {"weight": (0, 1)},
    "Embedding": {"weight": (1, 0)},
    "MultiheadAttention": {"in_proj_weight": (1, 0), "q_proj_weight": (1, 0), "k_proj_weight": (1, 0), "v_proj_weight": (1, 0)},
    "RNN": {"weight_ih_l": (1, 0), "weight_hh_l": (1, 0)},
    "LSTM": {"weight_ih_l": (1, 0), "weight_hh_l": (1, 0)},
    "GRU": {"weight_ih_l": (1, 0), "weight_hh_l": (1, 0)},
    "Conv1D": {"weight": (0, 1)},  # transformers' GPT-2 Conv1D stores [in, out]
}


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


def _axes(module: Any) -> dict[str, tuple[Axes, str]]:
    """The axes each module class in :data:`MODULE_AXES` gives its parameters."""
    out: dict[str, tuple[Axes, str]] = {}
    for prefix, child in module.named_modules():
        table = MODULE_AXES.get(type(child).__name__)
        if not table:
            continue
        for name, _ in child.named_parameters(recurse=False):
            for stem, (in_axis, out_axis) in table.items():
                if name == stem or (stem.endswith("_l") and name.startswith(stem)):
                    full = f"{prefix}.{name}" if prefix else name
                    out[full] = (Axes(in_axes=in_axis, out_axes=out_axis), f"{type(child).__name__} {name}")
    return out


def _check_module(module: Any) -> None:
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"Argument `module` must be a torch.nn.Module. Received: {type(module).__name__}")


def _live(module: Any) -> tuple[bridge.LiveTensors, dict[str, Any]]:
    _check_module(module)
    tensors, aliases = _state(module)
    infos = [TensorInfo(name, tuple(int(d) for d in t.shape), bridge.numpy_dtype(_dtype_name(t))) for name, t in tensors.items()]
    return bridge.LiveTensors(infos, aliases, _axes(module)), tensors


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
    module.to_empty(device=device if device is not None else "cpu")
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
            ``vsconf apply --lock``; on a DTensor's rank, the digest is its shard's.
        force: Replace an existing lock.

    Returns:
        A :class:`ModuleResult`.

    Raises:
        SpecError, MatchError: as :func:`vsconf.plan`.

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
    spec = bridge.load(spec, seed, vars)
    tensors, aliases = _state(module)
    on_meta = [name for name, t in (*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)) if t.is_meta]
    if on_meta:
        _materialise(module, device, aliases)
    live, tensors = _live(module)
    plan = bridge.plan_live(live, spec)
    filled, digests = [], {}
    with torch.no_grad():
        for entry in plan:
            if not entry.changes:
                continue
            values, local = _expected(entry, tensors[entry.name], jobs)
            local.copy_(_to_torch(values).reshape(local.shape))
            filled.append(entry.name)
            if lock is not None:
                digests[entry.name] = bridge.digest(values)
    path = bridge.save_lock(plan, digests, lock, type(module).__name__, force=force) if lock is not None else None
    done = set(filled) | {alias for alias, name in aliases.items() if name in set(filled)}
    uninitialised = tuple(dict.fromkeys(name for name in on_meta if name not in done))
    if uninitialised:
        warnings.warn(
            f"{len(uninitialised)} tensor(s) were on the meta device and no rule filled them, so they hold no values "
            f"({', '.join(uninitialised[:3])}{', ...' if len(uninitialised) > 3 else ''}): buffers outside the state "
            "dict only the module can compute again; give the others a rule",
            stacklevel=2,
        )
    return ModuleResult(plan, tuple(filled), path, uninitialised)


def verify_module(
    module: Any, spec: Any, *, vars: Mapping[str, Any] | None = None, seed: int | None = None,
    lock: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Every tensor of ``module`` that differs from what ``spec`` makes (a DTensor: this rank's
    shard), and every disagreement with ``lock``; an empty list when all match."""
    torch = _torch()
    spec = bridge.load(spec, seed, vars)
    live, tensors = _live(module)
    plan = bridge.plan_live(live, spec)
    problems, digests = [], {}
    with torch.no_grad():
        for entry in plan:
            if not entry.changes:
                continue
            expected, actual = _expected(entry, tensors[entry.name], 1)
            have = _to_numpy(actual.detach().cpu().contiguous(), expected.dtype)
            digests[entry.name] = bridge.digest(have)
            if not bridge.same_bits(have, expected):
                problems.append(Problem("", 0, 0, "", "its values differ from what the spec produces", tensor=entry.name))
    if lock is not None:
        problems.extend(bridge.check_lock(lock, plan, digests))
    return problems


def _to_numpy(tensor: Any, dtype: np.dtype) -> np.ndarray:
    torch = _torch()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(dtype)
    return tensor.numpy()
