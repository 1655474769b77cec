"""TensorBoard event files for a training run (scalars and sample grids)."""

from __future__ import annotations

import math
from pathlib import Path

import torch


class EventLogger:
    """TensorBoard event files in ``out_dir/tensorboard`` (scalars of the loss curve and evaluations,
    sample grids at evaluation steps); silently off without an output folder or the ``tensorboard``
    package."""

    def __init__(self, out_dir: Path | None, enabled: bool) -> None:
        self.writer = None
        if not enabled or out_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def scalars(self, record: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(key if "/" in key else f"train/{key}", value, step)

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """``images``: ``N x C x H x W`` in [-1, 1], written as one grid."""
        if self.writer is None:
            return
        from artok.evaluation.report import image_grid

        grid = image_grid(images.detach().cpu().float(), nrow=min(10, images.shape[0]))
        self.writer.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
