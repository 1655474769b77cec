"""Hi-MAR: hierarchical masked autoregression with low-resolution token pivots (https://arxiv.org/abs/2505.20288)."""

from artok.generators.hi_mar.model import HiMARConfig, HiMARGenerator

__all__ = ["HiMARConfig", "HiMARGenerator"]
