"""Bitwise head for binary tokens (LFQ / BSQ), as in Infinity (Han et al., "Infinity: Scaling Bitwise
AutoRegressive Modeling for High-Resolution Image Synthesis", https://arxiv.org/abs/2412.04431).

A token of ``2^D`` possible ids is ``D`` bits (`artok.quantizers.ids_to_bits`, little-endian). A
categorical head over ``2^D`` classes needs a ``dim x 2^D`` matrix, impractical past ``D ~ 16``;
the bitwise head predicts one logit per bit instead (``dim x D``) and models the bits as
independent given the hidden state:

    p(id | h) = prod_d sigmoid(+-logit_d(h)),   loss = mean_d BCE(logit_d, bit_d).

`BitEmbedding` is the matching input side: a token enters the transformer as
``Linear(2 * bits - 1)`` (the ``+-1`` code vector), again linear in ``D`` instead of ``2^D``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from artok.quantizers.lfq import ids_to_bits


class BitwiseHead(nn.Module):
    """``B x T x dim`` -> bit logits ``B x T x num_bits`` (logit of bit = 1)."""

    def __init__(self, dim: int, num_bits: int) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.proj = nn.Linear(dim, num_bits, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy over every bit of ``targets`` (``B x T`` ids), in fp32."""
        logits = self.forward(hidden).float()
        return F.binary_cross_entropy_with_logits(logits, ids_to_bits(targets, self.num_bits).float())

    @staticmethod
    def log_prob(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``log p(ids)`` under independent bits: logits ``... x D``, ids ``...`` -> ``...``."""
        bits = ids_to_bits(ids, logits.shape[-1]).float()
        return -F.binary_cross_entropy_with_logits(logits.float(), bits, reduction="none").sum(-1)


class BitEmbedding(nn.Module):
    """Ids ``...`` -> ``... x dim`` through their ``+-1`` bit vectors (a linear map of ``num_bits``)."""

    def __init__(self, num_bits: int, dim: int) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.proj = nn.Linear(num_bits, dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(ids_to_bits(ids, self.num_bits).to(self.proj.weight.dtype) * 2 - 1)
