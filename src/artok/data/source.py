"""What each built-in dataset module hands to `load_dataset` before split selection."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSource:
    """All images of one dataset at its native size, with the fixed train/test assignment.

    Attributes:
        images: ``N x C x H x W`` uint8.
        labels: ``N`` int64.
        class_names: one name per class.
        test_mask: ``N`` bool, True for test images; ``None`` for evaluation-only sets (``photos``),
            whose "test" and "all" splits are the whole set and which have no "train" split.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    test_mask: torch.Tensor | None
