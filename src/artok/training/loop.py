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
    device = torch.device(config.device)
    model.to(device).train()
    optimizer = build_optimizer(model, config.lr, config.weight_decay, config.betas)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.steps, config.min_lr_ratio)
    ema = None
    if config.ema_decay is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    result = TrainResult(model, ema)
    start = 0
    checkpoint_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        restore_rng_state(state["rng"])
        start = int(state["step"])
        result.history = list(state.get("history", []))
        result.evaluations = list(state.get("evaluations", []))
        result.seconds = float(state.get("seconds", 0.0))

    def checkpoint(step: int) -> None:
        if checkpoint_path is None:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": None if ema is None else ema.state_dict(),
                "rng": capture_rng_state(),
                "step": step,
                "history": result.history,
                "evaluations": result.evaluations,
                "seconds": result.seconds,
                "config": asdict(config),
            },
        )

    bar = tqdm(range(start, config.steps), desc=description, disable=not config.progress, dynamic_ncols=True)
    window_images, window_start = 0, time.perf_counter()
    run_start = time.perf_counter()
    for step in bar:
        with config.autocast():
            outputs = loss_fn(model, step)
        loss = outputs["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        window_images += int(outputs.get("batch_size", config.batch_size))
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            elapsed = time.perf_counter() - window_start
            record = {"step": done, "loss": loss.item(), "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm)}
            for key, value in outputs.items():
                if key not in ("loss", "batch_size") and torch.is_tensor(value) and value.numel() == 1:
                    record[key] = value.item()
            record["images_per_s"] = window_images / max(elapsed, 1e-9)
            result.history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
            window_images, window_start = 0, time.perf_counter()
        if eval_fn is not None and config.eval_every and done % config.eval_every == 0 and done != config.steps:
            result.evaluations.append({"step": done, **eval_fn(result.final_model, done)})
            model.train()
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            result.seconds += time.perf_counter() - run_start
            run_start = time.perf_counter()
            checkpoint(done)
    result.seconds += time.perf_counter() - run_start
    if start < config.steps:
        checkpoint(config.steps)
    if eval_fn is not None and start < config.steps:
        result.evaluations.append({"step": config.steps, **eval_fn(result.final_model, config.steps)})
    model.eval()
    if out_dir is not None:
        (Path(out_dir) / "history.json").write_text(json.dumps(result.history))
    return result
