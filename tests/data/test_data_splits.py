"""Index helpers, batch streams and transforms of `artok.data`."""

import pytest
import torch

from artok.data import class_balanced_indices, infinite_batches, to_uint8
from artok.data.base import ImageDataset
from artok.data.splits import num_test_images, stratified_subset, stratified_test_mask
from artok.data.transforms import center_crop, convert_channels, resize


def _dataset(n=10, classes=2):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset(images, torch.arange(n) % classes, [str(c) for c in range(classes)], "toy", "all")


def test_num_test_images():
    assert [num_test_images(n, 0.1) for n in (0, 1, 2, 9, 10, 15, 25)] == [0, 0, 1, 1, 1, 2, 3]
    assert num_test_images(2, 0.9) == 1


def test_stratified_test_mask_is_fixed_and_stratified():
    labels = torch.arange(1000) % 4
    mask = stratified_test_mask(labels, 0.2, seed=0)
    assert torch.bincount(labels[mask]).tolist() == [50] * 4
    assert torch.equal(mask, stratified_test_mask(labels, 0.2, seed=0))
    assert not torch.equal(mask, stratified_test_mask(labels, 0.2, seed=1))


def test_stratified_subset_keeps_proportions():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    subset = stratified_subset(labels, 10, seed=0)
    assert subset.numel() == 10 and torch.all(subset[1:] > subset[:-1])
    assert torch.bincount(labels[subset]).tolist() == [6, 3, 1]
    assert torch.equal(stratified_subset(labels, 500, seed=0), torch.arange(100))


def test_class_balanced_indices():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 8)
    indices = class_balanced_indices(labels, 3, torch.Generator().manual_seed(0))
    assert labels[indices].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert len(set(indices.tolist())) == 8
    again = class_balanced_indices(labels, 3, torch.Generator().manual_seed(0))
    assert torch.equal(indices, again)


def test_infinite_batches_are_full_deterministic_and_cover_epochs():
    dataset = _dataset(10)
    stream = infinite_batches(dataset, 4, torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(5)]  # 20 images = 2 epochs
    assert all(images.shape == (4, 1, 2, 2) for images, _ in batches)
    values = torch.cat([((images[:, 0, 0, 0] + 1) * 127.5).round() for images, _ in batches]).long()
    assert sorted(values[:10].tolist()) == list(range(10))
    assert sorted(values[10:].tolist()) == list(range(10))
    labels = torch.cat([labels for _, labels in batches])
    assert torch.equal(labels, values % 2)
    replay = infinite_batches(dataset, 4, torch.Generator().manual_seed(0))
    assert all(torch.equal(next(replay)[0], images) for images, _ in batches)
    images, _ = batches[0]
    assert images.min() >= -1 and images.max() <= 1 and images.dtype == torch.float32


def test_infinite_batches_larger_than_dataset():
    images, labels = next(infinite_batches(_dataset(3), 7, torch.Generator().manual_seed(0)))
    assert images.shape[0] == 7 and labels.shape == (7,)
    with pytest.raises(ValueError):
        next(infinite_batches(_dataset(3), 0, torch.Generator()))


def test_to_uint8_round_trip():
    dataset = _dataset(10)
    images, _ = dataset.batch(torch.arange(10))
    assert torch.equal(to_uint8(images), dataset.images)


def test_transforms():
    image = torch.randint(0, 256, (2, 3, 10, 20), dtype=torch.uint8)
    assert resize(image, (10, 20)) is image
    assert center_crop(image, 1.0).shape[-2:] == (10, 10)
    assert torch.equal(resize(image, (10, 10)), image[..., 5:15])
    assert resize(image, (4, 4)).shape == (2, 3, 4, 4)
    grey = convert_channels(image, 1)
    assert grey.shape == (2, 1, 10, 20)
    assert torch.equal(convert_channels(grey, 3)[:, 1], grey[:, 0])
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.all(convert_channels(white, 1) == 255)
