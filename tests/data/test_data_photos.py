"""scikit-image's bundled photographs."""

import pytest
import torch

from artok.data import DatasetError, load_dataset


@pytest.fixture(scope="module")
def photos():
    return load_dataset("photos", "test")


def test_photos_are_256_rgb_crops(photos):
    assert len(photos) >= 5
    assert photos.images.shape[1:] == (3, 256, 256)
    assert photos.class_names == ["photo"]
    assert torch.all(photos.labels == 0)
    # Real photographs, not constant images.
    assert photos.images.float().std(dim=(1, 2, 3)).min() > 5


def test_photos_all_equals_test_and_image_size(photos):
    small = load_dataset("photos", "all", image_size=32, channels=1)
    assert small.images.shape == (len(photos), 1, 32, 32)


def test_photos_have_no_train_split():
    with pytest.raises(DatasetError, match="split='test'"):
        load_dataset("photos", "train")
