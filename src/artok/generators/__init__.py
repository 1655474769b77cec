"""Token-sequence models: they return losses and predictions, never sample."""

from artok.generators.base import Generator, IncompatibleTokensError
from artok.generators.raster import RasterConfig, RasterGenerator

__all__ = ["Generator", "IncompatibleTokensError", "RasterConfig", "RasterGenerator"]
