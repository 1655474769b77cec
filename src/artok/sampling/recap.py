"""ReCAP: reused context-aware prediction for masked generators (Liu et al., "Plug-and-Play Context
Feature Reuse for Efficient Masked Generation", https://arxiv.org/abs/2505.19089), on top of
MaskGIT decoding (`artok.sampling.sample_maskgit`, `sample_maskgit_recap`) and MAR decoding
(`artok.sampling.sample_mar`, `sample_mar_recap`).

MaskGIT reveals a few tokens per iteration, and every iteration re-runs the bidirectional
transformer over all ``L`` positions. ReCAP groups ``group_size`` iterations: the first is a
*full* evaluation that also caches every layer's keys and values; it samples all masked positions,
ranks them by MaskGIT's (Gumbel-perturbed) confidence and fixes which positions the whole group
reveals, most confident first, split into the group's iterations by the mask schedule. The first
chunk is revealed with the full step's draws. Each later iteration is a *local* evaluation: only
the positions revealed since the full step (their cached features still show the mask token) and
the positions to reveal now are recomputed, attending to the cached keys/values of every other
position; the chunk is re-drawn from these context-aware predictions. A local step costs
``O(n L)`` attention and ``O(n)`` MLP work for ``n`` active positions instead of ``O(L^2)`` and
``O(L)``.

Guarantees: lossy. Cached features of positions outside the active set are those of the last full
step (stale by the tokens revealed since), and the positions a group reveals are chosen by the full
step's confidences. With ``group_size=1`` every iteration is full and the sampler returns exactly
`sample_maskgit`'s tokens for the same seed (tested).

MAR (`sample_mar_recap`, single bidirectional stack, ``decoder_depth=0``): the reveal order is
MAR's random order, fixed in advance, so a group needs no plan: its first iteration is a full
backbone pass (caching keys/values of the buffer and every position), each later iteration
recomputes only the positions revealed since the full pass and the ones it reveals now, against the
cached context, and the per-token head samples the new tokens from those states. The head's
denoising loop, often MAR's dominant cost, is unchanged; ReCAP removes backbone work only. Same
guarantees: lossy for ``group_size > 1``, exactly `sample_mar` for ``group_size=1`` (tested).
"""

from __future__ import annotations

import torch

from artok.generators.mar.sample import mar_cfg_scale
from artok.generators.maskgit.sample import gumbel_noise, remask_least_confident
from artok.nn.kv_cache import attach_caches
from artok.sampling.configs import MARSamplerConfig, MaskGITSamplerConfig
from artok.sampling.engine_support import RowKVCache
from artok.sampling.head_graphs import HeadSampler
from artok.sampling.heads import draw_discrete
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.schedules import cfg_scale_at, doubler, guidance_rows
from artok.tokens import Tokens


class _FeatureCache:
    """Per-layer key/value caches over all ``length`` positions of ``blocks`` (default: a MaskGIT
    generator's blocks over its ``L + 1`` positions, class token first), attached to the attention
    layers for the duration of a sampling call."""

    def __init__(self, generator, rows: int, blocks=None, length: int | None = None) -> None:
        param = next(generator.parameters())
        self.blocks = list(generator.blocks if blocks is None else blocks)
        length = generator.spec.seq_len + 1 if length is None else length
        self.caches = [RowKVCache(rows, b.attention.num_heads, length, b.attention.head_dim, param.dtype, param.device)
                       for b in self.blocks]

    def __enter__(self):
        self.previous = attach_caches(self.blocks, self.caches)
        return self

    def __exit__(self, *exc):
        attach_caches(self.blocks, self.previous)


