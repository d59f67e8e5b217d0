"""A small ViT with timm's parameter names, initialized by timm's own init functions.

timm imports torchvision, which cannot be installed beside the CPU build of torch this
project tests with, so ``import timm`` fails here even where timm's files are installed
(``pip install --no-deps timm``).  Where ``import timm`` works, the tests use
``timm.models.vision_transformer.VisionTransformer`` itself.  Otherwise they use
:class:`VisionTransformer` below: the modules of timm's ViT (``patch_embed.proj`` a Conv2d,
``cls_token``, ``pos_embed``, ``blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
``norm``, ``head``; torch's own Linear, Conv2d and LayerNorm, so that timm's ``isinstance``
tests see what they see in timm), made as timm makes them and then initialized by

- timm's own code where timm's files are installed: ``timm/layers/weight_init.py`` loaded by
  its path (it needs only torch), and ``init_weights_vit_timm``, ``init_weights_vit_jax``,
  ``get_init_weights_vit`` and the methods ``VisionTransformer.init_weights`` and
  ``VisionTransformer.fix_init_weight`` of ``timm/models/vision_transformer.py``, and
  ``named_apply`` of ``timm/models/_manipulate.py``, compiled from those files' source alone
  (:func:`timm_source`);
- else a restatement of those functions (:func:`restated`), as read in timm 1.0.31:
  ``weight_init=''`` (timm's default): Linear weights ``trunc_normal_(std=.02)`` (absolute
  bounds +-2, i.e. +-100 std) and biases 0; the patch embedding Conv2d and the LayerNorms keep
  the values torch's constructors gave them; ``pos_embed`` ``trunc_normal_(std=.02)``;
  ``cls_token`` N(0, 1e-6^2).  ``'jax'``/``'jax_nlhb'``: the head's weight 0 and bias 0 (or
  -log(num_classes) for ``_nlhb``), other Linear weights ``xavier_uniform_``, their biases
  N(0, 1e-6^2) inside the MLPs and 0 elsewhere, the patch embedding ``lecun_normal_`` (a
  truncated normal at +-2 std, std sqrt(1/fan_in)/0.8796...) with bias 0.  ``fix_init=True``
  then divides ``blocks.<i>.attn.proj.weight`` and ``blocks.<i>.mlp.fc2.weight`` by
  sqrt(2 * (i + 1)).
"""

from __future__ import annotations

import __future__
import ast
import importlib.util
import math
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

UPSTREAM = "timm 1.0.31: timm/models/vision_transformer.py, timm/layers/weight_init.py"


# --------------------------------------------------------------------------- timm's own source, by path


def _timm_root() -> Path | None:
    spec = importlib.util.find_spec("timm")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _compile_defs(path: Path, namespace: dict[str, Any], functions: tuple[str, ...] = (), methods: tuple[str, str, tuple[str, ...]] | None = None) -> None:
    """Compile the named top-level functions (and methods of one class) of ``path`` alone into ``namespace``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    picked: list[ast.stmt] = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in functions]
    if methods is not None:
        class_name, _, names = methods
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                picked += [item for item in node.body if isinstance(item, ast.FunctionDef) and item.name in names]
    found = {node.name for node in picked}  # type: ignore[attr-defined]
    wanted = set(functions) | set(methods[2] if methods else ())
    if found != wanted:
        raise LookupError(f"{path}: {sorted(wanted - found)} not found")
    module = ast.Module(body=picked, type_ignores=[])
    exec(compile(module, str(path), "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True), namespace)


@lru_cache(maxsize=1)
def timm_source() -> dict[str, Any] | None:
    """timm's init functions compiled from its installed files, or None where timm is absent."""
    root = _timm_root()
    if root is None:
        return None
    loader_spec = importlib.util.spec_from_file_location("_timm_weight_init_by_path", root / "layers" / "weight_init.py")
    weight_init = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(weight_init)
    namespace: dict[str, Any] = {
        "torch": torch, "nn": nn, "math": math, "partial": partial, "Callable": Callable,
        "trunc_normal_": weight_init.trunc_normal_, "lecun_normal_": weight_init.lecun_normal_,
    }
    _compile_defs(root / "models" / "_manipulate.py", namespace, functions=("named_apply",))
    _compile_defs(
        root / "models" / "vision_transformer.py", namespace,
        functions=("init_weights_vit_timm", "init_weights_vit_jax", "init_weights_vit_moco", "init_weights_reset_parameters", "get_init_weights_vit"),
        methods=("VisionTransformer", "", ("init_weights", "fix_init_weight")),
    )
    return {"init_weights": namespace["init_weights"], "fix_init_weight": namespace["fix_init_weight"], "source": str(root)}


