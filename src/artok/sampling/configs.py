"""Per-kind sampler configurations, stored with a checkpoint as its sampling defaults.

A generator's ``extra["sampling"]`` is ``sampler_config_to_dict(config)``: the config's fields plus
``"kind"`` (``raster``, ``next-scale``, ``maskgit``, ``mar``, ``next-x``). A dict without ``"kind"`` is
the raster `SamplerConfig` of older checkpoints and still loads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from artok.sampling.continuous import HEAD_METHODS
from artok.sampling.mask_schedules import MASK_SCHEDULES
from artok.sampling.schedules import CFG_SCHEDULES


def check_finite_numbers(config) -> None:
    """Every float field finite: NaN passes every ``<``/``>`` range check, and a NaN temperature or
    CFG scale otherwise samples all-zero tokens without an error."""
    for field in fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{field.name} must be a finite number, got {value}")


def _check_token_options(config) -> None:
    check_finite_numbers(config)
    if config.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {config.temperature}")
    if getattr(config, "top_k", 0) < 0:
        raise ValueError(f"top_k must be >= 0, got {config.top_k}")
    if not 0.0 < getattr(config, "top_p", 1.0) <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {config.top_p}")
    if config.cfg_scale < 0:
        raise ValueError(f"cfg_scale must be >= 0, got {config.cfg_scale}")
    if config.cfg_schedule not in CFG_SCHEDULES:
        raise ValueError(f"cfg_schedule must be one of {CFG_SCHEDULES}, got {config.cfg_schedule!r}")


def _check_head_options(config) -> None:
    check_finite_numbers(config)
    if config.steps < 1:
        raise ValueError(f"steps must be >= 1, got {config.steps}")
    if config.method not in HEAD_METHODS:
        raise ValueError(f"method must be one of {HEAD_METHODS}, got {config.method!r}")
    if config.diffusion_scale < 0:
        raise ValueError(f"diffusion_scale must be >= 0, got {config.diffusion_scale}")


class _Guidance:
    @property
    def uses_cfg(self) -> bool:
        return self.cfg_scale != 1.0 or self.cfg_schedule != "constant"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SamplerConfig(_Guidance):
    """Sampling options stored with a checkpoint as its defaults.

    Args:
        temperature: softmax temperature (> 0).
        top_k: keep the k most likely tokens (0 = all).
        top_p: nucleus mass (1.0 = off).
        cfg_scale: classifier-free guidance scale (1.0 = no guidance, and no doubled batch).
        cfg_schedule: ``"constant"`` or ``"linear"`` (ramps from 1 to ``cfg_scale``).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg_scale: float = 1.0
    cfg_schedule: str = "constant"

    def __post_init__(self) -> None:
        _check_token_options(self)


