"""Plain any-order sampling: one token per step in a random visiting order per image (drawn from the
caller's generator), with a static KV cache (`sample_any_order`) or recomputing the visited prefix
at every step (`sample_any_order_recompute`, the reference); both draw with the raster draw
(`artok.generators.raster.sample.next_token`: CFG, temperature, top-k, top-p) and give the same
tokens for a seed."""

from __future__ import annotations

import torch

from artok.generators.raster.model import RasterGenerator
from artok.generators.raster.sample import guided_labels, next_token
from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import SamplerConfig
from artok.tokens import Tokens


def draw_orders(count: int, length: int, rng: torch.Generator | None, device) -> torch.Tensor:
    """``count x length`` uniformly random visiting orders."""
    return torch.rand(count, length, generator=rng, device=device).argsort(dim=1)


def _doubled(tensor: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    return torch.cat([tensor, tensor]) if config.uses_cfg else tensor


@torch.no_grad()
def sample_any_order(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None,
                     orders: torch.Tensor | None = None) -> Tokens:
    """Sample ``len(labels)`` grids, one cached step per token, in ``orders`` (default: random)."""
    length, count = generator.config.seq_len, labels.shape[0]
    orders = draw_orders(count, length, rng, labels.device) if orders is None else orders
    rows, row_orders = guided_labels(generator, labels, config), _doubled(orders, config)
    out = torch.zeros(count, length, dtype=torch.long, device=labels.device)
    with static_kv_cache(generator, rows.shape[0]):
        x, rope_rows = generator.embed_class(rows), torch.zeros_like(row_orders[:, 0])
        for step in range(length):
            position = torch.tensor([step], device=labels.device)
            x = x + generator.target_position(row_orders[:, step])[:, None].to(x.dtype)
            rope = generator.rope[rope_rows][:, None, None]  # rows x 1 x 1 x head_dim/2 x 2
            hidden = RasterGenerator.run_blocks(generator, x, rope, generator.causal_mask[position], position)
            ids = next_token(generator.head(hidden)[:, -1], step, length, config, rng)
            out.scatter_(1, orders[:, step : step + 1], ids[:count, None])
            x, rope_rows = generator.embed(ids[:, None]), row_orders[:, step] + 1
    return Tokens(generator.spec, ids=out)


@torch.no_grad()
def sample_any_order_recompute(generator, labels: torch.Tensor, config: SamplerConfig,
                               rng: torch.Generator | None = None, orders: torch.Tensor | None = None) -> Tokens:
    """Reference sampler: the visited prefix recomputed (no cache) at every step."""
    length, count = generator.config.seq_len, labels.shape[0]
    orders = draw_orders(count, length, rng, labels.device) if orders is None else orders
    rows, row_orders = guided_labels(generator, labels, config), _doubled(orders, config)
    grid = torch.zeros(rows.shape[0], length, dtype=torch.long, device=labels.device)
    for step in range(length):
        logits = generator.ordered_logits(grid, rows, row_orders)[:, step]
        ids = next_token(logits, step, length, config, rng)
        grid.scatter_(1, row_orders[:, step : step + 1], ids[:, None])
    return Tokens(generator.spec, ids=grid[:count])
