"""What tensor names tell when nothing else does: the base of every state-dict-like format.

A state dict -- an ``.npz`` or ``.safetensors`` file, a sharded checkpoint, a shapes
manifest, a dict of arrays -- has no graph to ask which op reads a tensor.  Its names are
all there is, and PyTorch's and Keras's conventions say a lot: ``bn1.running_mean`` is a
running statistic, ``ln_f.weight`` a norm's scale, ``fc.bias`` a bias whose weight is
``fc.weight``.  :class:`NamedTensors` is what every such format reports to the engine;
its roles are marked as guesses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from vsconf.engine import FanHint
from vsconf.formats.protocol import AdapterBase
from vsconf.matching import TensorInfo


class NamedTensors(AdapterBase):
    """What every state dict tells the engine: names, shapes and dtypes; roles and biases'
    weights by name.  One file each (the defaults of :class:`~vsconf.formats.protocol.AdapterBase`)."""

    target = "state_dict"
    _infos: list[TensorInfo]

    def tensors(self) -> list[TensorInfo]:
        return guess_roles(self._infos)

    def listing(self) -> list[TensorInfo]:
        """Names, shapes and dtypes alone, in the file's order (no roles guessed)."""
        return self._infos

    def hints(self) -> dict[str, FanHint]:
        return state_dict_hints(self._infos)


# --------------------------------------------------------------------------- roles by name

# Buffers that PyTorch and Keras name the same way everywhere.
_RUNNING_STATS = frozenset({"running_mean", "running_var", "num_batches_tracked", "moving_mean", "moving_variance"})
_CONSTANT_BUFFERS = frozenset({"masked_bias", "inv_freq", "position_ids", "token_type_ids"})
# A module whose last name part says "norm": bn1, ln_f, norm2, layer_norm, LayerNorm, gn...
_NORM_MODULE = re.compile(r"(?i)^(?:bn|ln|gn|rms|norm|batchnorm|batch_norm|layernorm|layer_norm|groupnorm|rmsnorm)(?:_?\w*?\d*)$|norm")
_EMBEDDING_MODULE = re.compile(r"(?i)embed|^wte$|^wpe$|^emb$|^tok_embeddings$")


def _split(name: str) -> tuple[str, str]:
    """(module path, last part) of a parameter name: ``layer1.0.bn1``, ``running_mean``."""
    for separator in (".", "/"):
        if separator in name:
            module, _, leaf = name.rpartition(separator)
            return module, leaf
    return "", name


def guess_roles(infos: list[TensorInfo]) -> list[TensorInfo]:
    """Each tensor with the role its name says under PyTorch's and Keras's conventions
    (marked as a guess: a state dict has no consumers to ask)."""
    splits = [_split(info.name) for info in infos]
    modules_with_stats = {module for module, leaf in splits if leaf in _RUNNING_STATS}
    reasons: dict[str, str] = {}  # one string per reason, shared by every tensor it explains
    out = []
    for info, (module, leaf) in zip(infos, splits):
        role, why = _role_by_name(info, module, leaf, modules_with_stats)
        role_from = reasons.get(why)
        if role_from is None:
            role_from = reasons[why] = f"name: {why}"
        out.append(TensorInfo(info.name, info.shape, info.dtype, info.consumers, role, role_from, True))
    return out


def _role_by_name(info: TensorInfo, module: str, leaf: str, modules_with_stats: set[str]) -> tuple[str, str]:
    last_module = _split(module)[1] if module else ""
    if leaf in _RUNNING_STATS:
        return "running_stat", f"{leaf!r} is a normalization's running statistic"
    if leaf in _CONSTANT_BUFFERS:
        return "constant", f"{leaf!r} is a buffer, not a parameter"
    normish = module in modules_with_stats or bool(last_module and _NORM_MODULE.search(last_module))
    if leaf in ("gamma", "beta") or (normish and leaf in ("weight", "scale", "bias")):
        why = "a sibling running statistic" if module in modules_with_stats else f"module {last_module or module!r}"
        return ("norm_bias" if leaf in ("beta", "bias") else "norm_scale"), f"{leaf!r} of a normalization ({why})"
    if "bias" in leaf:
        return "bias", f"{leaf!r}"
    if leaf == "embeddings" or ("weight" in leaf and len(info.shape) == 2 and _EMBEDDING_MODULE.search(last_module or "")):
        return "embedding", f"{leaf!r} of an embedding ({last_module or leaf!r})"
    if leaf == "kernel" or ("weight" in leaf and len(info.shape) >= 2):
        return "weight", f"{leaf!r} of rank {len(info.shape)}"
    return "other", f"{leaf!r} follows no convention vsconf knows"




def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate, which no file format can hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True



def _sibling_weight(name: str) -> str:
    stem, _, _ = name.rpartition(".")
    return f"{stem}.weight" if stem else "weight"


class _SiblingHints(Mapping[str, FanHint]):
    """The hints of a state dict, made when asked for: a model may have a million tensors,
    and most never need theirs."""

    def __init__(self, names: set[str]):
        self._names = names

    def __getitem__(self, name: str) -> FanHint:
        hint = self.get(name)
        if hint is None:
            raise KeyError(name)
        return hint

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self._names:
            return default
        weight = _sibling_weight(name)
        return FanHint(weight=weight) if weight in self._names else FanHint(weight_expected=weight)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def state_dict_hints(tensors: Sequence[TensorInfo]) -> Mapping[str, FanHint]:
    """For state dicts, a bias's weight is its sibling: ``fc.bias`` -> ``fc.weight`` (and a
    weight is its own)."""
    return _SiblingHints({t.name for t in tensors})
