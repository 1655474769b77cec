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

from artok.generators.raster.engine import SamplingEngine, guidance_scales, guided_probs
from artok.sampling.configs import SamplerConfig
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


class RowState:
    """Per-row bookkeeping shared by the speculative samplers: committed lengths, the token to feed
    next, the output buffer, and statistics (all on the device; no host syncs)."""

    def __init__(self, first: torch.Tensor, seq_len: int, width: int) -> None:
        batch, device = first.shape[0], first.device
        self.seq_len = seq_len
        self.trash = seq_len + width  # an output column that absorbs writes past the end
        self.out = torch.zeros(batch, seq_len + width + 1, dtype=torch.long, device=device)
        self.out[:, 0] = first
        self.length = torch.ones(batch, dtype=torch.long, device=device)  # committed tokens
        self.last = first  # token at input position `length` (t_{length-1}), fed next
        self.rounds = torch.zeros(batch, dtype=torch.long, device=device)
        self.accepted = torch.zeros((), dtype=torch.long, device=device)
        self.proposed = torch.zeros((), dtype=torch.long, device=device)
        self.tv_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.tv_count = torch.zeros((), dtype=torch.float64, device=device)
        self.offsets = torch.arange(width + 1, device=device)

    def bounds(self) -> tuple[int, int]:
        """(min, max) committed length: the one host sync per round."""
        low, high = torch.stack([self.length.min(), self.length.max()]).tolist()
        return low, high

    def commit(self, drafts: torch.Tensor, verification: Verification, tv: torch.Tensor | None = None) -> torch.Tensor:
        """Write accepted drafts + the next token; advance lengths. Returns the pre-update ``active``
        mask. ``drafts``: ``B x k`` proposals for positions ``length .. length+k-1``."""
        accepted, new = verification.num_accepted, verification.next_token
        k = drafts.shape[1]
        active = self.length < self.seq_len
        emitted = torch.cat([drafts, new[:, None]], dim=1).scatter(1, accepted[:, None], new[:, None])
        offsets = self.offsets[: k + 1]
        columns = self.length[:, None] + offsets
        keep = (offsets <= accepted[:, None]) & (columns < self.seq_len) & active[:, None]
        self.out.scatter_(1, torch.where(keep, columns, self.trash), emitted)
        new_length = torch.where(active, (self.length + accepted + 1).clamp(max=self.seq_len), self.length)
        self.last = torch.where(active, new, self.last)
        self.rounds += active.long()
        self.accepted += (accepted * active).sum()
        self.proposed += k * active.sum()
        if tv is not None:  # tv: B x k per-position TV; count positions whose token was emitted
            counted = (offsets[:k] <= accepted[:, None]) & (self.length[:, None] + offsets[:k] < self.seq_len) & active[:, None]
            self.tv_sum += (tv.double() * counted).sum()
            self.tv_count += counted.sum()
        self.length = new_length
        return active

    def stats(self, draft_forwards: int) -> SpeculativeStats:
        rounds = int(self.rounds.max())
        batch = self.length.shape[0]
        forwards = (self.rounds + 1).sum().item()
        tv = (self.tv_sum / self.tv_count).item() if self.tv_count.item() > 0 else float("nan")
        return SpeculativeStats(
            mean_accepted=batch * self.seq_len / forwards,
            acceptance_rate=self.accepted.item() / max(self.proposed.item(), 1),
            target_forwards=rounds + 1,
            draft_forwards=draft_forwards,
            rounds=rounds,
            per_token_tv=tv,
        )

    def tokens(self, spec) -> Tokens:
        return Tokens(spec, ids=self.out[:, : self.seq_len].clone())


