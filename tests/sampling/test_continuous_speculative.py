"""Continuous speculative decoding: the Gaussian speculative step and the MAR sampler are exact.

Tolerances: moment differences are judged in standard errors of the two sample means (``|z| < 5``
over at most 18 coordinates: a false alarm has probability < 1e-5) and variance ratios by
``|log ratio| < 5 sqrt(2 / n1 + 2 / n2)``; KS tests need ``p > 1e-3``. Each test also checks that it
can fail: the draft's own law is rejected by the same criterion.
"""

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats

from artok.generators.mar.speculative import (
    gaussian_residual,
    speculative_gaussian_step,
    speculative_sample_mar,
)
from artok.sampling import MARSamplerConfig
from artok.zoo import sample

pytestmark = pytest.mark.usefixtures("one_thread")


def _phi(t):
    return 0.5 * math.erfc(-t / math.sqrt(2))


@pytest.mark.parametrize("delta", [0.3, 2.0, 6.0])
@pytest.mark.parametrize("max_tries", [0, 16], ids=["inverse-cdf", "rejection"])
def test_gaussian_step_reproduces_the_target(delta, max_tries):
    g = torch.Generator().manual_seed(int(delta * 10) + max_tries)
    n, std = 20000, 0.5
    mean_q = torch.tensor([0.3, -0.2, 1.0]).expand(n, 3)
    direction = torch.tensor([2.0, 1.0, -2.0]) / 3
    mean_p = mean_q + delta * std * direction
    draft = mean_q + std * torch.randn(n, 3, generator=g)
    out, accepted = speculative_gaussian_step(draft, mean_p, mean_q, std, g, max_tries=max_tries)
    # acceptance rate is 1 - TV(P, Q) = 2 Phi(-delta / 2)
    assert abs(accepted.double().mean().item() - 2 * _phi(-delta / 2)) < 0.015
    se = std / math.sqrt(n)
    assert ((out.mean(0) - mean_p[0]).abs() < 5 * se).all()
    cov = torch.cov(out.T)
    assert torch.allclose(cov, std**2 * torch.eye(3), atol=5 * std**2 * math.sqrt(2 / n))
    # the coordinate along the mean difference is exactly N(u . mean_p, std^2)
    along = ((out - mean_p[0]) @ direction / std).numpy()
    assert stats.kstest(along, "norm").pvalue > 1e-3
    # power: the draft's own law is rejected by the same test
    assert stats.kstest(((draft - mean_p[0]) @ direction / std).numpy(), "norm").pvalue < 1e-3 or delta < 0.5


@pytest.mark.parametrize("max_tries", [0, 64], ids=["inverse-cdf", "rejection"])
def test_residual_has_the_residual_law(max_tries):
    g = torch.Generator().manual_seed(3)
    n, std, delta = 8000, 1.0, 0.8
    mean_q = torch.zeros(n, 2)
    mean_p = torch.tensor([delta, 0.0]).expand(n, 2)
    x = gaussian_residual(mean_p, mean_q, std, g, max_tries=max_tries)
    tv = _phi(delta / 2) - _phi(-delta / 2)

    def cdf(ts):  # residual law of the coordinate along the mean difference, on t > delta / 2
        ts = np.maximum(ts, delta / 2)
        return (tv - (stats.norm.cdf(ts) - stats.norm.cdf(ts - delta))) / tv

    assert stats.kstest(x[:, 0].numpy(), cdf).pvalue > 1e-3
    assert stats.kstest(x[:, 1].numpy(), "norm").pvalue > 1e-3
    assert (x[:, 0] > delta / 2).all()


def _randomised(generator, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in generator.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * scale)
    return generator


def _pair(zoo_generator, perturbation=0.01, **options):
    target = _randomised(zoo_generator("mar", **options), 0, 0.3)
    draft = copy.deepcopy(target)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in draft.parameters():
            param.add_(torch.randn(param.shape, generator=g) * perturbation)
    return target, draft


def _moments_agree(x, reference, tolerance=5.0):
    se = (x.var(0) / x.shape[0] + reference.var(0) / reference.shape[0]).sqrt()
    z = ((x.mean(0) - reference.mean(0)) / se).abs().max().item()
    log_ratio = (x.var(0) / reference.var(0)).log().abs().max().item()
    return z < tolerance and log_ratio < tolerance * math.sqrt(2 / x.shape[0] + 2 / reference.shape[0]), (z, log_ratio)


