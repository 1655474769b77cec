"""RAR, randomized autoregressive visual generation (Yu et al., https://arxiv.org/abs/2411.00776;
public code: github.com/bytedance/1d-tokenizer, ``modeling/rar.py``).

A raster next-token transformer (artok's `RasterGenerator`, LlamaGen style) trained on token
permutations: each training sequence is, with probability ``r``, visited in a random order
(one permutation per sequence), else in raster order. ``r`` is annealed linearly from 1 at
``anneal_start`` to 0 at ``anneal_end`` (training steps; the trainer calls `set_step`), so the
model ends as a pure raster model and samples with artok's raster loop and engine unchanged.

Target-aware positions tell the model *which* cell comes next: input position ``j`` (the class
token for ``j = 0``, else the token visited ``j``-th) gets the learned embedding of the cell of its
target, ``order[j]``. At sampling time the order is raster, so input ``j`` adds the embedding of
cell ``j``; this is done in `run_blocks`, the one forward every raster loop (plain, recompute,
engine, speculative) goes through.

Simplified vs the paper: the token's own position is artok's 2D RoPE of its cell (RAR adds a
learned absolute embedding instead); no per-step adaLN condition (the class token is a prefix as
in LlamaGen); categorical head only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artok.generators.raster.model import RasterConfig, RasterGenerator
from artok.hub import register_model
from artok.tokens import Tokens


@dataclass
class RARConfig(RasterConfig):
    """Configuration of `RARGenerator`: `RasterConfig` plus the randomness annealing window.

    Args:
        anneal_start: training step until which every sequence is permuted (``r = 1``).
        anneal_end: training step from which no sequence is permuted (``r = 0``); ``r`` falls
            linearly in between (the paper: from 50% to 75% of training).
    """

    anneal_start: int = 500
    anneal_end: int = 750

    def __post_init__(self) -> None:
        if self.head != "categorical":
            raise ValueError(f"RAR has a categorical head only, got head={self.head!r}")
        super().__post_init__()
        if not 0 <= self.anneal_start <= self.anneal_end:
            raise ValueError(f"need 0 <= anneal_start <= anneal_end, got {self.anneal_start}, {self.anneal_end}")

    def random_order_ratio(self, step: int) -> float:
        """The probability that a training sequence is permuted at ``step``."""
        if step < self.anneal_start:
            return 1.0
        if step >= self.anneal_end:
            return 0.0
        return 1.0 - (step - self.anneal_start) / (self.anneal_end - self.anneal_start)


@register_model("rar")
class RARGenerator(RasterGenerator):
    """`RasterGenerator` with target-aware positions, trained on annealed random orders."""

    config_class = RARConfig

    def __init__(self, config: RARConfig) -> None:
        super().__init__(config)
        self.target_position = nn.Embedding(config.seq_len, config.dim)
        nn.init.normal_(self.target_position.weight, std=0.02)
        self.training_step = 0

    def set_step(self, step: int) -> None:
        """The training step (called by the trainer before each step): sets the permutation ratio."""
        self.training_step = int(step)

    def run_blocks(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None, input_pos: torch.Tensor | None,
                   is_causal: bool = False) -> torch.Tensor:
        """`RasterGenerator.run_blocks` in raster order: input position ``p`` predicts cell ``p``,
        so it adds that cell's target embedding (positions past the grid, the engine's draft
        slots, reuse the last one)."""
        positions = torch.arange(x.shape[1], device=x.device) if input_pos is None else input_pos
        targets = positions.clamp(max=self.config.seq_len - 1)
        return super().run_blocks(x + self.target_position(targets).to(x.dtype), rope, mask, input_pos, is_causal)

    def sample_orders(self, batch_size: int, device) -> torch.Tensor:
        """``batch_size x L`` visiting orders: a random permutation with probability
        ``random_order_ratio(training_step)`` per row, else raster (global torch RNG, as dropout)."""
        length = self.config.seq_len
        raster = torch.arange(length, device=device).expand(batch_size, length)
        ratio = self.config.random_order_ratio(self.training_step)
        if ratio <= 0.0:
            return raster
        random = torch.rand(batch_size, length, device=device).argsort(dim=1)
        permute = torch.rand(batch_size, 1, device=device) < ratio
        return torch.where(permute, random, raster)

    def ordered_hidden(self, ids: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
        """Final-norm states ``B x L x dim`` predicting ``ids`` visited in ``orders`` (``B x L``
        cell indices): input ``j`` is the class (``j = 0``) or the cell ``orders[j-1]``'s token,
        rotated by that cell's RoPE, plus the target embedding of cell ``orders[j]``."""
        visited = ids.gather(1, orders)
        x = torch.cat([self.embed_class(labels), self.embed(visited[:, :-1])], dim=1)
        rope_rows = torch.cat([torch.zeros_like(orders[:, :1]), orders[:, :-1] + 1], dim=1)
        x = x + self.target_position(orders).to(x.dtype)
        return RasterGenerator.run_blocks(self, x, self.rope[rope_rows].unsqueeze(1), None, None, is_causal=True)

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        ids = tokens.ids
        orders = self.sample_orders(ids.shape[0], ids.device)
        hidden = self.ordered_hidden(ids, self.drop_labels(cond), orders)
        ratio = torch.tensor(self.config.random_order_ratio(self.training_step))
        return {"loss": self.head.loss(hidden, ids.gather(1, orders)), "random_order_ratio": ratio}