class GuidedDistribution:
    """``logits (rows x T x V), steps (B x T) -> probs (B x T x V)`` under a `SamplerConfig`,
    with the guidance scale of each token's own index (the linear CFG schedule per row)."""

    def __init__(self, config: SamplerConfig, seq_len: int, device) -> None:
        self.config = config
        self.seq_len = seq_len
        self.scales = guidance_scales(config, seq_len, device) if config.uses_cfg else None

    def __call__(self, logits: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        scale = 1.0
        if self.scales is not None:
            scale = self.scales[steps.clamp(max=self.seq_len - 1)][..., None]
        return guided_probs(logits, self.config, scale)


def check_pair(target, draft) -> None:
    """The draft must model the same tokens and classes as the target."""
    if draft.spec != target.spec:
        raise ValueError(f"the draft models {draft.spec}, the target {target.spec}; they must share the tokenizer")
    if draft.config.num_classes != target.config.num_classes:
        raise ValueError(f"the draft has {draft.config.num_classes} classes, the target {target.config.num_classes}")


def make_engine(generator, batch_size: int, guided: bool, extra_positions: int, engine, options: dict | None):
    """Build a `SamplingEngine` with room for ``extra_positions`` scratch slots, or check a given one."""
    if engine is None:
        return SamplingEngine(generator, batch_size, guidance=guided, extra_positions=extra_positions, **(options or {}))
    if engine.max_len < engine.seq_len + extra_positions or engine.batch_size < batch_size or (guided and not engine.guidance):
        raise ValueError(f"the engine given has too few rows or cache slots; build it with batch_size >= {batch_size}, "
                         f"extra_positions >= {extra_positions} and guidance={guided}")
    return engine


@torch.no_grad()
def speculative_sample(
    target,
    draft,
    labels: torch.Tensor,
    config: SamplerConfig,
    rng: torch.Generator | None = None,
    *,
    num_draft: int = 4,
    acceptance=None,
    measure_tv: bool = False,
    target_engine: SamplingEngine | None = None,
    draft_engine: SamplingEngine | None = None,
    engine_options: dict | None = None,
) -> SpeculativeOutput:
    """Sample ``len(labels)`` sequences from ``target`` with ``draft`` proposing ``num_draft``
    tokens per target forward.

    With the default (exact) ``acceptance`` the sequences are distributed exactly as
    ``sample_raster(target, labels, config)`` (not token-identical: the random stream differs).
    ``target_engine`` / ``draft_engine`` may be given to reuse static caches across calls (build
    them with ``extra_positions >= num_draft + 1``); ``engine_options`` are passed to the engines
    this function builds otherwise.
    """
    if num_draft < 1:
        raise ValueError(f"num_draft must be >= 1, got {num_draft}")
    check_pair(target, draft)
    acceptance = acceptance or EXACT
    guided, batch, seq_len = config.uses_cfg, labels.shape[0], target.config.seq_len
    target_engine = make_engine(target, batch, guided, num_draft + 1, target_engine, engine_options)
    draft_engine = make_engine(draft, batch, guided, num_draft + 1, draft_engine, engine_options)
    labels = labels.to(target_engine.device)
    probs = GuidedDistribution(config, seq_len, target_engine.device)

    def rows(x):  # the CFG halves see the same tokens at the same positions
        return torch.cat([x, x]) if guided else x

    with target_engine.compile_context():
        first_logits = target_engine.start(labels, guided)
        draft_engine.start(labels, guided)
        zero = torch.zeros(batch, 1, dtype=torch.long, device=labels.device)
        first = sample_from_probs(probs(first_logits[:, None], zero)[:, 0], rng)
        state = RowState(first, seq_len, num_draft)
        previous = torch.zeros_like(first)  # token at input position length-1 (position 0: the class)
        draft_forwards = 0
        tv_wanted = measure_tv and not acceptance.exact
        update = torch.compile(_speculative_update, dynamic=False) if target_engine.compiled else _speculative_update
        while True:
            low, high = state.bounds()
            if low >= seq_len:
                break
            length = state.length
            # Draft: re-feed the previous token too, so a row whose last draft was accepted (and
            # never fed to the draft model) gets that slot written; then k-1 single-token steps.
            tokens = torch.stack([previous, state.last], dim=1)
            positions = torch.stack([length - 1, length], dim=1)
            logits = draft_engine.forward(rows(tokens), rows(positions), last_position=high)[:, -1:]
            drafts, draft_probs = [], []
            for i in range(num_draft):
                if i:
                    logits = draft_engine.forward(rows(drafts[-1][:, None]), rows((length + i)[:, None]),
                                                  last_position=high + i)
                q = probs(logits, (length + i)[:, None])[:, 0]
                drafts.append(sample_from_probs(q, rng))
                draft_probs.append(q)
            draft_forwards += num_draft
            drafts, q = torch.stack(drafts, dim=1), torch.stack(draft_probs, dim=1)
            # Verify all drafts (and get the bonus distribution) in one target pass.
            positions = length[:, None] + state.offsets
            tokens = torch.cat([state.last[:, None], drafts], dim=1)
            logits = target_engine.forward(rows(tokens), rows(positions), last_position=high + num_draft)
            noise = verification_noise(batch, num_draft, q.shape[-1], rng, logits.device)
            previous = update(state, probs, acceptance, tv_wanted, logits, positions, drafts, q, noise, previous)
    stats = state.stats(draft_forwards)
    if measure_tv and acceptance.exact:
        stats.per_token_tv = 0.0
    return SpeculativeOutput(state.tokens(target.spec), stats)


def _speculative_update(state: RowState, probs, acceptance, tv_wanted: bool, logits, positions, drafts, q, noise,
                        previous):
    """Verification and commit after the target pass, as one region without randomness of its own
    (the engine compiles it). Returns the token at input position ``new_length - 1`` of every row:
    its last accepted draft, or the old ``last`` when none was accepted."""
    p = probs(logits, positions)
    verification = verify_drafts(p, q, drafts, None, acceptance, noise=noise)
    tv = per_token_tv(acceptance, p[:, : drafts.shape[1]], q) if tv_wanted else None
    accepted = verification.num_accepted
    before = state.last
    active = state.commit(drafts, verification, tv)
    last_accepted = drafts.gather(1, (accepted - 1).clamp(min=0)[:, None]).squeeze(1)
    return torch.where(active, torch.where(accepted > 0, last_accepted, before), previous)
