"""Speculative Jacobi decoding (Teng et al., https://arxiv.org/abs/2410.01699): training-free,
exact-in-distribution parallel decoding for raster generators.

Each row keeps a window of ``W`` draft tokens after its committed prefix, each with the
distribution it was drawn from. One round is one target forward over ``W + 1`` positions
(``[last committed, draft_1 .. draft_W]``), which gives the target's conditional at every window
position given the drafts before it. The drafts are then verified left to right with the
speculative-sampling rule (accept ``x`` with probability ``min(1, p(x) / q(x))``, at the first
rejection draw from ``norm((p - q)+)``, bonus token if all pass; `verify_drafts`), which makes every
committed token exactly distributed as the target's conditional, whatever the drafts were. The
window then slides: the positions after the first rejection are re-drafted from this round's own
predictions (the Jacobi iteration: a fixed point of the window is what plain decoding would have
produced), and new positions at the end of the window start from uniformly random tokens
(``q = 1/V``).

Exactness needs each draft's ``q`` to be the law it was drawn from, independently of the coins
that verify it: drafts are drawn with fresh noise after verification, and ``q`` is stored with
them. With CFG and filters, ``p`` and ``q`` are the guided, filtered distributions (`guided_probs`).
The cache needs no rollback (see `artok.sampling.speculative`).
"""

from __future__ import annotations

import torch

from artok.generators.raster.speculative import (
    GuidedDistribution,
    RowState,
    make_engine,
)
from artok.sampling.configs import SamplerConfig
from artok.sampling.logits import exponential_noise, sample_from_probs
from artok.sampling.speculative import (
    EXACT,
    SpeculativeOutput,
    per_token_tv,
    verification_noise,
    verify_drafts,
)


@torch.no_grad()
def jacobi_sample(
    target,
    labels: torch.Tensor,
    config: SamplerConfig,
    rng: torch.Generator | None = None,
    *,
    window: int = 8,
    acceptance=None,
    measure_tv: bool = False,
    engine=None,
    engine_options: dict | None = None,
) -> SpeculativeOutput:
    """Sample ``len(labels)`` sequences from ``target`` by speculative Jacobi decoding.

    Args:
        target: a raster generator.
        labels: ``B`` class labels.
        config: sampling options (guidance, temperature, top-k, top-p) of the target distribution.
        rng: explicit random generator.
        window: draft tokens verified per forward (each forward covers ``window + 1`` positions).
        acceptance: acceptance rule (default exact; see `artok.sampling.relaxed` for lossy ones).
        measure_tv: record the per-token total-variation distance of a relaxed rule.
        engine: a `SamplingEngine` for ``target`` with ``extra_positions >= window + 1`` to reuse.
        engine_options: options for the engine built otherwise.

    Returns:
        tokens and statistics (``mean_accepted`` = tokens per target forward).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    acceptance = acceptance or EXACT
    guided, batch, seq_len = config.uses_cfg, labels.shape[0], target.config.seq_len
    vocab = target.config.vocab_size
    engine = make_engine(target, batch, guided, window + 1, engine, engine_options)
    device = engine.device
    labels = labels.to(device)
    probs = GuidedDistribution(config, seq_len, device)

    def rows(x):
        return torch.cat([x, x]) if guided else x

    with engine.compile_context():
        zero = torch.zeros(batch, 1, dtype=torch.long, device=device)
        first = sample_from_probs(probs(engine.start(labels, guided)[:, None], zero)[:, 0], rng)
        state = RowState(first, seq_len, window)
        drafts = torch.randint(vocab, (batch, window), generator=rng, device=device)
        draft_probs = torch.full((batch, window, vocab), 1.0 / vocab, device=device)
        tv_wanted = measure_tv and not acceptance.exact
        update = torch.compile(_jacobi_update, dynamic=False) if engine.compiled else _jacobi_update
        while True:
            low, high = state.bounds()
            if low >= seq_len:
                break
            positions = state.length[:, None] + state.offsets
            tokens = torch.cat([state.last[:, None], drafts], dim=1)
            logits = engine.forward(rows(tokens), rows(positions), last_position=high + window)
            # This round's randomness, drawn up front (the update is one compiled region then).
            coins_and_race = verification_noise(batch, window, vocab, rng, device)
            fresh_race = exponential_noise((batch, window + 1, vocab), rng, device)
            random_tokens = torch.randint(vocab, (batch, window), generator=rng, device=device)
            drafts, draft_probs = update(state, probs, acceptance, tv_wanted, logits, positions, drafts, draft_probs,
                                         coins_and_race, fresh_race, random_tokens)
    stats = state.stats(draft_forwards=0)
    if measure_tv and acceptance.exact:
        stats.per_token_tv = 0.0
    return SpeculativeOutput(state.tokens(target.spec), stats)


def _jacobi_update(state: RowState, probs, acceptance, tv_wanted: bool, logits, positions, drafts, draft_probs,
                   coins_and_race, fresh_race, random_tokens):
    """One round after the target forward, as one region without randomness of its own (so the
    engine can compile it): verify the window, commit, slide. Returns the next drafts and their
    ``q``. The new window's ``j``-th slot is old slot ``accepted + 1 + j``, re-drafted from this
    round's prediction there (index <= W), or a fresh uniform token past the end."""
    batch, window = drafts.shape
    vocab = draft_probs.shape[-1]
    p = probs(logits, positions)
    verification = verify_drafts(p, draft_probs, drafts, None, acceptance, noise=coins_and_race)
    tv = per_token_tv(acceptance, p[:, :window], draft_probs) if tv_wanted else None
    accepted = verification.num_accepted
    state.commit(drafts, verification, tv)
    fresh = sample_from_probs(p, None, fresh_race)  # B x (W+1): one new draft per predicted position
    source = accepted[:, None] + state.offsets[1:]
    predicted = source <= window
    source = source.clamp(max=window)
    next_drafts = torch.where(predicted, fresh.gather(1, source), random_tokens)
    next_probs = torch.where(predicted[..., None], p.gather(1, source[..., None].expand(-1, -1, vocab)), 1.0 / vocab)
    return next_drafts, next_probs
