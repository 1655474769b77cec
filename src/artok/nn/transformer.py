"""Pre-norm transformer block (LLaMA style): RMSNorm -> attention -> RMSNorm -> SwiGLU."""

from __future__ import annotations

import torch
from torch import nn

from artok.nn.attention import Attention
from artok.nn.mlp import SwiGLU
from artok.nn.norm import RMSNorm


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden_dim: int, dropout: float = 0.0, qk_norm: bool = False,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.attention = Attention(dim, num_heads, dropout=dropout, qk_norm=qk_norm)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.ffn = SwiGLU(dim, hidden_dim, dropout=dropout)

    def forward(self, x, rope=None, mask=None, input_pos=None, is_causal: bool = False) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope=rope, mask=mask, input_pos=input_pos, is_causal=is_causal)
        return x + self.ffn(self.ffn_norm(x))
