"""MaskGIT masked token prediction: ``model.py`` computes, ``sample.py`` samples, ``engine.py`` is the fast engine over the same model."""

from artok.generators.maskgit.model import MaskGITConfig, MaskGITGenerator

__all__ = ['MaskGITConfig', 'MaskGITGenerator']
