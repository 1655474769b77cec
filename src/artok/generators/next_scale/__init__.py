"""VAR next-scale prediction: ``model.py`` computes, ``sample.py`` samples, ``engine.py`` is the fast engine over the same model."""

from artok.generators.next_scale.model import (
    NextScaleConfig,
    NextScaleGenerator,
    block_causal_mask,
)

__all__ = ['block_causal_mask', 'NextScaleConfig', 'NextScaleGenerator']