VARIANTS = {
    "ddpm": ({}, dict(iterations=3, steps=4)),
    "ddpm-cfg-linear": ({}, dict(iterations=3, steps=4, cfg_scale=2.0, cfg_schedule="linear")),
    "flow-euler-maruyama": ({"head": "flow"}, dict(iterations=4, steps=3, method="euler-maruyama")),
    "mae-split": ({"decoder_depth": 1}, dict(iterations=3, steps=3)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mar_speculative_matches_target_moments(zoo_generator, variant):
    options, sampler = VARIANTS[variant]
    target, draft = _pair(zoo_generator, **options)
    config = MARSamplerConfig(final_noise=0.3, **{"cfg_schedule": "constant", **sampler})
    rng = torch.Generator().manual_seed(7)
    outputs, accepted = [], []
    for _ in range(24):
        out = speculative_sample_mar(target, draft, torch.arange(25) % 4, config, draft_iterations=2, rng=rng)
        outputs.append(out.tokens.values.flatten(1))
        accepted.append(out.stats.mean_accepted)
    speculative = torch.cat(outputs)
    plain = sample(target, torch.arange(2000) % 4, config, rng).values.flatten(1)
    ok, detail = _moments_agree(speculative, plain)
    assert ok, f"speculative vs target: max |z| of means, max |log variance ratio| = {detail}"
    # drafts are accepted: rows advance several iterations per target pass (the MAE split advances
    # the whole batch by its shortest accepted prefix, which at 25 rows is one iteration)
    assert sum(accepted) / len(accepted) >= (1.0 if options.get("decoder_depth") else 1.2)
    if variant == "ddpm":  # the test has power: the draft's own law fails it
        own = sample(draft, torch.arange(2000) % 4, config, rng).values.flatten(1)
        assert not _moments_agree(own, plain)[0]


def test_identical_draft_accepts_everything(zoo_generator):
    target, _ = _pair(zoo_generator)
    config = MARSamplerConfig(iterations=6, steps=3, final_noise=0.2)
    out = speculative_sample_mar(target, copy.deepcopy(target), torch.arange(4), config, draft_iterations=2,
                                 rng=torch.Generator().manual_seed(0))
    assert out.stats.acceptance_rate > 0.999
    assert out.stats.target_forwards == 2 and out.stats.mean_accepted == 3.0  # 2 drafts + 1 bonus per pass


def test_bad_pairs_and_configs(zoo_generator):
    target, draft = _pair(zoo_generator)
    labels = torch.arange(2)
    with pytest.raises(ValueError, match="final_noise"):
        speculative_sample_mar(target, draft, labels, MARSamplerConfig(iterations=2, steps=2))
    with pytest.raises(ValueError, match="token_scale"):
        speculative_sample_mar(target, zoo_generator("mar", token_scale=2.0), labels,
                               MARSamplerConfig(iterations=2, steps=2, final_noise=0.1))
    with pytest.raises(ValueError, match="MAR"):
        speculative_sample_mar(target, zoo_generator("next-x"), labels, MARSamplerConfig(iterations=2, steps=2, final_noise=0.1))
    with pytest.raises(ValueError, match="final_noise must be"):
        MARSamplerConfig(final_noise=-1.0)


def test_sample_speculative_dispatches_by_kind(zoo_generator):
    from artok.generators import RasterConfig, RasterGenerator
    from artok.sampling.configs import SamplerConfig
    from artok.tokens import TokenSpec
    from artok.zoo import sample_speculative

    target, draft = _pair(zoo_generator)
    out = sample_speculative(target, draft, torch.arange(3), MARSamplerConfig(iterations=3, steps=2, final_noise=0.1),
                             torch.Generator().manual_seed(0), draft_length=2)
    assert out.tokens.values.shape == (3, 9, 2) and out.stats.target_forwards >= 1
    spec = TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=8).to_dict()
    raster = RasterGenerator(RasterConfig(token_spec=spec, num_classes=4, dim=32, depth=1, num_heads=2)).eval()
    out = sample_speculative(raster, raster, torch.arange(2), SamplerConfig(), torch.Generator().manual_seed(0))
    assert out.tokens.ids.shape == (2, 9) and out.stats.acceptance_rate > 0.99
    with pytest.raises(ValueError, match="same kind"):
        sample_speculative(target, raster, torch.arange(2))
    maskgit = zoo_generator("maskgit")
    with pytest.raises(ValueError, match="not 'maskgit'"):
        sample_speculative(maskgit, maskgit, torch.arange(2))
