"""`artok.sampling.sample` dispatch and the per-kind sampler configs stored with checkpoints."""

import pytest
import torch

from artok.sampling import (
    MARSamplerConfig,
    MaskGITSamplerConfig,
    NextScaleSamplerConfig,
    NextXSamplerConfig,
    sampler_config_from_dict,
    sampler_config_to_dict,
)
from artok.sampling.configs import SamplerConfig
from artok.zoo import default_sampler_config, sample, sampler_config_for

pytestmark = pytest.mark.usefixtures("one_thread")

ALL = [SamplerConfig(cfg_scale=2.0), NextScaleSamplerConfig(top_k=3), MaskGITSamplerConfig(iterations=5),
       MARSamplerConfig(steps=7, method="ddpm"), NextXSamplerConfig(method="euler-maruyama")]


@pytest.mark.parametrize("config", ALL, ids=lambda c: type(c).__name__)
def test_dict_round_trip(config):
    data = sampler_config_to_dict(config)
    assert "kind" in data
    assert sampler_config_from_dict(data) == config


def test_old_raster_dicts_still_load():
    old = SamplerConfig(cfg_scale=3.0, top_k=10).to_dict()
    assert "kind" not in old
    assert sampler_config_from_dict(old) == SamplerConfig(cfg_scale=3.0, top_k=10)


def test_validation():
    with pytest.raises(ValueError, match="iterations"):
        MaskGITSamplerConfig(iterations=0)
    with pytest.raises(ValueError, match="method"):
        MARSamplerConfig(method="heun")
    with pytest.raises(ValueError, match="no field"):
        sampler_config_from_dict({"kind": "maskgit", "steps": 3})
    with pytest.raises(ValueError, match="unknown sampler kind"):
        sampler_config_from_dict({"kind": "gan"})


def test_defaults_and_overrides(zoo_generator, tiny_generator):
    generator = zoo_generator("maskgit")
    assert default_sampler_config(generator) == MaskGITSamplerConfig()
    generator.extra = {"sampling": sampler_config_to_dict(MaskGITSamplerConfig(iterations=3))}
    assert default_sampler_config(generator).iterations == 3
    config = sampler_config_for(generator, generator.extra["sampling"], {"cfg_scale": 2.0, "top_k": None})
    assert config == MaskGITSamplerConfig(iterations=3, cfg_scale=2.0)
    with pytest.raises(ValueError, match="do not apply to raster"):
        sampler_config_for(tiny_generator, None, {"iterations": 4})
    # an old raster checkpoint without "kind"
    tiny_generator.extra = {"sampling": SamplerConfig(cfg_scale=4.0).to_dict()}
    assert sampler_config_for(tiny_generator, tiny_generator.extra["sampling"], {}) == SamplerConfig(cfg_scale=4.0)


def test_wrong_config_kind_is_refused(zoo_generator, tiny_generator):
    with pytest.raises(ValueError, match="MaskGITSamplerConfig"):
        sample(zoo_generator("maskgit"), torch.tensor([0]), SamplerConfig())
    with pytest.raises(ValueError, match="SamplerConfig"):
        sample(tiny_generator, torch.tensor([0]), MARSamplerConfig())
    tokens = sample(tiny_generator, torch.tensor([0, 1]), {"cfg_scale": 2.0}, torch.Generator().manual_seed(0))
    assert tokens.ids.shape == (2, 9)


@pytest.mark.parametrize("kind", ["raster", "next-scale", "maskgit"])
def test_engine_option(kind, zoo_generator, tiny_generator):
    """``engine=True`` runs the kind's fast engine (same tokens on CPU); a `Pipeline` owns its
    engines, reuses them and rebuilds them after the weights change; nothing is kept on the
    generator, and `sample` never switches to an engine unless asked."""
    import copy

    from artok.pipeline import Pipeline
    from artok.zoo import sample

    generator = tiny_generator if kind == "raster" else zoo_generator(kind)
    labels = torch.tensor([0, 1, 2])
    plain = sample(generator, labels, None, torch.Generator().manual_seed(0))
    fast = sample(generator, labels, None, torch.Generator().manual_seed(0), engine=True)
    assert torch.equal(plain.ids, fast.ids)
    assert "_artok_engines" not in generator.__dict__
    pipeline = Pipeline(generator, None, engine=True)
    assert torch.equal(pipeline.tokens(labels, torch.Generator().manual_seed(0)).ids, plain.ids)
    assert pipeline.engine_used.startswith(kind)
    (first,) = [engine for _, engine in pipeline.engines.engines.values()]
    pipeline.tokens(labels, torch.Generator().manual_seed(1))
    assert [engine for _, engine in pipeline.engines.engines.values()] == [first]  # reused
    with torch.no_grad():
        next(generator.parameters()).add_(0.5)  # a training step, in place
    after = pipeline.tokens(labels, torch.Generator().manual_seed(0))
    assert [engine for _, engine in pipeline.engines.engines.values()] != [first]
    assert torch.equal(after.ids, sample(generator, labels, None, torch.Generator().manual_seed(0)).ids)
    assert "_artok_engines" not in copy.deepcopy(generator).__dict__
    auto = Pipeline(generator, None, engine="auto")
    assert torch.equal(auto.tokens(labels, torch.Generator().manual_seed(0)).ids, after.ids)
    assert auto.engine_used is None  # "auto" means CUDA only
    with pytest.raises(ValueError, match="engine must be"):
        sample(generator, labels, None, engine="yes")


def test_engine_true_refused_for_other_kinds(zoo_generator):
    from artok.zoo import sample

    with pytest.raises(ValueError, match="no fast engine"):
        sample(zoo_generator("mar"), torch.tensor([0]), None, engine=True)
