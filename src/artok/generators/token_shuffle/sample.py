"""Token-Shuffle sampling: one transformer step per ``s x s`` window, the window's ``s^2`` tokens
drawn together (the paper's parallel prediction) with the raster draw
(`artok.generators.raster.sample.pick_tokens`: CFG as a doubled batch, temperature, top-k, top-p;
the guidance schedule runs over windows).

`sample_token_shuffle` uses a static KV cache; `sample_token_shuffle_recompute` (the reference)
recomputes the prefix at every step; both give the same tokens for a seed. Pad slots of partial
windows are drawn (so the noise stream does not depend on the grid's padding) and replaced by the
pad id before being fed back, as in training.
"""

from __future__ import annotations

import torch

from artok.generators.raster.sample import guided_labels, pick_tokens
from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import SamplerConfig
from artok.sampling.logits import exponential_noise
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


def draw_window(generator, logits: torch.Tensor, step: int, config: SamplerConfig,
                rng: torch.Generator | None) -> torch.Tensor:
    """Window logits ``rows x s^2 x V`` -> ids ``rows x s^2`` (pad slots set to the pad id)."""
    guided = config.uses_cfg
    scale = cfg_scale_at(step, generator.config.seq_len, config.cfg_scale, config.cfg_schedule) if guided else 1.0
    rows = logits.shape[0] // 2 if guided else logits.shape[0]
    noise = exponential_noise((rows, *logits.shape[1:]), rng, logits.device, torch.float32)
    ids = pick_tokens(logits, noise, scale, guided, config.temperature, config.top_k, config.top_p)
    return ids.masked_fill(generator.padding[step], generator.pad_id)


def _sample(generator, labels, config, rng, window_logits) -> Tokens:
    """The loop both samplers share; ``window_logits(step, groups)`` gives the logits of window
    ``step`` given the windows drawn so far (``groups[:, :step]``)."""
    rows = guided_labels(generator, labels, config)
    groups = torch.empty(rows.shape[0], generator.config.seq_len, generator.config.group_size, dtype=torch.long,
                         device=labels.device)
    for step in range(generator.config.seq_len):
        groups[:, step] = draw_window(generator, window_logits(step, groups, rows), step, config, rng)
    return Tokens(generator.spec, ids=generator.ungroup_ids(groups[: labels.shape[0]]))


@torch.no_grad()
def sample_token_shuffle(generator, labels: torch.Tensor, config: SamplerConfig,
                         rng: torch.Generator | None = None) -> Tokens:
    """Sample ``len(labels)`` grids with a static KV cache over the merged positions."""

    def window_logits(step, groups, rows):
        position = torch.tensor([step], device=rows.device)
        x = generator.embed_class(rows) if step == 0 else generator.embed_groups(groups[:, step - 1 : step])
        return generator.logits(generator.transformer(x, position))[:, -1]

    with static_kv_cache(generator, 2 * labels.shape[0] if config.uses_cfg else labels.shape[0]):
        return _sample(generator, labels, config, rng, window_logits)


@torch.no_grad()
def sample_token_shuffle_recompute(generator, labels: torch.Tensor, config: SamplerConfig,
                                   rng: torch.Generator | None = None) -> Tokens:
    """Reference sampler: the whole prefix recomputed at every step (no cache)."""
    return _sample(generator, labels, config, rng, lambda step, groups, rows: generator(groups[:, :step], rows)[:, -1])
