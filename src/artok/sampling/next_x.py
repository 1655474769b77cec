"""Next-X sampling (xAR, https://arxiv.org/abs/2502.20388): one unit (token or cell) per step.

For unit ``n`` the block-causal transformer runs only block ``n`` (its keys/values go into a static
KV cache, so earlier units are never recomputed), its outputs condition the per-token head, and the
head integrates the unit's tokens from noise (flow head: Euler or Euler-Maruyama; diffusion head:
respaced DDPM). The generated unit, at noise time ``t = 1`` (clean), is the context of block ``n + 1``.
Classifier-free guidance runs ``[labels; null]`` rows; ``cfg_schedule="linear"`` ramps the scale from
1 at the first unit to ``cfg_scale`` at the last.
"""

from __future__ import annotations

import torch

from artok.sampling.configs import NextXSamplerConfig
from artok.sampling.continuous import sample_head
from artok.sampling.kv_cache import static_kv_cache
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


@torch.no_grad()
def sample_next_x(generator, labels: torch.Tensor, config: NextXSamplerConfig, rng: torch.Generator | None = None) -> Tokens:
    """Sample ``len(labels)`` continuous token grids ``B x L x D``."""
    spec = generator.spec
    batch, guided, device = labels.shape[0], config.uses_cfg, labels.device
    rows = torch.cat([labels, torch.full_like(labels, generator.null_class)]) if guided else labels
    num_units, unit_size = generator.num_units, generator.unit_size
    units = torch.zeros(batch, num_units, unit_size, spec.channels, device=device)
    valid = generator.unit_valid.to(units.dtype)
    ones = torch.ones(rows.shape[0], device=device)
    with static_kv_cache(generator, rows.shape[0]):
        context = None
        for unit in range(num_units):
            start, end = generator.unit_span(unit)
            x = generator.block_input(rows, unit, context, None if unit == 0 else ones)
            hidden = generator.transformer(x, torch.arange(start, end, device=device))
            sampled = sample_head(
                generator.head, hidden.reshape(-1, hidden.shape[-1]), steps=config.steps, method=config.method,
                temperature=config.temperature, diffusion_scale=config.diffusion_scale, guided=guided,
                cfg_scale=cfg_scale_at(unit, num_units, config.cfg_scale, config.cfg_schedule), rng=rng,
            )
            units[:, unit] = sampled.reshape(batch, unit_size, -1) * valid[unit][:, None]
            context = torch.cat([units[:, unit], units[:, unit]]) if guided else units[:, unit]
    return Tokens(spec, values=generator.from_units(units) / generator.config.token_scale)
