"""Image folders too large for memory, decoded on demand in DataLoader workers (`StreamingImages`).

Datasets (`open_stream(name, split, image_size=...)`):
    ``folder:PATH``: the conventions of `artok.data.folder` (one subfolder per class, files found
        recursively, a flat folder is one class, hidden names ignored, links followed once) and the
        same splits ("train" / "test": 90/10 per class with the same fixed permutation, so the
        in-memory and the streaming ``folder:PATH`` read the same files; "all").
    ``imagenet:ROOT``: ``ROOT/train/<wnid>/*.JPEG`` ("train") and ``ROOT/val`` ("val" or "test"),
        see `artok.data.imagenet` for the accepted validation label files.

Listing is done once, in sorted order, by `artok.data.scan.scan_folder` (ImageNet's 1.28M names in
a few seconds; stored as two numpy arrays, ~50 MB, that forked workers share without copying).
Nothing else is held: every image is decoded when it is read.

Per image (`read_sample`): Pillow decodes it with `artok.data.folder.read_image` (EXIF orientation,
alpha over black, 16-bit scaled, ``max_pixels`` bound), converts it to RGB and crops it to
``image_size x image_size`` by `center_crop_arr`, the ADM recipe LlamaGen and MAR use (halve with a
BOX filter while the short side is at least twice the target, BICUBIC-resize the short side to the
target, take the center square). A horizontal flip, when enabled, is a pure function of
``(seed, epoch, index)`` (`flips`), so a resumed run sees the very same pixels. The output is
``3 x S x S`` uint8.

A file that cannot be read (corrupt, truncated, empty, not an image, over ``max_pixels``) never
raises in a worker: `collate_samples` drops it from its batch and the `StreamBatch` carries the
count (``skipped``), which `artok.data.step_batches.StreamingBatches` accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from artok.data.errors import DatasetError
from artok.data.folder import (
    _SPLIT_SEED,
    DEFAULT_MAX_PIXELS,
    FOLDER_TEST_FRACTION,
    read_image,
)
from artok.data.scan import FileTable, scan_folder
from artok.data.splits import stratified_subset, stratified_test_mask

STREAM_PREFIXES = ("folder:", "imagenet:")
_MASK64 = (1 << 64) - 1


# -- pixels ------------------------------------------------------------------------------------


def center_crop_arr(image, image_size: int):
    """ADM's center crop (guided-diffusion ``image_datasets.py``, as LlamaGen and MAR use it): a
    Pillow image -> a Pillow ``image_size x image_size`` image."""
    from PIL import Image

    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top = (array.shape[0] - image_size) // 2
    left = (array.shape[1] - image_size) // 2
    return Image.fromarray(array[top : top + image_size, left : left + image_size])


def _mix(value: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers whose every output bit depends on every input bit."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def flips(seed: int, epoch: int, index: int) -> bool:
    """Whether item ``index`` is mirrored in ``epoch`` of a run seeded ``seed`` (half of them, independently)."""
    return bool(_mix((_mix((_mix(seed & _MASK64) + epoch) & _MASK64) + index) & _MASK64) >> 63)


def read_sample(path: str, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """One file as ``3 x image_size x image_size`` uint8 (raises on an unreadable file)."""
    from PIL import Image

    pixels = read_image(Path(path), 3, max_pixels)
    cropped = center_crop_arr(Image.fromarray(pixels.permute(1, 2, 0).numpy()), image_size)
    return torch.from_numpy(np.array(cropped)).permute(2, 0, 1).contiguous()


# -- the dataset -------------------------------------------------------------------------------


@dataclass
class StreamBatch:
    """Collated samples: ``images`` ``B x 3 x S x S`` uint8, ``labels`` and ``indices`` ``B`` int64
    (the dataset items kept), ``skipped`` how many items of the batch could not be read."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: int

    def pin_memory(self) -> StreamBatch:  # called by DataLoader(pin_memory=True)
        return StreamBatch(self.images.pin_memory(), self.labels.pin_memory(), self.indices, self.skipped)


