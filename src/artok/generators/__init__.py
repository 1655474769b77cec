"""Token-sequence models: they return losses and predictions, never sample.

=============  ==========================  ===========================================  ==============
CLI kind       class                       tokens                                       paper
=============  ==========================  ===========================================  ==============
raster         `RasterGenerator`           discrete grid (VQ/FSQ)                        LlamaGen
bitwise        `RasterGenerator`,          discrete grid, power-of-two vocab (LFQ/BSQ)   Infinity
               ``head="bitwise"``
dimwise        `RasterGenerator`,          dimension-wise PTQ tokens                     TokenBridge
               ``head="dimwise"``
next-scale     `NextScaleGenerator`        multi-scale residual tokens (msvq)            VAR
maskgit        `MaskGITGenerator`          discrete grid                                 MaskGIT
mar            `MARGenerator`              continuous grid (KL)                          MAR
next-x         `NextXGenerator`            continuous grid (KL)                          xAR
=============  ==========================  ===========================================  ==============

`artok.zoo.build_generator(kind, tokenizer, ...)` builds any of them by its kind name (the kind table
lives above the models, in `artok.zoo`).
"""

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
