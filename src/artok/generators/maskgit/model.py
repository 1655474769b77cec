"""Masked generative image transformer (MaskGIT: Chang et al., "MaskGIT: Masked Generative Image
Transformer", https://arxiv.org/abs/2202.04200).

A **bidirectional** transformer sees the class token and every position of the grid, some of them
replaced by a learned ``[MASK]`` embedding, and predicts the ids of the masked ones. Training
(section 3.2): per sequence draw ``u ~ U(0, 1)``, mask ``ceil(L * gamma(u))`` random positions
(``gamma`` = the mask schedule, cosine by default) and minimise cross-entropy on the masked
positions only. Label dropout trains the unconditional branch for classifier-free guidance.

Decoding (`artok.sampling.sample_maskgit`): start fully masked; each of ``T`` iterations samples
every masked position in parallel, then keeps the most confident ones and re-masks exactly as many
as the schedule says, ranking by log-probability plus Gumbel noise whose temperature anneals to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError, normal_init_
from artok.generators.head_support import (
    build_discrete_head,
    build_token_embedding,
    check_discrete_head,
)
from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.sampling.mask_schedules import MASK_SCHEDULES, training_mask_ratio
from artok.tokens import Tokens, TokenSpec

MASKGIT_HEADS = ("categorical", "bitwise")


@dataclass
class MaskGITConfig(GeneratorConfig):
    """Configuration of `MaskGITGenerator`.

    Args:
        token_spec: the tokens' `TokenSpec` (as a dict): discrete, one id per position, grid or sequence.
        num_classes: class labels; index ``num_classes`` is the unconditional label.
        dim, depth, num_heads, hidden_dim: transformer size.
        class_dropout: label-dropout probability.
        dropout: attention / residual dropout.
        mask_schedule: the training mask schedule (``cosine``, ``linear``, ``square``, ``sqrt``).
        head: ``"categorical"`` or ``"bitwise"`` (LFQ/BSQ tokens).
    """

    depth: int = 4
    mask_schedule: str = "cosine"
    head: str = "categorical"

    def __post_init__(self) -> None:
        spec = TokenSpec.coerce(self.token_spec)
        self.token_spec = spec.to_dict()
        if self.head not in MASKGIT_HEADS:
            raise ValueError(f"head must be one of {MASKGIT_HEADS}, got {self.head!r}")
        MaskGITGenerator.check_spec(spec, self.head)
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"mask_schedule must be one of {MASK_SCHEDULES}, got {self.mask_schedule!r}")
        self.check_common()


@register_model("maskgit")
class MaskGITGenerator(Generator):
    """Bidirectional masked-token transformer with a class prefix; see the module docstring."""

    config_class = MaskGITConfig

    def __init__(self, config: MaskGITConfig) -> None:
        super().__init__()
        self.config = config
        self.bind_spec_check(config.head)
        spec, dim = config.spec, config.dim
        self.token_embedding = build_token_embedding(config.head, spec, dim)
        self.mask_embedding = nn.Parameter(torch.zeros(dim))
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.position = nn.Parameter(torch.zeros(spec.seq_len + 1, dim))
        hidden = config.hidden_dim or swiglu_hidden_dim(dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, hidden, dropout=config.dropout) for _ in range(config.depth)
        )
        self.norm = RMSNorm(dim)
        self.head = build_discrete_head(config.head, spec, dim)
        self.apply(normal_init_)
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.mask_embedding, std=0.02)


    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        if spec.kind != "discrete" or spec.layout not in ("grid", "sequence"):
            raise IncompatibleTokensError(
                f"MaskGIT models discrete tokens on a grid or sequence, got {spec.kind} tokens with layout "
                f"{spec.layout!r}; use a VQ/FSQ/LFQ/BSQ tokenizer (mar models continuous tokens, next-scale "
                "multi-scale ones)"
            )
        check_discrete_head(head or "categorical", spec, "maskgit")

    def _token_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token or mask embeddings ``B x L x dim``."""
        tokens = self.token_embedding(ids.clamp_min(0))
        return torch.where(mask.unsqueeze(-1), self.mask_embedding.to(tokens.dtype), tokens)

    def _stack(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, input_pos=positions)
        return self.norm(x)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, *,
                      write_cache: bool = False) -> torch.Tensor:
        """States ``B x L x dim`` for ``ids`` (``B x L``) with positions where ``mask`` is True hidden.

        ``write_cache``: the pass also writes every position's keys/values into the attached caches
        (ReCAP's full pass, `artok.generators.maskgit.recap`)."""
        x = torch.cat([self.class_embedding(labels).unsqueeze(1), self._token_inputs(ids, mask)], dim=1) + self.position
        positions = torch.arange(x.shape[1], device=x.device) if write_cache else None
        return self._stack(x, positions)[:, 1:]

    def local_hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """States of the ``active`` positions only (``B x n`` grid indices, per row), computed against
        the cached keys/values of every other position (refreshing the active positions' entries)."""
        x = self._token_inputs(ids, mask).gather(1, active[..., None].expand(-1, -1, self.config.dim))
        positions = active + 1  # slot 0 is the class token
        return self._stack(x + self.position[positions], positions)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``B x L x V`` (bit logits for the bitwise head) at every position."""
        return self.head(self.hidden_states(ids, mask, labels))

    def random_mask(self, batch_size: int, device) -> torch.Tensor:
        """Training masks ``B x L``: ``ceil(L * gamma(u))`` random positions per row (at least one)."""
        seq_len = self.spec.seq_len
        ratio = training_mask_ratio(batch_size, self.config.mask_schedule, device)
        count = torch.ceil(ratio * seq_len).clamp(1, seq_len).long()
        ranks = torch.rand(batch_size, seq_len, device=device).argsort(dim=1).argsort(dim=1)
        return ranks < count[:, None]

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        ids, labels = tokens.ids, cond
        labels = self.drop_labels(labels)
        mask = self.random_mask(ids.shape[0], ids.device)
        hidden = self.hidden_states(ids, mask, labels)
        loss = self.head.loss(hidden[mask].unsqueeze(0), ids[mask].unsqueeze(0))
        return {"loss": loss, "mask_fraction": mask.float().mean().detach()}
