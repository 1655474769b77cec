"""Pixel-level reconstruction metrics: PSNR and SSIM.

Both take two batches of images ``B x C x H x W`` in [-1, 1] (artok's image convention), map them
to [0, 1] and compare image by image with a data range of 1. Inputs are clamped to [-1, 1] first,
because that is what the images look like once saved or shown; a decoder that overshoots is not
rewarded or penalised for values nobody can see.

SSIM: Wang et al., "Image quality assessment: from error visibility to structural similarity",
IEEE TIP 2004. Computed with ``skimage.metrics.structural_similarity``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

#: Floor on the mean squared error, so identical images score a finite
#: ``10 * log10(1 / 1e-10) = 100`` dB instead of ``inf`` and batch means stay meaningful.
MSE_FLOOR = 1e-10
#: The PSNR, in dB, that identical images get.
PSNR_CAP_DB = 10.0 * math.log10(1.0 / MSE_FLOOR)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(
            f"expected two B x C x H x W batches of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("expected a non-empty batch")


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] in float64 (so the metrics do not depend on the input dtype)."""
    return (images.detach().to(dtype=torch.float64).clamp(-1.0, 1.0) + 1.0) / 2.0


def psnr_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image pair, in dB.

    Args:
        x, y: ``B x C x H x W`` images in [-1, 1].

    Returns:
        ``B`` float64 tensor (on the inputs' device). Identical images give `PSNR_CAP_DB`
        (100 dB) rather than ``inf``: the MSE is floored at `MSE_FLOOR`.
    """
    _check_pair(x, y)
    mse = (_to_unit_range(x) - _to_unit_range(y)).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the batch of the per-image PSNR in dB (see `psnr_per_image`).

    The mean of per-image PSNRs (not the PSNR of the pooled MSE), as reconstruction papers report.
    """
    return float(psnr_per_image(x, y).mean())


def ssim_window_size(height: int, width: int) -> int:
    """The SSIM window: 7 (skimage's default) or, for smaller images, the largest odd size that fits.

    An 8 x 8 or 16 x 16 image uses 7; a 5 x 6 image uses 5. Images under 3 pixels on a side
    have no valid window.
    """
    side = min(height, width)
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3 x 3 pixels, got {height} x {width}")
    return min(7, side if side % 2 == 1 else side - 1)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each image pair (uniform window, data range 1).

    Args:
        x, y: ``B x C x H x W`` images in [-1, 1]; colour images are compared with the channel
            axis (SSIM averaged over channels), single-channel ones as 2D arrays.

    Returns:
        ``B`` float64 tensor on the CPU; identical images give 1.
    """
    _check_pair(x, y)
    a = _to_unit_range(x).cpu().numpy()
    b = _to_unit_range(y).cpu().numpy()
    window = ssim_window_size(a.shape[2], a.shape[3])
    scores = np.empty(a.shape[0], dtype=np.float64)
    for i in range(a.shape[0]):
        if a.shape[1] == 1:
            scores[i] = structural_similarity(a[i, 0], b[i, 0], win_size=window, data_range=1.0)
        else:
            scores[i] = structural_similarity(a[i], b[i], win_size=window, data_range=1.0, channel_axis=0)
    return torch.from_numpy(scores)


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the batch of the per-image SSIM (see `ssim_per_image`)."""
    return float(ssim_per_image(x, y).mean())