# --------------------------------------------------------------------------- the same rules, restated


def _restated_init_weights(self: VisionTransformer, mode: str = "", needs_reset: bool = True) -> None:
    mode = mode or self.weight_init_mode
    head_bias = -math.log(self.num_classes) if "nlhb" in mode else 0.0
    with torch.no_grad():
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if mode.startswith("jax") and name.startswith("head"):
                    nn.init.zeros_(module.weight)
                    nn.init.constant_(module.bias, head_bias)
                elif mode.startswith("jax"):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.normal_(module.bias, std=1e-6) if "mlp" in name else nn.init.zeros_(module.bias)
                else:
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d) and mode.startswith("jax"):
                fan_in = module.weight[0].numel()
                nn.init.trunc_normal_(module.weight, std=1.0)  # timm's trunc_normal_tf_: cut the unit normal at +-2, then scale
                module.weight.mul_(math.sqrt(1.0 / fan_in) / 0.87962566103423978)
                nn.init.zeros_(module.bias)
        if self.fix_init:
            self.fix_init_weight()


def _restated_fix_init_weight(self: VisionTransformer) -> None:
    with torch.no_grad():
        for layer_id, layer in enumerate(self.blocks):
            scale = math.sqrt(2.0 * (layer_id + 1))
            layer.attn.proj.weight.div_(scale)
            layer.mlp.fc2.weight.div_(scale)


def restated() -> dict[str, Any]:
    return {"init_weights": _restated_init_weights, "fix_init_weight": _restated_fix_init_weight, "source": "restated in tests/reference/timm_vit.py"}


# --------------------------------------------------------------------------- the model


class Attention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class Block(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def init_weights(self) -> None:
        """timm's Block.init_weights: it sets the norms only when init_values (LayerScale) is given."""


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)


class VisionTransformer(nn.Module):
    """timm's ViT with a class token, learned position embeddings, no register tokens, no
    LayerScale and a token-pooled head: the parameters of ``timm.models.vision_transformer.
    VisionTransformer`` with those defaults.  ``functions`` is :func:`timm_source` or :func:`restated`."""

    def __init__(self, functions: dict[str, Any], *, img_size: int = 32, patch_size: int = 8, in_chans: int = 3, num_classes: int = 10,
                 embed_dim: int = 64, depth: int = 4, mlp_ratio: float = 4.0, weight_init: str = "", fix_init: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.reg_token = None
        self.pos_embed = nn.Parameter(torch.empty(1, (img_size // patch_size) ** 2 + 1, embed_dim))
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        self.blocks = nn.Sequential(*[Block(embed_dim, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self.weight_init_mode = weight_init
        self.fix_init = fix_init
        self._functions = functions
        self.init_weights(needs_reset=False)  # as timm's constructor does

    def init_weights(self, mode: str = "", needs_reset: bool = True) -> None:
        self._functions["init_weights"](self, mode, needs_reset)

    def fix_init_weight(self) -> None:
        self._functions["fix_init_weight"](self)


def build(weight_init: str, fix_init: bool, **kwargs: Any) -> tuple[nn.Module, str]:
    """The library's own ViT where timm imports, else the model above: (model, what initialized it)."""
    try:
        from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
    except Exception:  # noqa: BLE001 -- ImportError, or torchvision's RuntimeError on a CUDA build
        TimmVisionTransformer = None
    if TimmVisionTransformer is not None:
        model = TimmVisionTransformer(**kwargs, weight_init=weight_init, fix_init=fix_init, global_pool="token", class_token=True)
        return model, "timm.models.vision_transformer.VisionTransformer"
    functions = timm_source() or restated()
    return VisionTransformer(functions, weight_init=weight_init, fix_init=fix_init, **kwargs), functions["source"]
