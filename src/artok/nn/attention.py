"""Multi-head self-attention with a fused QKV projection and an optional static KV cache.

The cache is pre-allocated once (``B x H x max_len x head_dim``) and written in place at
``input_pos``, so decode steps have static shapes and can be captured into CUDA graphs
(the gpt-fast recipe, https://github.com/pytorch-labs/gpt-fast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.nn.rope import apply_rope


class KVCache(nn.Module):
    """Static key/value buffers for one attention layer."""

    def __init__(self, batch_size: int, num_heads: int, max_len: int, head_dim: int, dtype: torch.dtype, device) -> None:
        super().__init__()
        shape = (batch_size, num_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.length: int | None = None  # when set, `update` returns only the first `length` slots

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``/``v`` (``B x H x T x head_dim``) at positions ``input_pos`` (``T``); return the
        buffers (the first ``length`` slots when ``length`` is set, else all of them)."""
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        if self.length is None:
            return self.k, self.v
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class Attention(nn.Module):
    """Self-attention: fused QKV, rotary embeddings, SDPA (flash/efficient kernels where available)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.dropout = dropout
        self.qk_norm = qk_norm
        self.kv_cache: KVCache | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``x``: ``B x T x dim``. ``rope``: table rows for these ``T`` positions. ``mask``: boolean
        ``T x S`` (True = attend) or None. With a cache, ``input_pos`` (``T``) says where to write."""
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        if self.qk_norm:
            q, k = F.normalize(q, dim=-1) * self.head_dim**0.25, F.normalize(k, dim=-1) * self.head_dim**0.25
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if self.kv_cache is not None and input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=is_causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(rearrange(out, "b h t d -> b t (h d)"))
