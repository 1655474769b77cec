"""LlamaGen-style next-token generation: ``model.py`` computes, ``sample.py`` samples, ``engine.py`` is the fast engine over the same model."""

from artok.generators.raster.model import RasterConfig, RasterGenerator

__all__ = ['RasterConfig', 'RasterGenerator']
