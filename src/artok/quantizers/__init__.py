"""The quantizer zoo: one method per module, one `QuantizerOutput` for all.

Every quantizer is built from one typed config dataclass. `QUANTIZERS` maps a short kind name to
``(class, config class)``; `build_quantizer` builds from keyword arguments and
`quantizer_from_config` from a JSON-style dict (what ``save_pretrained`` stores, e.g.
``{"kind": quantizer_kind(q), "config": dataclasses.asdict(q.config)}``).
"""

from __future__ import annotations

from typing import Any

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    all_reduce_,
    channels_first,
    channels_last,
    is_distributed,
)
from artok.quantizers.fsq import FiniteScalarQuantizer, FSQConfig
from artok.quantizers.gaussian import (
    ContinuousConfig,
    DiagonalGaussian,
    DiagonalGaussianConfig,
    PlainContinuous,
)
from artok.quantizers.lfq import (
    BinarySphericalQuantizer,
    BSQConfig,
    LFQConfig,
    LookupFreeQuantizer,
    bits_to_ids,
    exact_entropies,
    factorized_entropies,
    ids_to_bits,
)
from artok.quantizers.multiscale import (
    MultiScaleVectorQuantizer,
    MultiScaleVQConfig,
    ScaleFeatures,
)
from artok.quantizers.post_training import (
    PostTrainingQuantizer,
    PostTrainingQuantizerConfig,
    gaussian_bin_boundaries,
    gaussian_bin_centers,
)
from artok.quantizers.residual import ResidualVectorQuantizer, ResidualVQConfig
from artok.quantizers.vq import VectorQuantizer, VQConfig

QUANTIZERS: dict[str, tuple[type[Quantizer], type]] = {
    "vq": (VectorQuantizer, VQConfig),
    "fsq": (FiniteScalarQuantizer, FSQConfig),
    "lfq": (LookupFreeQuantizer, LFQConfig),
    "bsq": (BinarySphericalQuantizer, BSQConfig),
    "rvq": (ResidualVectorQuantizer, ResidualVQConfig),
    "msvq": (MultiScaleVectorQuantizer, MultiScaleVQConfig),
    "kl": (DiagonalGaussian, DiagonalGaussianConfig),
    "continuous": (PlainContinuous, ContinuousConfig),
    "ptq": (PostTrainingQuantizer, PostTrainingQuantizerConfig),
}


def _lookup_kind(kind: str) -> tuple[type[Quantizer], type]:
    if kind not in QUANTIZERS:
        raise ValueError(f"unknown quantizer kind {kind!r}; choose one of {sorted(QUANTIZERS)}")
    return QUANTIZERS[kind]


def build_quantizer(kind: str, **kwargs: Any) -> Quantizer:
    """Build a quantizer by kind name, e.g. ``build_quantizer("fsq", levels=(8, 5, 5, 5))``."""
    from artok.typed_config import build_config

    quantizer_class, config_class = _lookup_kind(kind)
    return quantizer_class(build_config(config_class, kwargs, f"{kind} quantizer options", fixed=("dim",)))


def quantizer_from_config(kind: str, config: dict[str, Any]) -> Quantizer:
    """Rebuild a quantizer from its kind and a JSON-style config dict (lists become tuples in
    the configs' ``__post_init__``). Unknown keys raise a ValueError."""
    quantizer_class, config_class = _lookup_kind(kind)
    known = set(config_class.__dataclass_fields__)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} fields {unknown}; known fields: {sorted(known)}")
    return quantizer_class(config_class(**config))


def quantizer_kind(quantizer: Quantizer) -> str:
    """The registry name of a quantizer instance (the most specific class wins)."""
    for kind, (quantizer_class, _) in QUANTIZERS.items():
        if type(quantizer) is quantizer_class:
            return kind
    raise ValueError(f"{type(quantizer).__name__} is not in the quantizer registry")


__all__ = [
    "QUANTIZERS",
    "BSQConfig",
    "BinarySphericalQuantizer",
    "ContinuousConfig",
    "DiagonalGaussian",
    "DiagonalGaussianConfig",
    "FSQConfig",
    "FiniteScalarQuantizer",
    "LFQConfig",
    "LookupFreeQuantizer",
    "MultiScaleVQConfig",
    "MultiScaleVectorQuantizer",
    "PlainContinuous",
    "PostTrainingQuantizer",
    "PostTrainingQuantizerConfig",
    "Quantizer",
    "QuantizerOutput",
    "ResidualVQConfig",
    "ResidualVectorQuantizer",
    "ScaleFeatures",
    "VQConfig",
    "VectorQuantizer",
    "all_reduce_",
    "bits_to_ids",
    "build_quantizer",
    "channels_first",
    "channels_last",
    "exact_entropies",
    "factorized_entropies",
    "gaussian_bin_boundaries",
    "gaussian_bin_centers",
    "ids_to_bits",
    "is_distributed",
    "quantizer_from_config",
    "quantizer_kind",
]
