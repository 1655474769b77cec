"""Next-scale sampling: the per-scale KV cache gives exactly the tokens of the recompute reference."""

import pytest
import torch

from artok.generators.next_scale.sample import sample_next_scale
from artok.sampling import NextScaleSamplerConfig, cfg_scale_at
from artok.tokens import Tokens
from artok.zoo import sample

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = [
    NextScaleSamplerConfig(cfg_schedule="constant"),
    NextScaleSamplerConfig(temperature=1.3, top_k=5),
    NextScaleSamplerConfig(top_p=0.8, cfg_scale=3.0),
    NextScaleSamplerConfig(cfg_scale=2.5, cfg_schedule="linear", top_k=8, top_p=0.9, temperature=0.9),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"t{c.temperature}-k{c.top_k}-p{c.top_p}-cfg{c.cfg_scale}{c.cfg_schedule[0]}")
@pytest.mark.parametrize("seed", [0, 1])
def test_cached_equals_recompute(zoo_generator, config, seed):
    generator = zoo_generator("next-scale")
    labels = torch.tensor([0, 1, 2, 3, 1])
    cached = sample_next_scale(generator, labels, config, torch.Generator().manual_seed(seed), use_cache=True)
    recomputed = sample_next_scale(generator, labels, config, torch.Generator().manual_seed(seed), use_cache=False)
    assert isinstance(cached, Tokens) and cached.spec == generator.spec
    assert cached.ids.shape == (5, 1 + 4 + 9 + 16)
    assert torch.equal(cached.ids, recomputed.ids)
    assert all(block.attention.kv_cache is None for block in generator.blocks)


def test_dispatch_and_decode(zoo_generator):
    generator = zoo_generator("next-scale")
    tokens = sample(generator, torch.tensor([0, 1]), NextScaleSamplerConfig(cfg_scale=2.0), torch.Generator().manual_seed(0))
    latents = generator.scale_quantizer.ids_to_codes(tokens.ids)
    assert latents.shape == (2, 4, 4, 4)


def test_cfg_ramps_across_scales():
    scales = [cfg_scale_at(k, 4, 3.0, "linear") for k in range(4)]
    assert scales[0] == 1.0 and scales[-1] == 3.0 and scales == sorted(scales)
