"""Continuous speculative decoding for generators with a per-token diffusion / flow head (Wang et al.,
"Continuous Speculative Decoding for Autoregressive Image Generation", https://arxiv.org/abs/2411.11925),
here for MAR (`artok.generators.MARGenerator`), exact.

**Densities.** A diffusion head's token is the end of a denoising trajectory, whose density is
intractable. But every step of the trajectory is Gaussian given the previous one, and *given the
noise drawn before the last step*, the last step of both models is Gaussian with the same variance:

    draft:  x ~ Q = N(m_q, s^2 I),    target: x ~ P = N(m_p, s^2 I),

where ``m_q`` / ``m_p`` are the draft's / target's last-step means (`continuous.final_mean`) computed
with the *same* pre-drawn noise (the paper's denoising-trajectory alignment, which keeps ``m_q`` and
``m_p`` close) and ``s`` is the sampler's ``final_noise`` (MAR and DDPM make the last step
deterministic; with ``final_noise = 0`` there is no density to compare, so it must be positive).
Since the shared noise has the same law in both samplers, a token that is exactly ``P``-distributed
given the noise is exactly distributed as the target sampler's token (marginalising the noise). So
the exact speculative rule applies to ``P`` and ``Q``:

- accept the draft ``x`` with probability ``min(1, P(x) / Q(x))``, the exact ratio of the two
  Gaussian densities (``exp((|x - m_q|^2 - |x - m_p|^2) / 2 s^2)``; no temperature or scale hacks);
- on rejection draw from the residual ``norm((P - Q)+)`` (`gaussian_residual`): along
  ``u = (m_p - m_q) / |m_p - m_q|`` it is a 1D density, across ``u`` the two Gaussians are equal.
  Bounded-retry rejection sampling from ``P`` (accept ``y`` with probability ``(1 - Q(y)/P(y))+``)
  runs first; rows that exhaust their retries fall back to an exact inverse-CDF draw of the same
  residual (bisection in fp64), so the bound never biases the result.

**Verification over MAR iterations.** The draft runs ``draft_iterations`` MAR iterations ahead
(same random order and mask schedule as the target); the target then computes the condition vectors
of all of them in *one* batched backbone pass (row ``j`` sees the tokens known before iteration
``j``, drafts included; one extra row gives the iteration after the last draft, the "bonus"), and
one batched head pass gives every drafted token's ``m_p``. Tokens inside one MAR iteration are
conditionally independent, so each is accepted or corrected on its own; a row's first iteration with
a correction ends what it keeps. Rows share one schedule, so the batch keeps the shortest accepted
prefix of any row (discarding a row's later, accepted drafts never biases it: the cut depends on
other rows' independent randomness). If every row accepts every draft, the bonus iteration is
sampled from the target directly. The emitted tokens thus have exactly the law of `sample_mar` with
the same `MARSamplerConfig` (tested on a toy: per-token moments of both samplers agree, and differ
from the draft's).

Cost: one target backbone pass per round instead of one per iteration (batched over
``draft_iterations + 1`` rows), and the target head's denoising loop runs once per round for all
drafted tokens at once. The head work is not reduced. The gain is in launch-bound regimes (small
batches on a GPU); on a CPU, where cost is linear in rows, expect none (the measured figures are in
the issue notes and ``benchmarks/speculative.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from artok.generators.mar.sample import mar_cfg_scale
from artok.generators.raster.speculative import check_pair
from artok.sampling.configs import MARSamplerConfig
from artok.sampling.continuous import _resolve_method, noise_count
from artok.sampling.head_graphs import HeadSampler
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.schedules import doubler, guidance_rows
from artok.sampling.speculative import SpeculativeOutput, SpeculativeStats
from artok.tokens import Tokens

_SQRT2 = math.sqrt(2.0)


def _phi_cdf(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-t / _SQRT2)


def _residual_coordinate_exact(delta: torch.Tensor, rng: torch.Generator | None, iterations: int = 80) -> torch.Tensor:
    """Exact draw of ``t`` with density ``(phi(t - delta) - phi(t))+ / TV`` (``delta > 0``, fp64), by
    inverting its CDF: ``G(t) = TV - (Phi(t) - Phi(t - delta))`` on ``t >= delta / 2``."""
    delta = delta.double()
    tv = _phi_cdf(delta / 2) - _phi_cdf(-delta / 2)
    v = torch.rand(delta.shape, generator=rng, device=delta.device, dtype=torch.float64)
    goal = tv * (1 - v)  # solve Phi(t) - Phi(t - delta) = goal, decreasing in t on [delta/2, inf)
    low, high = delta / 2, delta / 2 + 40.0
    for _ in range(iterations):
        mid = (low + high) / 2
        above = (_phi_cdf(mid) - _phi_cdf(mid - delta)) > goal  # still left of the root
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return (low + high) / 2


def gaussian_residual(
    mean_p: torch.Tensor, mean_q: torch.Tensor, std: float, rng: torch.Generator | None = None, max_tries: int = 8,
) -> torch.Tensor:
    """Rows ``N x D`` drawn from ``norm((N(mean_p, std^2 I) - N(mean_q, std^2 I))+)``.

    Write ``x = mean_q + std (w + t u)`` with ``u`` the unit vector from ``mean_q`` to ``mean_p`` and
    ``w`` orthogonal to it: ``w`` is standard normal under both laws, so the residual is ``w ~ N(0,
    I - u u^T)`` times a 1D residual for ``t`` (``N(delta, 1)`` minus ``N(0, 1)``, ``delta = |mean_p
    - mean_q| / std``), which lives on ``t > delta / 2``. ``t`` is drawn by up to ``max_tries`` rounds
    of rejection sampling from ``N(delta, 1)`` (acceptance ``(1 - exp(delta^2 / 2 - delta t))+``;
    success probability TV per round), then by the exact inverse CDF for rows still without one.
    Rows with ``mean_p == mean_q`` have no residual; they return a draw from ``P``."""
    diff = (mean_p - mean_q).double()
    distance = diff.norm(dim=-1)
    unit = diff / distance.clamp_min(1e-300)[:, None]
    delta = distance / std
    t = torch.full_like(delta, float("nan"))
    for _ in range(max_tries):
        proposal = delta + torch.randn(delta.shape, generator=rng, device=delta.device, dtype=torch.float64)
        coin = torch.rand(delta.shape, generator=rng, device=delta.device, dtype=torch.float64)
        accept = torch.isnan(t) & (coin < -torch.expm1(delta * delta / 2 - delta * proposal))
        t = torch.where(accept, proposal, t)
    missing = torch.isnan(t)
    if bool(missing.any()):
        t = torch.where(missing, _residual_coordinate_exact(delta.clamp_min(1e-12), rng), t)
    eps = torch.randn(diff.shape, generator=rng, device=diff.device, dtype=torch.float64)
    w = eps - (eps * unit).sum(-1, keepdim=True) * unit
    x = mean_q.double() + std * (w + t[:, None] * unit)
    degenerate = distance == 0
    if bool(degenerate.any()):
        x = torch.where(degenerate[:, None], mean_p.double() + std * eps, x)
    return x.to(mean_p.dtype)


def gaussian_log_ratio(x: torch.Tensor, mean_p: torch.Tensor, mean_q: torch.Tensor, std: float) -> torch.Tensor:
    """``log P(x) - log Q(x)`` for ``P = N(mean_p, std^2 I)``, ``Q = N(mean_q, std^2 I)``, per row (fp64)."""
    x, mean_p, mean_q = x.double(), mean_p.double(), mean_q.double()
    return (((x - mean_q) ** 2).sum(-1) - ((x - mean_p) ** 2).sum(-1)) / (2 * std * std)


def speculative_gaussian_step(
    draft: torch.Tensor, mean_p: torch.Tensor, mean_q: torch.Tensor, std: float,
    rng: torch.Generator | None = None, max_tries: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact speculative step for one Gaussian token per row: ``draft`` (``N x D``, drawn from
    ``N(mean_q, std^2 I)``) is kept with probability ``min(1, P/Q)``, else replaced by a residual draw.
    Returns ``(tokens ~ N(mean_p, std^2 I), accepted)``."""
    coin = torch.rand(draft.shape[0], generator=rng, device=draft.device, dtype=torch.float64)
    accepted = torch.log(coin) < gaussian_log_ratio(draft, mean_p, mean_q, std)
    if bool(accepted.all()):
        return draft, accepted
    out = draft.clone()
    rejected = ~accepted
    out[rejected] = gaussian_residual(mean_p[rejected], mean_q[rejected], std, rng, max_tries).to(draft.dtype)
    return out, accepted