class StreamingImages(torch.utils.data.Dataset):
    """A map-style dataset of image files decoded on access.

    ``dataset[i]`` reads item ``i`` unflipped; ``dataset[(i, epoch, seed)]`` mirrors it when
    ``flip`` is on and `flips(seed, epoch, i)`. Either returns ``(image or None, label, i)``: None
    for a file that cannot be read (`collate_samples` drops it and counts it).
    """

    def __init__(self, files: FileTable, labels: np.ndarray, class_names: list[str], *, image_size: int,
                 name: str, split: str, flip: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if len(files) == 0:
            raise DatasetError(f"{name} ({split}) holds no files; put images in it or in one subfolder per class")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise DatasetError(f"image_size must be a positive integer, got {image_size!r}")
        if labels.shape != (len(files),):
            raise DatasetError(f"{len(files)} files but {labels.shape[0]} labels")
        self.files, self.labels, self.class_names = files, np.ascontiguousarray(labels, dtype=np.int64), class_names
        self.image_size, self.name, self.split, self.flip, self.max_pixels = image_size, name, split, flip, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return 3

    def __getitem__(self, key):
        index, epoch, seed = (key, None, None) if isinstance(key, (int, np.integer)) else key
        index = int(index)
        label = int(self.labels[index])
        try:
            image = read_sample(self.files.path(index), self.image_size, self.max_pixels)
        except Exception:  # noqa: BLE001 - any decoding failure means "skip this file" (see read_image)
            return None, label, index
        if self.flip and epoch is not None and flips(seed, epoch, index):
            image = image.flip(-1)
        return image, label, index


class MemoryItems(torch.utils.data.Dataset):
    """An in-memory `artok.data.ImageDataset` with the item interface of `StreamingImages`
    (``(image, label, index)``), so that the same loaders read both."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.class_names, self.name, self.split = dataset.class_names, dataset.name, dataset.split

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index = int(key if isinstance(key, (int, np.integer)) else key[0])
        return self.dataset.images[index], int(self.dataset.labels[index]), index


def collate_samples(samples) -> StreamBatch:
    """Stack the readable samples; count the others."""
    kept = [sample for sample in samples if sample[0] is not None]
    if kept:
        images = torch.stack([sample[0] for sample in kept])
    else:
        images = torch.empty((0, 3, 0, 0), dtype=torch.uint8)
    labels = torch.tensor([sample[1] for sample in kept], dtype=torch.int64)
    indices = torch.tensor([sample[2] for sample in kept], dtype=torch.int64)
    return StreamBatch(images, labels, indices, len(samples) - len(kept))


# -- opening by name ---------------------------------------------------------------------------


def is_stream_name(name: str) -> bool:
    return name.startswith(STREAM_PREFIXES)


def _folder_files(path: str, split: str) -> tuple[FileTable, np.ndarray, list[str]]:
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DatasetError(f"folder {path!r} {what}; give a folder of images (or of class subfolders) as folder:PATH")
    try:
        files, labels, class_names = scan_folder(root)
    except OSError as error:
        raise DatasetError(f"cannot list folder {path!r} ({error}); check its permissions") from error
    if len(files) == 0:
        raise DatasetError(f"folder {path!r} holds no files; put images in it or in one subfolder per class")
    if split == "all":
        return files, labels, class_names
    if split not in ("train", "test"):
        raise DatasetError(f"folder datasets have the splits 'train', 'test' and 'all', not {split!r}")
    test_mask = stratified_test_mask(torch.from_numpy(labels), FOLDER_TEST_FRACTION, _SPLIT_SEED).numpy()
    selected = np.flatnonzero(test_mask if split == "test" else ~test_mask)
    if selected.size == 0:
        raise DatasetError(f"folder {path!r} has no {split} images (a class needs 2+ images to be split); use split='all'")
    return files.subset(selected), labels[selected], class_names


def open_stream(name: str, split: str = "train", *, image_size: int, flip: bool = False, limit: int | None = None,
                seed: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> StreamingImages:
    """A `StreamingImages` for ``folder:PATH`` or ``imagenet:ROOT`` (see the module docstring).

    ``limit`` keeps a class-balanced subset of that many files (chosen by ``seed``, as
    `artok.data.load_dataset` does).
    """
    if name.startswith("folder:"):
        files, labels, class_names = _folder_files(name[len("folder:"):], split)
    elif name.startswith("imagenet:"):
        from artok.data.imagenet import imagenet_files

        files, labels, class_names = imagenet_files(name[len("imagenet:"):], split)
    else:
        raise DatasetError(f"{name!r} cannot be streamed; use folder:PATH or imagenet:ROOT")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise DatasetError(f"limit must be a positive integer or None, got {limit!r}")
        chosen = stratified_subset(torch.from_numpy(labels), limit, seed).numpy()
        files, labels = files.subset(chosen), labels[chosen]
    return StreamingImages(files, labels, class_names, image_size=image_size, name=name, split=split, flip=flip,
                           max_pixels=max_pixels)
