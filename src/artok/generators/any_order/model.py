"""Any-subset autoregressive model (AS-ARM) for any-subset speculative decoding (Guo & Ermon,
"Reviving Any-Subset Autoregressive Models with Principled Parallel Sampling and Speculative
Decoding", https://arxiv.org/abs/2504.20456; the model side follows sigma-GPT / RAR).

A raster-style transformer (artok's RAR model) trained on a uniformly random visiting order for
every sequence (never annealed), with target-aware positions: the input of position ``j`` carries
the embedding of the cell it must predict. Because every cell can come next after every prefix set
in training, the model gives ``p(x_t | x_S)`` for any observed set ``S`` and any unobserved cell
``t``, and `subset_conditionals` evaluates it for ``k`` cells at once (one pass: ``k`` query slots
that copy the last observed slot, each with another target, each seeing only the observed slots
and itself). That is ASSD's draft; the causal pass over the drafted tokens (`ordered_logits`) is
its verification (see `artok.generators.any_order.speculative`).

The law of a sample is the autoregressive factorisation in its visiting order (a random order per
image, drawn from the caller's generator). Simplified vs the paper: the AS-ARM is this decoder
with target-aware positions (the paper also uses XLNet-style two-stream models); class-conditional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from artok.generators.raster.model import RasterConfig, RasterGenerator
from artok.generators.rar.model import RARGenerator
from artok.hub import register_model


@dataclass
class AnyOrderConfig(RasterConfig):
    """Configuration of `AnyOrderGenerator`: a `RasterConfig` (categorical head); every training
    sequence is visited in a random order."""

    def __post_init__(self) -> None:
        if self.head != "categorical":
            raise ValueError(f"the any-order model has a categorical head only, got head={self.head!r}")
        super().__post_init__()

    def random_order_ratio(self, step: int) -> float:
        return 1.0


@register_model("any_order")
class AnyOrderGenerator(RARGenerator):
    """RAR's model trained on random orders only, with any-subset conditionals."""

    config_class = AnyOrderConfig

    def ordered_logits(self, ids: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
        """``B x L x V``: slot ``j`` holds ``p(x[orders[j]] | class, x[orders[:j]])`` for grid
        ``ids`` (``B x L``, cells not yet visited may hold anything) visited in ``orders``."""
        return self.head(self.ordered_hidden(ids, labels, orders))

    def subset_conditionals(self, ids: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor, known: torch.Tensor,
                            count: int) -> torch.Tensor:
        """``B x count x V``: query ``i`` of row ``b`` holds ``p(x[orders[b, known[b] + i]] | class,
        x[orders[b, :known[b]]])`` (targets past the end repeat the last cell), in one pass."""
        rows, length = orders.shape
        visited = ids.gather(1, orders)
        inputs = torch.cat([self.embed_class(labels), self.embed(visited[:, :-1])], dim=1)  # B x L x dim
        rope_rows = torch.cat([torch.zeros_like(orders[:, :1]), orders[:, :-1] + 1], dim=1)
        slot = known.clamp(max=length - 1)[:, None]
        query = inputs.gather(1, slot[..., None].expand(rows, 1, inputs.shape[-1])).expand(rows, count, -1)
        targets = orders.gather(1, (slot + torch.arange(count, device=orders.device)).clamp(max=length - 1))
        x = torch.cat([inputs + self.target_position(orders), query + self.target_position(targets)], dim=1)
        rope = self.rope[torch.cat([rope_rows, rope_rows.gather(1, slot).expand(rows, count)], dim=1)].unsqueeze(1)
        return self.head(RasterGenerator.run_blocks(self, x, rope, self.query_mask(known, length, count), None)[:, length:])

    @staticmethod
    def query_mask(known: torch.Tensor, length: int, count: int) -> torch.Tensor:
        """``B x 1 x (L + count) x (L + count)``: causal over the ``L`` sequence slots; query ``i``
        sees the slots before ``known`` and itself."""
        size, device = length + count, known.device
        mask = torch.zeros(known.shape[0], size, size, dtype=torch.bool, device=device)
        mask[:, :length, :length] = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        mask[:, length:, :length] = (torch.arange(length, device=device) < known[:, None])[:, None, :]
        mask[:, length:, length:] = torch.eye(count, dtype=torch.bool, device=device)
        return mask.unsqueeze(1)
