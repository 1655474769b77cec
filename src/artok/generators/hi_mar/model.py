"""Hi-MAR, hierarchical masked autoregression with low-resolution token pivots (Zheng et al.,
"Hierarchical Masked Autoregressive Models with Low-Resolution Token Pivots",
https://arxiv.org/abs/2505.20288), built from artok's MAR pieces.

Two phases over one bidirectional transformer whose sequence is ``[class buffer, pivots (P),
full-resolution tokens (L)]``: phase 1 is MAR over the low-resolution *pivot* tokens (the full
tokens all hidden behind the mask token); phase 2 is MAR over the full-resolution tokens with every
pivot known, so the pivots give the second phase a global layout to condition on. The per-token
diffusion (or flow) head is scale-aware: its condition is the backbone state plus a learned
embedding of the phase. Training mixes both phases in each batch (``pivot_probability`` of the
rows train phase 1), with MAR's truncated-normal mask ratio in each.

Simplified vs the paper: the pivots are the full-resolution latents average-pooled by
``pivot_factor`` (the paper encodes a downsampled image); one shared backbone (no MAE split);
the head is artok's MLP diffusion head plus the phase embedding (the paper uses a small
diffusion transformer over the tokens of a step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError
from artok.generators.head_support import (
    ContinuousHeadFields,
    build_continuous_head,
    check_continuous_config,
    check_continuous_head,
)
from artok.generators.mar.model import truncated_normal_ratio
from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.tokens import Tokens, TokenSpec


@dataclass
class HiMARConfig(ContinuousHeadFields, GeneratorConfig):
    """Configuration of `HiMARGenerator`.

    Args:
        token_spec: continuous tokens on a grid (a KL tokenizer's latents).
        depth: bidirectional transformer blocks.
        pivot_factor: the pivot grid is ``ceil(h / f) x ceil(w / f)`` (adaptive average pooling).
        pivot_probability: share of training rows that train phase 1 (the pivots).
        buffer_size: class-token positions before the sequence.
        mask_ratio_min, mask_ratio_std: MAR's training mask ratio ~ N(1, std) on [min, 1].
        head: ``"diffusion"`` or ``"flow"``; head_width, head_depth, ...: `ContinuousHeadFields`.
        (num_classes, dim, num_heads, hidden_dim, class_dropout, dropout: see `GeneratorConfig`.)
    """

    depth: int = 4
    pivot_factor: int = 2
    pivot_probability: float = 0.3
    buffer_size: int = 4
    mask_ratio_min: float = 0.7
    mask_ratio_std: float = 0.25
    head: str = "diffusion"

    def __post_init__(self) -> None:
        self.token_spec = TokenSpec.coerce(self.token_spec).to_dict()
        check_continuous_config(self)
        HiMARGenerator.check_spec(self.spec, self.head)
        self.check_common()
        if self.pivot_factor < 2 or self.buffer_size < 1:
            raise ValueError(f"need pivot_factor >= 2 and buffer_size >= 1, got {self.pivot_factor}, {self.buffer_size}")
        if not 0.0 < self.pivot_probability < 1.0:
            raise ValueError(f"pivot_probability must be in (0, 1), got {self.pivot_probability}")
        if not 0.0 < self.mask_ratio_min <= 1.0 or self.mask_ratio_std <= 0:
            raise ValueError(f"need 0 < mask_ratio_min <= 1 and mask_ratio_std > 0, got {self.mask_ratio_min}, "
                             f"{self.mask_ratio_std}")

    @property
    def pivot_grid(self) -> tuple[int, int]:
        return tuple(math.ceil(side / self.pivot_factor) for side in self.spec.grid)

    @property
    def num_pivots(self) -> int:
        height, width = self.pivot_grid
        return height * width


@register_model("hi_mar")
class HiMARGenerator(Generator):
    """MAR over pivots, then MAR over the full grid given the pivots; see the module docstring."""

    config_class = HiMARConfig

    def __init__(self, config: HiMARConfig) -> None:
        super().__init__()
        self.config = config
        self.bind_spec_check(config.head)
        dim, channels = config.dim, config.spec.channels
        length = config.buffer_size + config.num_pivots + config.spec.seq_len
        hidden = config.hidden_dim or swiglu_hidden_dim(dim)
        self.token_proj = nn.Linear(channels, dim)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.position = nn.Parameter(torch.zeros(length, dim))
        self.phase_embedding = nn.Parameter(torch.zeros(2, dim))  # pivots, full tokens (also the scale-aware head's)
        self.blocks = nn.ModuleList(TransformerBlock(dim, config.num_heads, hidden, config.dropout)
                                    for _ in range(config.depth))
        self.norm = RMSNorm(dim)
        self.head = build_continuous_head(config, channels, dim)
        for param in (self.position, self.phase_embedding, self.mask_token):
            nn.init.normal_(param, std=0.02)
        nn.init.normal_(self.class_embedding.weight, std=0.02)

    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        if spec.layout != "grid":
            raise IncompatibleTokensError(f"Hi-MAR models continuous tokens on a grid, got layout {spec.layout!r}; "
                                          "use a KL tokenizer")
        check_continuous_head(head or "diffusion", spec, "hi-mar")

    def pivots(self, values: torch.Tensor) -> torch.Tensor:
        """Full tokens ``B x L x D`` -> pivot tokens ``B x P x D`` (adaptive average pooling)."""
        height, width = self.config.spec.grid
        grid = values.transpose(1, 2).reshape(values.shape[0], -1, height, width)
        return F.adaptive_avg_pool2d(grid, self.config.pivot_grid).flatten(2).transpose(1, 2)

    def condition_vectors(self, pivots: torch.Tensor, pivot_mask: torch.Tensor, values: torch.Tensor,
                          mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Head conditions ``B x (P + L) x dim`` (scale-aware: plus the phase embedding) for scaled
        ``pivots`` / ``values`` with unknown positions ``pivot_mask`` / ``mask`` (True = unknown)."""
        tokens = self.token_proj(torch.cat([pivots, values], dim=1).to(self.token_proj.weight.dtype))
        unknown = torch.cat([pivot_mask, mask], dim=1)
        x = torch.where(unknown[..., None], self.mask_token.to(tokens.dtype), tokens)
        phases = self.phase_embedding.repeat_interleave(
            torch.tensor([pivots.shape[1], values.shape[1]], device=x.device), dim=0)
        buffer = self.class_embedding(labels)[:, None].expand(-1, self.config.buffer_size, -1)
        x = torch.cat([buffer, x + phases], dim=1) + self.position
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, self.config.buffer_size :] + phases

    def random_mask(self, batch_size: int, length: int, device) -> torch.Tensor:
        """MAR's training mask ``B x length``: one truncated-normal ratio, random order per row."""
        ratio = truncated_normal_ratio(1.0, self.config.mask_ratio_std, self.config.mask_ratio_min, 1.0)
        count = min(length, max(1, math.ceil(length * ratio)))
        return torch.rand(batch_size, length, device=device).argsort(dim=1).argsort(dim=1) < count

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        values = tokens.values * self.config.token_scale
        pivots = self.pivots(values)
        batch, device = values.shape[0], values.device
        first = torch.rand(batch, 1, device=device) < self.config.pivot_probability  # rows training phase 1
        pivot_mask = self.random_mask(batch, pivots.shape[1], device) & first
        mask = self.random_mask(batch, values.shape[1], device) | first
        z = self.condition_vectors(pivots, pivot_mask, values, mask, self.drop_labels(cond))
        targets = torch.cat([pivots, values], dim=1)
        scored = torch.cat([pivot_mask, mask & ~first], dim=1)
        repeats = self.config.head_batch_mul
        return {"loss": self.head.loss(z[scored].repeat(repeats, 1), targets[scored].repeat(repeats, 1))}
