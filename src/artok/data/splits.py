"""Deterministic, class-stratified index selection: train/test splits, subsets, balanced picks.

Fixed splits use numpy's legacy ``RandomState``, whose random stream numpy has frozen (NEP 19), so
a split computed today is the same split on any later numpy, machine or OS: a model is never
evaluated on images it was trained on because a library changed its generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _class_indices(labels: torch.Tensor) -> list[np.ndarray]:
    """Indices of each class present in ``labels``, in ascending class order, each ascending."""
    array = labels.cpu().numpy()
    return [np.flatnonzero(array == value) for value in np.unique(array)]


def num_test_images(size: int, test_fraction: float) -> int:
    """Images of a class of ``size`` images that go to the test split.

    ``round(size * test_fraction)`` (halves up), but at least one when the class has two or more
    images and never the whole class, so both splits see every class that can be split.
    """
    if size < 2:
        return 0
    return min(size - 1, max(1, math.floor(size * test_fraction + 0.5)))


def stratified_test_mask(labels: torch.Tensor, test_fraction: float, seed: int) -> torch.Tensor:
    """``N`` bool mask choosing ``num_test_images(n_c, test_fraction)`` random images of every class.

    Deterministic for a given ``seed`` and labels (see the module docstring).
    """
    rng = np.random.RandomState(seed)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for indices in _class_indices(labels):
        chosen = rng.permutation(indices.size)[: num_test_images(indices.size, test_fraction)]
        mask[indices[chosen]] = True
    return torch.from_numpy(mask)


def first_per_class_mask(labels: torch.Tensor, count: int) -> torch.Tensor:
    """``N`` bool mask marking, within each class, its first ``count`` images (in index order)."""
    mask = np.zeros(labels.shape[0], dtype=bool)
    for indices in _class_indices(labels):
        mask[indices[:count]] = True
    return torch.from_numpy(mask)


def stratified_subset(labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Ascending int64 indices of at most ``limit`` images with the class proportions of ``labels``.

    Each class gets ``limit * n_c / N`` images rounded by largest remainder (so the total is
    exactly ``limit``); which images is a seeded random choice within the class.
    """
    total = labels.shape[0]
    if limit >= total:
        return torch.arange(total)
    groups = _class_indices(labels)
    sizes = np.array([group.size for group in groups])
    quotas = limit * sizes / total
    counts = np.floor(quotas).astype(np.int64)
    # Largest remainder; ties go to the lower class index (stable sort), so the result is fixed.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: limit - counts.sum()]] += 1
    rng = np.random.RandomState(seed)
    chosen = [group[rng.permutation(group.size)[:count]] for group, count in zip(groups, counts, strict=True)]
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


def class_balanced_indices(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Int64 indices of ``per_class`` random images of every class, grouped by ascending class.

    Classes with fewer than ``per_class`` images contribute all of theirs. Randomness comes only from
    ``generator`` (a CPU ``torch.Generator``), so the same generator state gives the same indices.

    Args:
        labels: ``N`` int64 class labels.
        per_class: images wanted per class (> 0).
        generator: the source of randomness.
    Returns:
        ``sum_c min(per_class, n_c)`` int64 indices (e.g. a class-conditional sample grid's row order).
    """
    if per_class <= 0:
        raise ValueError(f"per_class must be positive, got {per_class}")
    labels = labels.cpu()
    picked = []
    for value in torch.unique(labels):
        indices = torch.nonzero(labels == value).flatten()
        order = torch.randperm(indices.numel(), generator=generator)
        picked.append(indices[order[:per_class]])
    return torch.cat(picked)
