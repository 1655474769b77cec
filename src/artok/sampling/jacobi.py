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

from artok.sampling.logits import sample_from_probs
from artok.sampling.loops import SamplerConfig
from artok.sampling.speculative import (
    EXACT,
    GuidedDistribution,
    RowState,
    SpeculativeOutput,
    make_engine,
    per_token_tv,
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
        uniform = torch.full((batch, window, vocab), 1.0 / vocab, device=device)
        drafts = torch.randint(vocab, (batch, window), generator=rng, device=device)
        draft_probs = uniform.clone()
        slide = torch.arange(1, window + 1, device=device)
        while True:
            low, high = state.bounds()
            if low >= seq_len:
                break
            positions = state.length[:, None] + state.offsets
            tokens = torch.cat([state.last[:, None], drafts], dim=1)
            p = probs(engine.forward(rows(tokens), rows(positions), last_position=high + window), positions)
            verification = verify_drafts(p, draft_probs, drafts, rng, acceptance)
            tv = per_token_tv(acceptance, p[:, :window], draft_probs) if measure_tv and not acceptance.exact else None
            accepted = verification.num_accepted
            state.commit(drafts, verification, tv)
            # Slide the window: the new window's j-th slot is old slot accepted+1+j, re-drafted from
            # this round's prediction there (index <= window), or a fresh uniform token past the end.
            fresh = sample_from_probs(p, rng)  # B x (W+1): one new draft per predicted position
            source = accepted[:, None] + slide
            predicted = source <= window
            source = source.clamp(max=window)
            random_tokens = torch.randint(vocab, (batch, window), generator=rng, device=device)
            drafts = torch.where(predicted, fresh.gather(1, source), random_tokens)
            draft_probs = torch.where(predicted[..., None], p.gather(1, source[..., None].expand(-1, -1, vocab)), uniform)
    stats = state.stats(draft_forwards=0)
    if measure_tv and acceptance.exact:
        stats.per_token_tv = 0.0
    return SpeculativeOutput(state.tokens(target.spec), stats)
