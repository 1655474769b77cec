"""MAR sampling: random-order masked autoregression over continuous tokens
(https://arxiv.org/abs/2406.11838, section 3.3).

Every row gets a random order of positions. At iteration ``t`` the number of still-unknown tokens
after the step is ``n_t`` (`masked_counts` of the mask schedule, cosine by default); the positions
that stop being unknown are predicted in parallel: the backbone gives their condition vectors and
the per-token head samples them (`artok.sampling.continuous.sample_head`, run by
`artok.sampling.head_graphs.HeadSampler`: respaced DDPM for a
diffusion head, Euler / Euler-Maruyama for a flow head).

Classifier-free guidance runs the backbone and the head on ``[labels; null]``; with
``cfg_schedule="linear"`` the scale is MAR's ``1 + (cfg_scale - 1) * (L - n_t) / L``.
"""

from __future__ import annotations

import torch

from artok.sampling.configs import MARSamplerConfig
from artok.sampling.head_graphs import HeadSampler
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.schedules import doubler, guidance_rows
from artok.tokens import Tokens


def mar_cfg_scale(cfg_scale: float, schedule: str, known_after: int, seq_len: int) -> float:
    """MAR's guidance: constant, or linear in the fraction of tokens known after the step. As in
    MAR's ``sample_tokens``, the count still masked is floored at 1, so the last iteration guides
    with ``1 + (cfg - 1) (L - 1) / L``, not the full scale."""
    if schedule == "linear":
        return 1.0 + (cfg_scale - 1.0) * min(known_after, seq_len - 1) / seq_len
    return cfg_scale


@torch.no_grad()
def sample_mar(generator, labels: torch.Tensor, config: MARSamplerConfig, rng: torch.Generator | None = None,
               *, cuda_graphs: bool | str = "auto") -> Tokens:
    """Sample ``len(labels)`` continuous token sequences ``B x L x D``.

    The head's step loop runs through `HeadSampler` (one CUDA graph replay per iteration on CUDA
    with ``cuda_graphs`` on; on CPU the same draws and tokens as calling `sample_head`)."""
    spec = generator.spec
    batch, seq_len, guided = labels.shape[0], spec.seq_len, config.uses_cfg
    device = labels.device
    rows = guidance_rows(labels, generator.null_class, guided)
    values = torch.zeros(batch, seq_len, spec.channels, device=device)
    mask = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
    # rank[b, i]: when position i is revealed (0 = first); unknown after step t: rank >= L - n_t.
    rank = torch.rand(batch, seq_len, generator=rng, device=device).argsort(dim=1).argsort(dim=1)
    double = doubler(guided)
    head = HeadSampler.for_config(generator.head, config, guided, cuda_graphs=cuda_graphs)
    for count in masked_counts(seq_len, config.iterations, config.mask_schedule):
        next_mask = rank >= seq_len - count
        to_predict = mask & ~next_mask
        z = generator.condition_vectors(double(values), double(mask), rows)[double(to_predict)]
        scale = mar_cfg_scale(config.cfg_scale, config.cfg_schedule, seq_len - count, seq_len)
        sampled = head(z, scale, rng)
        values[to_predict] = sampled.to(values.dtype)
        mask = next_mask
    return Tokens(spec, values=values / generator.config.token_scale)
