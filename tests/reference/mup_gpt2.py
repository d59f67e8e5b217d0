"""μP for a Hugging Face GPT-2 as the ``mup`` package sets it up, restated without ``mup``.

Restates mup 1.0.0 (PyPI; microsoft/mup), files ``mup/shape.py``, ``mup/infshape.py``,
``mup/init.py`` and ``mup/layer.py``, as far as tests/test_recipes_hf.py's ``_mup_gpt2_build``
uses them.  ``mup`` requires torchvision, whose wheels here are CUDA builds that fail to import
beside the CPU torch, so ``mup`` is not in the test extra; where ``import mup`` fails the mup
families of tests/test_recipes_hf.py run on this module, and where it works
``test_the_mup_restatement_agrees_with_mup`` checks that this module gives the same tensors,
bit for bit, as mup's own functions under the same seed.  What is restated:

- ``set_base_shapes(model, "x.bsh", rescale_params=False)`` (shape.py): the .bsh is YAML, a
  parameter name -> its base shape, ``null`` for a finite (non-width) dim.  Loaded from a file
  every dim is ``InfDim(base_dim, dim)`` (``InfShape.from_base_shape``, then ``zip_infshape``
  copies each InfDim and sets its ``dim``): a dim is a width dim iff its base dim is not null,
  even where the model's dim equals the base dim (``fin_if_same`` applies only to int base
  shapes, not to a file's).  The .bsh must name exactly the model's parameters
  (``_zip_infshape_dict``'s assert), and no ``nn.Linear`` but the readout may have a width
  fan-in (``infshape[1]``) and a finite fan-out (``infshape[0]``) (``assert_hidden_size_inf``).
  With ``rescale_params=False`` nothing is rescaled.
- ``InfShape.width_mult()`` (infshape.py): ``dim / base_dim`` of the LAST width dim (mup's
  "fan-in" for torch's ``[out, in]`` Linear; on HF's ``[in, out]`` Conv1D that is the output
  dim, the same multiplier whenever every width scales together), 1 with no width dim.
- ``mup.init.normal_(t, mean=0, std)`` (init.py, ``constant_std_init_``): with at most one width
  dim ``t.normal_(mean, std)``; with two, ``t.normal_(mean * s, std * s)``, ``s =
  width_mult() ** -0.5``; more raise NotImplementedError.
- ``MuReadout(d, vocab, bias=False, readout_zero_init=z)`` (layer.py): a Linear whose
  ``reset_parameters`` sets the weight to 0 without drawing if ``z``, else is Linear's own
  (kaiming_uniform_, one draw): :class:`Readout`.  Its forward's ``output_mult / width_mult``
  is not restated (only the init is tested).
- ``make_base_shapes(base, delta)`` (shape.py): per parameter ``[b if b != d else None]`` of the
  base and delta models' shapes (``zip_infshape`` with int shapes and ``fin_if_same``, then
  ``clear_dims``).

and the init itself, in ``_mup_gpt2_build``'s order (microsoft/mutransformers' GPT-2
``_init_weights`` once infshapes are set): for each module in ``model.modules()`` order, a
Conv1D's weight ``mup.init.normal_(std=initializer_range)`` and its bias 0, an Embedding's
weight torch's ``normal_(std=initializer_range)``, a LayerNorm 1 / 0; then the readout
``mup.init.normal_(std=initializer_range)`` unless readout_zero_init (0 then: MuReadout's
constructor left it so); then every ``*c_proj.weight`` re-drawn by ``mup.init.normal_(std=
initializer_range / sqrt(2 n_layer))``; then with query_zero_init the first third of the
columns of each ``transformer.h.<i>.attn.c_attn.weight`` 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

UPSTREAM = "mup 1.0.0: mup/shape.py, mup/infshape.py, mup/init.py, mup/layer.py"

BaseShapes = dict[str, list]  # name -> base dims, None for a finite dim


def load_base_shapes(path: str | Path) -> BaseShapes:
    import yaml

    shapes = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(shapes, dict) or not all(isinstance(v, list) for v in shapes.values()):
        raise ValueError(f"{path}: not a base-shape file (a mapping of names to lists)")
    return shapes


def make_base_shapes(base: nn.Module, delta: nn.Module) -> BaseShapes:
    """What ``mup.make_base_shapes(base, delta)`` saves: a dim is a width dim (its base dim kept)
    where the two models differ, finite (None) where they agree."""
    base_shapes = {name: list(p.shape) for name, p in base.named_parameters()}
    delta_shapes = {name: list(p.shape) for name, p in delta.named_parameters()}
    if set(base_shapes) != set(delta_shapes):
        raise ValueError(f"base and delta differ in names: {sorted(set(base_shapes) ^ set(delta_shapes))}")
    return {name: [b if b != d else None for b, d in zip(shape, delta_shapes[name])] for name, shape in base_shapes.items()}


@dataclass(frozen=True)
class InfShape:
    """What mup's ``p.infshape`` says of one parameter: its (base_dim, dim) pairs."""

    dims: tuple[tuple[int | None, int], ...]

    def isinf(self, i: int) -> bool:
        return self.dims[i][0] is not None

    def ninf(self) -> int:
        return sum(1 for base, _ in self.dims if base is not None)

    def width_mult(self) -> float:
        """``dim / base_dim`` of the last width dim; 1 with none."""
        for base, dim in reversed(self.dims):
            if base is not None:
                return dim / base
        return 1


