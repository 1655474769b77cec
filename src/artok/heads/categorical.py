"""Categorical head: a linear map from hidden states to logits over a discrete vocabulary,
trained with cross-entropy (the head of LlamaGen / VQGAN-transformer style generators)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CategoricalHead(nn.Module):
    """``B x T x dim`` -> logits ``B x T x vocab_size``."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.proj = nn.Linear(dim, vocab_size, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``targets`` (``B x T`` ids), computed in fp32."""
        logits = self.forward(hidden).float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
