"""xAR next-X prediction: ``model.py`` computes, ``sample.py`` samples."""

from artok.generators.next_x.model import (
    NextXConfig,
    HeadDenoiserGenerator,
    NextXGenerator,
    XARDenoiserGenerator,
    normalized_scales,
    sample_flow_times,
    scale_pyramid,
    unit_layout,
)

__all__ = ['NextXConfig', 'normalized_scales', 'unit_layout', 'scale_pyramid', 'sample_flow_times', 'NextXGenerator', 'XARDenoiserGenerator', 'HeadDenoiserGenerator']
