"""NAR sampling: one forward pass per Manhattan-distance front (``h + w - 1`` per image).

`sample_nar` feeds each front's tokens into a static KV cache; `sample_nar_recompute` (the
reference) recomputes the whole grid at every step under the front mask. Both draw every front's
tokens with the raster draw (`artok.generators.raster.sample.pick_tokens`: CFG as a doubled
batch, temperature, top-k, top-p; the guidance schedule runs over fronts) from the same noise, so
they give the same tokens for a seed.
"""

from __future__ import annotations

import torch

from artok.generators.nar.model import combine_heads
from artok.generators.raster.sample import guided_labels, pick_tokens
from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import SamplerConfig
from artok.sampling.logits import exponential_noise
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


def draw_front(logits: torch.Tensor, front: int, num_fronts: int, config: SamplerConfig,
               rng: torch.Generator | None) -> torch.Tensor:
    """Front logits ``rows x n x V`` (rows doubled under CFG) -> ids ``rows x n``."""
    guided = config.uses_cfg
    scale = cfg_scale_at(front, num_fronts, config.cfg_scale, config.cfg_schedule) if guided else 1.0
    rows = logits.shape[0] // 2 if guided else logits.shape[0]
    noise = exponential_noise((rows, *logits.shape[1:]), rng, logits.device, torch.float32)
    return pick_tokens(logits, noise, scale, guided, config.temperature, config.top_k, config.top_p)


def _sample(generator, labels, config, rng, front_logits) -> Tokens:
    """The loop both samplers share; ``front_logits(front, fed_ids, grid_ids)`` gives the logits of
    front ``front`` after the previous front's ``fed_ids`` (None for front 0)."""
    count, num_fronts = labels.shape[0], generator.config.num_fronts
    grid_ids = torch.zeros(2 * count if config.uses_cfg else count, generator.config.seq_len, dtype=torch.long,
                           device=labels.device)
    ids = None
    for front, plan in enumerate(generator.plans):
        ids = draw_front(front_logits(front, ids, grid_ids), front, num_fronts, config, rng)
        grid_ids[:, plan.cells.to(labels.device)] = ids
    return Tokens(generator.spec, ids=grid_ids[:count])


@torch.no_grad()
def sample_nar(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None) -> Tokens:
    """Sample ``len(labels)`` grids, one cached forward per front."""
    rows = guided_labels(generator, labels, config)
    with static_kv_cache(generator, rows.shape[0]):

        def front_logits(front, fed, _):
            if fed is None:
                x, slots = generator.embed_inputs(None, rows), torch.zeros(1, dtype=torch.long, device=rows.device)
            else:
                x, slots = generator.embed_inputs(fed, None), generator.plans[front - 1].cells.to(rows.device) + 1
            return combine_heads(*generator.head_logits(x, slots), generator.plans[front])

        return _sample(generator, labels, config, rng, front_logits)


@torch.no_grad()
def sample_nar_recompute(generator, labels: torch.Tensor, config: SamplerConfig,
                         rng: torch.Generator | None = None) -> Tokens:
    """Reference sampler: the whole grid recomputed (no cache) at every front; same tokens as `sample_nar`."""
    rows = guided_labels(generator, labels, config)

    def front_logits(front, _, grid_ids):
        horizontal, vertical = generator.head_logits(generator.embed_inputs(grid_ids, rows))
        slots = torch.zeros(1, dtype=torch.long) if front == 0 else generator.plans[front - 1].cells + 1
        return combine_heads(horizontal[:, slots.to(rows.device)], vertical[:, slots.to(rows.device)],
                             generator.plans[front])

    return _sample(generator, labels, config, rng, front_logits)
