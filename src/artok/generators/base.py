"""The generator contract.

A generator is a model over token sequences. It computes training losses (`loss`) and the
predictions a sampler needs; it never samples itself (samplers live in `artok.sampling` and take
an explicit `torch.Generator`). Each generator declares which `TokenSpec`s it supports.
"""

from __future__ import annotations

import torch
from torch import nn

from artok.tokens import Tokens, TokenSpec


class IncompatibleTokensError(ValueError):
    """A generator was paired with tokens it cannot model."""


class Generator(nn.Module):
    """Base class for token generators."""

    config: object

    @classmethod
    def check_spec(cls, spec: TokenSpec) -> None:
        """Raise `IncompatibleTokensError` naming what would fit if ``spec`` is unsupported."""
        raise NotImplementedError

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses; ``"loss"`` is the one to minimise."""
        raise NotImplementedError
