"""scikit-learn digits through `load_dataset`."""

import numpy as np
import pytest
import torch

from artok.data import ImageDataset, load_dataset
from artok.data.digits import load_digits


@pytest.fixture(scope="module")
def digits():
    """The three splits at the default 16 x 16."""
    return {split: load_dataset("digits", split) for split in ("train", "test", "all")}


def test_digits_shapes_and_classes(digits):
    train = digits["train"]
    assert isinstance(train, ImageDataset)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.images.shape[1:] == (1, 16, 16)
    assert train.class_names == [str(d) for d in range(10)]
    assert set(train.labels.tolist()) == set(range(10))
    assert train.name == "digits" and train.split == "train" and train.skipped == 0


def test_digits_split_sizes_and_stratification(digits):
    assert len(digits["train"]) + len(digits["test"]) == len(digits["all"]) == 1797
    counts = torch.bincount(digits["test"].labels, minlength=10)
    all_counts = torch.bincount(digits["all"].labels, minlength=10)
    # 20% of every class, rounded.
    assert torch.all((counts.float() - 0.2 * all_counts.float()).abs() <= 0.5)


def test_digits_train_test_disjoint_and_deterministic(digits):
    source = load_digits()
    mask = source.test_mask
    assert int(mask.sum()) == len(digits["test"])
    # At 8 x 8 the splits are exactly the two sides of one partition of the 1,797 raw images.
    assert torch.equal(load_dataset("digits", "test", image_size=8).images, source.images[mask])
    assert torch.equal(load_dataset("digits", "train", image_size=8).images, source.images[~mask])
    assert torch.equal(load_dataset("digits", "test").images, digits["test"].images)
    assert torch.equal(load_digits().test_mask, mask)


def test_digits_raw_size_is_the_sklearn_grid():
    from sklearn.datasets import load_digits as sklearn_digits

    raw = load_dataset("digits", "all", image_size=8)
    assert raw.images.shape == (1797, 1, 8, 8)
    expected = np.rint(sklearn_digits().images * 255 / 16).astype(np.uint8)
    assert np.array_equal(raw.images[:, 0].numpy(), expected)


def test_digits_upscale_is_smooth_not_blocky(digits):
    up = digits["all"].images.float()
    # Nearest-neighbour would make every 2 x 2 block constant; bilinear does not.
    blocks = up.unfold(2, 2, 2).unfold(3, 2, 2).reshape(*up.shape[:2], 8, 8, 4)
    assert (blocks.amax(-1) - blocks.amin(-1)).mean() > 5


@pytest.mark.parametrize("channels", [1, 3])
def test_digits_channels_and_limit(channels):
    subset = load_dataset("digits", "train", channels=channels, limit=50, seed=3)
    assert subset.images.shape == (50, channels, 16, 16)
    assert torch.bincount(subset.labels, minlength=10).tolist() == [5] * 10
    same = load_dataset("digits", "train", channels=channels, limit=50, seed=3)
    assert torch.equal(subset.images, same.images)
    other = load_dataset("digits", "train", channels=channels, limit=50, seed=4)
    assert not torch.equal(subset.images, other.images)


def test_digits_batch_range(digits):
    images, labels = digits["test"].batch(torch.arange(8))
    assert images.dtype == torch.float32 and images.min() >= -1 and images.max() <= 1
    assert labels.shape == (8,)
