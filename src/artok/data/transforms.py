"""Image transforms shared by the dataset loaders: center crop, resize, channel conversion.

All functions take and return uint8 ``N x C x H x W`` tensors, so every loader resamples the same
way: bilinear with antialiasing (a proper low-pass filter when shrinking), computed in float32 and
rounded once at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R 601-2 luma weights, the ones Pillow uses for its "L" mode, so a colour image converted here
# and one converted by Pillow agree.
_LUMA = (0.299, 0.587, 0.114)

# Resize in chunks so that 70,000 MNIST images upscaled to 64 x 64 do not need one huge float copy.
_CHUNK = 4096


def center_crop(images: torch.Tensor, aspect: float) -> torch.Tensor:
    """Largest centered crop of ``N x C x H x W`` images whose width / height is ``aspect``."""
    height, width = images.shape[-2:]
    if width > round(height * aspect):
        new_height, new_width = height, max(1, round(height * aspect))
    else:
        new_height, new_width = max(1, round(width / aspect)), width
    top = (height - new_height) // 2
    left = (width - new_width) // 2
    return images[..., top : top + new_height, left : left + new_width]


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fit uint8 ``N x C x H x W`` images to ``size = (height, width)``.

    Images whose aspect ratio differs from the target are center-cropped to it first, so nothing is
    stretched. Resampling is bilinear with antialiasing; an image already at ``size`` is returned
    unchanged (no resampling, bit-exact).
    """
    height, width = size
    if tuple(images.shape[-2:]) == (height, width):
        return images
    images = center_crop(images, width / height)
    if tuple(images.shape[-2:]) == (height, width):
        return images.contiguous()
    chunks = []
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].float()
        chunk = F.interpolate(chunk, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(chunk.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(chunks)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 ``N x C x H x W`` images between 1 (grey) and 3 (RGB) channels.

    Grey -> RGB replicates the channel; RGB -> grey uses the ITU-R 601-2 luma weights.
    """
    current = images.shape[1]
    if current == channels:
        return images
    if current == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if current == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        grey = (images.float() * weights).sum(dim=1, keepdim=True)
        return grey.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {current}-channel images to {channels} channels")
