"""What several generator kinds share for sampling (each kind's own loop, engine and speculative
sampler live in its folder, ``artok.generators.<kind>``): sampler configs, logits filters and
guidance, mask and CFG schedules, discrete draws, continuous head samplers (and their CUDA graphs),
speculative acceptance, verification and statistics, ReCAP, engine support.

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
    SamplerConfig,
    sampler_config_from_dict,
    sampler_config_to_dict,
    sampler_kind,
)
from artok.sampling.continuous import (
    respaced_timesteps,
    sample_diffusion,
    sample_flow,
    sample_head,
)
from artok.sampling.heads import HeadDraw, draw_discrete
from artok.sampling.logits import (
    cfg_combine,
    logits_to_probs,
    sample_from_probs,
    top_k_filter,
    top_p_filter,
)
from artok.sampling.mask_schedules import MASK_SCHEDULES, mask_ratio, masked_counts
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
    "draw_discrete",
    "logits_to_probs",
    "mask_ratio",
    "masked_counts",
    "respaced_timesteps",
    "sample_diffusion",
    "sample_flow",
    "sample_from_probs",
    "sample_head",
    "sampler_config_from_dict",
    "sampler_config_to_dict",
    "sampler_kind",
    "top_k_filter",
    "top_p_filter",
]

# Fast engine and speculative decoding for raster generators.
from artok.sampling.relaxed import (  # noqa: E402
    GroupedAcceptance,
    LanternAcceptance,
    lantern_acceptance,
    latent_neighbours,
    tokenizer_codebook,
)
from artok.sampling.speculative import (
    ExactAcceptance,
    SpeculativeOutput,
    SpeculativeStats,
    verify_drafts,
)

__all__ += [
    "ExactAcceptance",
    "GroupedAcceptance",
    "LanternAcceptance",
    "SpeculativeOutput",
    "SpeculativeStats",
    "lantern_acceptance",
    "latent_neighbours",
    "tokenizer_codebook",
    "verify_drafts",
]
