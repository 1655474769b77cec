"""`folder:PATH` datasets: classes from subfolders, unreadable files skipped and reported."""

import io
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from artok.data import DatasetError, load_dataset


def _png(path, size, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.fixture
def image_folder(tmp_path):
    """cats/: 3 RGB 20x20 PNGs + a corrupt .png + a .txt; dogs/: 2 grey 24x32 PNGs + a truncated JPEG."""
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    for i in range(3):
        _png(tmp_path / "cats" / f"img{i}.png", (20, 20), seed=i)
    (tmp_path / "cats" / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    for i in range(2):
        _png(tmp_path / "dogs" / f"img{i}.png", (32, 24), mode="L", seed=10 + i)
    _truncated_jpeg(tmp_path / "dogs" / "broken.jpg")
    (tmp_path / "dogs" / ".DS_Store").write_bytes(b"\x00\x01")
    return tmp_path


def test_folder_skips_unreadable_files_with_one_warning(image_folder):
    with pytest.warns(UserWarning) as record:
        dataset = load_dataset(f"folder:{image_folder}", "all")
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 3" in message
    for name in ("cats/corrupt.png", "cats/notes.txt", "dogs/broken.jpg"):
        assert name in message
    assert ".DS_Store" not in message
    assert dataset.skipped == 3
    assert dataset.class_names == ["cats", "dogs"]
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1]
    # The modal size (3 cats at 20 x 20 against 2 dogs at 24 x 32); 3 channels by default.
    assert dataset.images.shape == (5, 3, 20, 20)
    assert dataset.resized == 2 and "resized 2" in message
    assert dataset.name == f"folder:{image_folder}"


def test_folder_images_are_resized_and_cropped(image_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load_dataset(f"folder:{image_folder}", "all", image_size=8, channels=1)
    assert dataset.images.shape == (5, 1, 8, 8)
    # A 20 x 20 image kept at 20 is bit-exact.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = load_dataset(f"folder:{image_folder}", "all")
    original = np.asarray(Image.open(image_folder / "cats" / "img0.png"))
    assert np.array_equal(native.images[0].permute(1, 2, 0).numpy(), original)


def test_folder_split_is_disjoint_and_stable(tmp_path):
    for name, count in (("a", 20), ("b", 10)):
        (tmp_path / name).mkdir()
        for i in range(count):
            _png(tmp_path / name / f"{i:02d}.png", (6, 6), seed=1000 * ord(name) + i)
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert len(train) + len(test) == 30
    assert torch.bincount(test.labels).tolist() == [2, 1]
    train_rows = {bytes(image.numpy().tobytes()) for image in train.images}
    assert not any(bytes(image.numpy().tobytes()) in train_rows for image in test.images)
    assert torch.equal(test.images, load_dataset(f"folder:{tmp_path}", "test").images)
    limited = load_dataset(f"folder:{tmp_path}", "all", limit=6)
    assert torch.bincount(limited.labels).tolist() == [4, 2]


def test_folder_without_subfolders_is_one_class(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"{i}.png", (10, 10), seed=i)
    dataset = load_dataset(f"folder:{folder}", "all")
    assert dataset.class_names == ["pictures"]
    assert dataset.labels.tolist() == [0, 0, 0]


def test_folder_warning_lists_at_most_five(tmp_path):
    (tmp_path / "x").mkdir()
    _png(tmp_path / "x" / "a.png", (8, 8))
    for i in range(7):
        (tmp_path / "x" / f"junk{i}.txt").write_text("junk")
    with pytest.warns(UserWarning, match=r"skipped 7 .* and 2 more"):
        dataset = load_dataset(f"folder:{tmp_path}", "all")
    assert dataset.skipped == 7 and len(dataset) == 1


def test_folder_with_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no readable image"):
        load_dataset(f"folder:{tmp_path}", "all")


def test_folder_follows_exif_orientation(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))  # 20 wide, 10 high
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    image.save(tmp_path / "rotated.jpg", exif=exif)
    dataset = load_dataset(f"folder:{tmp_path}", "all")
    assert dataset.image_size == (20, 10)
    assert os.path.exists(tmp_path / "rotated.jpg")
