"""Raster next-token sampling for raster generators whose head is not a plain softmax (the
``bitwise`` head of Infinity, https://arxiv.org/abs/2412.04431, and the ``dimwise`` head of
TokenBridge, https://arxiv.org/abs/2503.16430).

Same loop as `artok.sampling.sample_raster` (static KV cache, CFG as one doubled batch) but the
transformer's hidden state, not its logits, is handed to `artok.sampling.heads.draw_discrete`, which
knows how to sample bits or a channel sequence. For the categorical head it draws exactly what
`sample_raster` draws (same random stream).
"""

from __future__ import annotations

import torch

from artok.generators.raster.sample import guided_labels
from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import SamplerConfig
from artok.sampling.heads import draw_discrete
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


@torch.no_grad()
def sample_raster_with_head(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None) -> Tokens:
    """Sample ``len(labels)`` token sequences from a raster generator with any discrete head."""
    spec = generator.spec
    seq_len = spec.seq_len
    rows = guided_labels(generator, labels, config)
    batch = labels.shape[0]
    shape = (batch, seq_len) if spec.subtokens == 1 else (batch, seq_len, spec.subtokens)
    out = torch.empty(shape, dtype=torch.long, device=labels.device)
    with static_kv_cache(generator, rows.shape[0]):
        position = torch.zeros(1, dtype=torch.long, device=labels.device)
        hidden = generator.transformer(generator.embed_class(rows), position)[:, -1:]
        for step in range(seq_len):
            draw = draw_discrete(
                generator.head, hidden, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                guided=config.uses_cfg, cfg_scale=cfg_scale_at(step, seq_len, config.cfg_scale, config.cfg_schedule),
                rng=rng,
            )
            out[:, step] = draw.ids[:, 0]
            if step + 1 < seq_len:
                ids = torch.cat([draw.ids, draw.ids]) if config.uses_cfg else draw.ids
                position = torch.tensor([step + 1], device=labels.device)
                hidden = generator.transformer(generator.embed(ids), position)
    return Tokens(spec, ids=out)
