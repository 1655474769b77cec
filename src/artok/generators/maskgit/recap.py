"""ReCAP for MaskGIT (see `artok.sampling.recap`): full passes every few iterations, cheap local
passes over the newly changed positions in between, from cached features (`MaskGITGenerator.hidden_states`
with ``write_cache=True`` and `MaskGITGenerator.local_hidden_states`).
"""

from __future__ import annotations

import torch

from artok.generators.maskgit.sample import gumbel_noise, remask_least_confident
from artok.sampling.configs import MaskGITSamplerConfig
from artok.sampling.heads import draw_discrete
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.recap import FeatureCache
from artok.sampling.schedules import cfg_scale_at, doubler, guidance_rows
from artok.tokens import Tokens


@torch.no_grad()
def sample_maskgit_recap(generator, labels: torch.Tensor, config: MaskGITSamplerConfig,
                         rng: torch.Generator | None = None, *, group_size: int = 2,
                     cuda_graphs: bool | str = "auto") -> Tokens:
    """MaskGIT decoding where each group of ``group_size`` iterations makes one full evaluation and
    ``group_size - 1`` local ones (see the module docstring). ``extras["full_evaluations"]`` and
    ``extras["local_evaluations"]`` count the transformer passes."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if getattr(generator.config, "head", "categorical") != "categorical":
        raise ValueError("ReCAP here supports MaskGIT generators with a categorical head")
    spec = generator.spec
    batch, seq_len, guided = labels.shape[0], spec.seq_len, config.uses_cfg
    rows = guidance_rows(labels, generator.null_class, guided)
    counts = masked_counts(seq_len, config.iterations, config.mask_schedule)
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=labels.device)
    mask = torch.ones(batch, seq_len, dtype=torch.bool, device=labels.device)

    double = doubler(guided)

    def draw(hidden, step):
        scale = cfg_scale_at(step, config.iterations, config.cfg_scale, config.cfg_schedule)
        return draw_discrete(generator.head, hidden, temperature=config.temperature, top_k=config.top_k,
                             top_p=config.top_p, guided=guided, cfg_scale=scale, rng=rng)

    full_evaluations = local_evaluations = 0
    plan: list[torch.Tensor] = []  # chunks (B x n) still to reveal in the current group
    revealed: list[torch.Tensor] = []  # chunks revealed since the last full evaluation
    with FeatureCache(generator, rows.shape[0]):
        for step, count in enumerate(counts):
            if step % group_size == 0:
                # Full evaluation: MaskGIT's step, plus the plan of the whole group.
                hidden = generator.hidden_states(double(ids), double(mask), rows, write_cache=True)
                full_evaluations += 1
                result = draw(hidden, step)
                ids = torch.where(mask, result.ids, ids)
                noise_scale = config.choice_temperature * (1.0 - (step + 1) / config.iterations)
                confidence = result.log_prob + noise_scale * gumbel_noise(result.log_prob.shape, rng, labels.device)
                confidence = confidence.masked_fill(~mask, float("inf"))
                group = counts[step : step + group_size]
                before = int(mask[0].sum())
                # Reveal order: most confident masked positions first (known ones rank last).
                order = confidence.masked_fill(~mask, float("-inf")).argsort(dim=1, descending=True)
                sizes = [before - group[0]] + [group[i - 1] - group[i] for i in range(1, len(group))]
                starts = [sum(sizes[:i]) for i in range(len(sizes))]
                plan = [order[:, start : start + size] for start, size in zip(starts, sizes)]
                # The first chunk is revealed with the full step's draws (exactly MaskGIT's step).
                mask = remask_least_confident(confidence, count)
                revealed = [plan.pop(0)]  # later chunks stay masked until their local step
                continue
            chunk = plan.pop(0)
            if chunk.shape[1] == 0:
                continue
            active = torch.cat(revealed + [chunk], dim=1)
            hidden = generator.local_hidden_states(double(ids), double(mask), double(active))
            local_evaluations += 1
            result = draw(hidden[:, -chunk.shape[1]:], step)  # the chunk's states, both CFG halves
            ids = ids.scatter(1, chunk, result.ids)
            mask = mask.scatter(1, chunk, False)
            revealed.append(chunk)
    return Tokens(spec, ids=ids, extras={"full_evaluations": full_evaluations, "local_evaluations": local_evaluations})
