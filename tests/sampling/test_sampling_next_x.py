"""Next-X sampling: one unit per step with Euler / Euler-Maruyama flow integration."""

import pytest
import torch

from artok.sampling import NextXSamplerConfig, sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("options", [{"unit": "token"}, {"unit": "cell", "cell_size": 2}, {"head": "diffusion"}],
                         ids=["token", "cell-padded", "diffusion-head"])
@pytest.mark.parametrize("method", ["auto", "euler-maruyama"])
def test_returns_tokens_of_the_spec(zoo_generator, options, method):
    generator = zoo_generator("next-x", **options)
    if method == "euler-maruyama" and generator.config.head == "diffusion":
        pytest.skip("a diffusion head samples with ddpm")
    config = NextXSamplerConfig(steps=4, method=method, cfg_scale=2.0)
    tokens = sample(generator, torch.tensor([0, 1, 2]), config, torch.Generator().manual_seed(0))
    assert tokens.spec == generator.spec and tokens.values.shape == (3, 9, 2)
    assert torch.isfinite(tokens.values).all()


def test_deterministic_in_seed(zoo_generator):
    generator = zoo_generator("next-x")
    config = NextXSamplerConfig(steps=3)
    a = sample(generator, torch.tensor([0, 1]), config, torch.Generator().manual_seed(1)).values
    b = sample(generator, torch.tensor([0, 1]), config, torch.Generator().manual_seed(1)).values
    c = sample(generator, torch.tensor([0, 1]), config, torch.Generator().manual_seed(2)).values
    assert torch.equal(a, b) and not torch.equal(a, c)
