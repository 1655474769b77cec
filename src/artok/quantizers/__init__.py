"""Quantizers: one method per file, common `QuantizerOutput`."""

from artok.quantizers.base import Quantizer, QuantizerOutput
from artok.quantizers.vq import VectorQuantizer, VQConfig

QUANTIZERS = {"vq": (VectorQuantizer, VQConfig)}


def build_quantizer(kind: str, **kwargs) -> Quantizer:
    """Build a quantizer by name from its config fields."""
    if kind not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {kind!r}; known: {', '.join(sorted(QUANTIZERS))}")
    cls, config_cls = QUANTIZERS[kind]
    return cls(config_cls(**kwargs))


__all__ = ["QUANTIZERS", "Quantizer", "QuantizerOutput", "VQConfig", "VectorQuantizer", "build_quantizer"]
