"""scikit-learn's handwritten digits: 1,797 real 8 x 8 images of the digits 0-9, bundled with
scikit-learn (no download), so every test and demo has real data on any machine.

Source: the UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998), via
`sklearn.datasets.load_digits`. Pixel values 0..16 are scaled to 0..255.

Why 16 x 16 by default: at 8 x 8, a convolutional tokenizer that downsamples 4x leaves a 2 x 2
token grid, four tokens, too short a sequence for autoregression to matter. Upscaled to 16 x 16 it
gives a 4 x 4 grid (16 tokens). The upscale is bilinear (antialiased) rather than nearest-neighbour
so strokes stay smooth: with nearest-neighbour every 8 x 8 pixel becomes a 2 x 2 block, and
reconstruction metrics would be dominated by reproducing staircase edges rather than digit shape.
``image_size=8`` gives the raw grid.

Split: for every class, 20% of its images (rounded) go to test, chosen by a permutation with a fixed
seed; the split never changes between runs, machines or the ``seed`` argument.
"""

from __future__ import annotations

import numpy as np
import torch

from artok.data.source import ImageSource
from artok.data.splits import stratified_test_mask

DEFAULT_IMAGE_SIZE = 16
DIGITS_TEST_FRACTION = 0.2
_SPLIT_SEED = 0
_MAX_VALUE = 16.0


def load_digits() -> ImageSource:
    """All 1,797 digits as ``1797 x 1 x 8 x 8`` uint8 with the fixed train/test assignment."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    pixels = np.rint(bunch.images * (255.0 / _MAX_VALUE)).clip(0, 255).astype(np.uint8)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageSource(
        images=torch.from_numpy(pixels).unsqueeze(1),
        labels=labels,
        class_names=[str(digit) for digit in range(10)],
        test_mask=stratified_test_mask(labels, DIGITS_TEST_FRACTION, _SPLIT_SEED),
    )
