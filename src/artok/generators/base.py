"""The generator contract.

A generator is a model over token sequences. It computes training losses (`loss`) and the
predictions a sampler needs; it never samples itself (samplers live in `artok.sampling` and take
an explicit `torch.Generator`). Each generator declares which `TokenSpec`s it supports.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from artok.tokens import Tokens, TokenSpec


def normal_init_(module: nn.Module, zero_bias: bool = True) -> None:
    """GPT-2's init for ``model.apply``: linear and embedding weights N(0, 0.02), biases zero
    (left at torch's default with ``zero_bias=False``)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if zero_bias and getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def require_discrete_grid(kind: str, spec: "TokenSpec") -> None:
    """`IncompatibleTokensError` unless ``spec`` is discrete, one id per cell of a grid."""
    if spec.kind != "discrete" or spec.layout != "grid" or spec.subtokens != 1:
        raise IncompatibleTokensError(
            f"the {kind} generator models discrete tokens on a grid, one id per cell; got {spec.kind} tokens with "
            f"layout {spec.layout!r} and {spec.subtokens} subtoken(s). Use a VQ/FSQ/LFQ/BSQ grid tokenizer.")


class IncompatibleTokensError(ValueError):
    """A generator was paired with tokens it cannot model."""


@dataclass(kw_only=True)
class GeneratorConfig:
    """Base of the generator config dataclasses: the fields every generator has, their checks
    (`check_common`, called by each config's ``__post_init__``) and ``spec``. Keyword-only, so each
    kind's own fields keep their positions.

    Args:
        token_spec: the `TokenSpec` (as a dict) of the tokens the generator models.
        num_classes: class labels; index ``num_classes`` is the "no class" (unconditional) label.
        dim, num_heads: transformer width and attention heads.
        hidden_dim: MLP hidden size (None: the kind's rule, LLaMA's 8/3 for SwiGLU).
        class_dropout: probability of replacing the label by "no class" in training (for CFG).
        dropout: residual / attention dropout.
    """

    token_spec: dict
    num_classes: int = 10
    dim: int = 256
    num_heads: int = 4
    hidden_dim: int | None = None
    class_dropout: float = 0.1
    dropout: float = 0.0

    @property
    def spec(self) -> TokenSpec:
        return TokenSpec.from_dict(self.token_spec)

    def check_rope_2d(self) -> None:
        """2D rotary embeddings split each head into 4 parts (row/column x sin/cos)."""
        if (self.dim // self.num_heads) % 4:
            raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {self.dim // self.num_heads}")

    def check_common(self) -> None:
        """Raise ValueError for a field every generator shares that is out of range."""
        if self.num_classes < 1:
            raise ValueError(f"need num_classes >= 1, got {self.num_classes}")
        for name in ("dim", "num_heads", "depth", "encoder_depth"):
            value = getattr(self, name, 1)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout must be in [0, 1), got {self.class_dropout}")


class Generator(nn.Module):
    """Base class for token generators (``config`` is a `GeneratorConfig`)."""

    model_role = "generator"

    config: GeneratorConfig

    def bind_spec_check(self, head: str) -> None:
        """Make ``self.check_spec`` check against this instance's head (``train_generator`` calls it)."""
        self.check_spec = functools.partial(type(self).check_spec, head=head)

    @property
    def spec(self) -> TokenSpec:
        return self.config.spec

    @property
    def null_class(self) -> int:
        """The unconditional label (classifier-free guidance): index ``num_classes``."""
        return self.config.num_classes

    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """In training, replace each label by the null class with probability ``class_dropout``
        (trains the unconditional branch that classifier-free guidance needs)."""
        if not self.training or self.config.class_dropout <= 0:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < self.config.class_dropout
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    @classmethod
    def check_spec(cls, spec: TokenSpec) -> None:
        """Raise `IncompatibleTokensError` naming what would fit if ``spec`` is unsupported."""
        raise NotImplementedError

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses; ``"loss"`` is the one to minimise."""
        raise NotImplementedError
