"""The training loop every trainer shares: AdamW + warmup/cosine, gradient clipping, optional EMA
weights, bf16 autocast on CUDA, a progress bar with loss and images/s, periodic evaluation, and
atomic resumable checkpoints.

Batches are a deterministic function of ``(seed, step)`` (an epoch-wise permutation), so a run
resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen, and,
with the restored RNG states, follows the same loss trajectory.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from artok.hub import atomic_write_text, remove_stale_temporaries
from artok.training.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    checkpoint_candidates,
    keep_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from artok.training.events import EventLogger
from artok.training.optim import build_optimizer, warmup_cosine
from artok.training.signals import DeferredSignals


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

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps}, {self.batch_size}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        for name in ("checkpoint_every", "eval_every", "max_skipped_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
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
    per_epoch = max(1, num_items // batch_size)
    epoch, position = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if batch_size >= num_items:
        return torch.randint(0, num_items, (batch_size,), generator=generator)
    order = torch.randperm(num_items, generator=generator)
    return order[position * batch_size : (position + 1) * batch_size]


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


class TrainingSession:
    """The bookkeeping every training loop shares: AdamW + warmup/cosine, optional EMA, resume from
    the newest readable checkpoint in ``out_dir`` (with every RNG state), atomic periodic
    checkpoints (by steps and by minutes, ``keep`` of them), skipping of non-finite steps and a
    one-line stop on divergence that keeps the last finite checkpoint, a checkpoint on
    SIGINT/SIGTERM, the loss-curve records with images/s (also as TensorBoard events), periodic
    evaluation, and the final evaluation and ``history.json``.

    ``extra_state`` names further stateful objects (``state_dict``/``load_state_dict``), e.g. a
    discriminator and its optimiser, saved and restored with the rest; ``extra_meta`` is stored as is.
    """

    def __init__(self, model, config: TrainConfig, *, out_dir=None, resume: bool = False,
                 extra_state: dict | None = None, extra_meta: dict | None = None) -> None:
        self.model, self.config = model, config
        self.device = torch.device(config.device)
        model.to(self.device).train()
        self.optimizer = build_optimizer(model, config.lr, config.weight_decay, config.betas)
        self.scheduler = warmup_cosine(self.optimizer, config.warmup_steps, config.steps, config.min_lr_ratio)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.extra_state = dict(extra_state or {})
        self.extra_meta = dict(extra_meta or {})
        self.result = TrainResult(model, self.ema)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        self.start = 0
        self.last_checkpoint_step: int | None = None
        self.skipped_in_row = 0
        self.skipped_total = 0
        self.signals = DeferredSignals()
        if self.out_dir is not None:
            remove_stale_temporaries(self.out_dir)
        if resume:
            self._resume()
        self.logger = EventLogger(self.out_dir, enabled=self.out_dir is not None)
        self._window_images, self._window_start = 0, time.perf_counter()
        self._run_start = self._last_checkpoint_time = time.perf_counter()

    def _resume(self) -> None:
        candidates = checkpoint_candidates(self.out_dir) if self.out_dir is not None else []
        if not candidates:
            warnings.warn(f"nothing to resume in {self.out_dir}: no checkpoint there; training starts at step 0",
                          TrainingWarning, stacklevel=3)
            return
        errors = []
        for path in candidates:
            try:
                state = load_checkpoint(path, map_location=self.device)
            except ValueError as error:
                errors.append(str(error))
                continue
            self._restore(path, state)
            if path != candidates[0]:
                warnings.warn(f"resumed from {path.name}: newer checkpoints were unreadable ({errors[0]})",
                              TrainingWarning, stacklevel=3)
            return
        raise ValueError(f"no readable checkpoint in {self.out_dir} ({errors[0]}); delete it or train into a new --out")

    def _restore(self, path: Path, state: dict) -> None:
        missing = [name for name in ("model", "optimizer", "step", *self.extra_state) if name not in state]
        if missing:
            raise ValueError(f"{path} was written without {', '.join(missing)}; it cannot resume this run")
        _check_same_shapes(path, self.model.state_dict(), state["model"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for name, stateful in self.extra_state.items():
            stateful.load_state_dict(state[name])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        restore_rng_state(state["rng"])
        self.start = self.last_checkpoint_step = int(state["step"])
        self.result.history = list(state.get("history", []))
        self.result.evaluations = list(state.get("evaluations", []))
        self.result.seconds = float(state.get("seconds", 0.0))
        self.skipped_total = int(state.get("skipped_steps", 0))

    def steps(self, description: str):
        """The remaining step indices, with a progress bar. SIGINT/SIGTERM during a step let it
        finish, write a checkpoint and raise `TrainingInterrupted`."""
        self.bar = tqdm(range(self.start, self.config.steps), desc=description, disable=not self.config.progress,
                        dynamic_ncols=True)
        with self.signals:
            for step in self.bar:
                yield step
                if self.signals.received is not None:
                    self._stop_on_signal(step + 1)

    def _stop_on_signal(self, done: int) -> None:
        self.bar.close()
        where = ""
        if self.checkpoint_path is not None:
            if self.last_checkpoint_step != done:
                self._save(done)
            where = f"; checkpoint at step {done} in {self.checkpoint_path}, continue with --resume"
        self.logger.close()
        raise TrainingInterrupted(f"{self.signals.received} at step {done}{where}")

    def backward(self, step: int, loss: torch.Tensor, parameters, clip: float) -> torch.Tensor | None:
        """Zero the gradients, backpropagate ``loss`` and clip; the global gradient norm, or None
        when the loss or the norm is not finite (the step is then skipped and recorded, and the
        caller must not step the optimiser)."""
        self.optimizer.zero_grad(set_to_none=True)
        reason = non_finite_reason(loss)
        if reason is None:
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
            reason = non_finite_reason(loss, grad_norm)
        if reason is None:
            return grad_norm
        self.optimizer.zero_grad(set_to_none=True)
        self.skip(step, reason)
        return None

    def skip(self, step: int, reason: str) -> None:
        """Record a step that was not applied (non-finite loss or gradients); stop when too many in a row."""
        self.skipped_in_row += 1
        self.skipped_total += 1
        self.scheduler.step()  # the schedule follows the step count whether or not a step applied
        self.result.history.append({"step": step + 1, "skipped": reason, "lr": self.scheduler.get_last_lr()[0]})
        if self.skipped_in_row > self.config.max_skipped_steps:
            self.bar.close()
            self.logger.close()
            raise TrainingDiverged(f"training diverged: {reason} at step {step + 1} "
                                   f"({self.skipped_in_row} non-finite steps in a row, lr {self.config.lr:g}); "
                                   f"{self._kept_message()}; lower the learning rate (--lr)")
        warnings.warn(f"step {step + 1} skipped: {reason}", TrainingWarning, stacklevel=3)

    def _kept_message(self) -> str:
        if self.checkpoint_path is None or self.last_checkpoint_step is None:
            return "no checkpoint was written"
        return f"the last finite checkpoint (step {self.last_checkpoint_step}) is kept in {self.checkpoint_path}"

    def checkpoint(self, step: int) -> None:
        """Write the checkpoint of ``step`` unless the weights stopped being finite: then the last
        finite checkpoint stays and `TrainingDiverged` says so."""
        if self.checkpoint_path is None:
            return
        tensors = list(self.model.parameters()) + ([] if self.ema is None else list(self.ema.parameters()))
        if not _all_finite(tensors):
            self.logger.close()
            raise TrainingDiverged(f"training diverged: the weights became non-finite by step {step} "
                                   f"(lr {self.config.lr:g}); {self._kept_message()}; lower the learning rate (--lr)")
        self._save(step)

    def _save(self, step: int) -> None:
        save_checkpoint(self.checkpoint_path, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **{name: stateful.state_dict() for name, stateful in self.extra_state.items()},
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": capture_rng_state(),
            "step": step,
            "history": self.result.history,
            "evaluations": self.result.evaluations,
            "seconds": self.result.seconds,
            "skipped_steps": self.skipped_total,
            "config": asdict(self.config),
            **self.extra_meta,
        })
        keep_checkpoint(self.checkpoint_path, step, self.config.keep)
        self.last_checkpoint_step = step
        self._last_checkpoint_time = time.perf_counter()

    def _checkpoint_due(self, done: int) -> bool:
        config = self.config
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            return True
        minutes = (time.perf_counter() - self._last_checkpoint_time) / 60
        return bool(config.checkpoint_minutes) and minutes >= config.checkpoint_minutes

    def end_step(self, step: int, loss: torch.Tensor, grad_norm, metrics: dict, batch_size: int, eval_fn=None,
                 postfix: dict | None = None) -> None:
        """After the optimiser steps of ``step``: EMA update, curve record, evaluation, checkpoint."""
        config = self.config
        self.skipped_in_row = 0
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self._window_images += batch_size
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            elapsed = time.perf_counter() - self._window_start
            record = {"step": done, "loss": loss.item(), "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm)}
            for key, value in metrics.items():
                if torch.is_tensor(value) and value.numel() == 1:
                    record[key] = value.item()
            record["images_per_s"] = self._window_images / max(elapsed, 1e-9)
            self.result.history.append(record)
            self.logger.scalars(record, done)
            shown = {"loss": f"{record['loss']:.4f}", "img_s": f"{record['images_per_s']:.0f}"}
            shown.update({key: f"{record[value]:.3f}" for key, value in (postfix or {}).items() if value in record})
            self.bar.set_postfix(**shown)
            self._window_images, self._window_start = 0, time.perf_counter()
        if eval_fn is not None and config.eval_every and done % config.eval_every == 0 and done != config.steps:
            self._evaluate(eval_fn, done)
        if done != config.steps and self._checkpoint_due(done):
            self.result.seconds += time.perf_counter() - self._run_start
            self._run_start = time.perf_counter()
            self.checkpoint(done)

    def _evaluate(self, eval_fn, done: int) -> None:
        evaluation = eval_fn(self.result.final_model, done)
        images = evaluation.pop("images", None) if isinstance(evaluation, dict) else None
        self.result.evaluations.append({"step": done, **evaluation})
        self.logger.scalars({f"eval/{key}": value for key, value in evaluation.items()}, done)
        if images is not None:
            self.logger.images("eval/samples", images, done)
        self.model.train()

    def finish(self, eval_fn=None) -> TrainResult:
        """Final checkpoint and evaluation (when steps ran), eval mode, ``history.json``."""
        self.result.seconds += time.perf_counter() - self._run_start
        if self.start < self.config.steps:
            self.checkpoint(self.config.steps)
            if eval_fn is not None:
                self._evaluate(eval_fn, self.config.steps)
        self.model.eval()
        self.logger.close()
        if self.out_dir is not None:
            atomic_write_text(self.out_dir / "history.json", json.dumps(self.result.history))
        return self.result


def _check_same_shapes(path: Path, expected: dict, stored: dict) -> None:
    """A one-line error when ``path`` holds a model of another shape (another --dim, --depth ...)."""
    missing = [name for name in expected if name not in stored]
    if missing:
        raise ValueError(f"{path} holds another model (no {missing[0]}); resume with the options it was "
                         "trained with, or train into a new --out")
    for name, tensor in expected.items():
        if tuple(stored[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{path} holds a model of another shape ({name}: {tuple(stored[name].shape)} there, "
                             f"{tuple(tensor.shape)} now); resume with the options it was trained with "
                             "(e.g. the same --dim), or train into a new --out")


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


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, int], dict[str, torch.Tensor]],
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    description: str = "train",
) -> TrainResult:
    """Run ``config.steps`` optimisation steps of ``loss_fn(model, step)``.

    ``loss_fn`` draws its own batch for ``step`` (see `batch_indices`) and returns a dict with
    ``"loss"`` (minimised), optional scalar metrics, and ``"batch_size"`` (for images/s).
    With ``resume`` and an existing ``out_dir/checkpoint.pt``, training continues from it.
    """
    session = TrainingSession(model, config, out_dir=out_dir, resume=resume)
    clip = config.grad_clip if config.grad_clip > 0 else math.inf
    for step in session.steps(description):
        with config.autocast():
            outputs = loss_fn(model, step)
        loss = outputs["loss"]
        grad_norm = session.backward(step, loss, model.parameters(), clip)
        if grad_norm is None:
            continue
        session.optimizer.step()
        session.scheduler.step()
        metrics = {k: v for k, v in outputs.items() if k not in ("loss", "batch_size")}
        session.end_step(step, loss, grad_norm, metrics, int(outputs.get("batch_size", config.batch_size)), eval_fn)
    return session.finish(eval_fn)