def infshapes(model: nn.Module, base_shapes: BaseShapes, readout: str = "lm_head") -> dict[str, InfShape]:
    """``set_base_shapes(model, base_shapes_file)``'s infshape of every parameter, with its
    checks (``readout``: the module mup would see as a MuReadout)."""
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if set(base_shapes) != set(shapes):
        raise ValueError(
            f"`base_shapes` has extra names {set(base_shapes) - set(shapes)}. `shapes` has extra names {set(shapes) - set(base_shapes)}."
        )
    out = {name: InfShape(tuple(zip(base_shapes[name], shape))) for name, shape in shapes.items()}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name != readout:
            s = out[f"{name}.weight" if name else "weight"]
            if not s.isinf(0) and s.isinf(1):
                raise ValueError(f"{name} has infinite fan-in and finite fan-out dimensions but is not the readout")
    return out


def normal_(tensor: torch.Tensor, infshape: InfShape, mean: float = 0, std: float = 1) -> torch.Tensor:
    """``mup.init.normal_``: the same draw, its std (and mean) times width_mult ** -0.5 on a
    tensor with two width dims."""
    ninf = infshape.ninf()
    if mean != 0 and ninf != 1:
        raise ValueError("Sampler for (inf, inf) tensors should have mean 0")
    if ninf <= 1:
        scale = 1
    elif ninf == 2:
        scale = infshape.width_mult() ** -0.5
    else:
        raise NotImplementedError()
    with torch.no_grad():
        return tensor.normal_(mean * scale, std * scale)


class Readout(nn.Linear):
    """``mup.MuReadout``'s construction: with ``readout_zero_init`` the weight (and bias) 0 and
    nothing drawn, else nn.Linear's own reset_parameters.  (Its forward is plain Linear's.)"""

    def __init__(self, *args, readout_zero_init: bool = False, output_mult: float = 1.0, **kwargs):
        self.output_mult = output_mult
        self.readout_zero_init = readout_zero_init
        super().__init__(*args, **kwargs)

    def reset_parameters(self) -> None:
        if self.readout_zero_init:
            self.weight.data[:] = 0
            if self.bias is not None:
                self.bias.data[:] = 0
        else:
            super().reset_parameters()


def init_gpt2(
    model: nn.Module,
    base_shapes: BaseShapes | str | Path,
    *,
    initializer_range: float,
    n_layer: int,
    readout_zero_init: bool,
    query_zero_init: bool,
) -> nn.Module:
    """``_mup_gpt2_build``'s init of a GPT2LMHeadModel whose ``lm_head`` is the readout (a
    MuReadout, :class:`Readout` or any Linear of its shape), as the module docstring says."""
    from transformers.pytorch_utils import Conv1D

    if not isinstance(base_shapes, dict):
        base_shapes = load_base_shapes(base_shapes)
    shape_of = infshapes(model, base_shapes)
    std = initializer_range
    with torch.no_grad():
        for name, module in model.named_modules():
            prefix = f"{name}." if name else ""
            if isinstance(module, Conv1D):
                normal_(module.weight, shape_of[prefix + "weight"], mean=0.0, std=std)
                module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(mean=0.0, std=std)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        if readout_zero_init:
            model.lm_head.weight.zero_()
            if model.lm_head.bias is not None:
                model.lm_head.bias.zero_()
        else:
            normal_(model.lm_head.weight, shape_of["lm_head.weight"], mean=0.0, std=std)
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                normal_(p, shape_of[name], mean=0.0, std=std / math.sqrt(2 * n_layer))
        if query_zero_init:
            for block in model.transformer.h:
                fanout = block.attn.c_attn.weight.shape[1]
                block.attn.c_attn.weight[:, : fanout // 3] = 0
    return model
