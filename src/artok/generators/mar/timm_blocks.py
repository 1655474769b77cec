"""MAR's transformer block (``block="timm"``): the ViT block of timm
(``timm.models.vision_transformer.Block`` as MAR builds it: ``qkv_bias=True``, MLP ratio 4, no layer
scale, LayerNorm with ``eps=1e-6``), so `artok.convert.mar` loads MAR checkpoints one to one.

    x = x + proj(attention(norm1(x)));    x = x + fc2(gelu(fc1(norm2(x))))

The parameter names follow timm's (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``). Attention is plain bidirectional scaled-dot-product attention. MAR never caches keys,
but artok's ReCAP sampler does: with a cache attached (``block.attention.kv_cache``, the contract of
`artok.nn.attention`), a pass with ``input_pos`` writes its keys/values there and attends to all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TimmAttention(nn.Module):
    """Multi-head self-attention with one fused, biased ``qkv`` projection and a biased output ``proj``."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.kv_cache = None
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.kv_cache is not None and input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, length, dim)))


class TimmMLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class TimmBlock(nn.Module):
    """Pre-norm ViT block; see the module docstring. ``hidden_dim`` defaults to ``4 * dim``."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TimmAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TimmMLP(dim, hidden_dim or 4 * dim, dropout)

    @property
    def attention(self) -> TimmAttention:
        """The attention layer under artok's name (where samplers attach caches)."""
        return self.attn

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), input_pos=input_pos)
        return x + self.mlp(self.norm2(x))
