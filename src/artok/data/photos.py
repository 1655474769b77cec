"""Real photographs bundled with scikit-image, for evaluating tokenizers on natural images.

Only images shipped inside the scikit-image package are used (those `skimage.data` reads without
the optional ``pooch`` download); any that a scikit-image version no longer bundles are skipped.
Each is center-cropped to a square (its short side) and resized to ``image_size`` (256 by default)
with antialiased bilinear resampling; grey photographs are replicated to 3 channels.

This is an evaluation set: it has no train split; "test" and "all" both return every photograph.
The single class is ``"photo"`` and all labels are 0.
"""

from __future__ import annotations

import numpy as np
import torch

from artok.data.errors import DatasetError
from artok.data.source import ImageSource
from artok.data.transforms import convert_channels, resize

DEFAULT_IMAGE_SIZE = 256

# Natural photographs (people, objects, animals, textures, microscopy, astronomy), in a fixed order.
PHOTO_NAMES = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "hubble_deep_field",
    "immunohistochemistry", "retina", "cell", "grass", "gravel", "brick",
)  # fmt: skip


def _read(name: str) -> np.ndarray | None:
    """One photograph as ``H x W x 3`` uint8, or None when this scikit-image does not bundle it."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        return None
    try:
        image = np.asarray(loader())
    except (ModuleNotFoundError, OSError, ValueError):
        # Not bundled in this version: reading it would need pooch and a download, which we never do.
        return None
    if image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        image = image[:, :, None]
    return image[:, :, :3]


def load_photos(image_size: int = DEFAULT_IMAGE_SIZE) -> ImageSource:
    """Every bundled photograph as ``N x 3 x image_size x image_size`` uint8."""
    images = []
    for name in PHOTO_NAMES:
        image = _read(name)
        if image is None:
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
        images.append(resize(convert_channels(tensor, 3), (image_size, image_size)))
    if not images:
        raise DatasetError("no bundled photographs found in scikit-image; reinstall it with `pip install scikit-image`")
    images = torch.cat(images)
    return ImageSource(
        images=images,
        labels=torch.zeros(images.shape[0], dtype=torch.int64),
        class_names=["photo"],
        test_mask=None,
    )
