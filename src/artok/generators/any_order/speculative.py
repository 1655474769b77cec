"""Any-subset speculative decoding (ASSD; Guo & Ermon, https://arxiv.org/abs/2504.20456): an
any-subset autoregressive model drafts ``k`` tokens in parallel from its own any-subset
conditionals ``q_i = p(x_{t_i} | x_S)`` (one pass, `AnyOrderGenerator.subset_conditionals`), then
one causal pass over the drafts gives the sequential conditionals ``p_i = p(x_{t_i} | x_S,
x_{t_<i})``; draft ``i`` is kept with probability ``min(1, p_i / q_i)`` (in order, until the
first rejection), the rejected one is redrawn from ``max(0, p_i - q_i)`` normalised, and when all
``k`` are kept a bonus token comes from the verification pass. By the speculative-sampling argument
each kept or redrawn token has law ``p_i`` given what precedes it, so a sample has exactly the
model's autoregressive law in its visiting order (the plain loop's law; tested by enumeration).

With ``use_cache=True`` (the default) each pass runs only its new slots over a per-row KV cache
(`artok.sampling.engine_support.RowKVCache`): rows advance by different amounts, so the verify
pass writes slot ``j`` of the visiting order at physical cache slot ``j`` of its own row
(per-row positions), the ``k`` draft queries use scratch slots past the grid, and per-row masks
say which slots each query sees. After an iteration that keeps ``m`` drafts, slots ``< known + m
+ 1`` hold exactly the states of the committed prefix, so nothing is recomputed; the tokens equal
the recomputing reference (``use_cache=False``) for the same generator (tested). The guidance
scale is constant (a schedule over steps would differ per row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from artok.generators.any_order.sample import _doubled, draw_orders
from artok.generators.raster.model import RasterGenerator
from artok.generators.raster.sample import guided_labels
from artok.nn.kv_cache import installed_caches
from artok.sampling.engine_support import RowKVCache
from artok.sampling.configs import SamplerConfig
from artok.sampling.logits import cfg_combine, exponential_noise, logits_to_probs
from artok.sampling.speculative import SpeculativeOutput, SpeculativeStats
from artok.tokens import Tokens


@dataclass
class ASSDOutput:
    """ASSD's samples and counts: ``forwards`` model passes in all (draft + verify, each over the
    whole batch), ``iterations`` per row (two passes each), ``tokens_per_forward`` =
    tokens per image / (2 x mean iterations), ``accepted`` of ``proposed`` drafts kept."""

    tokens: Tokens
    forwards: int
    iterations: torch.Tensor
    tokens_per_forward: float
    accepted: int = 0
    proposed: int = 0

    def stats(self) -> SpeculativeStats:
        """The library's `SpeculativeStats`: both passes are the model's own (no draft model)."""
        return SpeculativeStats(mean_accepted=self.tokens_per_forward,
                                acceptance_rate=self.accepted / self.proposed if self.proposed else float("nan"),
                                target_forwards=self.forwards, draft_forwards=0, rounds=int(self.iterations.max()))


def guided(logits: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    """Probabilities ``B x ... x V`` from model logits (rows doubled under CFG)."""
    if config.uses_cfg:
        cond, uncond = logits.chunk(2)
        logits = cfg_combine(cond.float(), uncond.float(), config.cfg_scale)
    return logits_to_probs(logits.float(), config.temperature, config.top_k, config.top_p)


def accept_drafts(drafts, draft_probs, target_probs, valid, rng) -> torch.Tensor:
    """Leading kept drafts per row (``B``): draft ``i`` kept with probability ``min(1, p/q)``."""
    picked_p = target_probs.gather(-1, drafts[..., None]).squeeze(-1)
    picked_q = draft_probs.gather(-1, drafts[..., None]).squeeze(-1)
    uniform = torch.rand(drafts.shape, generator=rng, device=drafts.device, dtype=torch.float64)
    keep = (uniform * picked_q.double() < picked_p.double()) & valid
    return keep.long().cumprod(dim=1).sum(dim=1)


def next_after(kept, draft_probs, target_probs, bonus_probs, rng) -> torch.Tensor:
    """The token after the kept drafts (``B``): redrawn from ``max(0, p - q)`` at the first
    rejection, or from the bonus conditional when every draft was kept."""
    count, width = kept.shape[0], draft_probs.shape[1]
    at = kept.clamp(max=width - 1)[:, None, None].expand(count, 1, draft_probs.shape[-1])
    residual = (target_probs.gather(1, at) - draft_probs.gather(1, at)).clamp_min(0).squeeze(1)
    target = target_probs.gather(1, at).squeeze(1)
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, target)  # p == q: never rejected
    probs = torch.where((kept == width)[:, None], bonus_probs, residual)
    noise = exponential_noise(probs.shape, rng, probs.device, torch.float32)
    return torch.argmax(probs / noise, dim=-1)


def place(grid: torch.Tensor, cells: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A copy of ``grid`` with ``values[b, i]`` written at cell ``cells[b, i]`` where ``mask``."""
    rows, columns = mask.nonzero(as_tuple=True)
    out = grid.clone()
    out[rows, cells[rows, columns]] = values[rows, columns]
    return out