@dataclass
class NextScaleSamplerConfig(_Guidance):
    """Next-scale (VAR) sampling.

    Args:
        temperature, top_k, top_p: per-token sampling of each scale.
        cfg_scale: guidance scale; ``cfg_schedule="linear"`` ramps it from 1 at the first scale to
            ``cfg_scale`` at the last (VAR's ramp), ``"constant"`` uses it at every scale.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg_scale: float = 1.0
    cfg_schedule: str = "linear"

    def __post_init__(self) -> None:
        _check_token_options(self)


@dataclass
class MaskGITSamplerConfig(_Guidance):
    """MaskGIT iterative decoding.

    Args:
        iterations: decoding steps (<= number of tokens).
        mask_schedule: ``cosine`` (MaskGIT's choice), ``linear``, ``square`` or ``sqrt``.
        choice_temperature: Gumbel-noise temperature of the confidence ranking at the first step,
            annealed linearly to 0 at the last (MaskGIT uses 4.5).
        temperature, top_k, top_p: token sampling.
        cfg_scale, cfg_schedule: guidance; ``linear`` ramps from 1 to ``cfg_scale`` over iterations.
    """

    iterations: int = 8
    mask_schedule: str = "cosine"
    choice_temperature: float = 4.5
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg_scale: float = 1.0
    cfg_schedule: str = "constant"

    def __post_init__(self) -> None:
        _check_token_options(self)
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"mask_schedule must be one of {MASK_SCHEDULES}, got {self.mask_schedule!r}")
        if self.choice_temperature < 0:
            raise ValueError(f"choice_temperature must be >= 0, got {self.choice_temperature}")


@dataclass
class MARSamplerConfig(_Guidance):
    """MAR random-order masked sampling.

    Args:
        iterations: unmasking steps (<= number of tokens).
        mask_schedule: how many tokens stay unknown after each iteration.
        cfg_scale: guidance scale; ``cfg_schedule="linear"`` is MAR's
            ``1 + (cfg_scale - 1) * known / L`` (rises with the number of known tokens).
        temperature: noise temperature of the head sampler.
        steps: diffusion (respaced DDPM) or flow-integration steps per token.
        method: ``auto`` (DDPM for a diffusion head, Euler for a flow head), ``ddpm``, ``euler``,
            ``euler-maruyama``.
        diffusion_scale: SDE noise scale of Euler-Maruyama.
        final_noise: std of Gaussian noise added at the head sampler's last step, in model space
            (0: the usual deterministic last step). Continuous speculative decoding
            (`artok.generators.mar.speculative`) needs it positive: its acceptance test compares
            the two models' densities of that step, and its output law is exactly this sampler's.
    """

    iterations: int = 16
    mask_schedule: str = "cosine"
    cfg_scale: float = 1.0
    cfg_schedule: str = "linear"
    temperature: float = 1.0
    steps: int = 50
    method: str = "auto"
    diffusion_scale: float = 1.0
    final_noise: float = 0.0

    def __post_init__(self) -> None:
        _check_token_options(self)
        _check_head_options(self)
        if self.final_noise < 0:
            raise ValueError(f"final_noise must be >= 0, got {self.final_noise}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"mask_schedule must be one of {MASK_SCHEDULES}, got {self.mask_schedule!r}")


@dataclass
class NextXSamplerConfig(_Guidance):
    """Next-X (xAR) sampling: one entity (token, cell, scale or image) per step, integrated from noise
    by the transformer denoiser's velocity (or, ``denoiser="head"``, by the per-token head sampler).

    Args:
        steps: flow (or respaced DDPM) steps per entity.
        method: ``auto`` (Euler for flow models, DDPM for a diffusion head), ``euler``,
            ``euler-maruyama`` (transformer denoiser or flow head) or ``ddpm`` (diffusion head only).
        temperature: initial-noise (and SDE-noise) temperature.
        diffusion_scale: SDE noise scale of Euler-Maruyama.
        cfg_scale, cfg_schedule: guidance; ``linear`` ramps from 1 to ``cfg_scale`` over the entities.
    """

    steps: int = 25
    method: str = "auto"
    temperature: float = 1.0
    diffusion_scale: float = 1.0
    cfg_scale: float = 1.0
    cfg_schedule: str = "linear"

    def __post_init__(self) -> None:
        _check_token_options(self)
        _check_head_options(self)


SAMPLER_CONFIGS: dict[str, type] = {
    "raster": SamplerConfig,
    "next-scale": NextScaleSamplerConfig,
    "maskgit": MaskGITSamplerConfig,
    "mar": MARSamplerConfig,
    "next-x": NextXSamplerConfig,
}


def sampler_kind(config) -> str:
    """The kind name of a sampler config instance."""
    for kind, cls in SAMPLER_CONFIGS.items():
        if type(config) is cls:
            return kind
    raise ValueError(f"{type(config).__name__} is not a sampler config")


def sampler_config_to_dict(config) -> dict:
    """``config``'s fields plus its ``"kind"`` (what ``extra["sampling"]`` stores)."""
    return {"kind": sampler_kind(config), **asdict(config)}


def sampler_config_from_dict(data: dict | None, default_kind: str = "raster"):
    """Rebuild a sampler config; a dict without ``"kind"`` is a ``default_kind`` config (older
    checkpoints stored the raster `SamplerConfig` fields only). Unknown fields raise ValueError."""
    data = dict(data or {})
    kind = data.pop("kind", default_kind)
    if kind not in SAMPLER_CONFIGS:
        raise ValueError(f"unknown sampler kind {kind!r}; choose one of {sorted(SAMPLER_CONFIGS)}")
    cls = SAMPLER_CONFIGS[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(known)}")
    return cls(**data)
