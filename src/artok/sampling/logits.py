"""Pure functions from logits to token ids: temperature, top-k, top-p (nucleus,
https://arxiv.org/abs/1904.09751), classifier-free guidance (https://arxiv.org/abs/2207.12598),
and sync-free categorical sampling with an explicit `torch.Generator`.

All functions are shape-static (no data-dependent shapes, no host synchronisation), so a decode
step built from them can be captured into a CUDA graph.
"""

from __future__ import annotations

import torch


def cfg_combine(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (scale 1 = conditional only)."""
    return uncond_logits + scale * (cond_logits - uncond_logits)


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of the last dim (ties at the threshold are kept); 0 = off."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    threshold = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches ``top_p`` (1.0 = off).

    The most likely token is always kept.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    # Mass strictly before each token: a token is removed if the tokens ranked above it already
    # reach top_p.
    mass_before = probs.cumsum(dim=-1) - probs
    remove_sorted = mass_before >= top_p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p, then softmax (fp32)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}; use top_k=1 for greedy decoding")
    logits = logits.float() / temperature
    logits = top_p_filter(top_k_filter(logits, top_k), top_p)
    return torch.softmax(logits, dim=-1)


def sample_from_probs(probs: torch.Tensor, rng: torch.Generator | None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` (``... x V``) without a host sync.

    Uses the exponential-race form of the Gumbel-max trick: ``argmax(p / E)`` with
    ``E ~ Exp(1)`` is distributed as ``Categorical(p)``. ``noise``: ``E`` drawn beforehand
    (`exponential_noise`; compiled code takes its randomness as inputs), else drawn from ``rng``.
    """
    if noise is None:
        noise = exponential_noise(probs.shape, rng, probs.device, probs.dtype)
    return torch.argmax(probs / noise, dim=-1)


def exponential_noise(shape, rng: torch.Generator | None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Exp(1) noise of ``shape``, drawn exactly as `sample_from_probs` draws it for probabilities of
    that shape and ``dtype``."""
    return torch.empty(shape, dtype=dtype, device=device).exponential_(1.0, generator=rng)
