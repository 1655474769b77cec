"""Token-sequence models, one folder per kind (``model.py`` computes and never samples;
``sample.py`` and the kind's engine sample). The kind table above them is `artok.zoo`."""

from artok.generators.base import Generator, IncompatibleTokensError
from artok.generators.mar.model import MARConfig, MARGenerator
from artok.generators.maskgit.model import MaskGITConfig, MaskGITGenerator
from artok.generators.next_scale.model import (
    NextScaleConfig,
    NextScaleGenerator,
    block_causal_mask,
)
from artok.generators.next_x.model import NextXConfig, NextXGenerator
from artok.generators.raster.model import RasterConfig, RasterGenerator

__all__ = [
    "Generator",
    "IncompatibleTokensError",
    "MARConfig",
    "MARGenerator",
    "MaskGITConfig",
    "MaskGITGenerator",
    "NextScaleConfig",
    "NextScaleGenerator",
    "NextXConfig",
    "NextXGenerator",
    "RasterConfig",
    "RasterGenerator",
    "block_causal_mask",
]
