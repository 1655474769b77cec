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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from artok.training.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from artok.training.optim import build_optimizer, warmup_cosine


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
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    amp: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps}, {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
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


class TrainingSession:
    """The bookkeeping every training loop shares: AdamW + warmup/cosine, optional EMA, resume from
    ``out_dir/checkpoint.pt`` (with every RNG state), atomic checkpoints, the loss-curve records
    with images/s, periodic evaluation, and the final evaluation and ``history.json``.

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
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.extra_state = dict(extra_state or {})
        self.extra_meta = dict(extra_meta or {})
        self.result = TrainResult(model, self.ema)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_path = self.out_dir / "checkpoint.pt" if self.out_dir is not None else None
        self.start = 0
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._restore()
        self._window_images, self._window_start = 0, time.perf_counter()
        self._run_start = time.perf_counter()

    def _restore(self) -> None:
        state = load_checkpoint(self.checkpoint_path, map_location=self.device)
        missing = [name for name in self.extra_state if name not in state]
        if missing:
            raise ValueError(f"{self.checkpoint_path} was written without {', '.join(missing)}; it cannot resume this run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for name, stateful in self.extra_state.items():
            stateful.load_state_dict(state[name])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        restore_rng_state(state["rng"])
        self.start = int(state["step"])
        self.result.history = list(state.get("history", []))
        self.result.evaluations = list(state.get("evaluations", []))
        self.result.seconds = float(state.get("seconds", 0.0))

    def steps(self, description: str):
        """The remaining step indices, with a progress bar."""
        self.bar = tqdm(range(self.start, self.config.steps), desc=description, disable=not self.config.progress,
                        dynamic_ncols=True)
        return self.bar

    def checkpoint(self, step: int) -> None:
        if self.checkpoint_path is None:
            return
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
            "config": asdict(self.config),
            **self.extra_meta,
        })

    def end_step(self, step: int, loss: torch.Tensor, grad_norm, metrics: dict, batch_size: int, eval_fn=None,
                 postfix: dict | None = None) -> None:
        """After the optimiser steps of ``step``: EMA update, curve record, evaluation, checkpoint."""
        config = self.config
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
            shown = {"loss": f"{record['loss']:.4f}", "img_s": f"{record['images_per_s']:.0f}"}
            shown.update({key: f"{record[value]:.3f}" for key, value in (postfix or {}).items() if value in record})
            self.bar.set_postfix(**shown)
            self._window_images, self._window_start = 0, time.perf_counter()
        if eval_fn is not None and config.eval_every and done % config.eval_every == 0 and done != config.steps:
            self.result.evaluations.append({"step": done, **eval_fn(self.result.final_model, done)})
            self.model.train()
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            self.result.seconds += time.perf_counter() - self._run_start
            self._run_start = time.perf_counter()
            self.checkpoint(done)

    def finish(self, eval_fn=None) -> TrainResult:
        """Final checkpoint and evaluation (when steps ran), eval mode, ``history.json``."""
        self.result.seconds += time.perf_counter() - self._run_start
        if self.start < self.config.steps:
            self.checkpoint(self.config.steps)
            if eval_fn is not None:
                self.result.evaluations.append({"step": self.config.steps, **eval_fn(self.result.final_model, self.config.steps)})
        self.model.eval()
        if self.out_dir is not None:
            (self.out_dir / "history.json").write_text(json.dumps(self.result.history))
        return self.result


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")


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
        check_finite(loss, step)
        session.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        session.optimizer.step()
        session.scheduler.step()
        metrics = {k: v for k, v in outputs.items() if k not in ("loss", "batch_size")}
        session.end_step(step, loss, grad_norm, metrics, int(outputs.get("batch_size", config.batch_size)), eval_fn)
    return session.finish(eval_fn)
