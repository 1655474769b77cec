"""Mask schedules for masked / random-order generators (MaskGIT, https://arxiv.org/abs/2202.04200,
section 3.3; MAR, https://arxiv.org/abs/2406.11838).

``mask_ratio(progress)`` is the fraction of tokens still masked after ``progress`` in [0, 1] of the
iterations: 1 at the start, 0 at the end, decreasing. MaskGIT found the concave cosine schedule best:
few tokens are committed early, when the model knows least.

`masked_counts` turns a schedule into the exact number of masked tokens after each iteration:
``floor(L * ratio((t + 1) / T))``, forced to decrease by at least one per iteration (every iteration
commits at least one token) and to reach 0 at the last one. Training draws the ratio from the same
schedule at a uniformly random progress (`training_mask_ratio`).
"""

from __future__ import annotations

import math

import torch

MASK_SCHEDULES = ("cosine", "linear", "square", "sqrt")


def mask_ratio(progress: float | torch.Tensor, schedule: str = "cosine"):
    """Fraction still masked at ``progress`` (a float or tensor in [0, 1])."""
    is_tensor = torch.is_tensor(progress)
    if schedule == "cosine":
        return torch.cos(progress * math.pi / 2) if is_tensor else math.cos(progress * math.pi / 2)
    if schedule == "linear":
        return 1 - progress
    if schedule == "square":
        return 1 - progress**2
    if schedule == "sqrt":
        return 1 - (progress.sqrt() if is_tensor else math.sqrt(progress))
    raise ValueError(f"unknown mask schedule {schedule!r}; choose one of {MASK_SCHEDULES}")


def masked_counts(seq_len: int, iterations: int, schedule: str = "cosine") -> list[int]:
    """Number of tokens still masked after each of ``iterations`` steps (the last is 0).

    Needs ``1 <= iterations <= seq_len`` (each iteration commits at least one token)."""
    if not 1 <= iterations <= seq_len:
        raise ValueError(f"iterations must be in [1, {seq_len}] (the sequence length), got {iterations}")
    counts, remaining = [], seq_len
    for step in range(iterations):
        target = int(math.floor(seq_len * mask_ratio((step + 1) / iterations, schedule) + 1e-9))
        # at least one token per iteration, and enough left for the remaining iterations
        target = min(target, remaining - 1)
        target = max(target, iterations - step - 1)
        counts.append(0 if step == iterations - 1 else target)
        remaining = counts[-1]
    return counts


def training_mask_ratio(batch_size: int, schedule: str, device=None) -> torch.Tensor:
    """Ratios ``mask_ratio(u)`` with ``u ~ U(0, 1)``, one per row (MaskGIT training)."""
    return mask_ratio(torch.rand(batch_size, device=device), schedule)
