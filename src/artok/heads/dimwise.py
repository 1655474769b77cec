"""Dimension-wise autoregressive head for post-training-quantized tokens (TokenBridge, Wang et al.,
"Bridging Continuous and Discrete Tokens for Autoregressive Visual Generation",
https://arxiv.org/abs/2503.16430).

A PTQ token is ``S`` sub-tokens (one per latent channel), each one of ``M = 2^bits`` bins. A joint
softmax over ``M^S`` values is impossible and independent per-channel softmaxes ignore the
correlations between channels, so TokenBridge predicts the channels one after the other with a
small causal transformer that runs *inside* one position:

    input  = [proj(h), e_0(c_0), e_1(c_1), ..., e_{S-2}(c_{S-2})]      (length S)
    output s -> softmax over the M bins of channel s,

where ``h`` is the backbone's hidden state for the position and ``e_s`` is channel ``s``'s own bin
embedding. Training is teacher-forced over all ``B * T`` positions at once; sampling
(`next_logits`) extends the channel prefix one step at a time.

`ChannelEmbedding` is the input side of the backbone: the sum of the per-channel bin embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim


class ChannelEmbedding(nn.Module):
    """Ids ``... x S`` (one bin per channel) -> ``... x dim``: sum of per-channel bin embeddings."""

    def __init__(self, num_channels: int, num_bins: int, dim: int) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.num_bins = num_bins
        self.table = nn.Embedding(num_channels * num_bins, dim)
        self.register_buffer("offsets", torch.arange(num_channels) * num_bins, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids + self.offsets[: ids.shape[-1]]).sum(-2)


class DimwiseHead(nn.Module):
    """Backbone states ``B x T x dim`` + channel ids ``B x T x S`` -> logits ``B x T x S x M``.

    Args:
        dim: backbone width.
        num_channels: sub-tokens ``S`` per position.
        num_bins: values ``M`` per sub-token.
        width, depth, num_heads: the small channel transformer.
    """

    def __init__(self, dim: int, num_channels: int, num_bins: int, width: int = 128, depth: int = 2, num_heads: int = 2) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.num_bins = num_bins
        self.in_proj = nn.Linear(dim, width)
        self.channel_embedding = nn.Embedding(num_channels * num_bins, width)
        self.position = nn.Parameter(torch.zeros(num_channels, width))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(width, num_heads, swiglu_hidden_dim(width)) for _ in range(depth))
        self.norm = RMSNorm(width)
        self.out = nn.Linear(width, num_bins, bias=False)
        self.register_buffer("offsets", torch.arange(num_channels) * num_bins, persistent=False)

    def _run(self, hidden: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Rows ``N x dim`` and channel prefix ``N x s`` (``s < S``) -> logits ``N x (s+1) x M``."""
        s = prefix.shape[1]
        x = self.in_proj(hidden).unsqueeze(1)
        if s:
            x = torch.cat([x, self.channel_embedding(prefix + self.offsets[:s])], dim=1)
        x = x + self.position[: s + 1]
        for block in self.blocks:
            x = block(x, is_causal=True)
        return self.out(self.norm(x))

    def forward(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of every channel: ``B x T x dim``, ``B x T x S`` -> ``B x T x S x M``."""
        batch, length = hidden.shape[:2]
        logits = self._run(hidden.reshape(batch * length, -1), ids.reshape(batch * length, -1)[:, :-1])
        return logits.reshape(batch, length, self.num_channels, self.num_bins)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every channel of every position (fp32)."""
        logits = self.forward(hidden, targets).float()
        return F.cross_entropy(logits.reshape(-1, self.num_bins), targets.reshape(-1))

    def next_logits(self, hidden: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Logits of channel ``s = prefix.shape[1]`` for rows ``N x dim`` given ``N x s`` ids: ``N x M``."""
        return self._run(hidden, prefix)[:, -1]
