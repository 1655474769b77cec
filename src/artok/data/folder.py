"""Any folder of images as a dataset (``folder:PATH``), read with Pillow.

Layout: every immediate subfolder of ``PATH`` is a class (sorted by name; files found recursively
inside it); files directly in ``PATH`` are then ignored. A ``PATH`` without subfolders is a single
class named after the folder. Names starting with "." are ignored (``.DS_Store``, ``.git``).

Links: symbolic links are followed, each directory at most once. Every real directory of the
dataset is listed first; a linked directory is then walked only if it was not reached yet, so a
link to its own folder, to a parent (any ancestor of ``PATH``, up to ``/``), to another class or
twice to the same place adds nothing and cannot loop. A file reachable under several names
(symlinks, hard links: same device and inode) is loaded once, under its own (unlinked) name when it
has one, else under the first name in sorted order; so it can never be in both train and test.
Only regular files count (no FIFOs, devices or broken links).

Every such file is tried: those Pillow cannot decode completely (not an image, corrupt, truncated)
are skipped as "unreadable"; those whose header says more than ``max_pixels`` pixels
(`DEFAULT_MAX_PIXELS` = 4096 x 4096) are skipped as "too large" without being decoded, as are those
Pillow itself refuses as decompression bombs. Pillow's own bomb warning is silenced: ``max_pixels``
is the bound. Skipped files are counted in ``ImageDataset.skipped`` and named (the first five per
reason) in one `DatasetWarning` line.

Pixels: EXIF orientation is applied first. 16-bit grey ("I;16") and 32-bit integer ("I") images are
scaled to 8 bits as ``round(value * 255 / 65535)`` when every value fits 0..65535, else as a
fraction of 2**31 - 1 with negatives at 0 (never clipped at 255). Pillow reads 16-bit colour PNGs
as 8-bit already (it keeps the high byte, within 1 of that scaling). Images with alpha ("RGBA",
"LA", "PA", palette or colour-key transparency) are composited over black, so a fully transparent
pixel is black whatever colour it stores. "1", "P", "CMYK" and "YCbCr" go through Pillow's
``convert`` ("F" floats too, clipped to 0..255); grey comes from colour by Pillow's ITU-R 601-2 luma.

Size: ``image_size`` if given, else the dataset's modal size: the most common (height, width) over
the whole folder (all splits, so train and test agree), ties to the smaller area, read from image
headers only (no decoding; orientations 5-8 swap the sides) and counting only images within
``max_pixels``. Images of another size are center-cropped to the target aspect ratio and resized
(antialiased bilinear) and counted in ``ImageDataset.resized`` (reported in the warning when the
size was chosen here), or, with ``outliers="skip"``, skipped as "another size". A target whose
images would need more than `MAX_DATASET_BYTES` (8 GiB) of uint8 memory is refused before anything
is decoded.

Split: per class, 10% of the files (at least one when the class has two or more) are test, chosen by
a permutation with a fixed seed over the sorted file list; "all" is every file. Adding or removing
files can move others between splits; the split of an unchanged folder never changes. The split is
made on file names before decoding, so a corrupt file only drops out of its own split.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from artok.data.base import ImageDataset
from artok.data.errors import DatasetError, DatasetWarning
from artok.data.splits import stratified_subset, stratified_test_mask
from artok.data.transforms import resize

FOLDER_TEST_FRACTION = 0.1
PROGRESS_MIN_FILES = 500
DEFAULT_MAX_PIXELS = 4096 * 4096
MAX_DATASET_BYTES = 8 * 2**30
OUTLIER_POLICIES = ("resize", "skip")
UNREADABLE, TOO_LARGE, ANOTHER_SIZE = "unreadable", "too large", "another size"
_WARN_MAX_NAMES = 5
_SPLIT_SEED = 0
_EXIF_ORIENTATION = 0x0112
_SIDE_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # transpose, rotate 270, transverse, rotate 90
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")


# -- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    path: Path
    label: int
    direct: bool  # reached without passing through any link


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` points to: equal for every name of one file or folder."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


def _first_visit(directory: Path, visited: set[tuple[int, int]]) -> bool:
    """Mark ``directory`` visited; False when it was already (or cannot be stat'ed)."""
    identity = _identity(directory)
    if identity is None or identity in visited:
        return False
    visited.add(identity)
    return True


def _walk_without_links(directory: Path, visited: set[tuple[int, int]]) -> tuple[list[Path], list[Path]]:
    """Non-hidden files under ``directory`` and the directory links met, none of them followed.

    Real subdirectories are marked visited as they are entered, so that a link to one of them is
    later recognised as a second way to the same place.
    """
    files, links = [], []
    for current, subdirectories, names in os.walk(directory):
        here = Path(current)
        kept = []
        for name in sorted(subdirectories):
            if name.startswith("."):
                continue
            if (here / name).is_symlink():
                links.append(here / name)
            elif _first_visit(here / name, visited):
                kept.append(name)
        subdirectories[:] = kept
        files.extend(here / name for name in sorted(names) if not name.startswith("."))
    return files, links


def _files_behind_links(links: list[Path], visited: set[tuple[int, int]]) -> list[Path]:
    """Files under directory links not visited yet, following the links found there in turn."""
    files, pending = [], list(links)
    while pending:
        link = pending.pop(0)
        if _first_visit(link, visited):
            more_files, more_links = _walk_without_links(link, visited)
            files.extend(more_files)
            pending.extend(more_links)
    return files


def _ancestors_and_classes(root: Path, subfolders: list[Path]) -> set[tuple[int, int]]:
    """Directories never to enter through a link: the dataset, its ancestors and its classes.

    A link to any of them would walk (part of) the dataset again under another class or path.
    """
    real_root = Path(os.path.realpath(root))
    identities = (_identity(directory) for directory in [real_root, *real_root.parents, *subfolders])
    return {identity for identity in identities if identity is not None}


def _unique_regular_files(entries: list[_Entry]) -> list[_Entry]:
    """One entry per regular file: its first direct name if it has one, else its first name."""
    chosen: dict[tuple[int, int], _Entry] = {}
    for entry in entries:
        try:
            status = os.stat(entry.path)
        except OSError:
            continue  # a broken link
        if not stat.S_ISREG(status.st_mode):
            continue  # a FIFO would block Image.open forever; devices and sockets are no images either
        identity = (status.st_dev, status.st_ino)
        if identity not in chosen or (entry.direct and not chosen[identity].direct):
            chosen[identity] = entry
    return list(chosen.values())


def _in_sorted_order(entries: list[_Entry], subfolders: list[Path]) -> list[_Entry]:
    """By class, then by path inside the class folder: the order the split permutation is over."""
    return sorted(entries, key=lambda entry: (entry.label, entry.path.relative_to(subfolders[entry.label]).as_posix()))


def list_image_files(path: Path) -> tuple[list[Path], torch.Tensor, list[str]]:
    """Candidate files, their int64 class labels and the class names of a folder dataset."""
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        names = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        files = [entry.path for entry in _unique_regular_files([_Entry(p, 0, not p.is_symlink()) for p in names])]
        return sorted(files), torch.zeros(len(files), dtype=torch.int64), [path.resolve().name]
    visited = _ancestors_and_classes(path, subfolders)
    # Every class's real directories are visited before any link, so real locations always win.
    walks = [_walk_without_links(subfolder, visited) for subfolder in subfolders]
    entries = []
    for label, (files, links) in enumerate(walks):
        entries.extend(_Entry(file, label, not file.is_symlink()) for file in files)
        entries.extend(_Entry(file, label, False) for file in _files_behind_links(links, visited))
    unique = _in_sorted_order(_unique_regular_files(_in_sorted_order(entries, subfolders)), subfolders)
    labels = torch.tensor([entry.label for entry in unique], dtype=torch.int64)
    return [entry.path for entry in unique], labels, [p.name for p in subfolders]


# -- decoding ----------------------------------------------------------------------------------


class _Refused(Exception):
    """A file left out of the dataset, with the reason reported for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _orientation(image) -> int:
    """The EXIF orientation (1 = as stored) without decoding any pixel."""
    from PIL import Image

    if image.format == "PNG":
        # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the pixel
        # data; the base method reads only what the header held (eXIf or XMP before the pixels).
        return Image.Image.getexif(image).get(_EXIF_ORIENTATION, 1)
    return image.getexif().get(_EXIF_ORIENTATION, 1)


def read_header_size(path: Path) -> tuple[int, int] | None:
    """(height, width) as displayed, from the header alone; None when Pillow cannot open it."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if _orientation(image) in _SIDE_SWAPPING_ORIENTATIONS:
                    width, height = height, width
    except Exception:  # noqa: BLE001 - any plugin error (see read_image) means no usable header
        return None
    return (height, width)


def _scale_wide_integers(values: np.ndarray) -> np.ndarray:
    """16- or 32-bit integer grey values as uint8, scaled (not clipped) to 0..255, rounded."""
    if values.size == 0 or (values.min() >= 0 and values.max() <= 65535):
        full_scale, values = 65535, values.astype(np.uint32)  # 65535 * 255 fits 32 bits
    else:
        full_scale, values = 2**31 - 1, np.clip(values.astype(np.int64), 0, None)
    return ((values * 255 + full_scale // 2) // full_scale).astype(np.uint8)


def _over_black(image):
    """``image`` composited over opaque black, so hidden colours under transparency never show."""
    from PIL import Image

    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)


def _eight_bit(image, channels: int) -> np.ndarray:
    """A decoded Pillow image as an ``H x W`` (grey) or ``H x W x 3`` uint8 array."""
    from PIL import Image

    if image.mode == "I" or image.mode.startswith("I;16"):
        image = Image.fromarray(_scale_wide_integers(np.asarray(image)))
    elif image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = _over_black(image)
    # convert() decodes every pixel, so a truncated file fails here rather than later; np.array
    # makes the writable copy torch.from_numpy wants.
    return np.array(image.convert("L" if channels == 1 else "RGB"))


def read_image(path: Path, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """A fully decoded image as ``C x H x W`` uint8.

    Raises:
        _Refused: "too large" when the header says more than ``max_pixels`` pixels (checked before
            decoding, so a small file cannot expand into gigabytes), "unreadable" when Pillow
            cannot decode all of it.
    """
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.size[0] * image.size[1] > max_pixels:
                    raise _Refused(TOO_LARGE)
                array = _eight_bit(ImageOps.exif_transpose(image), channels)
    except _Refused:
        raise
    except Image.DecompressionBombError as error:
        raise _Refused(TOO_LARGE) from error
    except Exception as error:
        # Pillow's format plugins raise many unrelated exception types (OSError, SyntaxError,
        # struct.error, IndexError, ...) on corrupt input; any of them means "this file is not a
        # readable image", which is exactly what we report.
        raise _Refused(UNREADABLE) from error
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


# -- size --------------------------------------------------------------------------------------


def modal_size(sizes: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    """The most common (height, width), ties to the smaller area (then the smaller height)."""
    counts = Counter(sizes)
    if not counts:
        return None
    return min(counts, key=lambda size: (-counts[size], size[0] * size[1], size))


def _folder_size(path: str, files: list[Path], max_pixels: int, progress) -> tuple[int, int]:
    """The modal size of every file in the folder, or a DatasetError saying why there is none."""
    headers = [(file, read_header_size(file)) for file in progress(files, "sizing")]
    readable = [(file, size) for file, size in headers if size is not None]
    if not readable:
        raise DatasetError(f"folder {path!r} holds no readable image ({len(files)} files tried); add PNG/JPEG images")
    size = modal_size(size for _, size in readable if size[0] * size[1] <= max_pixels)
    if size is None:
        file, (height, width) = readable[0]
        raise DatasetError(
            f"folder {path!r}: every readable image is over max_pixels={max_pixels} pixels (e.g. {file.name} is "
            f"{height} x {width}); pass a larger max_pixels= or use smaller images"
        )
    return size


def _check_memory(path: str, count: int, channels: int, size: tuple[int, int]) -> None:
    """Refuse, before decoding, a dataset that could not fit in memory as uint8."""
    needed = count * channels * size[0] * size[1]
    if needed > MAX_DATASET_BYTES:
        raise DatasetError(
            f"folder {path!r}: {count} images of {channels} x {size[0]} x {size[1]} would need "
            f"{needed / 2**30:.1f} GiB of memory (over {MAX_DATASET_BYTES // 2**30} GiB); "
            "pass a smaller --image-size (image_size= in Python) or fewer images (limit=)"
        )


# -- reading and reporting ---------------------------------------------------------------------


@dataclass
class _Outcome:
    """What happened to the selected files: the images kept and why the others were not."""

    images: torch.Tensor
    kept: list[int] = field(default_factory=list)
    skipped: dict[str, list[Path]] = field(default_factory=dict)
    resized: int = 0

    def skip(self, reason: str, file: Path) -> None:
        self.skipped.setdefault(reason, []).append(file)

    @property
    def skipped_count(self) -> int:
        return sum(len(files) for files in self.skipped.values())


def _read_selected(files, indices, channels, size, max_pixels, outliers, progress) -> _Outcome:
    """Decode the selected files into one preallocated tensor (no second copy to concatenate)."""
    outcome = _Outcome(images=torch.empty((len(indices), channels, *size), dtype=torch.uint8))
    for index in progress(indices, "reading"):
        try:
            image = read_image(files[index], channels, max_pixels)
        except _Refused as refusal:
            outcome.skip(refusal.reason, files[index])
            continue
        if tuple(image.shape[1:]) != size:
            if outliers == "skip":
                outcome.skip(ANOTHER_SIZE, files[index])
                continue
            image = resize(image.unsqueeze(0), size)[0]
            outcome.resized += 1
        outcome.images[len(outcome.kept)] = image
        outcome.kept.append(index)
    if len(outcome.kept) < len(indices):
        outcome.images = outcome.images[: len(outcome.kept)].clone()
    return outcome


def _names(files: list[Path], root: Path) -> str:
    shown = ", ".join(file.relative_to(root).as_posix() for file in files[:_WARN_MAX_NAMES])
    return shown + (f" and {len(files) - _WARN_MAX_NAMES} more" if len(files) > _WARN_MAX_NAMES else "")


def _warning_text(outcome: _Outcome, root: Path, size: tuple[int, int], max_pixels: int, size_chosen: bool) -> str:
    """One line: what was skipped (per reason, first names) and, for a chosen size, what was resized."""
    what = {
        UNREADABLE: "unreadable file(s)",
        TOO_LARGE: f"file(s) too large to decode (over max_pixels={max_pixels})",
        ANOTHER_SIZE: f"image(s) of another size than {size[0]} x {size[1]}",
    }
    parts = [f"skipped {len(files)} {what[reason]}: {_names(files, root)}" for reason, files in outcome.skipped.items()]
    if size_chosen and outcome.resized:
        parts.append(
            f"resized {outcome.resized} image(s) of another size to the most common {size[0]} x {size[1]} "
            "(pass an image size to choose it, or outliers='skip' to leave them out)"
        )
    return "; ".join(parts)


def _nothing_loaded(path: str, split: str, outcome: _Outcome) -> DatasetError:
    """The error for a split whose every file was skipped, with the counts per reason."""
    reasons = ", ".join(f"{len(files)} {reason}" for reason, files in outcome.skipped.items())
    too_large = TOO_LARGE in outcome.skipped
    advice = "pass a larger max_pixels= or add smaller images" if too_large else "add PNG/JPEG images"
    return DatasetError(f"folder {path!r} holds no readable image in split {split!r} (skipped: {reasons}); {advice}")


def load_folder(
    path: str,
    split: str,
    *,
    name: str,
    image_size: int | None,
    channels: int,
    limit: int | None,
    seed: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    outliers: str = "resize",
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

    def progress(items, verb):
        quiet = True if len(items) <= PROGRESS_MIN_FILES else None
        return tqdm(items, desc=f"{verb} {root.name}", unit="file", disable=quiet)

    size = (image_size, image_size) if image_size is not None else _folder_size(path, files, max_pixels, progress)
    indices = selected.tolist()
    _check_memory(path, len(indices), channels, size)
    outcome = _read_selected(files, indices, channels, size, max_pixels, outliers, progress)
    message = _warning_text(outcome, root, size, max_pixels, size_chosen=image_size is None)
    if message:
        warnings.warn(f"{name}: {message}", DatasetWarning, stacklevel=3)
    if not outcome.kept:
        raise _nothing_loaded(path, split, outcome)
    return ImageDataset(
        images=outcome.images,
        labels=labels[torch.tensor(outcome.kept, dtype=torch.int64)],
        class_names=class_names,
        name=name,
        split=split,
        skipped=outcome.skipped_count,
        resized=outcome.resized,
    )
