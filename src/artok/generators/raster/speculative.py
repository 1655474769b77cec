"""Exact speculative sampling for raster generators (Leviathan et al. / Chen et al., 2023): a smaller
draft proposes ``k`` tokens per row, the target verifies them in one multi-position engine pass,
and the shared acceptance rule (`artok.sampling.speculative`) keeps the output law the target's.
"""

from __future__ import annotations

import torch

from artok.generators.raster.engine import SamplingEngine, guidance_scales, guided_probs
from artok.sampling.configs import SamplerConfig
from artok.sampling.logits import sample_from_probs
from artok.sampling.speculative import (
    EXACT,
    SpeculativeOutput,
    SpeculativeStats,
    Verification,
    per_token_tv,
    verification_noise,
    verify_drafts,
)
from artok.tokens import Tokens


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
    num_draft = min(num_draft, max(1, seq_len - 1))  # no round can use more (a huge value would size the caches)
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
