"""Builds the zoo: small architectures from configs with random (seeded) weights, each
exported by both of PyTorch's ONNX exporters, and facts.json -- what PyTorch itself says
of every exported initializer (which parameter or buffer it holds, the owning module,
the tensor's role and PyTorch's fans).

Run by hand, not by CI (it needs torch and onnxscript), from the repository root:

    pip install torch==2.13.0 onnxscript && python tests/zoo/build.py [ARCH ...]

The TorchScript exporter runs with its defaults (constant folding on, so BatchNorm is
folded into the Conv before it and equal tensors are deduplicated), opset 17; the dynamo
exporter runs with its defaults (optimize=True, its default opset).
"""

from __future__ import annotations

import io
import json
import math
import sys
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

HERE = Path(__file__).resolve().parent
TORCHSCRIPT_OPSET = 17
IR_VERSION_CAP = 9  # what onnxruntime 1.17 (pyproject: onnxruntime>=1.17) reads, with opset <= 20


# =========================================================================== models


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-like: stem, two BasicBlocks (the second with a 1x1 conv shortcut), Linear head.
    BatchNorm keeps PyTorch's fresh state (weight 1, bias 0, mean 0, var 1)."""

    def __init__(self, width=16, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(BasicBlock(width, width, 1))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2))
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int, groups: int = 1, se: bool = False):
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Conv2d(cin, hidden, 1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.se = SqueezeExcite(hidden, max(4, hidden // 4)) if se else nn.Identity()
        self.project = nn.Conv2d(hidden, cout, 1, bias=False, groups=groups)
        self.bn3 = nn.BatchNorm2d(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(self.se(y)))
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """MobileNetV2/V3-like: depthwise and grouped 1x1 convs, squeeze-excite (Conv with bias),
    BatchNorm with trained-looking (random) statistics, Dropout + Linear head."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 2, 1),
            InvertedResidual(16, 24, 2, 2, groups=4, se=True),
        )
        self.head = nn.Conv2d(24, 64, 1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu6(self.stem_bn(self.stem(x)))
        x = F.hardswish(self.head(self.blocks(x)))
        return self.classifier(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class ConvBnRelu(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """UNet-ish: two encoder stages, a ConvTranspose2d decoder with a skip concat, 1x1 head.
    The convs have biases; BatchNorm statistics are random (as if trained)."""

    def __init__(self, classes=2):
        super().__init__()
        self.enc1 = ConvBnRelu(3, 8)
        self.enc2 = ConvBnRelu(8, 16)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = ConvBnRelu(16, 8)
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d = self.dec(torch.cat([self.up(e2), e1], dim=1))
        return self.out(d)


class Grouped1d3d(nn.Module):
    """Grouped 1-D convs with GroupNorm and a grouped ConvTranspose1d (audio-ish), grouped
    3-D convs with BatchNorm3d (video-ish), joined by a Linear head. Two inputs."""

    def __init__(self, classes=5):
        super().__init__()
        self.conv1d = nn.Conv1d(4, 16, 5, stride=2, padding=2, groups=4)
        self.gn = nn.GroupNorm(4, 16)
        self.deconv1d = nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1, groups=2)
        self.conv3d = nn.Conv3d(2, 8, 3, padding=1, groups=2)
        self.bn3d = nn.BatchNorm3d(8)
        self.pw3d = nn.Conv3d(8, 8, 1, groups=4, bias=False)
        self.fc = nn.Linear(16, classes)

    def forward(self, audio, video):
        a = self.deconv1d(F.gelu(self.gn(self.conv1d(audio)))).mean(dim=2)
        v = self.pw3d(F.relu(self.bn3d(self.conv3d(video)))).mean(dim=(2, 3, 4))
        return self.fc(torch.cat([a, v], dim=1))


class VitAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class VitBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = VitAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """timm-style ViT: Conv2d patch embedding, cls token and learned position embedding
    (plain nn.Parameters, trunc_normal std .02), pre-norm blocks with a fused qkv Linear."""

    def __init__(self, image=16, patch=4, dim=32, depth=2, heads=2, mlp=64, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.blocks = nn.Sequential(*[VitBlock(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@dataclass
class BertConfig:
    vocab_size: int = 100
    hidden: int = 32
    layers: int = 2
    heads: int = 2
    intermediate: int = 64
    max_positions: int = 16
    type_vocab: int = 2
    eps: float = 1e-12


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.type_vocab, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.eps)
        self.register_buffer("position_ids", torch.arange(c.max_positions).expand((1, -1)), persistent=False)

    def forward(self, input_ids, token_type_ids):
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.LayerNorm(x + self.token_type_embeddings(token_type_ids))


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.heads
        self.head_dim = c.hidden // c.heads
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.value = nn.Linear(c.hidden, c.hidden)

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask
        out = scores.softmax(-1) @ v
        b, h, n, d = out.shape
        return out.permute(0, 2, 1, 3).reshape(b, n, h * d)


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertSelfAttention(c)
        self.attention_output = nn.Linear(c.hidden, c.hidden)
        self.attention_norm = nn.LayerNorm(c.hidden, eps=c.eps)
        self.intermediate = nn.Linear(c.hidden, c.intermediate)
        self.output = nn.Linear(c.intermediate, c.hidden)
        self.output_norm = nn.LayerNorm(c.hidden, eps=c.eps)

    def forward(self, x, mask):
        x = self.attention_norm(x + self.attention_output(self.attention(x, mask)))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class Bert(nn.Module):
    """BERT-like encoder: word/position/token-type embeddings, post-norm layers with an
    additive attention mask from attention_mask, erf GELU, tanh pooler. Init as in HF
    (normal std .02, zero biases, LayerNorm 1/0)."""

    def __init__(self, c: BertConfig | None = None):
        super().__init__()
        c = c or BertConfig()
        self.embeddings = BertEmbeddings(c)
        self.layers = nn.ModuleList([BertLayer(c) for _ in range(c.layers)])
        self.pooler = nn.Linear(c.hidden, c.hidden)
        self.apply(_hf_init)

    def forward(self, input_ids, attention_mask, token_type_ids):
        mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


def _hf_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()


class Conv1D(nn.Module):
    """HF transformers' GPT-2 Conv1D: a Linear whose weight is stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


@dataclass
class Gpt2Config:
    vocab_size: int = 100
    n_embd: int = 32
    n_layer: int = 2
    n_head: int = 2
    n_positions: int = 16


class Gpt2Attention(nn.Module):
    def __init__(self, c: Gpt2Config):
        super().__init__()
        n = c.n_positions
        # old-HF style: a persistent bool causal mask buffer and a masked_bias scalar buffer
        self.register_buffer("bias", torch.tril(torch.ones((n, n), dtype=torch.bool)).view(1, 1, n, n))
        self.register_buffer("masked_bias", torch.tensor(-1e4))
        self.heads = c.n_head
        self.c_attn = Conv1D(3 * c.n_embd, c.n_embd)
        self.c_proj = Conv1D(c.n_embd, c.n_embd)

    def split(self, x):
        b, t, c = x.shape
        return x.view(b, t, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(x.shape[-1], dim=2)
        q, k, v = self.split(q), self.split(k), self.split(v)
        w = q @ k.transpose(-1, -2) / math.sqrt(v.size(-1))
        t = x.shape[1]
        w = torch.where(self.bias[:, :, :t, :t], w, self.masked_bias.to(w.dtype))
        out = (w.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(x.shape)
        return self.c_proj(out)


class Gpt2Mlp(nn.Module):
    def __init__(self, c: Gpt2Config):
        super().__init__()
        self.c_fc = Conv1D(4 * c.n_embd, c.n_embd)
        self.c_proj = Conv1D(c.n_embd, 4 * c.n_embd)

    def forward(self, x):
        h = self.c_fc(x)
        # gelu_new: the tanh approximation written out, as HF does
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.c_proj(h)


class Gpt2Block(nn.Module):
    def __init__(self, c: Gpt2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd)
        self.attn = Gpt2Attention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd)
        self.mlp = Gpt2Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt2Transformer(nn.Module):
    def __init__(self, c: Gpt2Config):
        super().__init__()
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.n_positions, c.n_embd)
        self.h = nn.ModuleList([Gpt2Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class Gpt2(nn.Module):
    """GPT-2-like decoder: HF Conv1D weights [in, out] used through addmm, a bool causal mask
    buffer, gelu_new, and an LM head tied to the token embedding."""

    def __init__(self, c: Gpt2Config | None = None):
        super().__init__()
        c = c or Gpt2Config()
        self.transformer = Gpt2Transformer(c)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


@dataclass
class T5Config:
    vocab_size: int = 64
    d_model: int = 24
    d_kv: int = 8
    d_ff: int = 48
    heads: int = 2
    buckets: int = 8
    max_distance: int = 16
    eps: float = 1e-6


class T5LayerNorm(nn.Module):
    """T5's RMS norm: a scale, no bias, no mean subtraction."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


def relative_position_bucket(relative, bidirectional: bool, buckets: int, max_distance: int):
    ret = 0
    if bidirectional:
        buckets //= 2
        ret = (relative > 0).to(torch.long) * buckets
        relative = torch.abs(relative)
    else:
        relative = -torch.min(relative, torch.zeros_like(relative))
    max_exact = buckets // 2
    is_small = relative < max_exact
    large = max_exact + (
        torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact) * (buckets - max_exact)
    ).to(torch.long)
    large = torch.min(large, torch.full_like(large, buckets - 1))
    return ret + torch.where(is_small, relative, large)


class T5Attention(nn.Module):
    def __init__(self, c: T5Config, has_bias: bool, bidirectional: bool):
        super().__init__()
        self.c = c
        self.bidirectional = bidirectional
        inner = c.heads * c.d_kv
        self.q = nn.Linear(c.d_model, inner, bias=False)
        self.k = nn.Linear(c.d_model, inner, bias=False)
        self.v = nn.Linear(c.d_model, inner, bias=False)
        self.o = nn.Linear(inner, c.d_model, bias=False)
        self.has_bias = has_bias
        if has_bias:
            self.relative_attention_bias = nn.Embedding(c.buckets, c.heads)

    def position_bias(self, q_len: int, k_len: int):
        context = torch.arange(q_len, dtype=torch.long)[:, None]
        memory = torch.arange(k_len, dtype=torch.long)[None, :]
        buckets = relative_position_bucket(memory - context, self.bidirectional, self.c.buckets, self.c.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.c.heads, self.c.d_kv).transpose(1, 2)

    def forward(self, x, kv=None, bias=None, mask=None):
        kv = x if kv is None else kv
        q, k, v = self.split(self.q(x)), self.split(self.k(kv)), self.split(self.v(kv))
        scores = q @ k.transpose(-1, -2)  # T5 does not scale
        if bias is None:
            bias = self.position_bias(x.shape[1], kv.shape[1]) if self.has_bias else torch.zeros_like(scores)
        if mask is not None:
            bias = bias + mask
        out = (scores + bias).softmax(-1) @ v
        b, h, n, d = out.shape
        return self.o(out.transpose(1, 2).reshape(b, n, h * d)), bias


class T5FF(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        self.wi = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wo = nn.Linear(c.d_ff, c.d_model, bias=False)

    def forward(self, x):
        return self.wo(F.relu(self.wi(x)))


class T5EncoderLayer(nn.Module):
    def __init__(self, c: T5Config, first: bool):
        super().__init__()
        self.attn_norm = T5LayerNorm(c.d_model, c.eps)
        self.attn = T5Attention(c, first, bidirectional=True)
        self.ff_norm = T5LayerNorm(c.d_model, c.eps)
        self.ff = T5FF(c)

    def forward(self, x, bias):
        y, bias = self.attn(self.attn_norm(x), bias=bias)
        x = x + y
        return x + self.ff(self.ff_norm(x)), bias


class T5DecoderLayer(nn.Module):
    def __init__(self, c: T5Config, first: bool):
        super().__init__()
        self.self_norm = T5LayerNorm(c.d_model, c.eps)
        self.self_attn = T5Attention(c, first, bidirectional=False)
        self.cross_norm = T5LayerNorm(c.d_model, c.eps)
        self.cross_attn = T5Attention(c, False, bidirectional=True)
        self.ff_norm = T5LayerNorm(c.d_model, c.eps)
        self.ff = T5FF(c)

    def forward(self, x, memory, bias, causal):
        y, bias = self.self_attn(self.self_norm(x), bias=bias, mask=causal if bias is None else None)
        x = x + y
        y, _ = self.cross_attn(self.cross_norm(x), kv=memory)
        x = x + y
        return x + self.ff(self.ff_norm(x)), bias


class T5(nn.Module):
    """T5-like encoder-decoder: a shared token embedding, relative position bias (an
    nn.Embedding of buckets, in the first layer of each stack), RMS norms, bias-free
    Linears, an untied LM head (T5 v1.1)."""

    def __init__(self, c: T5Config | None = None, encoder_layers: int = 2, decoder_layers: int = 1):
        super().__init__()
        c = c or T5Config()
        self.shared = nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = nn.ModuleList([T5EncoderLayer(c, i == 0) for i in range(encoder_layers)])
        self.encoder_norm = T5LayerNorm(c.d_model, c.eps)
        self.decoder = nn.ModuleList([T5DecoderLayer(c, i == 0) for i in range(decoder_layers)])
        self.decoder_norm = T5LayerNorm(c.d_model, c.eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def forward(self, input_ids, decoder_input_ids):
        x, bias = self.shared(input_ids), None
        for layer in self.encoder:
            x, bias = layer(x, bias)
        memory = self.encoder_norm(x)
        t = decoder_input_ids.shape[1]
        causal = torch.triu(torch.full((t, t), -1e9), diagonal=1)[None, None]
        y, bias = self.shared(decoder_input_ids), None
        for layer in self.decoder:
            y, bias = layer(y, memory, bias, causal)
        return self.lm_head(self.decoder_norm(y))


class BiLstm(nn.Module):
    """Token embedding, a 2-layer bidirectional LSTM, a Linear tagger head."""

    def __init__(self, vocab=50, embed=16, hidden=24, tags=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, ids):
        h, _ = self.lstm(self.embed(ids))
        return self.head(h)


class GruRnn(nn.Module):
    """A bidirectional GRU, then a tanh RNN, then a Linear head."""

    def __init__(self, features=8, hidden=16, out=3):
        super().__init__()
        self.gru = nn.GRU(features, hidden, bidirectional=True, batch_first=True)
        self.rnn = nn.RNN(2 * hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, x):
        h, _ = self.gru(x)
        h, _ = self.rnn(h)
        return self.head(h[:, -1])


class Mha(nn.Module):
    """nn.MultiheadAttention twice: self-attention with the packed in_proj_weight, and
    cross-attention with kdim/vdim != embed_dim (separate q/k/v_proj_weight), post-norm."""

    def __init__(self, features=8, dim=32, memory=16, heads=4):
        super().__init__()
        self.inp = nn.Linear(features, dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, kdim=memory, vdim=memory, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, features)

    def forward(self, x, memory):
        x = self.inp(x)
        x = self.norm1(x + self.self_attn(x, x, x, need_weights=False)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, need_weights=False)[0])
        return self.out(x)


def _random_bn_stats(module: nn.Module) -> nn.Module:
    """Gives every BatchNorm trained-looking statistics and affine parameters."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(100)
    return module


@dataclass
class Arch:
    build: Callable[[], nn.Module]
    inputs: Callable[[], dict[str, torch.Tensor]]
    # the exclusive upper bound for integer inputs (ids < vocabulary), by input name
    int_high: dict[str, int]
    about: str


def _ids(high, *shape):
    return torch.randint(0, high, shape)


ARCHS: dict[str, Arch] = {
    "resnet": Arch(ResNet, lambda: {"x": torch.randn(1, 3, 16, 16)}, {}, ResNet.__doc__),
    "mobilenet": Arch(lambda: _random_bn_stats(MobileNet()), lambda: {"x": torch.randn(1, 3, 32, 32)}, {}, MobileNet.__doc__),
    "unet": Arch(lambda: _random_bn_stats(UNet()), lambda: {"x": torch.randn(1, 3, 16, 16)}, {}, UNet.__doc__),
    "grouped1d3d": Arch(
        Grouped1d3d,
        lambda: {"audio": torch.randn(1, 4, 32), "video": torch.randn(1, 2, 4, 6, 6)},
        {},
        Grouped1d3d.__doc__,
    ),
    "vit": Arch(ViT, lambda: {"x": torch.randn(1, 3, 16, 16)}, {}, ViT.__doc__),
    "bert": Arch(
        Bert,
        lambda: {
            "input_ids": _ids(100, 2, 8),
            "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
            "token_type_ids": torch.tensor([[0] * 4 + [1] * 4, [0] * 8]),
        },
        {"input_ids": 100, "attention_mask": 2, "token_type_ids": 2},
        Bert.__doc__,
    ),
    "gpt2": Arch(Gpt2, lambda: {"input_ids": _ids(100, 2, 8)}, {"input_ids": 100}, Gpt2.__doc__),
    "t5": Arch(
        T5,
        lambda: {"input_ids": _ids(64, 1, 8), "decoder_input_ids": _ids(64, 1, 6)},
        {"input_ids": 64, "decoder_input_ids": 64},
        T5.__doc__,
    ),
    "bilstm": Arch(BiLstm, lambda: {"ids": _ids(50, 2, 7)}, {"ids": 50}, BiLstm.__doc__),
    "gru": Arch(GruRnn, lambda: {"x": torch.randn(2, 6, 8)}, {}, GruRnn.__doc__),
    "mha": Arch(Mha, lambda: {"x": torch.randn(2, 5, 8), "memory": torch.randn(2, 7, 16)}, {}, Mha.__doc__),
}


# =========================================================================== facts

NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, T5LayerNorm)
LAYERS = (nn.Linear, nn.modules.conv._ConvNd, Conv1D, nn.Bilinear)
RNNS = (nn.RNNBase,)


def role_of(module: nn.Module, attr: str, kind: str) -> str:
    """The role PyTorch's module type and attribute name give a tensor."""
    if isinstance(module, NORMS):
        if attr in ("running_mean", "running_var", "num_batches_tracked"):
            return "running_stat"
        return {"weight": "norm_scale", "bias": "norm_bias"}.get(attr, "other")
    if isinstance(module, nn.Embedding):
        return "embedding" if attr == "weight" else "other"
    if isinstance(module, LAYERS):
        return {"weight": "weight", "bias": "bias"}.get(attr, "other")
    if isinstance(module, RNNS):
        if attr.startswith("weight_"):
            return "weight"
        if attr.startswith("bias_"):
            return "bias"
    if isinstance(module, nn.MultiheadAttention):
        if attr.endswith("_weight"):
            return "weight"
        if attr in ("in_proj_bias", "bias_k", "bias_v"):
            return "bias"
    if kind == "buffer":
        # masks, position ids, fill values: fixed tensors the module makes for itself
        return "constant"
    return "other"  # free parameters such as ViT's cls_token and pos_embed


def torch_fans(t: torch.Tensor) -> list[int] | None:
    if t.dim() < 2:
        return None
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(t)
    return [int(fan_in), int(fan_out)]


@dataclass
class TorchTensor:
    name: str
    tensor: torch.Tensor
    module: nn.Module
    module_name: str
    attr: str
    kind: str
    role: str
    aliases: list[str]

    def fact(self) -> dict:
        out = {
            "param": self.name,
            "module": type(self.module).__name__,
            "kind": self.kind,
            "role": self.role,
            "shape": list(self.tensor.shape),
        }
        if len(self.aliases) > 1:
            out["tied"] = list(self.aliases)
        if self.role in ("weight", "embedding"):
            out["torch_fans"] = torch_fans(self.tensor)
        if self.role == "bias":
            out["layer_fan_in"] = layer_fan_in(self.module, self.attr)
        return out


def layer_fan_in(module: nn.Module, attr: str) -> int | None:
    """The fan_in PyTorch's reset_parameters uses for a bias: that of the layer's weight.
    Conv1D stores [in, out]: its layer fan_in is the in axis (PyTorch's generic helper
    would read the out axis). An RNN bias_ih/bias_hh goes with weight_ih/weight_hh."""
    if isinstance(module, Conv1D):
        return int(module.weight.shape[0])
    if isinstance(module, RNNS):
        weight = getattr(module, attr.replace("bias_", "weight_"))
        return torch_fans(weight)[0]
    if isinstance(module, nn.MultiheadAttention):
        return int(module.embed_dim)
    weight = getattr(module, "weight", None)
    return torch_fans(weight)[0] if weight is not None and weight.dim() >= 2 else None


def torch_tensors(model: nn.Module) -> list[TorchTensor]:
    modules = dict(model.named_modules(remove_duplicate=False))
    by_id: dict[int, TorchTensor] = {}
    out = []
    named = [(n, t, "parameter") for n, t in model.named_parameters(remove_duplicate=False)]
    named += [(n, t, "buffer") for n, t in model.named_buffers(remove_duplicate=False)]
    for name, tensor, kind in named:
        module_name, _, attr = name.rpartition(".")
        module = modules[module_name]
        if id(tensor) in by_id:  # a tied parameter: one tensor, several names
            first = by_id[id(tensor)]
            first.aliases.append(name)
            tied = TorchTensor(name, tensor, module, module_name, attr, kind, role_of(module, attr, kind), first.aliases)
            out.append(tied)
            continue
        item = TorchTensor(name, tensor, module, module_name, attr, kind, role_of(module, attr, kind), [name])
        by_id[id(tensor)] = item
        out.append(item)
    return out


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def _same_sorted(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size == b.size and a.size > 1 and np.array_equal(np.sort(a.ravel()), np.sort(b.ravel().astype(a.dtype)))


def _bn_folded(a: np.ndarray, w: np.ndarray) -> bool:
    """``a`` is ``w`` scaled per output channel (a Conv weight with BatchNorm folded in)."""
    if a.shape != w.shape or a.ndim < 3 or not np.any(w):
        return False
    flat_a, flat_w = a.reshape(a.shape[0], -1).astype(np.float64), w.reshape(w.shape[0], -1).astype(np.float64)
    scale = (flat_a * flat_w).sum(1) / np.maximum((flat_w * flat_w).sum(1), 1e-30)
    return bool(np.allclose(flat_a, scale[:, None] * flat_w, rtol=1e-4, atol=1e-6))


def _pieces(a: np.ndarray, candidates: list[TorchTensor]) -> list[str] | None:
    """An exporter-made concatenation (RNN W/R/B over directions, B = [bias_ih, bias_hh]):
    the torch tensors whose values make up ``a``, in order, or None."""
    if a.ndim < 2:
        return None
    found: list[str] = []
    for part in a:  # one direction at a time
        whole = [c for c in candidates if _same_sorted(part, _array(c.tensor))]
        if whole:
            found.append(whole[0].name)
            continue
        if part.ndim == 1 and part.size % 2 == 0:  # B of an RNN: bias_ih then bias_hh
            halves = [part[: part.size // 2], part[part.size // 2 :]]
            names = [next((c.name for c in candidates if _same_sorted(h, _array(c.tensor))), None) for h in halves]
            if all(names):
                found.extend(names)
                continue
        return None
    return found


class Graph:
    """An exported model, read for facts: its initializers, who reads each (looking
    through the Identity nodes the TorchScript exporter adds when it deduplicates equal
    initializers: one tensor is kept, and each other parameter becomes an Identity of it
    whose output keeps that parameter's name), and the module each node comes from."""

    def __init__(self, path: Path):
        self.model = onnx.load(str(path))
        self.arrays = {t.name: numpy_helper.to_array(t) for t in self.model.graph.initializer}
        self.identity_of: dict[str, str] = {}  # Identity output -> the initializer it copies
        for node in self.model.graph.node:
            if node.op_type == "Identity" and node.input and node.input[0] in self.arrays:
                self.identity_of[node.output[0]] = node.input[0]
        self.copies: dict[str, list[str]] = {}
        for out, src in self.identity_of.items():
            self.copies.setdefault(src, []).append(out)
        self.readers: dict[str, list[tuple[str, str, int, onnx.NodeProto]]] = {}
        self.called: set[str] = set()
        self._walk(self.model.graph)

    def _walk(self, graph) -> None:
        for node in graph.node:
            scope = node_scope(node)
            self.called.add(scope)
            for i, name in enumerate(node.input):
                if node.op_type == "Identity" and node.output[0] in self.identity_of:
                    continue
                self.readers.setdefault(name, []).append((node.op_type, scope, i, node))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    self._walk(attr.g)
                for g in attr.graphs:
                    self._walk(g)

    def readers_of(self, name: str) -> list[tuple[str, str, int, onnx.NodeProto]]:
        """Every node that reads ``name``, itself or through an Identity copy."""
        out = list(self.readers.get(name, []))
        for copy in self.copies.get(name, []):
            out += self.readers.get(copy, [])
        return out

    def read_in_scope_of(self, name: str, t: TorchTensor, readers=None) -> bool:
        """Whether a node of ``t``'s module reads ``name``. A module that is never called
        as a module (MultiheadAttention's out_proj, read through F.linear inside its
        parent) counts as read by its parent's nodes."""
        for scope in self._scopes(self.readers_of(name) if readers is None else readers):
            if scope == t.module_name:
                return True
            if scope and t.module_name not in self.called and t.module_name.startswith(scope + "."):
                return True
        return False

    def _scopes(self, readers) -> set[str]:
        """The module scopes of ``readers``; for a node an optimizer made (no scope, such as
        a Split of a deduplicated bias), those of the nodes that read its outputs."""
        scopes: set[str] = set()
        todo = [(node, 0) for _, _, _, node in readers]
        while todo:
            node, depth = todo.pop()
            scope = node_scope(node)
            if scope or depth >= 3:
                scopes.add(scope)
                continue
            for out in node.output:
                todo += [(n, depth + 1) for _, _, _, n in self.readers.get(out, [])]
        return scopes


def node_scope(node: onnx.NodeProto) -> str:
    """The qualified name of the module a node comes from: the TorchScript exporter names
    nodes /layer1/layer1.0/conv1/Conv; the dynamo exporter records a namespace
    ": __main__.Net/layer1: ...Sequential/layer1.0.conv1: ...Conv2d/conv2d: aten.conv2d"."""
    for prop in node.metadata_props:
        if prop.key == "namespace":
            parts = [p.split(": ")[0].strip() for p in prop.value.split("/")]
            modules = [p for p in parts[:-1] if p]
            return modules[-1] if modules else ""
    parts = node.name.split("/")[1:-1]
    path = ""
    for c in parts:
        if path and c.startswith(path + "."):
            path = c
        else:
            path = f"{path}.{c}" if path else c
    return path


def _export_names(qualified: str) -> set[str]:
    """The names a torch tensor may have in an export: its qualified name, or the dynamo
    exporter's p_/b_ forms."""
    flat = qualified.replace(".", "_")
    return {qualified, "p_" + flat, "b_" + flat}


def _equal_to(a: np.ndarray, t: TorchTensor) -> bool:
    b = _array(t.tensor)
    return a.dtype.kind == b.dtype.kind and _same(a, b.astype(a.dtype))


def _chunk_at(a: np.ndarray, b: np.ndarray, skip=()) -> int | None:
    """Where ``a`` (1-D) sits as a contiguous chunk of ``b`` (1-D), at a multiple of its
    size (the first such place not in ``skip``)."""
    if a.ndim != 1 or b.ndim != 1 or b.size <= a.size or b.size % a.size or a.dtype.kind != b.dtype.kind:
        return None
    for start in range(0, b.size, a.size):
        if start not in skip and np.array_equal(b[start : start + a.size], a):
            return start
    return None


class Facts:
    def __init__(self, path: Path, tensors: list[TorchTensor]):
        self.g = Graph(path)
        self.tensors = tensors
        self.by_name = {t.name: t for t in tensors}
        self.by_export_name: dict[str, TorchTensor] = {}
        for t in tensors:
            for n in _export_names(t.name):
                self.by_export_name.setdefault(n, t)
        self.present = set(self.g.arrays)
        self.facts: dict[str, dict] = {}
        self.folded_weights: dict[str, TorchTensor] = {}

    def exported_by_name(self, t: TorchTensor) -> bool:
        return bool(_export_names(t.name) & self.present)

    def pick_alias(self, t: TorchTensor, name: str) -> TorchTensor:
        """For a tied tensor (GPT-2's wte / lm_head): the name whose module matches how the
        export reads it -- Gather: the Embedding; otherwise the Linear."""
        if len(t.aliases) < 2:
            return t
        ops = {op for op, _, _, _ in self.g.readers_of(name)}
        aliases = [self.by_name[n] for n in t.aliases]
        want = "embedding" if "Gather" in ops else "weight"
        return next((x for x in aliases if x.role == want), t)

    def fact_for(self, t: TorchTensor, name: str, match: str) -> dict:
        t = self.pick_alias(t, name)
        fact = t.fact()
        fact["match"] = match
        fact["params"] = [t.name]
        if len(t.aliases) > 1:
            fact["roles"] = {n: self.by_name[n].role for n in t.aliases}
        return fact

    def add_merges(self, fact: dict, name: str, a: np.ndarray, kept: list[TorchTensor]) -> dict:
        """The parameters an exporter deduplicated into ``name``: named by the Identity
        copies TorchScript leaves, or (dynamo) the equal-valued parameters whose module
        reads it. Slices of a packed parameter that were folded and then deduplicated
        (MultiheadAttention's in_proj_bias) are listed as name[start:stop]."""
        merged: list[TorchTensor] = []
        slices: list[tuple[TorchTensor, int, int]] = []
        copies = self.g.copies.get(name, [])
        for copy in copies:
            t = self.by_export_name.get(copy)
            if t is not None and t not in kept and t not in merged:
                merged.append(t)
                continue
            readers = self.g.readers.get(copy, [])
            same = [
                t for t in self.tensors
                if t not in kept and t not in merged and _equal_to(a, t) and self.g.read_in_scope_of(copy, t, readers)
            ]
            if same:
                merged.append(same[0])
                continue
            for cand in self.tensors:
                used = [s for c, s, _ in slices if c is cand]
                start = _chunk_at(a, _array(cand.tensor), skip=used) if cand.tensor.dim() == 1 else None
                if start is not None and self.g.read_in_scope_of(copy, cand, readers):
                    slices.append((cand, start, start + a.size))
                    break
        if not copies:
            for t in self.tensors:
                if t in kept or t in merged or t.name in kept[0].aliases or self.exported_by_name(t):
                    continue
                if _equal_to(a, t) and self.g.read_in_scope_of(name, t):
                    merged.append(t)
        everything = kept + merged
        fact["params"] = [t.name for t in everything] + [f"{t.name}[{s}:{e}]" for t, s, e in slices]
        if len(fact["params"]) > 1:
            fact["merged"] = True
            roles = {t.name: t.role for t in everything}
            roles.update({f"{t.name}[{s}:{e}]": t.role for t, s, e in slices})
            fact["roles"] = roles
            fan_ins = {t.name: layer_fan_in(t.module, t.attr) for t in everything if t.role == "bias"}
            fan_ins.update({f"{t.name}[{s}:{e}]": layer_fan_in(t.module, t.attr) for t, s, e in slices if t.role == "bias"})
            if fan_ins:
                fact["layer_fan_ins"] = fan_ins
        return fact

    def build(self) -> dict:
        arrays = self.g.arrays
        # Conv weights with a BatchNorm folded in (both exporters fold in eval mode)
        for name, a in arrays.items():
            if a.dtype.kind != "f" or a.ndim < 3:
                continue
            named = self.by_export_name.get(name)
            if named is not None and _equal_to(a, named):
                continue
            pool = ([named] if named is not None else []) + [t for t in self.tensors if t.role == "weight"]
            folded = next((t for t in pool if t.role == "weight" and _bn_folded(a, _array(t.tensor))), None)
            if folded is not None:
                # the Conv weight scaled per output channel by the BatchNorm folded into it
                self.facts[name] = self.fact_for(folded, name, "bn_folded")
                self.folded_weights[name] = folded
        for name, a in arrays.items():
            if name not in self.facts:
                self.facts[name] = self.classify(name, a)
        return self.facts

    def classify(self, name: str, a: np.ndarray) -> dict:
        readers = self.g.readers_of(name)
        # the bias a Conv got from the BatchNorm folded into it (one copy when several are equal)
        convs = [
            self.folded_weights[node.input[1]]
            for op, _, i, node in readers
            if op in ("Conv", "ConvTranspose") and i == 2 and node.input[1] in self.folded_weights
        ]
        if convs and a.dtype.kind == "f":
            fact = {
                "param": None,
                "module": type(convs[0].module).__name__,
                "kind": "folded",
                "role": "bias",
                "shape": list(a.shape),
                "match": "bn_folded",
                "params": [],
                "folded_into": [w.module_name for w in convs],
                "layer_fan_in": torch_fans(convs[0].tensor)[0],
            }
            if len(convs) > 1:
                fact["merged"] = True
                fact["layer_fan_ins"] = {w.module_name: torch_fans(w.tensor)[0] for w in convs}
            return fact
        named = self.by_export_name.get(name)
        if named is not None and _equal_to(a, named):
            return self.add_merges(self.fact_for(named, name, "name"), name, a, [self.pick_alias(named, name)])
        equal = [t for t in self.tensors if _equal_to(a, t)]
        if equal and (a.size > 1 or any(self.g.read_in_scope_of(name, t) for t in equal)):
            # an exporter-made name for a parameter's values
            unexported = [t for t in equal if not self.exported_by_name(t)] or equal
            readers_first = sorted(unexported, key=lambda t: not self.g.read_in_scope_of(name, t))
            first = readers_first[0]
            fact = self.add_merges(self.fact_for(first, name, "values"), name, a, [self.pick_alias(first, name)])
            if not self.g.read_in_scope_of(name, first):
                fact["guessed"] = True  # no node of the module reads it: chosen by value alone
            return fact
        if a.ndim == 2:
            trans = [t for t in self.tensors if _same(a.T, _array(t.tensor))]
            if trans:
                return self.fact_for(trans[0], name, "transposed")
            part = _slice_of(a, self.tensors)
            if part is not None:
                return part
        if a.dtype.kind == "f" and a.size > 1:
            reshaped = [t for t in self.tensors if t.tensor.numel() == a.size and np.array_equal(a.ravel(), _array(t.tensor).ravel())]
            reshaped.sort(key=lambda t: not self.g.read_in_scope_of(name, t))
            if reshaped:
                return self.fact_for(reshaped[0], name, "reshaped")
            permuted = [t for t in self.tensors if t.tensor.dtype.is_floating_point and _same_sorted(a, _array(t.tensor))]
            if permuted:
                return self.fact_for(permuted[0], name, "permuted")  # RNN gates re-ordered
        if a.dtype.kind == "f" and a.ndim >= 2:
            pieces = _pieces(a, [t for t in self.tensors if t.tensor.dtype.is_floating_point])
            if pieces:
                # an RNN's W/R over directions, or its B = [bias_ih, bias_hh] per direction
                parts = [self.by_name[p] for p in pieces]
                fact = parts[0].fact()
                fact["params"] = pieces
                fact["match"] = "concatenated"
                if len({p.role for p in parts}) > 1:
                    fact["roles"] = {p.name: p.role for p in parts}
                return fact
        fact = {
            "param": None,
            "kind": "exporter",
            "role": "constant",
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "match": None,
            "read_by": sorted({op for op, _, _, _ in readers}),
        }
        derived = self.derived_from(a)
        if derived:
            # a value the exporter computed from parameters or buffers (a position bias or
            # lookup it folded, a slice of a mask buffer)
            fact["derived_from"] = derived
        return fact

    def derived_from(self, a: np.ndarray) -> list[str]:
        out = []
        for t in self.tensors:
            b = _array(t.tensor)
            if b.size < 2:
                continue
            if a.dtype.kind == "b" and b.dtype.kind == "b":
                squeezed, full = a, b
                while squeezed.ndim < full.ndim:
                    squeezed = squeezed[None]
                fits = squeezed.ndim == full.ndim and all(x <= y for x, y in zip(squeezed.shape, full.shape))
                if fits and np.array_equal(full[tuple(slice(0, x) for x in squeezed.shape)], squeezed):
                    out.append(t.name)
                continue
            if a.dtype.kind == "f" and b.dtype.kind == "f" and len(np.unique(a)) > 2 and np.isin(a, b).all():
                out.append(t.name)
        return out


def not_exported(facts: dict, tensors: list[TorchTensor]) -> list[str]:
    """Torch parameters and buffers no initializer holds: folded away (BatchNorm into a
    Conv, a position lookup into a constant), or unused in eval (num_batches_tracked)."""
    seen = set()
    for fact in facts.values():
        for p in fact.get("params") or []:
            seen.add(p.split("[")[0])
        seen.update(fact.get("roles", {}))
        if fact.get("param"):
            seen.add(fact["param"])
    named = {n for t in tensors for n in t.aliases if n in seen}
    return [t.name for t in tensors if t.name not in seen and t.name not in named]


def export_facts(path: Path, model: nn.Module, tensors: list[TorchTensor]) -> dict:
    return Facts(path, tensors).build()


def _slice_of(a: np.ndarray, tensors: list[TorchTensor]) -> dict | None:
    """A 2-D initializer that is a block of rows of a torch weight, or its transpose (a
    packed weight such as MultiheadAttention's in_proj_weight, split into q, k, v)."""
    for t in tensors:
        w = _array(t.tensor)
        if w.ndim != 2 or t.role != "weight":
            continue
        for block, how in ((a, "rows"), (a.T, "transposed rows")):
            rows = block.shape[0]
            if block.shape[1] != w.shape[1] or w.shape[0] % rows or w.shape[0] == rows:
                continue
            for start in range(0, w.shape[0], rows):
                if np.array_equal(w[start : start + rows], block):
                    fact = t.fact()
                    fact["match"] = f"slice ({how})"
                    fact["params"] = [f"{t.name}[{start}:{start + rows}]"]
                    fact["part_fans"] = torch_fans(t.tensor[start : start + rows])
                    return fact
    return None


# =========================================================================== export


def export(name: str, arch: Arch, exporter: str) -> tuple[Path | None, str | None]:
    torch.manual_seed(0)
    model = arch.build().eval()
    torch.manual_seed(1)
    inputs = arch.inputs()
    path = HERE / f"{name}_{exporter}.onnx"
    args = tuple(inputs.values())
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), redirect_stdout(log), redirect_stderr(log):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(
                    model, args, str(path), dynamo=False, opset_version=TORCHSCRIPT_OPSET,
                    input_names=list(inputs), output_names=None,
                )
            else:
                torch.onnx.export(
                    model, args, str(path), dynamo=True, external_data=False, optimize=True,
                    input_names=list(inputs),
                )
    except Exception as exc:  # noqa: BLE001 -- reported, the other exporter still runs
        if path.exists():
            path.unlink()
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400]
    loaded = onnx.load(str(path))
    loaded.ir_version = min(loaded.ir_version, IR_VERSION_CAP)
    onnx.checker.check_model(loaded, full_check=True)
    path.write_bytes(loaded.SerializeToString())
    return path, None


def run_reference(path: Path, model: nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {n: _array(inputs[n]) for n in names}
    got = session.run(None, feeds)
    with torch.no_grad():
        want = model(*inputs.values())
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    assert len(got) == len(want), (path, len(got), len(want))
    err = 0.0
    for g, w in zip(got, want):
        assert np.isfinite(g).all(), path
        err = max(err, float(np.abs(g - _array(w)).max()))
    assert err < 1e-3, (path, err)
    return err


def main(names: list[str]) -> None:
    facts_path = HERE / "facts.json"
    record = json.loads(facts_path.read_text()) if facts_path.exists() and names else {}
    failures: dict[str, str] = {}
    for name in names or list(ARCHS):
        arch = ARCHS[name]
        for exporter in ("torchscript", "dynamo"):
            path, error = export(name, arch, exporter)
            key = f"{name}_{exporter}.onnx"
            if error:
                failures[key] = error
                record.pop(key, None)
                print(f"{key}: export failed: {error}", file=sys.stderr)
                continue
            torch.manual_seed(0)
            model = arch.build().eval()
            torch.manual_seed(1)
            inputs = arch.inputs()
            err = run_reference(path, model, inputs)
            loaded = onnx.load(str(path))
            opset = next(o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx"))
            record[key] = {
                "arch": name,
                "exporter": exporter,
                "about": " ".join(arch.about.split()),
                "opset": opset,
                "ir_version": loaded.ir_version,
                "inputs": [
                    {
                        "name": n,
                        "shape": list(t.shape),
                        "dtype": str(t.dtype).removeprefix("torch."),
                        **({"high": arch.int_high[n]} if n in arch.int_high else {}),
                        **({"values": t.tolist()} if n in ("attention_mask", "token_type_ids") else {}),
                    }
                    for n, t in inputs.items()
                ],
                "max_abs_error_vs_torch": err,
                "initializers": export_facts(path, model, torch_tensors(model)),
            }
            record[key]["torch_tensors_not_exported"] = not_exported(record[key]["initializers"], torch_tensors(model))
            print(f"{key}: {path.stat().st_size} bytes, opset {opset}, ir {loaded.ir_version}, "
                  f"{len(record[key]['initializers'])} initializers, |ort - torch| {err:.2e}")
    record = dict(sorted(record.items()))
    if failures:
        record.setdefault("_export_failures", {}).update(failures)
    facts_path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
