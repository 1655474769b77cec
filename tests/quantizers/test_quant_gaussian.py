"""DiagonalGaussian (KL) and PlainContinuous."""

from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence

from artok.quantizers import (
    ContinuousConfig,
    DiagonalGaussian,
    DiagonalGaussianConfig,
    PlainContinuous,
)


def test_kl_matches_closed_form():
    gaussian = DiagonalGaussian(DiagonalGaussianConfig(dim=3, kl_weight=0.5))
    mean = torch.randn(2, 3, 4, 4)
    logvar = torch.randn(2, 3, 4, 4)
    out = gaussian(torch.cat([mean, logvar], dim=1))
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(out.metrics["kl"], expected)
    torch.testing.assert_close(out.loss, 0.5 * expected)


def test_eval_is_deterministic_and_training_samples():
    gaussian = DiagonalGaussian(DiagonalGaussianConfig(dim=2))
    mean, logvar = torch.randn(4, 2, 6), torch.zeros(4, 2, 6)
    z = torch.cat([mean, logvar], dim=1)
    gaussian.eval()
    assert torch.equal(gaussian(z).quantized, mean) and torch.equal(gaussian(z).quantized, gaussian(z).quantized)
    gaussian.train()
    torch.manual_seed(0)
    sample = gaussian(z).quantized
    torch.manual_seed(0)
    torch.testing.assert_close(sample, mean + torch.randn_like(mean))
    no_sampling = DiagonalGaussian(DiagonalGaussianConfig(dim=2, sample=False)).train()
    assert torch.equal(no_sampling(z).quantized, mean)


def test_logvar_is_clamped():
    gaussian = DiagonalGaussian(DiagonalGaussianConfig(dim=1))
    mean, logvar = gaussian.split(torch.tensor([[[0.0], [100.0]]]))
    assert logvar.item() == 20.0
    _, logvar = gaussian.split(torch.tensor([[[0.0], [-100.0]]]))
    assert logvar.item() == -30.0


def test_plain_continuous_bounds():
    z = torch.randn(2, 4, 3) * 5
    assert torch.equal(PlainContinuous(ContinuousConfig(dim=4))(z).quantized, z)
    l2 = PlainContinuous(ContinuousConfig(dim=4, bound="l2"))(z).quantized
    torch.testing.assert_close(l2.norm(dim=1), torch.ones(2, 3))
    tanh = PlainContinuous(ContinuousConfig(dim=4, bound="tanh"))(z).quantized
    assert tanh.abs().max() <= 1
    torch.testing.assert_close(tanh, torch.tanh(z))
