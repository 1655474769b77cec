"""Shared fixtures: sklearn's 8 x 8 digits upscaled to 16 x 16, and a classifier trained on them."""

import pytest
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from artok.data.base import ImageDataset
from artok.evaluation import train_reference_classifier


def make_digits(image_size: int = 16, test_fraction: float = 0.2) -> tuple[ImageDataset, ImageDataset]:
    """Train and test `ImageDataset`s built directly from sklearn (independent of artok.data)."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (images * 255).round().clamp(0, 255).to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(len(labels) * (1 - test_fraction))
    names = [str(d) for d in range(10)]
    train = ImageDataset(images[order[:cut]], labels[order[:cut]], names, "digits", "train")
    test = ImageDataset(images[order[cut:]], labels[order[cut:]], names, "digits", "test")
    return train, test


@pytest.fixture(scope="session")
def digits_splits() -> tuple[ImageDataset, ImageDataset]:
    return make_digits()


@pytest.fixture(scope="session")
def digits_classifier(digits_splits):
    """A short schedule (a few seconds on 2 CPU cores), enough for > 90% test accuracy."""
    train, _ = digits_splits
    return train_reference_classifier(train, steps=120, width=16, seed=0, progress=False)
