"""Sampling loops for raster next-token generators (gpt-fast style: `prefill` and
`decode_one_token` are free functions with static shapes that a later step can compile or
capture into CUDA graphs).

Classifier-free guidance runs as one doubled batch: rows ``[0, B)`` carry the labels, rows
``[B, 2B)`` the "no class" label; both halves receive the same sampled token.

`sample_raster` (static KV cache) and `sample_raster_recompute` (full recompute of the prefix
at every step) consume the random generator identically and, up to floating-point summation
order, produce the same tokens for the same seed; the test suite checks they are equal.
"""

from __future__ import annotations

import torch

from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import SamplerConfig
from artok.sampling.logits import (
    cfg_combine,
    exponential_noise,
    logits_to_probs,
)
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


def guided_labels(generator, labels: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    """Labels of the (possibly doubled) batch: ``[labels, null]`` under CFG, else ``labels``."""
    if not config.uses_cfg:
        return labels
    return torch.cat([labels, torch.full_like(labels, generator.null_class)])


def next_token(
    logits: torch.Tensor, step: int, num_steps: int, config: SamplerConfig, rng: torch.Generator | None
) -> torch.Tensor:
    """Last-position logits of the (doubled) batch -> sampled ids for every row (``rows``): the
    engine's own draw (`pick_tokens`), with the noise drawn here from ``rng``."""
    guided = config.uses_cfg
    scale = cfg_scale_at(step, num_steps, config.cfg_scale, config.cfg_schedule) if guided else 1.0
    rows = logits.shape[0] // 2 if guided else logits.shape[0]
    noise = exponential_noise((rows, logits.shape[-1]), rng, logits.device, torch.float32 if guided else logits.dtype)
    return pick_tokens(logits, noise, scale, guided, config.temperature, config.top_k, config.top_p)


def pick_tokens(logits, noise, scale, guided: bool, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """CFG-combine (if ``guided``), filter, and draw with the given Exp(1) ``noise`` (what
    `next_token` runs eagerly and the engine's compiled step runs with its noise passed in). Returns ids for every row (both halves under guidance)."""
    if guided:
        cond, uncond = logits.chunk(2)
        logits = cfg_combine(cond.float(), uncond.float(), scale)
    ids = torch.argmax(logits_to_probs(logits, temperature, top_k, top_p) / noise, dim=-1)
    return torch.cat([ids, ids]) if guided else ids


def prefill(model, labels: torch.Tensor) -> torch.Tensor:
    """Write the class position into the cache; return logits for the first token (``rows x V``)."""
    input_pos = torch.zeros(1, dtype=torch.long, device=labels.device)
    return model.head(model.transformer(model.embed_class(labels), input_pos))[:, -1]


def decode_one_token(model, ids: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    """Feed one token per row (``rows``) at ``input_pos`` (shape ``1``); return next logits ``rows x V``."""
    return model.head(model.transformer(model.embed(ids[:, None]), input_pos))[:, -1]


@torch.no_grad()
def sample_raster(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None) -> Tokens:
    """Sample ``len(labels)`` token sequences with a static KV cache."""
    return Tokens(generator.spec, ids=raster_token_ids(generator, labels, config, rng))


@torch.no_grad()
def raster_token_ids(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None,
                     num_tokens: int | None = None) -> torch.Tensor:
    """`sample_raster`'s loop: ``len(labels) x num_tokens`` ids (default: the whole sequence; fewer
    stops early, as ``artok bench --tokens`` does, with the guidance schedule of the whole one)."""
    seq_len = generator.config.seq_len
    num_tokens = seq_len if num_tokens is None else num_tokens
    rows = guided_labels(generator, labels, config)
    out = torch.empty(labels.shape[0], num_tokens, dtype=torch.long, device=labels.device)
    with static_kv_cache(generator, rows.shape[0]):
        ids = next_token(prefill(generator, rows), 0, seq_len, config, rng)
        out[:, 0] = ids[: labels.shape[0]]
        for step in range(1, num_tokens):
            input_pos = torch.tensor([step], device=labels.device)
            ids = next_token(decode_one_token(generator, ids, input_pos), step, seq_len, config, rng)
            out[:, step] = ids[: labels.shape[0]]
    return out


@torch.no_grad()
def sample_raster_recompute(
    generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None
) -> Tokens:
    """Reference sampler: recompute the whole prefix at every step (no cache). Slow; for tests."""
    seq_len = generator.config.seq_len
    rows = guided_labels(generator, labels, config)
    prefix = torch.empty(rows.shape[0], 0, dtype=torch.long, device=labels.device)
    for step in range(seq_len):
        logits = generator(prefix, rows)[:, -1]
        ids = next_token(logits, step, seq_len, config, rng)
        prefix = torch.cat([prefix, ids[:, None]], dim=1)
    return Tokens(generator.spec, ids=prefix[: labels.shape[0]])
