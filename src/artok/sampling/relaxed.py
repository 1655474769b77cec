"""Relaxed (lossy) acceptance rules for speculative and Jacobi decoding of image tokens.

Image tokens are redundant: many codebook entries decode to nearly the same patch, so a target
that spreads its mass over several similar tokens rejects drafts that would have looked fine.
Two published relaxations accept a draft on the strength of its *neighbourhood*:

- LANTERN (Jang et al., https://arxiv.org/abs/2410.03355): for a drafted token ``x``, the target
  mass of its nearest codebook entries in latent space (``B_k(x)``, nearest first) is moved onto
  ``x`` as long as the moved mass stays within a total-variation budget ``delta``:
  ``p~_x(x) = p(x) + sum of the longest nearest-first prefix of p(B_k(x)) whose sum <= delta``,
  and ``x`` is accepted with probability ``min(1, p~_x(x) / q(x))``. Guarantee (LANTERN's):
  ``TV(p~_x, p) <= delta`` for every ``x``.
- Grouped speculative decoding, GSD (So et al., https://arxiv.org/abs/2508.07747): ``x`` is accepted
  with probability ``min(1, p(G(x)) / q(G(x)))`` for a *dynamic* group ``G(x)`` of tokens that the
  target itself finds about as likely as ``x`` (neighbours of ``x`` in the target's probability
  ranking, within ``prob_gap`` of ``p(x)``), optionally restricted to latent neighbours of ``x``.

Both plug into `speculative_sample` and `jacobi_sample` as ``acceptance=``. On rejection the
samplers draw from ``norm((p - alpha)+)``, where ``alpha(y) = q(y) min(1, ratio(y))`` is the mass
accepted at ``y``; the law of an emitted token is then ``alpha + (1 - sum alpha) norm((p - alpha)+)``
and its total-variation distance to the target's conditional is exactly ``sum (alpha - p)+``, which
is at most ``TV(p, q)`` and 0 when no neighbour mass is used. The samplers report its mean over
emitted tokens with ``measure_tv=True`` (`SpeculativeStats.per_token_tv`). Sequence-level laws are
*not* the target's: errors compound over the sequence. With ``delta = 0`` (LANTERN) or groups of one
token (GSD: ``rank_window = 0``) both rules are the exact rule, token for token (tested).

The knobs default to "off": ``LanternAcceptance(neighbours)`` has ``delta = 0`` and
``GroupedAcceptance()`` has ``rank_window = 0``.
"""

from __future__ import annotations

import torch

from artok.sampling.speculative import ExactAcceptance


def tokenizer_codebook(tokenizer) -> torch.Tensor:
    """The code vectors (``V x D``) a discrete tokenizer decodes its ids from."""
    vocab = tokenizer.spec.vocab_size
    ids = torch.arange(vocab, device=next(tokenizer.parameters()).device)[None, :]
    with torch.no_grad():
        codes = tokenizer.quantizer.ids_to_codes(ids)  # 1 x D x V
    return codes[0].t().float().contiguous()


