"""Raster decoding through any head: equals `sample_raster` for the categorical head."""

import pytest
import torch

from artok.generators.raster.head_sample import sample_raster_with_head
from artok.generators.raster.sample import sample_raster
from artok.sampling.configs import SamplerConfig
from artok.zoo import sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("config", [SamplerConfig(), SamplerConfig(top_k=4, temperature=0.8),
                                    SamplerConfig(cfg_scale=3.0, cfg_schedule="linear", top_p=0.9)])
def test_categorical_head_matches_sample_raster(tiny_generator, config):
    labels = torch.tensor([0, 1, 3])
    a = sample_raster(tiny_generator, labels, config, torch.Generator().manual_seed(0))
    b = sample_raster_with_head(tiny_generator, labels, config, torch.Generator().manual_seed(0))
    assert torch.equal(a.ids, b.ids)


@pytest.mark.parametrize("kind,shape", [("bitwise", (3, 9)), ("dimwise", (3, 9, 3))])
def test_other_heads(zoo_generator, kind, shape):
    generator = zoo_generator(kind)
    tokens = sample(generator, torch.tensor([0, 1, 2]), SamplerConfig(cfg_scale=2.0), torch.Generator().manual_seed(0))
    assert tokens.spec == generator.spec and tokens.ids.shape == shape
    assert tokens.ids.min() >= 0 and tokens.ids.max() < generator.spec.vocab_size