def _inputs(generator, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token or mask embeddings ``B x L x dim`` (as `MaskGITGenerator.hidden_states` builds them)."""
    tokens = generator.token_embedding(ids.clamp_min(0))
    return torch.where(mask.unsqueeze(-1), generator.mask_embedding.to(tokens.dtype), tokens)


def full_hidden(generator, ids, mask, rows) -> torch.Tensor:
    """`MaskGITGenerator.hidden_states` that also writes every layer's keys/values into the
    attached caches (``B x L x dim``)."""
    x = torch.cat([generator.class_embedding(rows).unsqueeze(1), _inputs(generator, ids, mask)], dim=1)
    x = x + generator.position
    positions = torch.arange(x.shape[1], device=x.device)
    for block in generator.blocks:
        x = block(x, input_pos=positions)
    return generator.norm(x)[:, 1:]


def local_hidden(generator, ids, mask, active: torch.Tensor) -> torch.Tensor:
    """States of the ``active`` positions only (``B x n`` grid indices, per row), recomputed against
    the cached keys/values of all other positions; refreshes the active positions' cache entries."""
    x = _inputs(generator, ids, mask).gather(1, active[..., None].expand(-1, -1, generator.config.dim))
    positions = active + 1  # slot 0 is the class token
    x = x + generator.position[positions]
    for block in generator.blocks:
        x = block(x, input_pos=positions)
    return generator.norm(x)


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
    with _FeatureCache(generator, rows.shape[0]):
        for step, count in enumerate(counts):
            if step % group_size == 0:
                # Full evaluation: MaskGIT's step, plus the plan of the whole group.
                hidden = full_hidden(generator, double(ids), double(mask), rows)
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
            hidden = local_hidden(generator, double(ids), double(mask), double(active))
            local_evaluations += 1
            result = draw(hidden[:, -chunk.shape[1]:], step)  # the chunk's states, both CFG halves
            ids = ids.scatter(1, chunk, result.ids)
            mask = mask.scatter(1, chunk, False)
            revealed.append(chunk)
    return Tokens(spec, ids=ids, extras={"full_evaluations": full_evaluations, "local_evaluations": local_evaluations})


def _mar_inputs(generator, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = generator.embed_values(values)
    return torch.where(mask.unsqueeze(-1), generator.mask_token.to(x.dtype), x)


def mar_full_conditions(generator, values, mask, rows) -> torch.Tensor:
    """`MARGenerator.condition_vectors` (``decoder_depth=0``) that also writes every encoder layer's
    keys/values into the attached caches (``B x L x dim``)."""
    x = generator._with_buffer(_mar_inputs(generator, values, mask), rows) + generator.encoder_position
    positions = torch.arange(x.shape[1], device=x.device)
    for block in generator.encoder:
        x = block(x, input_pos=positions)
    return generator.encoder_norm(x)[:, generator.config.buffer_size :] + generator.head_position


def mar_local_conditions(generator, values, mask, active: torch.Tensor) -> torch.Tensor:
    """Condition vectors of the ``active`` positions only (``B x n`` token indices), recomputed against
    the cached keys/values of every other position; refreshes the active positions' cache entries."""
    dim = generator.config.dim
    x = _mar_inputs(generator, values, mask).gather(1, active[..., None].expand(-1, -1, dim))
    positions = active + generator.config.buffer_size
    x = x + generator.encoder_position[positions]
    for block in generator.encoder:
        x = block(x, input_pos=positions)
    return generator.encoder_norm(x) + generator.head_position[active]


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
    with _FeatureCache(generator, rows.shape[0], generator.encoder, length):
        for step, count in enumerate(masked_counts(seq_len, config.iterations, config.mask_schedule)):
            next_mask = rank >= seq_len - count
            to_predict = mask & ~next_mask
            chunk = to_predict.nonzero()[:, 1].view(batch, -1)  # every row reveals the same count
            if step % group_size == 0:
                z = mar_full_conditions(generator, double(values), double(mask), rows)[double(to_predict)]
                full_evaluations += 1
                revealed = []
            else:
                active = torch.cat(revealed + [chunk], dim=1)
                hidden = mar_local_conditions(generator, double(values), double(mask), double(active))
                z = hidden[:, -chunk.shape[1] :].reshape(-1, hidden.shape[-1])
                local_evaluations += 1
            scale = mar_cfg_scale(config.cfg_scale, config.cfg_schedule, seq_len - count, seq_len)
            sampled = head(z, scale, rng)
            values[to_predict] = sampled.to(values.dtype)
            revealed.append(chunk)
            mask = next_mask
    return Tokens(spec, values=values / generator.config.token_scale,
                  extras={"full_evaluations": full_evaluations, "local_evaluations": local_evaluations})