@dataclass
class _Draft:
    predict: torch.Tensor  # B x L bool: positions this draft iteration reveals (rows may differ)
    noise: torch.Tensor  # K x n x D: the shared pre-drawn head noise of its n tokens
    mean_q: torch.Tensor  # n x D
    tokens: torch.Tensor  # n x D
    cfg_scale: torch.Tensor  # n: guidance scale of each token (rows can be at different iterations)


def _check_mar_pair(target, draft, config: MARSamplerConfig) -> None:
    check_pair(target, draft)
    for name, model in (("target", target), ("draft", draft)):
        if not hasattr(model, "condition_vectors"):
            raise ValueError(f"continuous speculative decoding needs MAR generators; the {name} is {type(model).__name__}")
        _resolve_method(model.head, config.method)
    if draft.config.token_scale != target.config.token_scale:
        raise ValueError(
            f"the draft's token_scale {draft.config.token_scale} differs from the target's {target.config.token_scale}; "
            "their last-step Gaussians must live in the same space"
        )
    if config.final_noise <= 0:
        raise ValueError(
            "continuous speculative decoding compares the densities of the head sampler's last step, which is "
            "deterministic with final_noise=0: set MARSamplerConfig.final_noise > 0 (e.g. 0.05)"
        )


def _condition_rows(target, states: list[tuple[torch.Tensor, torch.Tensor]], rows: torch.Tensor, guided: bool):
    """Target condition vectors for several (values, mask) states of the batch, batched in one
    backbone pass when the backbone allows rows with different unknown counts."""
    double = doubler(guided)
    if target.config.decoder_depth == 0:
        values = torch.cat([double(v) for v, _ in states])
        masks = torch.cat([double(m) for _, m in states])
        z = target.condition_vectors(values, masks, rows.repeat(len(states)))
        return list(z.chunk(len(states)))
    return [target.condition_vectors(double(v), double(m), rows) for v, m in states]


