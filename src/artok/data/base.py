"""The in-memory image dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageDataset:
    """Images and labels of one split, held in memory as uint8 (small enough for every built-in set).

    Attributes:
        images: ``N x C x H x W`` uint8 in [0, 255].
        labels: ``N`` int64 class indices (all zeros for unlabelled sets such as ``photos``).
        class_names: names of the classes, ``len(class_names) == num_classes``.
        name: the dataset name it was loaded with (``"digits"``, ``"folder:/path"``, ...).
        split: ``"train"``, ``"test"`` or ``"all"``.
        skipped: number of files left out (folder datasets): unreadable, too large to decode, or
            of another size when outliers are skipped.
        resized: number of images that were center-cropped and resized because their size
            differed from the dataset's (folder datasets).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str
    split: str
    skipped: int = 0
    resized: int = 0

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be N x C x H x W uint8, got {tuple(self.images.shape)} {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        if self.images.shape[0] == 0:
            raise ValueError(f"dataset {self.name!r} ({self.split}) is empty")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [-1, 1] and labels for the given indices."""
        images = self.images[index].to(device=device, dtype=torch.float32).div_(127.5).sub_(1.0)
        return images, self.labels[index].to(device)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255] (clamped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
