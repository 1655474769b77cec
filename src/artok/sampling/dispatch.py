"""One entry point for every generator: ``sample(generator, labels, config, rng) -> Tokens``.

The loop is chosen by the generator's registered ``model_type`` (no import of the generator
classes, so sampling never depends on model code):

==============  ============================  =========================================
model_type      sampler config                loop
==============  ============================  =========================================
raster          `SamplerConfig`               `sample_raster` (categorical head) or
                                              `sample_raster_with_head` (bitwise, dimwise)
next_scale      `NextScaleSamplerConfig`      `sample_next_scale`
maskgit         `MaskGITSamplerConfig`        `sample_maskgit`
mar             `MARSamplerConfig`            `sample_mar`
next_x          `NextXSamplerConfig`          `sample_next_x`
==============  ============================  =========================================

``config=None`` uses the defaults stored with the checkpoint (``generator.extra["sampling"]``), else
the kind's defaults.

``engine="auto"`` (the default) samples raster, next-scale and MaskGIT generators with a categorical
head through their fast engines (`SamplingEngine`, `NextScaleEngine`, `MaskGITEngine`: bf16,
compiled, CUDA graphs) when
the generator is on CUDA; engines are kept on the generator per batch size, so compilation and
graph capture happen once. Elsewhere, and with ``engine=False``, the plain loops run (on CPU the
engines would return the same tokens at the same speed). MAR's head loop is captured on CUDA by the
plain loop itself (`HeadSampler`).
"""

from __future__ import annotations

from dataclasses import fields, replace

import torch

from artok.sampling.configs import SAMPLER_CONFIGS, sampler_config_from_dict, sampler_kind
from artok.sampling.loops import sample_raster
from artok.sampling.masked import sample_maskgit
from artok.sampling.mar import sample_mar
from artok.sampling.next_scale import sample_next_scale
from artok.sampling.next_x import sample_next_x
from artok.sampling.raster_heads import sample_raster_with_head
from artok.tokens import Tokens

#: registered ``model_type`` -> sampler kind
KIND_OF_MODEL = {"raster": "raster", "next_scale": "next-scale", "maskgit": "maskgit", "mar": "mar", "next_x": "next-x"}


def sampler_kind_for(generator) -> str:
    """The sampler kind a generator needs (from its ``model_type``)."""
    model_type = getattr(generator, "model_type", None)
    if model_type not in KIND_OF_MODEL:
        raise ValueError(f"no sampler for {type(generator).__name__} (model_type {model_type!r}); known: {sorted(KIND_OF_MODEL)}")
    return KIND_OF_MODEL[model_type]


def default_sampler_config(generator):
    """The generator's stored sampling defaults, else its kind's defaults."""
    kind = sampler_kind_for(generator)
    stored = getattr(generator, "extra", {}).get("sampling")
    if stored:
        config = sampler_config_from_dict(stored, default_kind="raster")
        if sampler_kind(config) == kind:
            return config
    return SAMPLER_CONFIGS[kind]()


def sampler_config_for(generator, stored: dict | None = None, overrides: dict | None = None):
    """A config of the generator's kind: ``stored`` (a dict, e.g. ``extra["sampling"]``; None: the
    generator's defaults) with ``overrides`` (None values are skipped). An override that the kind does
    not have raises ValueError naming the kind."""
    kind = sampler_kind_for(generator)
    if stored is None:
        config = default_sampler_config(generator)
    else:
        config = sampler_config_from_dict(stored, default_kind=kind)
        if sampler_kind(config) != kind:
            raise ValueError(f"stored sampling defaults are for {sampler_kind(config)!r}, but the generator needs {kind!r}")
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"sampling option(s) {unknown} do not apply to {kind} sampling (options: {sorted(known)})")
    return replace(config, **overrides)


#: kinds with a fast engine (categorical heads): `SamplingEngine`, `NextScaleEngine`, `MaskGITEngine`
ENGINE_KINDS = ("raster", "next-scale", "maskgit")


class _EngineCache(dict):
    """Engines kept on a generator (``(kind, batch, guided) -> engine``); a copy of the generator
    starts without them (an engine holds compiled code and graphs tied to the original's weights)."""

    def __deepcopy__(self, memo) -> "_EngineCache":
        return _EngineCache()


def weights_version(generator) -> tuple:
    """Where every weight lives and how often it was modified in place (``Tensor._version``): it
    changes when a training step, ``load_state_dict`` or a move touches any weight."""
    return tuple((p.data_ptr(), p._version) for p in generator.parameters())


