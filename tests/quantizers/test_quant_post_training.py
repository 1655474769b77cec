"""Post-training dimension-wise quantization (TokenBridge): Gaussian-quantile bins and centroids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from artok.quantizers import (
    PostTrainingQuantizer,
    PostTrainingQuantizerConfig,
    gaussian_bin_boundaries,
    gaussian_bin_centers,
)
from artok.quantizers.post_training import expected_mse


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_boundaries_are_gaussian_quantiles(bits):
    num_bins = 2**bits
    expected = stats.norm.ppf(np.arange(1, num_bins) / num_bins)
    np.testing.assert_allclose(gaussian_bin_boundaries(bits).numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_centers_are_truncated_normal_means(bits):
    edges = np.concatenate([[-np.inf], stats.norm.ppf(np.arange(1, 2**bits) / 2**bits), [np.inf]])
    expected = stats.truncnorm.mean(edges[:-1], edges[1:])
    np.testing.assert_allclose(gaussian_bin_centers(bits).numpy(), expected, rtol=1e-7, atol=1e-9)


def test_quantize_dequantize_uses_bins_and_centers():
    ptq = PostTrainingQuantizer(PostTrainingQuantizerConfig(dim=3, bits=2))
    # Bin edges at 2 bits: -0.674, 0, 0.674.
    z = torch.tensor([[[-2.0, -0.5, 0.2, 3.0]] * 3])  # 1 x 3 x 4
    out = ptq(z)
    assert out.ids.shape == (1, 4, 3)
    assert out.ids[0, :, 0].tolist() == [0, 1, 2, 3]
    centers = gaussian_bin_centers(2).float()
    torch.testing.assert_close(out.quantized[0, 0], centers)
    assert ptq.codebook_size == 4 and ptq.subtokens == 3


def test_reconstruction_error_decreases_with_bits_and_matches_theory():
    z = torch.randn(1, 4, 50_000, generator=torch.Generator().manual_seed(0))
    errors = []
    for bits in (2, 4, 6, 8):
        ptq = PostTrainingQuantizer(PostTrainingQuantizerConfig(dim=4, bits=bits))
        mse = (ptq(z).quantized - z).pow(2).mean().item()
        # Theory: every bin holds 1/M of the mass; its error is the truncated normal's variance.
        edges = np.concatenate([[-np.inf], stats.norm.ppf(np.arange(1, 2**bits) / 2**bits), [np.inf]])
        theory = stats.truncnorm.var(edges[:-1], edges[1:]).mean()
        assert expected_mse(bits) == pytest.approx(theory, rel=1e-6)
        assert mse == pytest.approx(theory, rel=0.05)
        errors.append(mse)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-3


def test_calibrate_standardises_channels():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(64, 2, 8, 8, generator=generator) * torch.tensor([2.0, 0.5]).view(1, 2, 1, 1)
    latents = latents + torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    ptq = PostTrainingQuantizer(PostTrainingQuantizerConfig(dim=2, bits=3))
    assert not bool(ptq.calibrated)
    ptq.calibrate(list(latents.split(16)))
    assert bool(ptq.calibrated)
    torch.testing.assert_close(ptq.mean, torch.tensor([3.0, -1.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(ptq.std, torch.tensor([2.0, 0.5]), atol=0.05, rtol=0)
    out = ptq(latents)
    # Equal-mass bins: ids close to uniform in each channel.
    for channel in range(2):
        frequency = torch.bincount(out.ids[..., channel].flatten(), minlength=8).float() / out.ids[..., 0].numel()
        torch.testing.assert_close(frequency, torch.full((8,), 1 / 8), atol=0.01, rtol=0)
    torch.testing.assert_close(ptq.ids_to_codes(out.ids), out.quantized)
    restored = PostTrainingQuantizer(PostTrainingQuantizerConfig(dim=2, bits=3))
    restored.load_state_dict(ptq.state_dict())
    assert torch.equal(restored(latents).ids, out.ids)
