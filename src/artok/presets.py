"""Named generator shapes for benchmarks (`artok bench --preset NAME`), with random weights.

===========  ===========  ===================================================================
preset       kind         shape
===========  ===========  ===================================================================
tiny         raster       4x4 grid, vocab 64, width 64, 2 layers (tests, smoke runs)
digits       raster       the demo's generator on ``digits``: 4x4 grid, vocab 128, width 192, 4 layers
gpt-b        raster       LlamaGen GPT-B (https://arxiv.org/abs/2406.06525): 12 layers, width 768,
                          12 heads, SwiGLU 2048, vocab 16384, 16x16 grid (256 tokens), 1000 classes
gpt-l        raster       LlamaGen GPT-L: 24 layers, width 1024, 16 heads, SwiGLU 2816, same tokens
gpt-xl       raster       LlamaGen GPT-XL: 36 layers, width 1280, 20 heads, SwiGLU 3584, same tokens
var-d16      next-scale   VAR-d16 (https://arxiv.org/abs/2404.02905): 16 layers, width 1024,
                          16 heads, vocab 4096, 10 scales 1..16 (680 tokens), 1000 classes
var-d20..30  next-scale   VAR-d20/d24/d30: depth d, width 64d, d heads (as VAR's build_vae_var)
mar-b        mar          MAR-B (https://arxiv.org/abs/2406.11838): 12 + 12 layers, width 768,
                          12 heads, 64 buffer tokens, 16x16x16 continuous tokens, diffusion MLP
                          head 6 x 1024, 1000 classes
===========  ===========  ===================================================================

Each preset also names the sampler settings of the ANCHORS.md measurements (CFG 4 and top-k 2000
for LlamaGen; VAR's top-k 900 / top-p 0.96; MAR's 64 iterations, CFG 2.9, 100 diffusion steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from artok.tokens import TokenSpec

LLAMAGEN_TOKENS = TokenSpec("discrete", "grid", grid=(16, 16), vocab_size=16384)
VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


@dataclass(frozen=True)
class GeneratorPreset:
    """A generator shape: ``kind`` (a `artok.generators.zoo` kind), config fields, sampler settings."""

    name: str
    kind: str
    description: str
    options: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """A randomly initialised generator of this shape, in eval mode on ``device``."""
        with torch.device(device):
            generator = _build(self)
        return generator.eval()

    def sampler_config(self, **overrides):
        """The preset's sampler config (raster `SamplerConfig`, or the kind's config) with overrides."""
        from artok.sampling.configs import SAMPLER_CONFIGS

        kind = "raster" if self.kind == "raster" else self.kind
        options = {**self.sampler, **{k: v for k, v in overrides.items() if v is not None}}
        return SAMPLER_CONFIGS[kind](**options)


def _raster(grid, vocab, classes, dim, depth, heads, hidden=None) -> dict:
    spec = TokenSpec("discrete", "grid", grid=grid, vocab_size=vocab)
    return {"token_spec": spec.to_dict(), "num_classes": classes, "dim": dim, "depth": depth, "num_heads": heads,
            "hidden_dim": hidden, "dropout": 0.0}


PRESETS: dict[str, GeneratorPreset] = {
    preset.name: preset
    for preset in (
        GeneratorPreset("tiny", "raster", "4x4 grid, vocab 64, width 64, 2 layers", _raster((4, 4), 64, 10, 64, 2, 2),
                        {"cfg_scale": 2.0, "top_k": 16}),
        GeneratorPreset("digits", "raster", "the digits demo generator (4x4 grid, vocab 128, width 192, 4 layers)",
                        _raster((4, 4), 128, 10, 192, 4, 4), {"cfg_scale": 3.0}),
        GeneratorPreset("gpt-b", "raster", "LlamaGen GPT-B: 12 layers, width 768, 256 tokens, vocab 16384",
                        _raster((16, 16), 16384, 1000, 768, 12, 12, 2048), {"cfg_scale": 4.0, "top_k": 2000}),
        GeneratorPreset("gpt-l", "raster", "LlamaGen GPT-L: 24 layers, width 1024, 256 tokens, vocab 16384",
                        _raster((16, 16), 16384, 1000, 1024, 24, 16, 2816), {"cfg_scale": 4.0, "top_k": 2000}),
        GeneratorPreset("gpt-xl", "raster", "LlamaGen GPT-XL: 36 layers, width 1280, 256 tokens, vocab 16384",
                        _raster((16, 16), 16384, 1000, 1280, 36, 20, 3584), {"cfg_scale": 4.0, "top_k": 2000}),
        GeneratorPreset("var-d16", "next-scale", "VAR-d16: 16 layers, width 1024, 10 scales, vocab 4096",
                        {"dim": 1024, "depth": 16, "num_heads": 16, "num_classes": 1000},
                        {"cfg_scale": 1.5, "top_k": 900, "top_p": 0.96}),
        GeneratorPreset("var-d20", "next-scale", "VAR-d20: 20 layers, width 1280, 10 scales, vocab 4096",
                        {"dim": 1280, "depth": 20, "num_heads": 20, "num_classes": 1000},
                        {"cfg_scale": 1.5, "top_k": 900, "top_p": 0.96}),
        GeneratorPreset("var-d24", "next-scale", "VAR-d24: 24 layers, width 1536, 10 scales, vocab 4096",
                        {"dim": 1536, "depth": 24, "num_heads": 24, "num_classes": 1000},
                        {"cfg_scale": 1.5, "top_k": 900, "top_p": 0.96}),
        GeneratorPreset("var-d30", "next-scale", "VAR-d30: 30 layers, width 1920, 10 scales, vocab 4096",
                        {"dim": 1920, "depth": 30, "num_heads": 30, "num_classes": 1000},
                        {"cfg_scale": 1.5, "top_k": 900, "top_p": 0.96}),
        GeneratorPreset("mar-b", "mar", "MAR-B: 12+12 layers, width 768, 16x16x16 continuous tokens, diffusion head",
                        {"dim": 768, "encoder_depth": 12, "decoder_depth": 12, "num_heads": 12, "buffer_size": 64,
                         "head_width": 1024, "head_depth": 6, "num_classes": 1000},
                        {"iterations": 64, "cfg_scale": 2.9, "steps": 100}),
        GeneratorPreset("mar-l", "mar", "MAR-L: 16+16 layers, width 1024, 16x16x16 continuous tokens, diffusion head",
                        {"dim": 1024, "encoder_depth": 16, "decoder_depth": 16, "num_heads": 16, "buffer_size": 64,
                         "head_width": 1280, "head_depth": 8, "num_classes": 1000},
                        {"iterations": 64, "cfg_scale": 3.0, "steps": 100}),
    )
}


def get_preset(name: str) -> GeneratorPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _build(preset: GeneratorPreset):
    if preset.kind == "raster":
        from artok.generators import RasterConfig, RasterGenerator

        return RasterGenerator(RasterConfig(**preset.options))
    if preset.kind == "next-scale":
        from dataclasses import asdict

        from artok.generators.next_scale.model import (
            NextScaleConfig,
            NextScaleGenerator,
        )
        from artok.quantizers.multiscale import MultiScaleVQConfig

        quantizer = MultiScaleVQConfig(dim=32, codebook_size=4096, scales=VAR_SCALES)
        spec = TokenSpec("discrete", "scales", scales=tuple((s, s) for s in VAR_SCALES), vocab_size=4096)
        return NextScaleGenerator(NextScaleConfig(token_spec=spec.to_dict(), quantizer=asdict(quantizer), **preset.options))
    if preset.kind == "mar":
        from artok.generators.mar.model import MARConfig, MARGenerator

        spec = TokenSpec("continuous", "grid", grid=(16, 16), channels=16)
        return MARGenerator(MARConfig(token_spec=spec.to_dict(), **preset.options))
    raise ValueError(f"preset {preset.name!r} has unknown kind {preset.kind!r}")
