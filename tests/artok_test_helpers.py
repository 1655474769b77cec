"""Tiny models and data the tests of several folders share (importable: ``pythonpath = tests``)."""

from __future__ import annotations

from dataclasses import replace

import torch

from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokens import Tokens, TokenSpec


def tiny_tokenizer(quantizer: str, options: dict, latent_dim: int = 8) -> CNNTokenizer:
    """An untrained 8x8 -> 4x4 CNN tokenizer with any quantizer."""
    config = CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=latent_dim,
                                quantizer=quantizer, quantizer_options=options)
    return CNNTokenizer(config).eval()


def tiny_dar_tokenizer(**options):
    """An untrained 8x8 D-AR tokenizer: 8 VQ tokens in 4 groups, 4 Euler steps (eval mode)."""
    from artok.tokenizers.dar import DARTokenizer, DARTokenizerConfig

    config = DARTokenizerConfig(**{"image_size": 8, "patch_size": 2, "dim": 32, "encoder_depth": 1, "decoder_depth": 1,
                                   "context_depth": 1, "num_heads": 2, "num_latent_tokens": 8, "num_groups": 4,
                                   "latent_dim": 4, "quantizer_options": {"codebook_size": 16, "codebook_dim": 4},
                                   "decode_steps": 4, **options})
    return DARTokenizer(config).eval()


TOKENIZERS = {
    "vq": lambda: tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4}),
    "lfq": lambda: tiny_tokenizer("lfq", {"codebook_dim": 6}),
    "msvq": lambda: tiny_tokenizer("msvq", {"codebook_size": 16, "scales": (1, 2, 4)}),
    "kl": lambda: tiny_tokenizer("kl", {}, latent_dim=4),
    "ptq": lambda: tiny_tokenizer("ptq", {"bits": 2}, latent_dim=3),
    "fsq": lambda: tiny_tokenizer("fsq", {"levels": (4, 4)}, latent_dim=2),
    "bsq": lambda: tiny_tokenizer("bsq", {"codebook_dim": 4}),
    "rvq": lambda: tiny_tokenizer("rvq", {"codebook_size": 8, "num_levels": 2}),
    "continuous": lambda: tiny_tokenizer("continuous", {}, latent_dim=4),
    "dar": lambda: tiny_dar_tokenizer(),
}
#: the tokenizer each generator kind is built on in the tests
NATURAL = {"raster": "vq", "maskgit": "vq", "bitwise": "lfq", "next-scale": "msvq", "mar": "kl", "next-x": "kl",
           "dimwise": "ptq", "rar": "vq", "nar": "vq", "token-shuffle": "vq", "any-order": "vq", "hi-mar": "kl",
           "d-ar": "dar"}
SMALL = {"dim": 32, "depth": 1, "num_heads": 2}
CONTINUOUS_SMALL = {"head_width": 16, "head_depth": 1}


def options_for(kind: str) -> dict:
    """Tiny generator options for ``kind``."""
    return {**SMALL, **(CONTINUOUS_SMALL if kind in ("mar", "next-x", "hi-mar") else {})}


def fast_sampler(generator, cfg_scale: float | None = None, iterations: int = 4, steps: int = 3):
    """The generator's default sampler config with few iterations / head steps (and ``cfg_scale``)."""
    from artok.zoo import default_sampler_config

    config = default_sampler_config(generator)
    for field, value in (("iterations", iterations), ("steps", steps)):
        if hasattr(config, field):
            config = replace(config, **{field: value})
    return config if cfg_scale is None else replace(config, cfg_scale=cfg_scale)


def structured_tokens(spec: TokenSpec, labels: torch.Tensor) -> Tokens:
    """Tokens that depend on the label and position only (plus a little noise for continuous ones),
    so a model can fit them and its loss must fall."""
    positions = torch.arange(spec.seq_len)
    if spec.kind == "continuous":
        base = torch.sin(positions[None, :, None] * 0.7 + labels[:, None, None].float() * 1.3 + torch.arange(spec.channels))
        return Tokens(spec, values=base + 0.05 * torch.randn(labels.shape[0], spec.seq_len, spec.channels))
    ids = (labels[:, None] * 3 + positions[None] * 5) % spec.vocab_size
    if spec.subtokens > 1:
        ids = (ids[..., None] + torch.arange(spec.subtokens)) % spec.vocab_size
    return Tokens(spec, ids=ids)
