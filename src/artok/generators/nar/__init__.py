"""NAR: next-neighbour autoregressive generation (https://arxiv.org/abs/2503.10696)."""

from artok.generators.nar.model import NARConfig, NARGenerator

__all__ = ["NARConfig", "NARGenerator"]
