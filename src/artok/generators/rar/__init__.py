"""RAR: randomized autoregressive generation (Yu et al., https://arxiv.org/abs/2411.00776)."""

from artok.generators.rar.model import RARConfig, RARGenerator

__all__ = ["RARConfig", "RARGenerator"]
