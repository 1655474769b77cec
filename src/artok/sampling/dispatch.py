"""What the kind table's `artok.zoo.sample` needs from the sampling side: the engines kept per
generator and batch size (rebuilt when the weights change) and which generators an engine can take.

``engine="auto"`` samples raster, next-scale and MaskGIT generators with a categorical head through
their fast engines (`SamplingEngine`, `NextScaleEngine`, `MaskGITEngine`: bf16, compiled, CUDA
graphs) when the generator is on CUDA; engines are kept on the generator per batch size, so
compilation and graph capture happen once. MAR's head loop is captured on CUDA by the plain loop
itself (`HeadSampler`).
"""

from __future__ import annotations


class _EngineCache(dict):
    """Engines kept on a generator (``(kind, batch, guided) -> engine``); a copy of the generator
    starts without them (an engine holds compiled code and graphs tied to the original's weights)."""

    def __deepcopy__(self, memo) -> "_EngineCache":
        return _EngineCache()


def weights_version(generator) -> tuple:
    """Where every weight lives and how often it was modified in place (``Tensor._version``): it
    changes when a training step, ``load_state_dict`` or a move touches any weight."""
    return tuple((p.data_ptr(), p._version) for p in generator.parameters())


def eligible_for_engine(generator) -> bool:
    """The engines implement categorical heads only."""
    return getattr(generator.config, "head", "categorical") == "categorical"


def cached_engine(generator, kind: str, engine_class, batch_size: int, guided: bool):
    """The generator's ``engine_class`` engine for this kind and batch size, built on first use
    with the device defaults and rebuilt when the weights changed (an engine samples from a bf16
    copy made when it was built)."""
    cache = generator.__dict__.setdefault("_artok_engines", _EngineCache())
    key, version = (kind, batch_size, guided), weights_version(generator)
    if key not in cache or cache[key][0] != version:
        cache[key] = (version, engine_class(generator, batch_size, guidance=guided))
    return cache[key][1]
