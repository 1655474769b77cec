"""Adaptive layer norm (adaLN) conditioning, as in DiT (Peebles & Xie, https://arxiv.org/abs/2212.09748):
a condition vector regresses per-channel ``shift``, ``scale`` and a residual ``gate`` that modulate a
parameter-free LayerNorm. The regressors are zero-initialised ("adaLN-Zero"), so every block starts
as the identity.

Used by the next-scale generator (VAR, https://arxiv.org/abs/2404.02905, conditions every block on
the class this way) and by the per-token MLP heads of MAR (https://arxiv.org/abs/2406.11838) and
xAR (https://arxiv.org/abs/2502.20388), whose ``SimpleMLPAdaLN`` residual MLP `AdaLNMLP` follows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from artok.nn.attention import Attention
from artok.nn.mlp import SwiGLU


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift``; ``shift``/``scale`` broadcast over the token axis of ``x``."""
    return x * (1 + scale) + shift


def _zero_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` (``N``) -> ``N x dim`` fp32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """Scalar timesteps -> ``dim`` vectors: sinusoidal features, then a two-layer SiLU MLP.

    ``scale`` multiplies ``t`` first (1000 for flow times in [0, 1], so their frequencies match
    those of integer diffusion steps)."""

    def __init__(self, dim: int, frequency_dim: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # Sinusoids in fp32 (exact phases), then the MLP in the weights' dtype (bf16 sampling).
        return self.mlp(timestep_embedding(t * self.scale, self.frequency_dim).to(self.mlp[0].weight.dtype))


class AdaLNTransformerBlock(nn.Module):
    """Pre-norm transformer block whose two norms are modulated by a condition ``c``: ``B x dim`` (one
per sequence, as VAR's class) or ``B x T x dim`` (per token, as xAR's per-entity noise time).

    ``x = x + gate1 * attn(modulate(norm(x), shift1, scale1))``, likewise for the SwiGLU MLP; the
    six modulation vectors come from ``Linear(SiLU(c))`` (zero-initialised). Attention is
    `artok.nn.Attention`, so the static KV cache works unchanged.
    """

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attention = Attention(dim, num_heads, dropout=dropout)
        self.ffn_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ffn = SwiGLU(dim, hidden_dim, dropout=dropout)
        self.modulation = _zero_linear(dim, 6 * dim)

    def forward(self, x, cond, rope=None, mask=None, input_pos=None, is_causal: bool = False) -> torch.Tensor:
        modulation = self.modulation(F.silu(cond))
        if modulation.dim() == 2:
            modulation = modulation.unsqueeze(1)
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, dim=-1)
        h = modulate(self.attention_norm(x), shift1, scale1)
        x = x + gate1 * self.attention(h, rope=rope, mask=mask, input_pos=input_pos, is_causal=is_causal)
        return x + gate2 * self.ffn(modulate(self.ffn_norm(x), shift2, scale2))


class AdaLNOutput(nn.Module):
    """Final adaLN before a prediction head: ``modulate(norm(x), shift(c), scale(c))``; ``c`` per row
    (``B x dim``) or, for ``x`` ``B x T x dim``, per token (``B x T x dim``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = _zero_linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(cond)).chunk(2, dim=-1)
        if x.dim() == 3 and shift.dim() == 2:
            shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
        return modulate(self.norm(x), shift, scale)


class AdaLNResBlock(nn.Module):
    """Residual MLP block: ``x + gate * mlp(modulate(norm(x), shift, scale))`` (rows ``N x width``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = _zero_linear(width, 3 * width)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(F.silu(cond)).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class AdaLNMLP(nn.Module):
    """MAR's per-token denoising network: ``(x_t, t, z) -> prediction`` for rows ``N x in_dim``.

    The condition is ``time_embedding(t) + cond_proj(z)``; ``depth`` `AdaLNResBlock`s of ``width``
    process ``in_proj(x_t)``; a zero-initialised adaLN output layer maps back to ``out_dim``.
    """

    def __init__(self, in_dim: int, cond_dim: int, width: int, depth: int, out_dim: int, time_scale: float = 1.0) -> None:
        super().__init__()
        self.time_embedding = TimestepEmbedder(width, scale=time_scale)
        self.cond_proj = nn.Linear(cond_dim, width)
        self.in_proj = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.out_norm = AdaLNOutput(width)
        self.out_proj = _zero_linear(width, out_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = self.in_proj.weight.dtype  # samplers keep x in fp32; the network runs in its own dtype
        cond = self.time_embedding(t) + self.cond_proj(z.to(dtype))
        h = self.in_proj(x.to(dtype))
        for block in self.blocks:
            h = block(h, cond)
        return self.out_proj(self.out_norm(h, cond))
