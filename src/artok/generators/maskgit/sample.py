"""MaskGIT iterative decoding (https://arxiv.org/abs/2202.04200, section 3.2 / algorithm in 3.3).

Start with every position masked. At iteration ``t`` of ``T``:

1. predict every position, draw an id for each masked one (temperature, top-k, top-p, optional
   classifier-free guidance); known positions keep their ids;
2. confidence of a newly drawn id = its log-probability + Gumbel noise scaled by
   ``choice_temperature * (1 - (t + 1) / T)`` (annealed to 0); known positions get +inf;
3. re-mask the ``n_t`` least confident positions, ``n_t`` = `masked_counts` of the schedule.

So after iteration ``t`` exactly ``n_t`` positions are masked (the returned tokens' ``extras``
record the counts), and after the last one none.
"""

from __future__ import annotations

import torch

from artok.sampling.configs import MaskGITSamplerConfig
from artok.sampling.heads import draw_discrete
from artok.sampling.logits import cfg_combine, exponential_noise, logits_to_probs
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.schedules import cfg_scale_at, doubler, guidance_rows
from artok.tokens import Tokens


def gumbel_noise(shape, rng: torch.Generator | None, device) -> torch.Tensor:
    uniform = torch.rand(shape, generator=rng, device=device).clamp(1e-20, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))


def remask_least_confident(confidence: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean ``B x L`` mask of the ``count`` lowest-confidence positions of every row."""
    mask = torch.zeros_like(confidence, dtype=torch.bool)
    if count > 0:
        lowest = torch.topk(confidence, count, dim=1, largest=False).indices
        mask.scatter_(1, lowest, True)
    return mask


@torch.no_grad()
def sample_maskgit(generator, labels: torch.Tensor, config: MaskGITSamplerConfig, rng: torch.Generator | None = None) -> Tokens:
    """Sample ``len(labels)`` token grids; ``extras["masked_per_step"]`` lists the masked counts."""
    spec = generator.spec
    batch, seq_len, guided = labels.shape[0], spec.seq_len, config.uses_cfg
    rows = guidance_rows(labels, generator.null_class, guided)
    counts = masked_counts(seq_len, config.iterations, config.mask_schedule)
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=labels.device)
    mask = torch.ones(batch, seq_len, dtype=torch.bool, device=labels.device)
    observed = []
    categorical = getattr(generator.config, "head", "categorical") == "categorical"
    for step, count in enumerate(counts):
        if categorical:  # the step the engine compiles, with the noise drawn in the same order
            race = exponential_noise((batch, seq_len, spec.vocab_size), rng, labels.device)
            gumbel = gumbel_noise((batch, seq_len), rng, labels.device)
            scale = cfg_scale_at(step, config.iterations, config.cfg_scale, config.cfg_schedule)
            noise_scale = config.choice_temperature * (1.0 - (step + 1) / config.iterations)
            ids, mask = maskgit_step(generator, ids, mask, rows, race, gumbel, scale, noise_scale, count, guided,
                                     config.temperature, config.top_k, config.top_p)
            observed.append(int(mask.sum(dim=1).max()))
            continue
        double = doubler(guided)
        hidden = generator.hidden_states(double(ids), double(mask), rows)
        draw = draw_discrete(
            generator.head, hidden, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
            guided=guided, cfg_scale=cfg_scale_at(step, config.iterations, config.cfg_scale, config.cfg_schedule), rng=rng,
        )
        ids = torch.where(mask, draw.ids, ids)
        noise_scale = config.choice_temperature * (1.0 - (step + 1) / config.iterations)
        confidence = draw.log_prob + noise_scale * gumbel_noise(draw.log_prob.shape, rng, labels.device)
        confidence = confidence.masked_fill(~mask, float("inf"))
        mask = remask_least_confident(confidence, count)
        observed.append(int(mask.sum(dim=1).max()))
    return Tokens(spec, ids=ids, extras={"masked_per_step": observed, "scheduled_masked": counts})


def maskgit_step(model, ids, mask, rows, race, gumbel, scale, noise_scale: float, count: int, guided: bool,
                  temperature: float, top_k: int, top_p: float):
    """One MaskGIT iteration for a categorical head, its noise given (``race``: Exp(1) noise of the
    categorical draw, ``gumbel``: the confidence noise): the plain loop runs it eagerly, `MaskGITEngine`
    compiles it (and on CUDA replays it as a CUDA graph). Returns the new ids and mask."""
    both = (lambda x: torch.cat([x, x])) if guided else (lambda x: x)
    logits = model.head(model.hidden_states(both(ids), both(mask), rows)).float()
    if guided:
        cond, uncond = logits.chunk(2)
        logits = cfg_combine(cond, uncond, scale)
    probs = logits_to_probs(logits, temperature, top_k, top_p)
    drawn = torch.argmax(probs / race, dim=-1)
    log_prob = probs.gather(-1, drawn.unsqueeze(-1)).squeeze(-1).clamp_min(1e-30).log()
    ids = torch.where(mask, drawn, ids)
    confidence = (log_prob + noise_scale * gumbel).masked_fill(~mask, float("inf"))
    return ids, remask_least_confident(confidence, count)