def cached_engine(generator, kind: str, batch_size: int, guided: bool):
    """The generator's `SamplingEngine` (raster) / `NextScaleEngine` (next-scale) / `MaskGITEngine`
    for this batch size, built on first use with the device defaults and rebuilt when the weights changed (an
    engine samples from a bf16 copy made when it was built)."""
    cache = generator.__dict__.setdefault("_artok_engines", _EngineCache())
    key, version = (kind, batch_size, guided), weights_version(generator)
    if key not in cache or cache[key][0] != version:
        if kind == "raster":
            from artok.sampling.engine import SamplingEngine as engine_class
        elif kind == "next-scale":
            from artok.sampling.next_scale_engine import NextScaleEngine as engine_class
        else:
            from artok.sampling.maskgit_engine import MaskGITEngine as engine_class
        cache[key] = (version, engine_class(generator, batch_size, guidance=guided))
    return cache[key][1]


def uses_engine(generator, kind: str, engine: bool | str) -> bool:
    """Whether `sample` runs ``generator`` through a fast engine (see the module docstring)."""
    if engine not in (True, False, "auto"):
        raise ValueError(f"engine must be True, False or 'auto', got {engine!r}")
    eligible = kind in ENGINE_KINDS and getattr(generator.config, "head", "categorical") == "categorical"
    if engine is True and not eligible:
        raise ValueError(f"no fast engine for {kind!r} generators with a {getattr(generator.config, 'head', None)!r} head")
    on_cuda = next(generator.parameters()).device.type == "cuda"
    return eligible and (engine is True or (engine == "auto" and on_cuda))


@torch.no_grad()
def sample(generator, labels: torch.Tensor, config=None, rng: torch.Generator | None = None, *,
           engine: bool | str = "auto") -> Tokens:
    """Sample one token sequence per label with the loop that fits ``generator``.

    ``config``: a sampler config of the generator's kind, a dict (``extra["sampling"]`` style), or
    None for the generator's defaults. ``rng``: the only source of randomness. ``engine``: use the
    kind's fast engine (``"auto"``: on CUDA; see the module docstring)."""
    kind = sampler_kind_for(generator)
    if config is None:
        config = default_sampler_config(generator)
    elif isinstance(config, dict):
        config = sampler_config_from_dict(config, default_kind=kind)
    if sampler_kind(config) != kind:
        raise ValueError(
            f"a {type(generator).__name__} samples with {SAMPLER_CONFIGS[kind].__name__}, got {type(config).__name__}"
        )
    if uses_engine(generator, kind, engine):
        return cached_engine(generator, kind, labels.shape[0], config.uses_cfg).sample(labels, config, rng)
    if kind == "raster":
        if generator.config.head == "categorical":
            return sample_raster(generator, labels, config, rng)
        return sample_raster_with_head(generator, labels, config, rng)
    loops = {"next-scale": sample_next_scale, "maskgit": sample_maskgit, "mar": sample_mar, "next-x": sample_next_x}
    return loops[kind](generator, labels, config, rng)


@torch.no_grad()
def sample_speculative(generator, draft, labels: torch.Tensor, config=None, rng: torch.Generator | None = None,
                       draft_length: int = 4):
    """Exact speculative sampling with a smaller ``draft`` of the same kind: raster generators with a
    categorical head use `artok.sampling.speculative.speculative_sample` (``draft_length`` tokens per
    target pass), MAR uses `artok.sampling.continuous_speculative.speculative_sample_mar`
    (``draft_length`` MAR iterations per target pass; needs ``config.final_noise > 0``). The output law
    is the plain sampler's. Returns a `SpeculativeOutput` (tokens and acceptance statistics); other
    kinds raise ValueError."""
    from artok.sampling.continuous_speculative import speculative_sample_mar
    from artok.sampling.speculative import speculative_sample

    kind = sampler_kind_for(generator)
    if sampler_kind_for(draft) != kind:
        raise ValueError(f"the draft samples as {sampler_kind_for(draft)!r}, the target as {kind!r}; use a draft of the same kind")
    if config is None:
        config = default_sampler_config(generator)
    elif isinstance(config, dict):
        config = sampler_config_from_dict(config, default_kind=kind)
    if kind == "raster" and generator.config.head == "categorical" and draft.config.head == "categorical":
        return speculative_sample(generator, draft, labels, config, rng, num_draft=draft_length)
    if kind == "mar":
        return speculative_sample_mar(generator, draft, labels, config, draft_iterations=draft_length, rng=rng)
    raise ValueError(
        f"speculative sampling is implemented for raster generators with a categorical head and for MAR, not {kind!r} "
        f"({type(generator).__name__})"
    )
