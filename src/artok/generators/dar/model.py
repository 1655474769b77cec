"""The generator half of D-AR (Gao, Shou et al., "D-AR: Diffusion via Autoregressive Models",
https://arxiv.org/abs/2505.23660; public code: github.com/showlab/D-AR, ``autoregressive/models/gpt.py``):
a plain Llama next-token GPT over the 1D tokens of the sequential diffusion tokenizer
(`artok.tokenizers.dar`), class token first, no change to the language-model recipe.

artok's `RasterGenerator` already is that model on a ``"sequence"`` layout (1D RoPE over the
sequence, the LlamaGen class prefix, label dropout for CFG), so `DARGenerator` is a thin subclass:
it only insists on 1D sequence tokens (a grid would be plain raster) and stores ``num_groups``, the
token groups of its tokenizer, whose boundaries are where `artok.generators.dar.sample` reports
previews. Training, the KV-cached loop, the recompute loop and the raster engine are raster's,
unchanged. Simplified vs the paper: no adaLN class conditioning or QK-norm variants of D-AR's GPT
(LlamaGen's architecture, as D-AR's code base); categorical head only.
"""

from __future__ import annotations

from dataclasses import dataclass

from artok.generators.base import IncompatibleTokensError
from artok.generators.raster.model import RasterConfig, RasterGenerator
from artok.hub import register_model
from artok.tokens import TokenSpec


def _check_sequence(spec: TokenSpec) -> None:
    if spec.kind != "discrete" or spec.layout != "sequence" or spec.subtokens != 1:
        raise IncompatibleTokensError(
            f"the d-ar generator models one discrete id per position of a 1D token sequence; got {spec.kind} tokens "
            f"with layout {spec.layout!r} and {spec.subtokens} sub-token(s). Use a dar (or vit1d) tokenizer with a "
            "VQ/FSQ quantizer (the raster generator models token grids).")


@dataclass
class DARConfig(RasterConfig):
    """Configuration of `DARGenerator`: `RasterConfig` over a 1D sequence plus its token groups.

    Args:
        num_groups: token groups of the tokenizer (``G``; the sequence length must be a multiple);
            the prefixes ending a group are the preview points of `sample_dar`.
    """

    num_groups: int = 4

    def __post_init__(self) -> None:
        _check_sequence(TokenSpec.coerce(self.token_spec))
        if self.head != "categorical":
            raise ValueError(f"d-ar has a categorical head only, got head={self.head!r}")
        super().__post_init__()
        if self.num_groups < 1 or self.seq_len % self.num_groups:
            raise ValueError(f"num_groups must divide the sequence length {self.seq_len}, got {self.num_groups}")

    @property
    def group_size(self) -> int:
        return self.seq_len // self.num_groups


@register_model("d_ar")
class DARGenerator(RasterGenerator):
    """`RasterGenerator` over D-AR's 1D token sequence (see the module docstring)."""

    config_class = DARConfig

    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        """Raise `IncompatibleTokensError` unless ``spec`` is a discrete 1D sequence the head fits."""
        _check_sequence(spec)
        super().check_spec(spec, head)

    def group_ends(self) -> list[int]:
        """Token counts at the end of each group: ``K/G, 2K/G, ..., K``."""
        size = self.config.group_size
        return [size * (g + 1) for g in range(self.config.num_groups)]
