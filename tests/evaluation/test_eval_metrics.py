import math

import pytest
import torch

from artok.evaluation import PSNR_CAP_DB, psnr, psnr_per_image, ssim, ssim_per_image
from artok.evaluation.metrics import ssim_window_size


def _images(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_psnr_identical_images_hit_the_documented_cap():
    x = _images(3, 1, 16, 16)
    assert psnr(x, x) == pytest.approx(PSNR_CAP_DB)
    assert PSNR_CAP_DB == pytest.approx(100.0)


def test_psnr_constant_offset_hand_computed():
    # An offset of 0.1 in [0, 1] is 0.2 in [-1, 1]: MSE = 0.01, PSNR = 10 log10(1 / 0.01) = 20 dB.
    x = torch.full((2, 3, 8, 8), -0.5)
    y = x + 0.2
    assert psnr(x, y) == pytest.approx(20.0, abs=1e-5)
    per_image = psnr_per_image(x, y)
    assert per_image.shape == (2,)
    assert torch.allclose(per_image, torch.full((2,), 20.0, dtype=torch.float64), atol=1e-5)


def test_psnr_is_mean_of_per_image_values():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.stack([torch.full((1, 4, 4), 0.2), torch.full((1, 4, 4), 0.02)])  # 20 dB and 40 dB
    assert psnr(x, y) == pytest.approx(30.0)


def test_psnr_clamps_out_of_range_inputs():
    x = torch.ones(1, 1, 4, 4)
    assert psnr(x, x + 5.0) == pytest.approx(PSNR_CAP_DB)


def test_psnr_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_ssim_identical_is_one_for_grey_and_colour_small_images():
    for shape in [(2, 1, 8, 8), (2, 1, 16, 16), (2, 3, 16, 16), (1, 3, 5, 6)]:
        x = _images(*shape)
        assert ssim(x, x) == pytest.approx(1.0)


def test_ssim_decreases_with_noise():
    x = _images(4, 3, 16, 16)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    slightly, heavily = ssim(x, x + 0.05 * noise), ssim(x, x + 0.5 * noise)
    assert 1.0 > slightly > heavily
    assert ssim_per_image(x, x + 0.5 * noise).shape == (4,)


def test_ssim_window_size_fits_small_images():
    assert ssim_window_size(8, 8) == 7
    assert ssim_window_size(16, 16) == 7
    assert ssim_window_size(6, 9) == 5
    assert ssim_window_size(3, 3) == 3
    with pytest.raises(ValueError):
        ssim_window_size(2, 8)
    assert not math.isnan(ssim(_images(1, 1, 4, 4), _images(1, 1, 4, 4, seed=1)))
