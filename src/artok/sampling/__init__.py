"""Samplers: pure functions and loops taking an explicit `torch.Generator`.

`artok.zoo.sample(generator, labels, config, rng)` picks the loop of the generator's kind; each loop is
public (`sample_raster`, `sample_raster_with_head`, `sample_next_scale`, `sample_maskgit`,
`sample_mar`, `sample_next_x`), with one config dataclass per kind (`SamplerConfig` for raster,
`NextScaleSamplerConfig`, `MaskGITSamplerConfig`, `MARSamplerConfig`, `NextXSamplerConfig`).
"""

from artok.sampling.configs import (
    SAMPLER_CONFIGS,
    MARSamplerConfig,
    MaskGITSamplerConfig,
    NextScaleSamplerConfig,
    NextXSamplerConfig,
    sampler_config_from_dict,
    sampler_config_to_dict,
    sampler_kind,
)
from artok.sampling.continuous import respaced_timesteps, sample_diffusion, sample_flow, sample_head
from artok.sampling.heads import HeadDraw, draw_discrete
from artok.sampling.logits import cfg_combine, logits_to_probs, sample_from_probs, top_k_filter, top_p_filter
from artok.sampling.loops import SamplerConfig, decode_one_token, prefill, sample_raster, sample_raster_recompute
from artok.sampling.mask_schedules import MASK_SCHEDULES, mask_ratio, masked_counts
from artok.sampling.mar import sample_mar
from artok.sampling.masked import sample_maskgit
from artok.sampling.next_scale import sample_next_scale
from artok.sampling.next_x import sample_next_x
from artok.sampling.raster_heads import sample_raster_with_head
from artok.sampling.schedules import cfg_scale_at

__all__ = [
    "MASK_SCHEDULES",
    "SAMPLER_CONFIGS",
    "HeadDraw",
    "MARSamplerConfig",
    "MaskGITSamplerConfig",
    "NextScaleSamplerConfig",
    "NextXSamplerConfig",
    "SamplerConfig",
    "cfg_combine",
    "cfg_scale_at",
    "decode_one_token",
    "draw_discrete",
    "logits_to_probs",
    "mask_ratio",
    "masked_counts",
    "prefill",
    "respaced_timesteps",
    "sample_diffusion",
    "sample_flow",
    "sample_from_probs",
    "sample_head",
    "sample_mar",
    "sample_maskgit",
    "sample_next_scale",
    "sample_next_x",
    "sample_raster",
    "sample_raster_recompute",
    "sample_raster_with_head",
    "sampler_config_from_dict",
    "sampler_config_to_dict",
    "sampler_kind",
    "top_k_filter",
    "top_p_filter",
]

# Fast engine and speculative decoding for raster generators.
from artok.sampling.engine import SamplingEngine, sample_raster_fast  # noqa: E402
from artok.sampling.jacobi import jacobi_sample  # noqa: E402
from artok.sampling.recap import sample_maskgit_recap  # noqa: E402
from artok.sampling.relaxed import (  # noqa: E402
    GroupedAcceptance,
    LanternAcceptance,
    lantern_acceptance,
    latent_neighbours,
    tokenizer_codebook,
)
from artok.sampling.speculative import (  # noqa: E402
    ExactAcceptance,
    SpeculativeOutput,
    SpeculativeStats,
    speculative_sample,
    verify_drafts,
)

__all__ += [
    "ExactAcceptance",
    "GroupedAcceptance",
    "LanternAcceptance",
    "SamplingEngine",
    "SpeculativeOutput",
    "SpeculativeStats",
    "jacobi_sample",
    "lantern_acceptance",
    "latent_neighbours",
    "sample_maskgit_recap",
    "sample_raster_fast",
    "speculative_sample",
    "tokenizer_codebook",
    "verify_drafts",
]
