"""Endless, deterministic shuffled batches for training loops."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from artok.data.base import ImageDataset


def infinite_batches(
    dataset: ImageDataset,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches forever, reshuffling every epoch.

    The index stream is epoch after epoch of ``torch.randperm(len(dataset), generator=generator)``
    and batches are consecutive slices of it that may straddle two epochs. So every batch has
    exactly ``batch_size`` images (static shapes for compiled models, even when ``batch_size`` exceeds
    the dataset), every image appears once per epoch, and the same generator state always gives the
    same batches.

    Args:
        dataset: the images to draw from.
        batch_size: images per batch (> 0).
        generator: a CPU ``torch.Generator``, the only source of randomness.
        device: where the batches are placed.
    Yields:
        images ``batch_size x C x H x W`` float32 in [-1, 1] and labels ``batch_size`` int64.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    size = len(dataset)
    pending = torch.empty(0, dtype=torch.int64)
    while True:
        while pending.numel() < batch_size:
            pending = torch.cat([pending, torch.randperm(size, generator=generator)])
        index, pending = pending[:batch_size], pending[batch_size:]
        yield dataset.batch(index, device)
