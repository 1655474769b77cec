"""MAR sampling: fills every position in the scheduled number of iterations, any continuous head."""

import pytest
import torch

from artok.generators.mar.sample import mar_cfg_scale
from artok.sampling import MARSamplerConfig
from artok.zoo import sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("options,config", [
    ({}, MARSamplerConfig(iterations=4, steps=5)),
    ({"decoder_depth": 1}, MARSamplerConfig(iterations=9, steps=3, cfg_scale=3.0)),
    ({"head": "flow"}, MARSamplerConfig(iterations=3, steps=4, method="euler-maruyama", cfg_scale=2.0, cfg_schedule="constant")),
], ids=["ddpm", "mae-split-cfg", "flow-em"])
def test_returns_tokens_of_the_spec(zoo_generator, options, config):
    generator = zoo_generator("mar", **options)
    tokens = sample(generator, torch.tensor([0, 3]), config, torch.Generator().manual_seed(0))
    assert tokens.spec == generator.spec and tokens.values.shape == (2, 9, 2)
    assert torch.isfinite(tokens.values).all()
    assert (tokens.values.abs().sum(-1) > 0).all()  # every position was generated


def test_deterministic_and_token_scale(zoo_generator):
    generator = zoo_generator("mar", token_scale=2.0)
    config = MARSamplerConfig(iterations=3, steps=3)
    a = sample(generator, torch.tensor([1, 2]), config, torch.Generator().manual_seed(4)).values
    b = sample(generator, torch.tensor([1, 2]), config, torch.Generator().manual_seed(4)).values
    assert torch.equal(a, b)


def test_linear_cfg_rises_with_known_tokens():
    assert mar_cfg_scale(4.0, "linear", 0, 16) == 1.0 and mar_cfg_scale(4.0, "linear", 8, 16) == 2.5
    # MAR floors the count still masked at 1: the last iteration guides with 1 + 3 * 15 / 16, as its code does
    assert mar_cfg_scale(4.0, "linear", 16, 16) == mar_cfg_scale(4.0, "linear", 15, 16) == 1.0 + 3.0 * 15 / 16
    assert mar_cfg_scale(4.0, "constant", 3, 16) == 4.0


def test_bad_method_for_head(zoo_generator):
    with pytest.raises(ValueError, match="ddpm"):
        sample(zoo_generator("mar"), torch.tensor([0]), MARSamplerConfig(iterations=2, steps=2, method="euler"))
