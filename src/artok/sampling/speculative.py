"""Exact speculative sampling for raster generators (Leviathan et al., https://arxiv.org/abs/2211.17192;
Chen et al., https://arxiv.org/abs/2302.01318).

A small *draft* generator over the same tokens proposes ``k`` tokens autoregressively (``q``); the
target generator scores all of them in one forward pass over ``k + 1`` positions (``p``). Draft
``x_i`` is accepted with probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first rejection a
token is drawn from the residual ``norm((p_i - q_i)+)``, and if all ``k`` are accepted a bonus
token is drawn from ``p_{k+1}``. Every emitted token then has exactly the target's conditional law,
so sequences are distributed exactly as plain sampling from the target (tested by enumeration).

Guidance and filters apply to both models: ``p`` and ``q`` are the CFG-combined, temperature-scaled,
top-k / top-p filtered distributions each model would sample from on its own (`guided_probs`).

Batching: rows advance by different amounts, so every row keeps its own length; the engines'
per-row-position forward (`SamplingEngine.forward`) writes each row's keys/values at its own
positions. Rollback is free: keys/values of rejected drafts stay in the static cache beyond the
row's accepted length, the causal mask hides them from every query, and they are overwritten when
the row reaches those positions again. A row that finishes keeps running (on scratch slots past
the sequence end) until every row is done. The sampler syncs with the host once per round (to
know when all rows are done and how much of the cache to read), never per token.

The acceptance rule is pluggable (``acceptance``): `ExactAcceptance` here, the lossy relaxations
of `artok.sampling.relaxed` reuse the same loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from artok.sampling.logits import exponential_noise, sample_from_probs
from artok.tokens import Tokens


class ExactAcceptance:
    """The exact rule: accept draft ``x`` with probability ``min(1, p(x) / q(x))``.

    An acceptance rule maps the target's and the draft's probabilities (``... x V``) to a ratio per
    vocabulary entry; a drafted ``x`` is accepted when ``u < ratio(x)``, ``u ~ U[0, 1)``. The
    probability mass accepted at ``y`` is then ``alpha(y) = q(y) min(1, ratio(y))`` and on rejection
    the sampler draws from ``norm((p - alpha)+)``, so the law of an emitted token is
    ``alpha + (1 - sum alpha) norm((p - alpha)+)``, whose total-variation distance to ``p`` is
    exactly ``sum (alpha - p)+``: zero for this rule, where ``alpha = min(p, q)``.
    """

    name = "exact"
    exact = True

    def ratio(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``... x V`` -> ``... x V``."""
        return p / q

    def ratio_at(self, p: torch.Tensor, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The ratio at ``tokens`` (``...``) only -> ``...``."""
        index = tokens[..., None]
        return (p.gather(-1, index) / q.gather(-1, index)).squeeze(-1)


EXACT = ExactAcceptance()


def accepted_mass(acceptance, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``alpha(y) = q(y) min(1, ratio(y))``: the probability that ``y`` is drafted and accepted."""
    return torch.where(q > 0, q * acceptance.ratio(p, q).clamp(max=1.0), torch.zeros_like(q))


def per_token_tv(acceptance, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between the law of a token emitted under ``acceptance`` and the
    target's ``p`` (``... x V`` -> ``...``): ``sum (alpha - p)+`` (0 for the exact rule)."""
    return (accepted_mass(acceptance, p, q) - p).clamp(min=0).sum(-1)


@dataclass
class Verification:
    """Result of `verify_drafts`: drafts accepted per row and the token that follows them."""

    num_accepted: torch.Tensor  # B, in [0, k]
    next_token: torch.Tensor  # B: residual sample at the first rejection, or the bonus token


def verification_noise(batch: int, k: int, vocab: int, rng: torch.Generator | None, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The randomness of `verify_drafts`, drawn as it draws it: acceptance coins ``B x k`` (uniform)
    and the Exp(1) noise of the residual / bonus draw ``B x V``."""
    coins = torch.rand((batch, k), generator=rng, device=device)
    return coins, exponential_noise((batch, vocab), rng, device)


def verify_drafts(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, rng: torch.Generator | None,
                  acceptance=None, noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> Verification:
    """Speculative verification of ``k`` drafts per row, without host synchronisation.

    Args:
        p: target probabilities ``B x (k+1) x V`` at each draft position and the one after.
        q: the distributions the drafts were drawn from, ``B x k x V``.
        drafts: ``B x k`` drafted ids.
        rng: generator for the acceptance coins and the residual / bonus draw.
        acceptance: the acceptance rule (default `ExactAcceptance`).
        noise: ``(coins, exponential noise)`` from `verification_noise`, drawn beforehand (what
            compiled rounds pass); else drawn here from ``rng``.
    """
    acceptance = acceptance or EXACT
    batch, k = drafts.shape
    ratio = acceptance.ratio_at(p[:, :k], q, drafts)
    coins, race = noise if noise is not None else verification_noise(batch, k, p.shape[-1], rng, p.device)
    accepted = coins < ratio
    num_accepted = accepted.long().cumprod(dim=1).sum(dim=1)
    # Distribution of the next token: the residual at the first rejected position, or p_{k+1}
    # when every draft was accepted (q is taken as 0 there, so the "residual" is p itself).
    index = num_accepted[:, None, None].expand(-1, 1, p.shape[-1])
    p_next = p.gather(1, index).squeeze(1)
    q_next = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1).gather(1, index).squeeze(1)
    residual = (p_next - accepted_mass(acceptance, p_next, q_next)).clamp(min=0)
    # p == q up to rounding can leave an all-zero residual on a (probability ~0) rejection.
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_next)
    # The exponential race needs no normalisation: argmax(r / E) ~ Categorical(r / sum r).
    return Verification(num_accepted, sample_from_probs(residual, None, race))


@dataclass
class SpeculativeStats:
    """What a speculative sampler achieved on one batch.

    Attributes:
        mean_accepted: tokens emitted per target forward pass, averaged over rows (the first token,
            from the prefill pass, counts as one); plain sampling has 1.0.
        acceptance_rate: accepted drafts / proposed drafts.
        target_forwards: target passes of the batch (prefill + rounds; the slowest row sets it).
        draft_forwards: draft-model passes of the batch (0 for Jacobi decoding).
        rounds: verification rounds of the batch.
        per_token_tv: mean total-variation distance between each emitted token's law and the
            target's conditional (0 for exact rules; measured only with ``measure_tv=True``, else nan).
    """

    mean_accepted: float
    acceptance_rate: float
    target_forwards: int
    draft_forwards: int
    rounds: int
    per_token_tv: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SpeculativeOutput:
    """Sampled tokens and the sampler's statistics."""

    tokens: Tokens
    stats: SpeculativeStats
