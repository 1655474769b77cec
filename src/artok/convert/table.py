"""The converter table: one row per published checkpoint format that ``artok convert`` reads.

A row names the format (``artok convert NAME FILE OUT``), the files it reads, what it writes, the
function that does it (``"module:function"``, imported only when that format runs, so listing the
table imports no model) and the ``artok convert`` options it takes. The function is
``convert(path, **options) -> Converted``; the CLI checks the output folder, calls it, saves the
model with `artok.hub.save_pretrained` and prints the summary. Adding a format is adding a row:

    register_converter(Converter("var", "VAR var_d16.pth .. var_d30.pth", "generator",
                                 "artok.convert.var:convert_file", options=("vae",)))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Converted:
    """What a converter returns: the artok model, the ``extra`` of its config.json (sampling defaults,
    provenance) and a one-line summary of what was found (layers, widths, vocabulary ...)."""

    model: torch.nn.Module
    summary: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Converter:
    """One format. ``options`` are ``artok convert`` option names (``grid``, ``num_heads``,
    ``image_size`` ...) passed to ``target`` as keyword arguments when given."""

    name: str
    reads: str
    writes: str
    target: str
    options: tuple[str, ...] = ()

    def function(self) -> Callable[..., Converted]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


CONVERTERS: dict[str, Converter] = {}


def register_converter(converter: Converter) -> Converter:
    if converter.writes not in ("generator", "tokenizer"):
        raise ValueError(f"a converter writes a generator or a tokenizer, not {converter.writes!r}")
    CONVERTERS[converter.name] = converter
    return converter


register_converter(Converter(
    "llamagen", "LlamaGen class-conditional GPT c2i_{B,L,XL,XXL,3B}_{256,384}.pt (FoundationVision/LlamaGen)",
    "generator", "artok.convert.llamagen:convert_file", options=("grid", "num_heads")))
register_converter(Converter(
    "llamagen-vq", "LlamaGen VQ tokenizer vq_ds16_c2i.pt / vq_ds8_c2i.pt (key 'model'; FoundationVision/LlamaGen)",
    "tokenizer", "artok.convert.llamagen_vq:convert_file", options=("image_size",)))
register_converter(Converter(
    "mar-vae", "MAR / LDM KL autoencoder kl16.ckpt (key 'model' or 'state_dict'; LTH14/mar, CompVis/latent-diffusion)",
    "tokenizer", "artok.convert.ldm_kl:convert_file", options=("image_size", "latent_scale")))
register_converter(Converter(
    "var-vae", "VAR multi-scale VQVAE vae_ch160v4096z32.pth (FoundationVision/VAR)",
    "tokenizer", "artok.convert.var_vae:convert_file", options=("image_size", "patch_nums")))
register_converter(Converter(
    "var", "VAR transformer var_d16.pth .. var_d30.pth (FoundationVision/VAR; needs its VAE: --vae)",
    "generator", "artok.convert.var:convert_file", options=("vae",)))
register_converter(Converter(
    "mar", "MAR generator checkpoint-last.pth of mar_base/large/huge (keys 'model' / 'model_ema'; LTH14/mar)",
    "generator", "artok.convert.mar:convert_file", options=("num_heads", "weights")))
register_converter(Converter(
    "titok", "TiTok tokenizer tokenizer_titok_{l32,b64,s128}.bin or its model.safetensors (bytedance/1d-tokenizer; "
    "a stage-1 file needs --pixel-decoder maskgit-vqgan-imagenet-f16-256.bin)",
    "tokenizer", "artok.convert.titok:convert_file", options=("num_heads", "pixel_decoder")))
register_converter(Converter(
    "maskgit-vqgan", "MaskGIT VQGAN maskgit-vqgan-imagenet-f16-256.bin (bytedance/1d-tokenizer, open-muse's names)",
    "tokenizer", "artok.convert.titok:convert_vqgan_file", options=("image_size",)))
