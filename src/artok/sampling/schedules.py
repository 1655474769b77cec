"""Schedules over sampling steps: classifier-free-guidance scale schedules (constant, linear as
in MAR https://arxiv.org/abs/2406.11838) and mask schedules for masked generators."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

CFG_SCHEDULES = ("constant", "linear")


def cfg_scale_at(step: int, num_steps: int, scale: float, schedule: str = "constant") -> float:
    """Guidance scale at ``step`` of ``num_steps`` (0-based).

    ``constant``: ``scale`` everywhere. ``linear``: ramps from 1 (no guidance) at the first step to
    ``scale`` at the last, so early, layout-defining tokens are sampled with little guidance and
    diversity is kept.
    """
    if schedule == "constant":
        return scale
    if schedule == "linear":
        return 1.0 + (scale - 1.0) * (step / max(num_steps - 1, 1))
    raise ValueError(f"unknown cfg schedule {schedule!r}; choose one of {CFG_SCHEDULES}")


def cosine_mask_ratio(progress: float) -> float:
    """Fraction of tokens still masked after ``progress`` in [0, 1] of the iterations (MaskGIT)."""
    return math.cos(math.pi / 2 * progress)


def guidance_rows(labels: torch.Tensor, null_class: int, guided: bool) -> torch.Tensor:
    """The labels a guided batch runs: ``[labels; null]`` (``2B``) with guidance, else ``labels``."""
    return torch.cat([labels, torch.full_like(labels, null_class)]) if guided else labels


def doubler(guided: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``t -> [t; t]`` with guidance (both halves of a guided batch see the same tokens), else identity."""
    return (lambda t: torch.cat([t, t])) if guided else (lambda t: t)
