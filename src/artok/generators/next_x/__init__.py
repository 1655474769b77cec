"""xAR next-X prediction: ``model.py`` computes, ``sample.py`` samples."""

from artok.generators.next_x.model import (
    HeadDenoiserGenerator,
    NextXConfig,
    NextXGenerator,
    XARDenoiserGenerator,
    normalized_scales,
    sample_flow_times,
    scale_pyramid,
    unit_layout,
)

__all__ = ['HeadDenoiserGenerator', 'NextXConfig', 'NextXGenerator', 'XARDenoiserGenerator', 'normalized_scales', 'sample_flow_times', 'scale_pyramid', 'unit_layout']
