"""Hi-MAR sampling: MAR's random-order masked loop over the pivots, then over the full grid with
every pivot known (https://arxiv.org/abs/2505.20288). The sampler config's ``iterations`` are split
between the phases in proportion to their token counts (at least one each); each phase has its own
random order and cosine schedule, and MAR's guidance ramp runs within each phase. The head's
steps run through `artok.sampling.head_graphs.HeadSampler` as for MAR."""

from __future__ import annotations

import torch

from artok.generators.mar.sample import mar_cfg_scale
from artok.sampling.configs import MARSamplerConfig
from artok.sampling.head_graphs import HeadSampler
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.schedules import doubler, guidance_rows
from artok.tokens import Tokens


def phase_iterations(iterations: int, num_pivots: int, num_tokens: int) -> tuple[int, int]:
    """``iterations`` split between the pivot and the full phase (at least 1 each, at most their sizes)."""
    pivot = min(num_pivots, max(1, round(iterations * num_pivots / (num_pivots + num_tokens))))
    return pivot, min(num_tokens, max(1, iterations - pivot))


@torch.no_grad()
def sample_hi_mar(generator, labels: torch.Tensor, config: MARSamplerConfig, rng: torch.Generator | None = None,
                  *, cuda_graphs: bool | str = "auto") -> Tokens:
    """Sample ``len(labels)`` continuous token grids ``B x L x D`` (pivots first, then the grid)."""
    spec, guided, device = generator.spec, config.uses_cfg, labels.device
    batch, num_pivots, num_tokens = labels.shape[0], generator.config.num_pivots, spec.seq_len
    rows, double = guidance_rows(labels, generator.null_class, guided), doubler(guided)
    state = {"pivots": torch.zeros(batch, num_pivots, spec.channels, device=device),
             "values": torch.zeros(batch, num_tokens, spec.channels, device=device),
             "pivot_mask": torch.ones(batch, num_pivots, dtype=torch.bool, device=device),
             "mask": torch.ones(batch, num_tokens, dtype=torch.bool, device=device)}
    head = HeadSampler.for_config(generator.head, config, guided, cuda_graphs=cuda_graphs)
    iterations = phase_iterations(config.iterations, num_pivots, num_tokens)
    for phase, (name, mask_name, offset) in enumerate((("pivots", "pivot_mask", 0), ("values", "mask", num_pivots))):
        length = state[name].shape[1]
        rank = torch.rand(batch, length, generator=rng, device=device).argsort(dim=1).argsort(dim=1)
        for count in masked_counts(length, iterations[phase], config.mask_schedule):
            next_mask = rank >= length - count
            to_predict = state[mask_name] & ~next_mask
            z = generator.condition_vectors(double(state["pivots"]), double(state["pivot_mask"]),
                                            double(state["values"]), double(state["mask"]), rows)
            z = z[:, offset : offset + length][double(to_predict)]
            sampled = head(z, mar_cfg_scale(config.cfg_scale, config.cfg_schedule, length - count, length), rng)
            state[name][to_predict] = sampled.to(state[name].dtype)
            state[mask_name] = next_mask
    return Tokens(spec, values=state["values"] / generator.config.token_scale)
