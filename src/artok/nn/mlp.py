"""SwiGLU feed-forward (https://arxiv.org/abs/2002.05202) with the gate and up projections fused
into one matmul (one GEMM instead of two per layer: fewer kernel launches when decoding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_hidden_dim(dim: int, multiple_of: int = 32, ffn_dim_multiplier: float | None = None) -> int:
    """LLaMA's hidden size rule: 2/3 of 4*dim, optionally scaled, rounded up to ``multiple_of``."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class SwiGLU(nn.Module):
    """``x -> W2 (silu(W1 x) * W3 x)`` with ``W1`` and ``W3`` stored as one fused weight."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.gate_up = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.down = nn.Linear(hidden_dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * up))
