"""MAR masked autoregression with a continuous head: ``model.py`` computes, ``sample.py`` samples."""

from artok.generators.mar.model import MARConfig, MARGenerator, truncated_normal_ratio

__all__ = ['MARConfig', 'truncated_normal_ratio', 'MARGenerator']
