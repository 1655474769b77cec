"""IDX files (the MNIST distribution format) read through `load_dataset(..., root=)`."""

import gzip
import struct

import numpy as np
import pytest
import torch

from artok.data import DatasetError, load_dataset
from artok.data.idx import read_idx


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_idx_folder(folder, train=12, test=5, side=6, compress_images=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, side, side), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        suffix = ".gz" if compress_images else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, compress=compress_images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


def test_fashion_mnist_from_idx_files(tmp_path):
    arrays = make_idx_folder(tmp_path)
    train = load_dataset("fashion-mnist", "train", root=str(tmp_path))
    test = load_dataset("fashion-mnist", "test", root=str(tmp_path))
    everything = load_dataset("fashion-mnist", "all", root=str(tmp_path))
    assert train.images.shape == (12, 1, 6, 6) and test.images.shape == (5, 1, 6, 6)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(test.labels.numpy(), arrays["t10k"][1])
    assert torch.equal(everything.images, torch.cat([train.images, test.images]))
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"


def test_mnist_from_torchvision_layout_and_options(tmp_path):
    make_idx_folder(tmp_path / "MNIST" / "raw", compress_images=False)
    dataset = load_dataset("mnist", "train", root=str(tmp_path), image_size=4, channels=3)
    assert dataset.images.shape == (12, 3, 4, 4)
    assert dataset.class_names == [str(d) for d in range(10)]


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "b.gz", array, compress=True)
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "b.gz"), array)


def test_bad_magic_is_a_dataset_error(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(12))
    with pytest.raises(DatasetError, match="not an IDX file") as info:
        load_dataset("fashion-mnist", root=str(tmp_path))
    assert "\n" not in str(info.value)


def test_truncated_idx_is_a_dataset_error(tmp_path):
    make_idx_folder(tmp_path, compress_images=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DatasetError, match="data bytes"):
        load_dataset("fashion-mnist", "test", root=str(tmp_path))


def test_missing_idx_files_are_named(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=str(tmp_path))


def test_mismatched_counts_are_a_dataset_error(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DatasetError, match="differ in count"):
        load_dataset("mnist", root=str(tmp_path))