@torch.no_grad()
def speculative_sample_mar(
    target,
    draft,
    labels: torch.Tensor,
    config: MARSamplerConfig,
    *,
    draft_iterations: int = 4,
    rng: torch.Generator | None = None,
    max_tries: int = 8,
) -> SpeculativeOutput:
    """Sample ``len(labels)`` token sequences from the MAR ``target`` with a smaller MAR ``draft``
    proposing ``draft_iterations`` iterations per target pass; exact (module docstring).

    ``config`` (``final_noise > 0``) is the target sampler's; the draft samples with the same
    settings. Every row advances by its own accepted prefix (rows may be at different MAR iterations;
    with the MAE encoder / decoder split, which needs equal unknown counts per row, the batch
    advances by its shortest prefix). ``stats.mean_accepted`` is MAR iterations emitted per target
    backbone pass, per row (plain sampling: 1.0); ``stats.acceptance_rate`` accepted / verified
    draft tokens."""
    if draft_iterations < 1:
        raise ValueError(f"draft_iterations must be >= 1, got {draft_iterations}")
    _check_mar_pair(target, draft, config)
    spec = target.spec
    batch, seq_len, channels, guided = labels.shape[0], spec.seq_len, spec.channels, config.uses_cfg
    device = labels.device
    synchronous = target.config.decoder_depth > 0 or draft.config.decoder_depth > 0
    rows = guidance_rows(labels, target.null_class, guided)
    double = doubler(guided)
    # The heads' step loops, on CUDA one graph replay per call (`HeadSampler`).
    draft_head = HeadSampler.for_config(draft.head, config, guided)
    target_head = HeadSampler.for_config(target.head, config, guided)
    std = config.final_noise
    num_iterations = config.iterations
    # unknown[i]: tokens still unknown before iteration i (i = 0 .. T; 0 from T on); scale[i]: its CFG.
    unknown = torch.tensor([seq_len, *masked_counts(seq_len, num_iterations, config.mask_schedule), 0], device=device)
    scale = torch.tensor(
        [mar_cfg_scale(config.cfg_scale, config.cfg_schedule, seq_len - int(c), seq_len) for c in unknown[1:]],
        device=device,
    )
    values = torch.zeros(batch, seq_len, channels, device=device)
    rank = torch.rand(batch, seq_len, generator=rng, device=device).argsort(dim=1).argsort(dim=1)
    position = torch.zeros(batch, dtype=torch.long, device=device)  # iterations emitted per row
    row_passes = torch.zeros(batch, device=device)
    target_forwards = draft_forwards = rounds = proposed = accepted_total = 0

    def reveal(iteration: torch.Tensor):
        """Unknown-before mask and revealed positions of per-row ``iteration`` (B)."""
        iteration = iteration.clamp(max=num_iterations)
        before, after = unknown[iteration], unknown[(iteration + 1).clamp(max=num_iterations)]
        mask = rank >= seq_len - before[:, None]
        return mask, mask & (rank < seq_len - after[:, None])

    while bool((position < num_iterations).any()):
        active = position < num_iterations
        span = (num_iterations - position).clamp(max=draft_iterations)  # B, 0 for finished rows
        steps_this_round = int(span.max())
        # Draft phase: each row runs its next `span` iterations with the draft on pre-drawn noise.
        drafts, states, draft_values = [], [], values.clone()
        for j in range(steps_this_round):
            mask, predict = reveal(position + j)
            states.append((draft_values.clone(), mask))
            z = draft.condition_vectors(double(draft_values), double(mask), rows)[double(predict)]
            count = z.shape[0] // 2 if guided else z.shape[0]
            token_scale = scale[(position + j).clamp(max=num_iterations - 1)][:, None].expand(batch, seq_len)[predict]
            noise = torch.randn(noise_count(config.steps), count, channels, generator=rng, device=device)
            mean_q = draft_head.final_mean(z, noise, token_scale)
            tokens = mean_q + std * torch.randn(mean_q.shape, generator=rng, device=device)
            draft_values[predict] = tokens.to(draft_values.dtype)
            drafts.append(_Draft(predict, noise, mean_q, tokens, token_scale))
        draft_forwards += steps_this_round
        bonus_mask, bonus_predict = reveal(position + steps_this_round)
        bonus_possible = bool(bonus_predict.any())
        if bonus_possible:
            states.append((draft_values, bonus_mask))
        # Verification: one target backbone pass for all states, one head pass for all drafts.
        z_states = _condition_rows(target, states, rows, guided)
        target_forwards += 1
        rounds += 1
        row_passes += active.float()
        z_parts = [z_states[j][double(d.predict)] for j, d in enumerate(drafts)]
        if guided:
            halves = [part.chunk(2) for part in z_parts]
            z_all = torch.cat([h[0] for h in halves] + [h[1] for h in halves])
        else:
            z_all = torch.cat(z_parts)
        mean_p_all = target_head.final_mean(z_all, torch.cat([d.noise for d in drafts], dim=1),
                                            torch.cat([d.cfg_scale for d in drafts]))
        mean_p = mean_p_all.split([d.tokens.shape[0] for d in drafts])
        # Accept per token; a row's first iteration with a rejection ends what it keeps.
        accepted, row_ok = [], []
        for d, mp in zip(drafts, mean_p):
            coin = torch.rand(d.tokens.shape[0], generator=rng, device=device, dtype=torch.float64)
            ok = torch.log(coin) < gaussian_log_ratio(d.tokens, mp, d.mean_q, std)
            full = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
            full[d.predict] = ok
            accepted.append(ok)
            row_ok.append(full.all(dim=1))
            proposed += ok.numel()
            accepted_total += int(ok.sum())
        leading = torch.stack(row_ok, dim=1).long().cumprod(dim=1).sum(dim=1)  # B: fully accepted iterations
        keep = torch.minimum(leading + 1, span)
        bonus = (leading >= span) & (span == steps_this_round) & (position + span < num_iterations)
        if synchronous:  # equal unknown counts per row: advance the batch by its shortest prefix
            keep = keep[active].min().expand(batch).clone()
            bonus = bonus.all().expand(batch).clone()
        for j, d in enumerate(drafts):
            kept_rows = j < keep
            if not bool(kept_rows.any()):
                break
            token_rows = torch.arange(batch, device=device)[:, None].expand(batch, seq_len)[d.predict]
            tokens = d.tokens
            correct = ~accepted[j] & (leading[token_rows] == j)
            if bool(correct.any()):  # the first rejected iteration of these rows: residual draws
                tokens = tokens.clone()
                tokens[correct] = gaussian_residual(mean_p[j][correct], d.mean_q[correct], std, rng, max_tries)
            take = kept_rows[token_rows]
            values[d.predict & kept_rows[:, None]] = tokens[take].to(values.dtype)
        if bonus_possible and bool(bonus.any()):  # rows that accepted every draft: the next iteration from the target
            predict = bonus_predict & bonus[:, None]
            z = z_states[-1][double(predict)]
            token_scale = scale[(position + span).clamp(max=num_iterations - 1)][:, None].expand(batch, seq_len)[predict]
            values[predict] = target_head(z, token_scale, rng).to(values.dtype)
        position = position + keep + bonus.long()
    stats = SpeculativeStats(
        mean_accepted=float((num_iterations / row_passes.clamp_min(1)).mean()),
        acceptance_rate=accepted_total / max(proposed, 1),
        target_forwards=target_forwards, draft_forwards=draft_forwards, rounds=rounds,
    )
    return SpeculativeOutput(Tokens(spec, values=values / target.config.token_scale), stats)
