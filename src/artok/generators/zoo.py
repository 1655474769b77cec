"""Build any generator of the zoo by its kind name for a tokenizer's tokens (what the CLI's
``artok train-generator --generator KIND`` and the benchmarks call)."""

from __future__ import annotations

from dataclasses import fields

import torch

from artok.generators.base import Generator
from artok.generators.mar import MARConfig, MARGenerator
from artok.generators.masked import MaskGITConfig, MaskGITGenerator
from artok.generators.next_scale import NextScaleConfig, NextScaleGenerator
from artok.generators.next_x import NextXConfig, NextXGenerator
from artok.generators.raster import RasterConfig, RasterGenerator
from artok.tokens import Tokens
from artok.typed_config import check_field, type_hints

GENERATOR_KINDS = ("raster", "next-scale", "maskgit", "mar", "next-x", "dimwise", "bitwise")
_RASTER_HEADS = {"raster": "categorical", "dimwise": "dimwise", "bitwise": "bitwise"}
_CONFIGS = {
    "raster": RasterConfig, "dimwise": RasterConfig, "bitwise": RasterConfig, "next-scale": NextScaleConfig,
    "maskgit": MaskGITConfig, "mar": MARConfig, "next-x": NextXConfig,
}


def _checked_options(kind: str, options: dict) -> dict:
    config_class = _CONFIGS[kind]
    known = {f.name for f in fields(config_class)} - {"token_spec", "quantizer"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{kind} generator has no option(s) {unknown}; options: {sorted(known)} "
                         f"(see artok options {kind})")
    hints = type_hints(config_class)
    for name, value in options.items():
        if name in hints:
            check_field(name, value, hints[name], f"{kind} generator options")
    return options


def token_scale_for(tokens: Tokens) -> float:
    """``1 / std`` of continuous token values (MAR's latent scale factor, estimated from data)."""
    values = tokens.values[: min(tokens.batch_size, 4096)].float()
    return float(1.0 / values.std().clamp_min(1e-6))


def build_generator(kind: str, tokenizer, num_classes: int, tokens: Tokens | None = None, **options) -> Generator:
    """A fresh ``kind`` generator for ``tokenizer``'s tokens.

    Args:
        kind: one of `GENERATOR_KINDS`.
        tokenizer: the tokenizer (its ``spec``; next-scale also copies its quantizer).
        num_classes: class count of the dataset.
        tokens: training tokens; continuous generators estimate ``token_scale`` from them unless
            it is given.
        options: fields of the kind's config (``dim``, ``depth``, ``num_heads``, ...). For MAR,
            ``depth`` means ``encoder_depth``.
    Raises:
        artok.generators.IncompatibleTokensError: the tokenizer's tokens do not fit ``kind`` (the message names
            what would).
    """
    if kind not in GENERATOR_KINDS:
        raise ValueError(f"unknown generator kind {kind!r}; choose one of {', '.join(GENERATOR_KINDS)}")
    options = dict(options)
    spec = tokenizer.spec
    if kind == "mar" and "depth" in options:
        options["encoder_depth"] = options.pop("depth")
    if kind in ("mar", "next-x") and "token_scale" not in options and tokens is not None and tokens.values is not None:
        options["token_scale"] = token_scale_for(tokens)
    if kind in _RASTER_HEADS:
        options.setdefault("head", _RASTER_HEADS[kind])
    options = _checked_options(kind, options)
    try:
        return _build(kind, tokenizer, spec, num_classes, options)
    except (TypeError, KeyError, IndexError, ZeroDivisionError) as error:  # a value the config checks missed
        raise ValueError(f"{kind} generator options: {' '.join(str(error).split())}") from None


def _build(kind: str, tokenizer, spec, num_classes: int, options: dict) -> Generator:
    if kind in _RASTER_HEADS:
        return RasterGenerator(RasterConfig(token_spec=spec.to_dict(), num_classes=num_classes, **options))
    if kind == "next-scale":
        return NextScaleGenerator.from_tokenizer(tokenizer, num_classes=num_classes, **options)
    if kind == "maskgit":
        return MaskGITGenerator(MaskGITConfig(token_spec=spec.to_dict(), num_classes=num_classes, **options))
    if kind == "mar":
        return MARGenerator(MARConfig(token_spec=spec.to_dict(), num_classes=num_classes, **options))
    return NextXGenerator(NextXConfig(token_spec=spec.to_dict(), num_classes=num_classes, **options))


def generator_kind(generator: torch.nn.Module) -> str:
    """The CLI kind name of a generator instance."""
    if isinstance(generator, RasterGenerator):
        return {"categorical": "raster", "dimwise": "dimwise", "bitwise": "bitwise"}[generator.config.head]
    for kind, cls in (("next-scale", NextScaleGenerator), ("maskgit", MaskGITGenerator), ("mar", MARGenerator),
                      ("next-x", NextXGenerator)):
        if isinstance(generator, cls):
            return kind
    raise ValueError(f"{type(generator).__name__} is not a zoo generator")
