"""Token-Shuffle (Ma et al., https://arxiv.org/abs/2504.17789)."""

from artok.generators.token_shuffle.model import TokenShuffleConfig, TokenShuffleGenerator

__all__ = ["TokenShuffleConfig", "TokenShuffleGenerator"]
