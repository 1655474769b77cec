"""Datasets: real images in memory as uint8, loaded by name with `load_dataset`.

Built-in names are in `DATASETS`: ``digits``, ``mnist``, ``fashion-mnist``, ``photos`` and
``folder:PATH``. Every loader returns an `ImageDataset`; problems a user can fix raise
`DatasetError` with a one-line message.
"""

from artok.data.base import ImageDataset, to_uint8
from artok.data.batches import infinite_batches
from artok.data.errors import DatasetError
from artok.data.load import DATASETS, SPLITS, load_dataset
from artok.data.splits import class_balanced_indices

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetError",
    "ImageDataset",
    "class_balanced_indices",
    "infinite_batches",
    "load_dataset",
    "to_uint8",
]
