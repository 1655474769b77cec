"""ReCAP for MAR (see `artok.sampling.recap`): full encoder-decoder passes every few iterations,
cheap local passes in between, from cached conditions: `MARGenerator.condition_vectors` with
``write_cache=True`` and `MARGenerator.local_condition_vectors` (the model's own forward, so every
block variant, ``block="timm"`` included, is served).
"""

from __future__ import annotations

import torch

from artok.generators.mar.sample import mar_cfg_scale
from artok.sampling.configs import MARSamplerConfig
from artok.sampling.head_graphs import HeadSampler
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.recap import FeatureCache
from artok.sampling.schedules import doubler, guidance_rows
from artok.tokens import Tokens


@torch.no_grad()
def sample_mar_recap(generator, labels: torch.Tensor, config: MARSamplerConfig,
                     rng: torch.Generator | None = None, *, group_size: int = 2,
                     cuda_graphs: bool | str = "auto") -> Tokens:
    """MAR decoding where each group of ``group_size`` iterations makes one full backbone pass and
    ``group_size - 1`` local ones (module docstring). ``extras`` counts the passes."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if generator.config.decoder_depth:
        raise ValueError("ReCAP for MAR needs the single bidirectional stack (decoder_depth=0): the MAE encoder "
                         "drops unknown positions, so there are no cached features to reuse for them")
    spec = generator.spec
    batch, seq_len, guided, device = labels.shape[0], spec.seq_len, config.uses_cfg, labels.device
    rows = guidance_rows(labels, generator.null_class, guided)
    values = torch.zeros(batch, seq_len, spec.channels, device=device)
    mask = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
    rank = torch.rand(batch, seq_len, generator=rng, device=device).argsort(dim=1).argsort(dim=1)

    double = doubler(guided)
    head = HeadSampler.for_config(generator.head, config, guided, cuda_graphs=cuda_graphs)
    full_evaluations = local_evaluations = 0
    revealed: list[torch.Tensor] = []  # positions (B x n) revealed since the last full pass
    length = generator.config.buffer_size + seq_len
    with FeatureCache(generator, rows.shape[0], generator.encoder, length):
        for step, count in enumerate(masked_counts(seq_len, config.iterations, config.mask_schedule)):
            next_mask = rank >= seq_len - count
            to_predict = mask & ~next_mask
            chunk = to_predict.nonzero()[:, 1].view(batch, -1)  # every row reveals the same count
            if step % group_size == 0:
                z = generator.condition_vectors(double(values), double(mask), rows, write_cache=True)[double(to_predict)]
                full_evaluations += 1
                revealed = []
            else:
                active = torch.cat(revealed + [chunk], dim=1)
                hidden = generator.local_condition_vectors(double(values), double(mask), double(active))
                z = hidden[:, -chunk.shape[1] :].reshape(-1, hidden.shape[-1])
                local_evaluations += 1
            scale = mar_cfg_scale(config.cfg_scale, config.cfg_schedule, seq_len - count, seq_len)
            sampled = head(z, scale, rng)
            values[to_predict] = sampled.to(values.dtype)
            revealed.append(chunk)
            mask = next_mask
    return Tokens(spec, values=values / generator.config.token_scale,
                  extras={"full_evaluations": full_evaluations, "local_evaluations": local_evaluations})
