"""Drawing ids from a discrete head's prediction: one function for the categorical, bitwise
(Infinity, https://arxiv.org/abs/2412.04431) and dimension-wise (TokenBridge,
https://arxiv.org/abs/2503.16430) heads, used by every discrete sampling loop.

Classifier-free guidance (https://arxiv.org/abs/2207.12598): when ``guided``, the rows of
``hidden`` are ``[conditional; unconditional]`` and the guided logits
``uncond + scale * (cond - uncond)`` are formed per prediction (per bit for the bitwise head, per
channel step for the dimwise head). The draw has the rows of the conditional half only; a loop
that feeds ids back duplicates them for both halves.

What applies to which head:
- categorical: temperature, top-k, top-p;
- bitwise: temperature (on every bit logit); top-k / top-p do not apply to a two-way choice and are
  ignored;
- dimwise: temperature, top-k, top-p, per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from artok.heads.bitwise import BitwiseHead
from artok.heads.dimwise import DimwiseHead
from artok.quantizers.lfq import bits_to_ids
from artok.sampling.logits import cfg_combine, logits_to_probs, sample_from_probs


@dataclass
class HeadDraw:
    """Sampled ids and their log-probabilities under the (guided, tempered, filtered) distribution.

    Attributes:
        ids: ``B x T`` (or ``B x T x S`` for the dimwise head) int64.
        log_prob: ``B x T`` fp32; summed over bits / channels. MaskGIT ranks tokens by it.
    """

    ids: torch.Tensor
    log_prob: torch.Tensor


def _guide(logits: torch.Tensor, guided: bool, cfg_scale: float) -> torch.Tensor:
    if not guided:
        return logits.float()
    cond, uncond = logits.float().chunk(2)
    return cfg_combine(cond, uncond, cfg_scale)


def _categorical(logits, temperature, top_k, top_p, rng) -> tuple[torch.Tensor, torch.Tensor]:
    probs = logits_to_probs(logits, temperature, top_k, top_p)
    ids = sample_from_probs(probs, rng)
    return ids, probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1).clamp_min(1e-30).log()


def draw_discrete(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    guided: bool = False,
    cfg_scale: float = 1.0,
    rng: torch.Generator | None = None,
) -> HeadDraw:
    """Draw one id (or one id per channel) for every position of ``hidden`` (``R x T x dim``)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if isinstance(head, DimwiseHead):
        return _draw_dimwise(head, hidden, temperature, top_k, top_p, guided, cfg_scale, rng)
    logits = _guide(head(hidden), guided, cfg_scale)
    if isinstance(head, BitwiseHead):
        logits = logits / temperature
        uniform = torch.rand(logits.shape, generator=rng, device=logits.device)
        bits = uniform < torch.sigmoid(logits)
        log_prob = -F.binary_cross_entropy_with_logits(logits, bits.float(), reduction="none").sum(-1)
        return HeadDraw(bits_to_ids(bits), log_prob)
    ids, log_prob = _categorical(logits, temperature, top_k, top_p, rng)
    return HeadDraw(ids, log_prob)


def _draw_dimwise(head: DimwiseHead, hidden, temperature, top_k, top_p, guided, cfg_scale, rng) -> HeadDraw:
    rows, length = hidden.shape[:2]
    flat = hidden.reshape(rows * length, -1)
    out_rows = rows // 2 if guided else rows
    prefix = torch.zeros(flat.shape[0], 0, dtype=torch.long, device=hidden.device)
    log_prob = torch.zeros(out_rows * length, device=hidden.device)
    for _ in range(head.num_channels):
        logits = _guide(head.next_logits(flat, prefix), guided, cfg_scale)
        ids, step_log_prob = _categorical(logits, temperature, top_k, top_p, rng)
        log_prob = log_prob + step_log_prob
        ids = torch.cat([ids, ids]) if guided else ids
        prefix = torch.cat([prefix, ids[:, None]], dim=1)
    ids = prefix[: out_rows * length].reshape(out_rows, length, head.num_channels)
    return HeadDraw(ids, log_prob.reshape(out_rows, length))
