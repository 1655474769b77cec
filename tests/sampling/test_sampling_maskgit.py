"""MaskGIT decoding unmasks exactly the scheduled number of tokens per iteration."""

import math

import pytest
import torch

from artok.generators.maskgit.sample import remask_least_confident
from artok.sampling import MaskGITSamplerConfig, mask_ratio, masked_counts
from artok.zoo import sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("schedule", ["cosine", "linear", "square", "sqrt"])
@pytest.mark.parametrize("seq_len,iterations", [(9, 1), (9, 4), (9, 9), (256, 8), (49, 12)])
def test_masked_counts(schedule, seq_len, iterations):
    counts = masked_counts(seq_len, iterations, schedule)
    assert len(counts) == iterations and counts[-1] == 0
    assert all(a > b for a, b in zip([seq_len, *counts], counts))  # every iteration commits >= 1 token
    if schedule == "cosine" and seq_len == 256:
        expected = [math.floor(256 * math.cos(math.pi / 2 * (t + 1) / 8)) for t in range(8)]
        assert counts == expected  # no clamping needed: exactly MaskGIT's floor(L * cos(...))


def test_mask_ratio_endpoints():
    for schedule in ("cosine", "linear", "square", "sqrt"):
        assert abs(mask_ratio(0.0, schedule) - 1) < 1e-9 and abs(mask_ratio(1.0, schedule)) < 1e-9
    with pytest.raises(ValueError, match="iterations"):
        masked_counts(4, 5)


@pytest.mark.parametrize("config", [
    MaskGITSamplerConfig(iterations=4),
    MaskGITSamplerConfig(iterations=9, mask_schedule="linear", choice_temperature=0.0),
    MaskGITSamplerConfig(iterations=3, cfg_scale=3.0, cfg_schedule="linear", top_k=5),
])
def test_sampler_follows_schedule(zoo_generator, config):
    generator = zoo_generator("maskgit")
    tokens = sample(generator, torch.tensor([0, 1, 2]), config, torch.Generator().manual_seed(0))
    assert tokens.spec == generator.spec and tokens.ids.shape == (3, 9)
    scheduled = masked_counts(9, config.iterations, config.mask_schedule)
    assert tokens.extras["masked_per_step"] == scheduled
    assert tokens.ids.min() >= 0 and tokens.ids.max() < 17


def test_remask_keeps_the_most_confident():
    confidence = torch.tensor([[0.5, float("inf"), -1.0, 2.0, 0.0]])
    assert remask_least_confident(confidence, 2).tolist() == [[False, False, True, False, True]]
    assert not remask_least_confident(confidence, 0).any()


def test_deterministic_in_seed(zoo_generator):
    generator = zoo_generator("maskgit")
    labels = torch.tensor([1, 1, 1, 1])
    config = MaskGITSamplerConfig(iterations=3)
    a = sample(generator, labels, config, torch.Generator().manual_seed(5)).ids
    b = sample(generator, labels, config, torch.Generator().manual_seed(5)).ids
    c = sample(generator, labels, config, torch.Generator().manual_seed(6)).ids
    assert torch.equal(a, b) and not torch.equal(a, c)
