"""What every trainer is configured and answered with: `TrainConfig`, `TrainResult`, the
exceptions a run stops with, the EMA update rule, and the batch of a step (`batch_indices`, the
one-process case of `artok.distributed.sharding.global_batch_indices`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from artok.distributed.sharding import global_batch_indices


@dataclass
class TrainConfig:
    """Options common to every trainer.

    Args:
        steps: optimisation steps in total (a resumed run continues up to this).
        batch_size: images (or token sequences) per step.
        lr, weight_decay, betas: AdamW.
        warmup_steps: linear warmup length; cosine decay to ``min_lr_ratio`` * lr afterwards.
        grad_clip: max global gradient norm (0 = off).
        ema_decay: keep an EMA copy of the weights with this decay (None = off).
        eval_every: call the evaluation callback every this many steps (0 = only at the end).
        checkpoint_every: write ``checkpoint.pt`` every this many steps (0 = only at the end).
        checkpoint_minutes: also write it when this many minutes passed since the last one (0 = off),
            so a slow run never loses more than that.
        keep: checkpoints kept as ``checkpoint-STEP.pt`` besides ``checkpoint.pt`` (hard links, no
            extra space; 1 = only ``checkpoint.pt``).
        max_skipped_steps: steps with a non-finite loss or gradient are skipped (not applied); this
            many in a row stop the run with `TrainingDiverged` (0 = stop at the first).
        log_every: record the loss curve every this many steps.
        seed: seeds the model init, the batch order and every RNG.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        amp: bf16 autocast (``"auto"``: on CUDA only).
        progress: show a progress bar.
        grad_accum: gradient-accumulation micro-steps per optimisation step. The global batch is
            ``batch_size`` x world size x ``grad_accum`` (``batch_size`` is per process and
            micro-step); the micro-steps of a process skip the gradient all-reduce but the last.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float | None = None
    eval_every: int = 0
    checkpoint_every: int = 0
    checkpoint_minutes: float = 0.0
    keep: int = 1
    max_skipped_steps: int = 10
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    amp: str = "auto"
    progress: bool = True
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps}, {self.batch_size}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        for name in ("checkpoint_every", "eval_every", "max_skipped_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.log_every < 1 or self.keep < 1:
            raise ValueError(f"log_every and keep must be >= 1, got {self.log_every}, {self.keep}")
        if not math.isfinite(self.checkpoint_minutes) or self.checkpoint_minutes < 0:
            raise ValueError(f"checkpoint_minutes must be a finite number >= 0, got {self.checkpoint_minutes}")
        if not math.isfinite(self.grad_clip) or self.grad_clip < 0:
            raise ValueError(f"grad_clip must be a finite number >= 0, got {self.grad_clip}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        self.betas = tuple(self.betas)

    def autocast(self):
        device_type = torch.device(self.device).type
        enabled = self.amp == "bf16" or (self.amp == "auto" and device_type == "cuda")
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)


def batch_indices(num_items: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the batch at ``step``: consecutive slices of a per-epoch seeded permutation."""
    return global_batch_indices(num_items, batch_size, step, seed)


@dataclass
class TrainResult:
    model: torch.nn.Module
    ema: torch.nn.Module | None
    history: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_model(self) -> torch.nn.Module:
        """EMA weights when kept, else the trained weights."""
        return self.ema.module if self.ema is not None else self.model


class TrainingDiverged(ValueError):
    """Training stopped because the loss, the gradients or the weights stopped being finite; the
    message (one line) names the step and the checkpoint that was kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; the step in progress finished and a checkpoint was written."""


class TrainingWarning(UserWarning):
    """Something a user should know about a training run that does not stop it."""


def ema_multi_avg_fn(decay: float):
    """``AveragedModel``'s update for an exponential moving average of the floating-point tensors
    only: integer and boolean buffers (index tables such as next-X's ``unit_index``, counters) are
    copied from the model, since averaging them in float and truncating corrupts them."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        # AveragedModel groups tensors by device and dtype, so a group is all float or all not.
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        else:
            torch._foreach_copy_(averaged, current)

    return update


def _all_finite(tensors) -> bool:
    values = [t for t in tensors if t.is_floating_point()]
    return not values or bool(torch.stack([torch.isfinite(t).all() for t in values]).all())


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"training diverged: the loss became {loss.item()} at step {step + 1}; "
                               "lower the learning rate (--lr)")


def non_finite_reason(loss: torch.Tensor, grad_norm: torch.Tensor | None = None) -> str | None:
    """Why this step must not be applied, or None: a non-finite loss or global gradient norm."""
    if not torch.isfinite(loss.detach()):
        return f"the loss is {loss.item()}"
    if grad_norm is not None and not torch.isfinite(grad_norm):
        return f"the gradient norm is {float(grad_norm)}"
    return None
