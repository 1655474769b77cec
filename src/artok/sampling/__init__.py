"""Samplers: pure functions and loops taking an explicit `torch.Generator`."""

from artok.sampling.logits import cfg_combine, logits_to_probs, sample_from_probs, top_k_filter, top_p_filter
from artok.sampling.loops import SamplerConfig, decode_one_token, prefill, sample_raster, sample_raster_recompute
from artok.sampling.schedules import cfg_scale_at

__all__ = [
    "SamplerConfig",
    "cfg_combine",
    "cfg_scale_at",
    "decode_one_token",
    "logits_to_probs",
    "prefill",
    "sample_from_probs",
    "sample_raster",
    "sample_raster_recompute",
    "top_k_filter",
    "top_p_filter",
]