def latent_neighbours(codebook: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (``V x k``) of each code's ``k`` nearest other codes (Euclidean), nearest first."""
    if not 0 <= k < codebook.shape[0]:
        raise ValueError(f"k must be in [0, {codebook.shape[0]}), got {k}")
    distance = torch.cdist(codebook.float(), codebook.float())
    distance.fill_diagonal_(float("inf"))
    return distance.topk(k, dim=-1, largest=False).indices


class LanternAcceptance(ExactAcceptance):
    """LANTERN's relaxed acceptance: neighbour mass within a TV budget ``delta`` counts for ``x``.

    Args:
        neighbours: ``V x k`` latent neighbours of every code, nearest first (`latent_neighbours`).
        delta: total-variation budget per drafted token; 0 = exact.
    """

    name = "lantern"

    def __init__(self, neighbours: torch.Tensor, delta: float = 0.0) -> None:
        if delta < 0:
            raise ValueError(f"delta must be >= 0, got {delta}")
        self.neighbours = neighbours
        self.delta = float(delta)
        self.exact = self.delta == 0.0 or neighbours.shape[-1] == 0

    def _bonus(self, p: torch.Tensor, neighbour_ids: torch.Tensor) -> torch.Tensor:
        """``p``: ``... x V``; ``neighbour_ids``: ``... x k`` (broadcast over p's leading dims) ->
        mass of the longest nearest-first neighbour prefix within ``delta`` (``...``)."""
        if neighbour_ids.shape[-1] == 0:
            return torch.zeros(neighbour_ids.shape[:-1], dtype=p.dtype, device=p.device)
        cumulative = p.gather(-1, neighbour_ids.flatten(-2) if neighbour_ids.dim() > p.dim() else neighbour_ids)
        cumulative = cumulative.view(*neighbour_ids.shape).cumsum(-1)
        # cumsum is non-decreasing, so "<= delta" selects a prefix; its sum is the largest kept value.
        return (cumulative * (cumulative <= self.delta)).amax(-1)

    def ratio(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        neighbours = self.neighbours.to(p.device).expand(*p.shape[:-1], *self.neighbours.shape)
        return (p + self._bonus(p, neighbours)) / q

    def ratio_at(self, p: torch.Tensor, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        index = tokens[..., None]
        neighbours = self.neighbours.to(p.device)[tokens]  # ... x k
        p_x = p.gather(-1, index).squeeze(-1)
        return (p_x + self._bonus(p, neighbours)) / q.gather(-1, index).squeeze(-1)


class GroupedAcceptance(ExactAcceptance):
    """Grouped speculative decoding's acceptance: ``min(1, p(G(x)) / q(G(x)))`` over a dynamic group.

    ``G(y)`` holds ``y`` and the tokens within ``rank_window`` places of ``y`` in the target's
    probability ranking whose target probability is within ``prob_gap`` of ``p(y)`` and, when
    ``codebook`` and ``max_distance`` are given, whose code is within ``max_distance`` of ``y``'s.

    Args:
        rank_window: ranking neighbours considered on each side; 0 = groups of one = exact.
        prob_gap: largest ``|p(z) - p(y)|`` for ``z`` to join ``y``'s group.
        codebook: ``V x D`` code vectors (`tokenizer_codebook`) for the latent-distance filter.
        max_distance: largest code distance within a group (None: no latent filter).
    """

    name = "grouped"

    def __init__(self, rank_window: int = 0, prob_gap: float = 0.15, codebook: torch.Tensor | None = None,
                 max_distance: float | None = None) -> None:
        if rank_window < 0:
            raise ValueError(f"rank_window must be >= 0, got {rank_window}")
        if max_distance is not None and codebook is None:
            raise ValueError("max_distance needs the codebook")
        self.rank_window = rank_window
        self.prob_gap = prob_gap
        self.codebook = codebook
        self.max_distance = max_distance
        self.exact = rank_window == 0

    def ratio(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.rank_window == 0:
            return super().ratio(p, q)
        vocab = p.shape[-1]
        order = p.argsort(dim=-1, descending=True)  # rank -> token
        rank = order.argsort(dim=-1)  # token -> rank
        offsets = torch.cat([torch.arange(-self.rank_window, 0), torch.arange(1, self.rank_window + 1)]).to(p.device)
        ranks = rank[..., None] + offsets  # ... x V x 2w
        valid = (ranks >= 0) & (ranks < vocab)
        members = order.gather(-1, ranks.clamp(0, vocab - 1).flatten(-2)).view(ranks.shape)
        p_members = p.gather(-1, members.flatten(-2)).view(ranks.shape)
        valid &= (p_members - p[..., None]).abs() <= self.prob_gap
        if self.max_distance is not None:
            codes = self.codebook.to(p.device)
            distance = (codes[members] - codes[:, None, :]).norm(dim=-1)  # ... x V x 2w
            valid &= distance <= self.max_distance
        q_members = q.gather(-1, members.flatten(-2)).view(ranks.shape)
        group_p = p + (p_members * valid).sum(-1)
        group_q = q + (q_members * valid).sum(-1)
        return group_p / group_q

    def ratio_at(self, p: torch.Tensor, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.rank_window == 0:
            return super().ratio_at(p, q, tokens)
        return self.ratio(p, q).gather(-1, tokens[..., None]).squeeze(-1)


def lantern_acceptance(tokenizer, k: int = 8, delta: float = 0.0) -> LanternAcceptance:
    """`LanternAcceptance` with the ``k`` nearest latent neighbours from ``tokenizer``'s codebook."""
    return LanternAcceptance(latent_neighbours(tokenizer_codebook(tokenizer), k), delta)
