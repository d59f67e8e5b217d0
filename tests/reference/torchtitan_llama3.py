"""torchtitan's Llama 3 model init, re-implemented as a small torch module.

torchtitan is not a pip package this project can depend on, so this module restates what its
``init_weights`` does, with the same parameter names and shapes, from a reading of
pytorch/torchtitan at commit 238fa9953e4aec2a62582121564273d7cbb1e9f1 (2026-02-23, the last
commit with the ``depth_init`` option; it was removed by adbaa061c on 2026-04-01, after which
every layer is depth-scaled and wq/wk/wv are fused into one wqkv):

- torchtitan/models/llama3/model/args.py: ``TransformerModelArgs`` (dim, n_layers, n_heads,
  n_kv_heads, vocab_size, multiple_of, ffn_dim_multiplier, norm_eps, depth_init=True);
- torchtitan/models/llama3/model/model.py: ``Attention.init_weights``,
  ``FeedForward.init_weights``, ``TransformerBlock.__init__``/``init_weights`` and
  ``Transformer.init_weights``;
- torchtitan/models/utils.py: ``trunc_normal_``, which is ``torch.nn.init.trunc_normal_`` run in
  float32 (its a, b are absolute bounds, default -2, 2).

The rules, per tensor:

- ``tok_embeddings.weight``: ``normal_`` (std 1);
- ``layers.<i>.attention.{wq,wk,wv}.weight`` and ``layers.<i>.feed_forward.w1.weight``:
  ``trunc_normal_(std=0.02)`` (bounds +-2, i.e. +-100 std: in effect untruncated);
- ``layers.<i>.attention.wo.weight``, ``layers.<i>.feed_forward.{w2,w3}.weight``:
  ``trunc_normal_(std=s)`` with s = 0.02 / sqrt(2 * (i + 1)) when ``depth_init`` is true, else
  0.02 / sqrt(2 * n_layers);
- the RMSNorm weights (``attention_norm``, ``ffn_norm``, ``norm``): ones;
- ``output.weight``: ``trunc_normal_(std=dim ** -0.5, a=-3 std, b=3 std)``.
"""

from __future__ import annotations

import torch
from torch import nn

UPSTREAM = "pytorch/torchtitan@238fa9953e4aec2a62582121564273d7cbb1e9f1 (2026-02-23): torchtitan/models/llama3/model/model.py"


def _trunc_normal_(tensor: torch.Tensor, std: float, a: float = -2.0, b: float = 2.0) -> None:
    tmp = tensor.detach().float()
    nn.init.trunc_normal_(tmp, mean=0.0, std=std, a=a, b=b)
    with torch.no_grad():
        tensor.copy_(tmp)


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int):
        super().__init__()
        head_dim = dim // n_heads
        self.wq = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wo = nn.Linear(n_heads * head_dim, dim, bias=False)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.wq, self.wk, self.wv):
            _trunc_normal_(linear.weight, std=0.02)
        _trunc_normal_(self.wo.weight, std=init_std)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, multiple_of: int, ffn_dim_multiplier: float | None):
        super().__init__()
        hidden_dim = int(2 * hidden_dim / 3)
        if ffn_dim_multiplier is not None:
            hidden_dim = int(ffn_dim_multiplier * hidden_dim)
        hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def init_weights(self, init_std: float) -> None:
        _trunc_normal_(self.w1.weight, std=0.02)
        for linear in (self.w2, self.w3):
            _trunc_normal_(linear.weight, std=init_std)


class TransformerBlock(nn.Module):
    def __init__(self, layer_id: int, dim: int, n_layers: int, n_heads: int, n_kv_heads: int, multiple_of: int,
                 ffn_dim_multiplier: float | None, depth_init: bool):
        super().__init__()
        self.attention = Attention(dim, n_heads, n_kv_heads)
        self.feed_forward = FeedForward(dim, 4 * dim, multiple_of, ffn_dim_multiplier)
        self.attention_norm = nn.RMSNorm(dim)
        self.ffn_norm = nn.RMSNorm(dim)
        self.weight_init_std = 0.02 / (2 * (layer_id + 1)) ** 0.5 if depth_init else 0.02 / (2 * n_layers) ** 0.5

    def init_weights(self) -> None:
        self.attention_norm.reset_parameters()
        self.ffn_norm.reset_parameters()
        self.attention.init_weights(self.weight_init_std)
        self.feed_forward.init_weights(self.weight_init_std)


class Transformer(nn.Module):
    """The parameters of torchtitan's Llama 3 ``Transformer`` (its RoPE buffer ``freqs_cis``
    is not persistent, so not in the state dict, and is left out)."""

    def __init__(self, *, dim: int = 64, n_layers: int = 4, n_heads: int = 4, n_kv_heads: int | None = None,
                 vocab_size: int = 256, multiple_of: int = 32, ffn_dim_multiplier: float | None = None,
                 depth_init: bool = True):
        super().__init__()
        self.dim = dim
        self.tok_embeddings = nn.Embedding(vocab_size, dim)
        self.layers = nn.ModuleDict({
            str(i): TransformerBlock(i, dim, n_layers, n_heads, n_kv_heads or n_heads, multiple_of, ffn_dim_multiplier, depth_init)
            for i in range(n_layers)
        })
        self.norm = nn.RMSNorm(dim)
        self.output = nn.Linear(dim, vocab_size, bias=False)

    def init_weights(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.tok_embeddings.weight)
        for layer in self.layers.values():
            layer.init_weights()
        self.norm.reset_parameters()
        std = self.dim ** -0.5
        _trunc_normal_(self.output.weight, std=std, a=-3 * std, b=3 * std)
