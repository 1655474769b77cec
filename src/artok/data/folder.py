"""Any folder of images as a dataset (``folder:PATH``), read with Pillow.

Layout: every immediate subfolder of ``PATH`` is a class (sorted by name; files found recursively
inside it); files directly in ``PATH`` are then ignored. A ``PATH`` without subfolders is a single
class named after the folder. Names starting with "." are ignored (``.DS_Store``, ``.git``).

Every other file is tried: those Pillow cannot decode completely (not an image, corrupt, truncated)
are skipped, counted in ``ImageDataset.skipped`` and named (the first five) in one warning.

Size: ``image_size`` if given, else the size of the first readable image (in sorted order, over the
whole folder, so train and test agree). Images of another size are center-cropped to the target
aspect ratio and resized (antialiased bilinear). EXIF orientation is applied first.

Split: per class, 10% of the files (at least one when the class has two or more) are test, chosen by
a permutation with a fixed seed over the sorted file list; "all" is every file. Adding or removing
files can move others between splits; the split of an unchanged folder never changes. The split is
made on file names before decoding, so a corrupt file only drops out of its own split.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from artok.data.base import ImageDataset
from artok.data.errors import DatasetError
from artok.data.splits import stratified_subset, stratified_test_mask
from artok.data.transforms import resize

FOLDER_TEST_FRACTION = 0.1
PROGRESS_MIN_FILES = 500
_WARN_MAX_NAMES = 5
_SPLIT_SEED = 0


def _files_under(folder: Path, recursive: bool) -> list[Path]:
    """Non-hidden regular files, sorted by their path relative to ``folder``."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    found = []
    for directory, subdirectories, names in os.walk(folder, followlinks=True):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(Path(directory) / name for name in names if not name.startswith("."))
    return sorted((p for p in found if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def list_image_files(path: Path) -> tuple[list[Path], torch.Tensor, list[str]]:
    """Candidate files, their int64 class labels and the class names of a folder dataset."""
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        files = _files_under(path, recursive=False)
        return files, torch.zeros(len(files), dtype=torch.int64), [path.resolve().name]
    files, labels = [], []
    for label, subfolder in enumerate(subfolders):
        class_files = _files_under(subfolder, recursive=True)
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    return files, torch.tensor(labels, dtype=torch.int64), [p.name for p in subfolders]


def read_image(path: Path, channels: int) -> torch.Tensor | None:
    """A fully decoded image as ``C x H x W`` uint8, or None when Pillow cannot read all of it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            # convert() decodes every pixel, so a truncated file fails here rather than later.
            image = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")
            array = np.array(image)  # a writable copy, as torch.from_numpy wants
    except Exception:
        # Pillow's format plugins raise many unrelated exception types (OSError, SyntaxError,
        # struct.error, IndexError, DecompressionBombError, ...) on corrupt input; any of them
        # means "this file is not a readable image", which is exactly what we report.
        return None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


def _first_size(files: list[Path], channels: int) -> tuple[int, int] | None:
    for file in files:
        image = read_image(file, channels)
        if image is not None:
            return (image.shape[1], image.shape[2])
    return None


def load_folder(
    path: str,
    split: str,
    *,
    name: str,
    image_size: int | None,
    channels: int,
    limit: int | None,
    seed: int,
) -> ImageDataset:
    """Load a folder dataset (see the module docstring); ``name`` is what the dataset reports."""
    from tqdm.auto import tqdm

    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"folder {path!r} does not exist; give an existing folder as folder:PATH")
    if not root.is_dir():
        raise DatasetError(f"{path!r} is not a folder; give a folder of images (or of class subfolders) as folder:PATH")
    try:
        files, labels, class_names = list_image_files(root)
    except OSError as error:
        raise DatasetError(f"cannot list folder {path!r} ({error}); check its permissions") from error
    if not files:
        raise DatasetError(f"folder {path!r} holds no files; put images in it or in one subfolder per class")

    if split == "all":
        selected = torch.arange(len(files))
    else:
        test_mask = stratified_test_mask(labels, FOLDER_TEST_FRACTION, _SPLIT_SEED)
        selected = torch.nonzero(test_mask if split == "test" else ~test_mask).flatten()
        if selected.numel() == 0:
            raise DatasetError(
                f"folder {path!r} has no {split} images (a class needs 2+ images to be split); use split='all'"
            )
    if limit is not None:
        selected = selected[stratified_subset(labels[selected], limit, seed)]

    if image_size is not None:
        size = (image_size, image_size)
    else:
        size = _first_size(files, channels)
        if size is None:
            raise DatasetError(
                f"folder {path!r} holds no readable image ({len(files)} files tried); add PNG/JPEG images"
            )

    images, kept, skipped = [], [], []
    indices = selected.tolist()
    progress = tqdm(
        indices, desc=f"reading {root.name}", unit="file", disable=True if len(indices) <= PROGRESS_MIN_FILES else None
    )
    for index in progress:
        image = read_image(files[index], channels)
        if image is None:
            skipped.append(files[index])
            continue
        images.append(resize(image.unsqueeze(0), size))
        kept.append(index)

    if skipped:
        shown = ", ".join(p.relative_to(root).as_posix() for p in skipped[:_WARN_MAX_NAMES])
        more = f" and {len(skipped) - _WARN_MAX_NAMES} more" if len(skipped) > _WARN_MAX_NAMES else ""
        warnings.warn(f"{name}: skipped {len(skipped)} unreadable file(s): {shown}{more}", stacklevel=3)
    if not images:
        raise DatasetError(
            f"folder {path!r} holds no readable image in split {split!r} ({len(skipped)} files skipped); "
            "add PNG/JPEG images"
        )
    return ImageDataset(
        images=torch.cat(images),
        labels=labels[torch.tensor(kept, dtype=torch.int64)],
        class_names=class_names,
        name=name,
        split=split,
        skipped=len(skipped),
    )
