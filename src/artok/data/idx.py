"""Reader for IDX files, the format MNIST and Fashion-MNIST are distributed in.

Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte (0x08 = uint8, ...), a
byte with the number of dimensions, then each dimension as a big-endian uint32, then the data in
big-endian, C order. Files may be gzip-compressed (detected by content, not by name).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from artok.data.errors import DatasetError
from artok.data.source import ImageSource

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"

# The four files of the official split; the dotted spelling is the one some mirrors use.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a numpy array of its stored shape and type.

    Raises:
        DatasetError: the file is not IDX (bad magic number) or is shorter than its header says.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DatasetError(f"{path} is a damaged gzip file ({error}); download it again") from error
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _DTYPES or raw[3] == 0:
        magic = raw[:4].hex() or "empty file"
        raise DatasetError(f"{path} is not an IDX file (magic number {magic}); expected e.g. 00000803 for images")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its IDX header; download it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path} holds {len(raw) - header} data bytes but its IDX header {shape} needs {expected}; "
            "download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_folder(root: Path, subfolder: str) -> Path:
    """The folder under ``root`` holding the four IDX files: ``root``, ``root/raw`` or
    ``root/<subfolder>/raw`` (torchvision's layout).

    Raises:
        DatasetError: none of them holds all four files (the message lists what is missing).
    """
    stems = list(IDX_FILES.values())
    candidates = [root, root / "raw", root / subfolder / "raw"]
    for folder in candidates:
        if all(_find(folder, stem) is not None for stem in stems):
            return folder
    missing = [stem for stem in stems if _find(root, stem) is None]
    raise DatasetError(f"{root} lacks the IDX file(s) {', '.join(missing)} (plain or .gz); put all four there")


def load_idx_source(root: str | os.PathLike, subfolder: str, class_names: list[str]) -> ImageSource:
    """The official train/test split of an MNIST-style dataset from IDX files under ``root``."""
    folder = find_idx_folder(Path(root), subfolder)
    parts: dict[tuple[str, str], np.ndarray] = {}
    for key, stem in IDX_FILES.items():
        path = _find(folder, stem)
        array = read_idx(path)
        want_ndim = 3 if key[1] == "images" else 1
        if array.ndim != want_ndim or array.dtype != np.uint8:
            raise DatasetError(
                f"{path} holds {array.dtype} data of shape {array.shape}; expected {want_ndim}-D uint8 {key[1]}"
            )
        parts[key] = array
    for split in ("train", "test"):
        if parts[split, "images"].shape[0] != parts[split, "labels"].shape[0]:
            raise DatasetError(
                f"{folder}: {split} images ({parts[split, 'images'].shape[0]}) and labels "
                f"({parts[split, 'labels'].shape[0]}) differ in count; the files do not belong together"
            )
    if parts["train", "images"].shape[1:] != parts["test", "images"].shape[1:]:
        raise DatasetError(f"{folder}: train and test images differ in size; the files do not belong together")
    labels = np.concatenate([parts["train", "labels"], parts["test", "labels"]]).astype(np.int64)
    if labels.size and labels.max() >= len(class_names):
        raise DatasetError(f"{folder}: label {labels.max()} is out of range for {len(class_names)} classes")
    images = np.concatenate([parts["train", "images"], parts["test", "images"]])
    test_mask = np.arange(labels.size) >= parts["train", "labels"].shape[0]
    return ImageSource(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels),
        class_names=list(class_names),
        test_mask=torch.from_numpy(test_mask),
    )