class _CachedPasses:
    """ASSD's two passes over a per-row KV cache (see the module docstring). Physical slots: ``[0,
    L)`` the visiting-order slots of each row, ``[L, L + k)`` the draft queries, ``[L + k, L + 2k +
    1)`` verify slots that fall past the grid."""

    def __init__(self, generator, rows: torch.Tensor, row_orders: torch.Tensor, draft_length: int) -> None:
        self.generator, self.orders, self.k = generator, row_orders, draft_length
        self.length = generator.config.seq_len
        self.classes = generator.embed_class(rows)  # R x 1 x dim
        param = next(generator.parameters())
        size = self.length + 2 * draft_length + 1
        self.caches = [RowKVCache(rows.shape[0], b.attention.num_heads, size, b.attention.head_dim, param.dtype,
                                  param.device) for b in generator.blocks]
        self.slots = torch.arange(size, device=rows.device)

    def _inputs(self, grid: torch.Tensor, slots: torch.Tensor, targets: torch.Tensor) -> tuple:
        """Inputs and RoPE rows of order ``slots`` (``R x T``, < L): the class (slot 0) or the
        token of the previously visited cell, plus the target embedding of cell ``targets``."""
        previous = self.orders.gather(1, (slots - 1).clamp(min=0))
        x = torch.where((slots == 0)[..., None], self.classes, self.generator.embed(grid.gather(1, previous)))
        rope_rows = torch.where(slots == 0, torch.zeros_like(previous), previous + 1)
        return x + self.generator.target_position(targets).to(x.dtype), self.generator.rope[rope_rows].unsqueeze(1)

    def _run(self, x, rope, mask, input_pos) -> torch.Tensor:
        with installed_caches(self.generator.blocks, self.caches):
            hidden = RasterGenerator.run_blocks(self.generator, x, rope, mask.unsqueeze(1), input_pos)
        return self.generator.head(hidden)

    def draft(self, grid: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """``R x k x V`` logits of ``p(x[orders[known + i]] | x[orders[:known]])``: ``k`` queries
        copying slot ``known``'s input, each with its own target, seeing the cached prefix and itself."""
        steps = torch.arange(self.k, device=grid.device)
        slot = known.clamp(max=self.length - 1)[:, None].expand(-1, self.k)
        targets = self.orders.gather(1, (slot + steps).clamp(max=self.length - 1))
        x, rope = self._inputs(grid, slot, targets)
        scratch = self.length + steps
        mask = (self.slots < known[:, None, None]) & (self.slots < self.length) | (self.slots == scratch[:, None])
        return self._run(x, rope, mask, scratch)

    def verify(self, candidate: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """``R x (k + 1) x V`` logits of order slots ``known .. known + k`` over the drafted
        ``candidate`` grid (causal), written into the cache at those slots of each row."""
        order_slots = known[:, None] + torch.arange(self.k + 1, device=known.device)
        inside = order_slots < self.length
        slots = order_slots.clamp(max=self.length - 1)
        x, rope = self._inputs(candidate, slots, self.orders.gather(1, slots))
        physical = torch.where(inside, order_slots, self.length + self.k + torch.arange(self.k + 1, device=known.device))
        sees = (self.slots[None, None] <= order_slots[..., None]) & (self.slots < self.length)
        mask = sees | (self.slots[None, None] == physical[..., None])
        return self._run(x, rope, mask, physical)


@torch.no_grad()
def sample_assd(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None,
                draft_length: int = 4, orders: torch.Tensor | None = None, use_cache: bool = True) -> ASSDOutput:
    """ASSD samples of ``len(labels)`` grids (visiting ``orders``, default random from ``rng``),
    with ``draft_length`` tokens drafted per iteration; ``use_cache=False`` recomputes the visited
    prefix in every pass (the reference)."""
    if draft_length < 1:
        raise ValueError(f"draft_length must be >= 1, got {draft_length}")
    if config.uses_cfg and config.cfg_schedule != "constant":
        raise ValueError("ASSD samples with a constant guidance scale; set cfg_schedule='constant'")
    length, count, device = generator.config.seq_len, labels.shape[0], labels.device
    draft_length = min(draft_length, length)  # more drafts than tokens never helps (and would size the cache)
    orders = draw_orders(count, length, rng, device) if orders is None else orders
    rows, row_orders = guided_labels(generator, labels, config), _doubled(orders, config)
    grid = torch.zeros(count, length, dtype=torch.long, device=device)
    known = torch.zeros(count, dtype=torch.long, device=device)
    iterations = torch.zeros(count, dtype=torch.long, device=device)
    forwards, accepted, proposed, steps = 0, 0, 0, torch.arange(draft_length, device=device)
    passes = _CachedPasses(generator, rows, row_orders, draft_length) if use_cache else None
    while (known < length).any():
        active = known < length
        position = (known[:, None] + steps).clamp(max=length - 1)  # B x k order indices
        valid = known[:, None] + steps < length
        if passes is None:
            draft_logits = generator.subset_conditionals(_doubled(grid, config), rows, row_orders,
                                                         _doubled(known, config), draft_length)
        else:
            draft_logits = passes.draft(_doubled(grid, config), _doubled(known, config))
        draft_probs = guided(draft_logits, config)
        drafts = torch.argmax(draft_probs / exponential_noise(draft_probs.shape, rng, device, torch.float32), dim=-1)
        cells = orders.gather(1, position)
        candidate = place(grid, cells, drafts, valid & active[:, None])
        if passes is None:
            verify = guided(generator.ordered_logits(_doubled(candidate, config), rows, row_orders), config)  # B x L x V
            target_probs = verify.gather(1, position[..., None].expand(-1, -1, verify.shape[-1]))
            bonus_at = (known + draft_length).clamp(max=length - 1)
            bonus_probs = verify.gather(1, bonus_at[:, None, None].expand(-1, 1, verify.shape[-1])).squeeze(1)
        else:  # slots known .. known + k: the k drafts' conditionals and the bonus
            verify = guided(passes.verify(_doubled(candidate, config), _doubled(known, config)), config)
            target_probs, bonus_probs = verify[:, :draft_length], verify[:, draft_length]
        kept = accept_drafts(drafts, draft_probs, target_probs, valid, rng)
        extra = next_after(kept, draft_probs, target_probs, bonus_probs, rng)
        forwards += 2
        accepted += int(kept[active].sum())
        proposed += int((valid & active[:, None]).sum())
        keep_mask = (steps[None] < kept[:, None]) & active[:, None]
        grid = place(grid, cells, drafts, keep_mask)
        extra_position = known + kept
        has_extra = active & (extra_position < length)
        extra_cell = orders.gather(1, extra_position.clamp(max=length - 1)[:, None]).squeeze(1)
        grid[has_extra, extra_cell[has_extra]] = extra[has_extra]
        iterations += active.long()
        known = torch.where(active, (known + kept + has_extra.long()).clamp(max=length), known)
    rate = length / (2 * iterations.double().mean().item())
    return ASSDOutput(Tokens(generator.spec, ids=grid), forwards, iterations, rate, accepted, proposed)


def speculative_any_order(target, draft, labels, config, rng, draft_length: int) -> SpeculativeOutput:
    """The kind table's speculative entry: ASSD, where the model drafts for itself (``draft`` must
    be ``target``; the CLI's ``--draft self``)."""
    if draft is not target:
        raise ValueError("an any-order generator drafts for itself (ASSD): pass --draft self (draft=the generator)")
    out = sample_assd(target, labels, config, rng, draft_length=draft_length)
    return SpeculativeOutput(out.tokens, out.stats())
