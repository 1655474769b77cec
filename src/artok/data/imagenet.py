"""The ImageNet (ILSVRC-2012) folder layouts, for `artok.data.stream.open_stream` (``imagenet:ROOT``).

Accepted:
    ``ROOT/train/<wnid>/*.JPEG``: split "train"; the classes are the sorted wnid folders (index 0 =
        n01440764, as torchvision's ``ImageFolder`` and every ImageNet codebase number them).
    ``ROOT/val/<wnid>/*.JPEG``: split "val" (also "test") when ``ROOT/val`` holds class folders; its
        wnids are numbered by the train folders when ``ROOT/train`` exists (a val-only wnid is refused).
    ``ROOT/val/*.JPEG`` flat, with one labels file beside ``val`` in ``ROOT`` (the first that exists):
        ``LOC_val_solution.csv`` (Kaggle: header ``ImageId,PredictionString``, the first word of the
        prediction string is the wnid), or ``val_labels.txt`` (one ``FILE LABEL`` per line, FILE with
        or without its extension, LABEL a wnid or a 0-based class index in sorted-wnid order, as
        Caffe's ``val.txt``). Every val file needs a label.
Not accepted: the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (its 1-based ids follow
``meta.mat``, not the sorted wnids); convert it to ``val_labels.txt`` first.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from artok.data.errors import DatasetError
from artok.data.scan import FileTable, scan_folder

LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")


def _class_folders(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_solution_csv(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or [cell.strip() for cell in header[:2]] != ["ImageId", "PredictionString"]:
            raise DatasetError(f"{path}: expected the header 'ImageId,PredictionString' (Kaggle's LOC_val_solution.csv)")
        return {row[0].strip(): row[1].split()[0] for row in rows if len(row) >= 2 and row[1].split()}


def _read_labels_txt(path: Path) -> dict[str, str]:
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) != 2:
            raise DatasetError(f"{path} line {number}: expected 'FILE LABEL', got {line.strip()!r}")
        labels[words[0]] = words[1]
    return labels


def _label_index(value: str, class_names: list[str], index_of: dict[str, int], source: Path) -> int:
    if value in index_of:
        return index_of[value]
    if value.isdigit() and int(value) < len(class_names):
        return int(value)
    raise DatasetError(f"{source}: label {value!r} is neither a wnid of the {len(class_names)} classes nor a class index")


def _flat_val(root: Path, val: Path, class_names: list[str] | None) -> tuple[FileTable, np.ndarray, list[str]]:
    label_file = next((root / name for name in LABEL_FILES if (root / name).is_file()), None)
    if label_file is None:
        raise DatasetError(f"imagenet:{root}: ROOT/val is a flat folder but no labels file is there; put "
                           f"{' or '.join(LABEL_FILES)} in {root} (see artok.data.imagenet)")
    by_name = _read_solution_csv(label_file) if label_file.suffix == ".csv" else _read_labels_txt(label_file)
    if class_names is None:
        class_names = sorted({value for value in by_name.values() if not value.isdigit()})
    index_of = {name: index for index, name in enumerate(class_names)}
    files, _, _ = scan_folder(val)
    labels = np.empty(len(files), dtype=np.int64)
    for item in range(len(files)):
        name = files.name(item)
        value = by_name.get(name, by_name.get(name.rsplit(".", 1)[0]))
        if value is None:
            raise DatasetError(f"{label_file} has no label for val/{name}; every val image needs one")
        labels[item] = _label_index(value, class_names, index_of, label_file)
    return files, labels, class_names


def imagenet_files(root_text: str, split: str) -> tuple[FileTable, np.ndarray, list[str]]:
    """``(files, labels, class_names)`` of one split of an ImageNet folder (see the module docstring)."""
    root = Path(root_text).expanduser()
    if not root.is_dir():
        raise DatasetError(f"imagenet:{root_text}: no such folder; give the folder holding train/ and val/")
    train, val = root / "train", root / "val"
    train_classes = _class_folders(train) if train.is_dir() else None
    if split == "train":
        if not train_classes:
            raise DatasetError(f"imagenet:{root_text}: {train} holds no class folders (expected train/<wnid>/*.JPEG)")
        return scan_folder(train)
    if split not in ("val", "test"):
        raise DatasetError(f"imagenet datasets have the splits 'train' and 'val' (or 'test'), not {split!r}")
    if not val.is_dir():
        raise DatasetError(f"imagenet:{root_text}: no val folder {val}")
    val_classes = _class_folders(val)
    if not val_classes:
        return _flat_val(root, val, train_classes)
    files, labels, names = scan_folder(val)
    if train_classes is None:
        return files, labels, names
    index_of = {name: index for index, name in enumerate(train_classes)}
    unknown = [name for name in names if name not in index_of]
    if unknown:
        raise DatasetError(f"imagenet:{root_text}: val class {unknown[0]!r} is not a train class")
    remap = np.asarray([index_of[name] for name in names], dtype=np.int64)
    return files, remap[labels], train_classes
