"""The training loop every trainer shares: AdamW + warmup/cosine, gradient clipping and
accumulation, optional EMA weights, bf16 autocast on CUDA, a progress bar with loss and images/s,
periodic evaluation, and atomic resumable checkpoints; in one process or under torchrun with DDP
or FSDP2 (`artok.distributed`), applied from outside to the unchanged model.

Batches are a deterministic function of ``(seed, step)`` (an epoch-wise permutation, split over
ranks and micro-steps by `artok.distributed.sharding.Shard`), so a run resumed from a checkpoint
sees exactly the batches the uninterrupted run would have seen, and, with the restored RNG
states, follows the same loss trajectory. One process with batch ``B``, ``W`` processes with
``B / W`` each and one process with ``B / K`` and ``grad_accum=K`` read the same images per step.
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from artok.distributed.env import (
    SINGLE,
    DistributedEnv,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    is_distributed,
)
from artok.distributed.parallel import ParallelConfig, parallelize
from artok.hub import atomic_write_text, remove_stale_temporaries
from artok.training.dcp_checkpoint import dcp_checkpoints, load_dcp, load_meta, remove_stale_dcp, save_dcp, tensor_state
from artok.training.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    checkpoint_candidates,
    keep_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from artok.training.config import (  # noqa: F401 - re-exported: the names trainers import from here
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    TrainingWarning,
    TrainResult,
    _all_finite,
    batch_indices,
    check_finite,
    ema_multi_avg_fn,
    non_finite_reason,
)
from artok.training.ema import ShardedEMA
from artok.training.events import EventLogger
from artok.training.optim import build_optimizer, warmup_cosine
from artok.training.signals import DeferredSignals


class TrainingSession:
    """The bookkeeping every training loop shares: AdamW + warmup/cosine, optional EMA, resume from
    the newest readable checkpoint in ``out_dir`` (with every RNG state), atomic periodic
    checkpoints (by steps and by minutes, ``keep`` of them), skipping of non-finite steps and a
    one-line stop on divergence that keeps the last finite checkpoint, a checkpoint on
    SIGINT/SIGTERM, the loss-curve records with images/s (also as TensorBoard events), periodic
    evaluation, and the final evaluation and ``history.json``.

    ``parallel`` and ``env`` spread the model over torchrun's processes (`artok.distributed`):
    ``self.view`` is the model as the loss code must call it (through DDP/FSDP), ``self.shard``
    names this rank's part of every batch. Rank 0 alone shows progress, logs and writes files;
    decisions (skip a step, checkpoint now, stop on a signal) are taken the same on every rank.

    ``extra_state`` names further stateful objects (``state_dict``/``load_state_dict``), e.g. a
    discriminator and its optimiser, saved and restored with the rest; ``extra_meta`` is stored as is.
    """

    def __init__(self, model, config: TrainConfig, *, out_dir=None, resume: bool = False,
                 extra_state: dict | None = None, extra_meta: dict | None = None,
                 parallel: ParallelConfig | None = None, env: DistributedEnv = SINGLE,
                 routed: tuple[str, ...] = ("loss",)) -> None:
        self.model, self.config, self.env = model, config, env
        self.device = torch.device(env.device if env.distributed else config.device)
        model.to(self.device).train()
        self.ema = None
        if config.ema_decay is not None and not _sharded(parallel, env):
            self.ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.parallel = parallelize(model, parallel, env)
        self.view = self.parallel.view(routed)
        self.shard = env.shard(config.grad_accum)
        if config.ema_decay is not None and self.parallel.sharded:
            self.ema = ShardedEMA(model, config.ema_decay)
        self.optimizer = build_optimizer(model, config.lr, config.weight_decay, config.betas)
        self.scheduler = warmup_cosine(self.optimizer, config.warmup_steps, config.steps, config.min_lr_ratio)
        self.extra_state = dict(extra_state or {})
        self.extra_meta = dict(extra_meta or {})
        self.result = TrainResult(model, self.ema if isinstance(self.ema, AveragedModel) else None)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        self.start = 0
        self.last_checkpoint_step: int | None = None
        self.skipped_in_row = 0
        self.skipped_total = 0
        self.signals = DeferredSignals()
        if self.out_dir is not None and env.is_main:
            remove_stale_temporaries(self.out_dir)
            remove_stale_dcp(self.out_dir)
        if resume:
            self._resume()
        self.logger = EventLogger(self.out_dir, enabled=self.out_dir is not None and env.is_main)
        self._window_images, self._window_start = 0, time.perf_counter()
        self._run_start = self._last_checkpoint_time = time.perf_counter()

    # -- resume ---------------------------------------------------------------------------------
    def _resume(self) -> None:
        sharded = dcp_checkpoints(self.out_dir) if self.out_dir is not None else []
        plain = checkpoint_candidates(self.out_dir) if self.out_dir is not None else []
        if not sharded and not plain:
            self.warn(f"nothing to resume in {self.out_dir}: no checkpoint there; training starts at step 0")
            return
        errors = []
        for path in sharded:
            try:
                self._restore_dcp(path)
            except ValueError as error:
                errors.append(str(error))
                continue
            return self._resumed_from(path, errors)
        for path in plain:
            try:
                state = load_checkpoint(path, map_location=self.device)
            except ValueError as error:
                errors.append(str(error))
                continue
            self._restore(path, state)
            return self._resumed_from(path, errors)
        raise ValueError(f"no readable checkpoint in {self.out_dir} ({errors[0]}); delete it or train into a new --out")

    def _resumed_from(self, path: Path, errors: list[str]) -> None:
        if errors:
            self.warn(f"resumed from {path.name}: newer checkpoints were unreadable ({errors[0]})")

    def _restore(self, path: Path, state: dict) -> None:
        missing = [name for name in ("model", "optimizer", "step", *self.extra_state) if name not in state]
        if missing:
            raise ValueError(f"{path} was written without {', '.join(missing)}; it cannot resume this run")
        _check_same_shapes(path, self.model.state_dict(), state["model"])
        if self.parallel.sharded:  # a one-process/DDP checkpoint resumed under FSDP2: reshard through DCP's API
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for name, stateful in self.extra_state.items():
            stateful.load_state_dict(state[name])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        ranks = state.get("rng_ranks")
        self._restore_rng(ranks[self.env.rank] if ranks and len(ranks) == self.env.world_size else
                          (state["rng"] if self.env.world_size == 1 else None), int(state["step"]))
        self._restore_meta(state)

    def _restore_dcp(self, path: Path) -> None:
        meta = load_meta(path)
        tensors = {name: value for name, value in self.extra_state.items()
                   if isinstance(value, torch.nn.Module | torch.optim.Optimizer)}
        load_dcp(path, self.model, self.optimizer, self.ema, tensors)
        self.scheduler.load_state_dict(meta["scheduler"])
        for name, value in self.extra_state.items():
            if name not in tensors:
                value.load_state_dict(meta["extra"][name])
        rng_file = path / f"rng-{self.env.rank}.pt"
        same_world = int(meta.get("world_size", 1)) == self.env.world_size and rng_file.is_file()
        rng = torch.load(rng_file, map_location="cpu", weights_only=True) if same_world else None
        self._restore_rng(rng, int(meta["step"]))
        self._restore_meta(meta)

    def _restore_rng(self, rng: dict | None, step: int) -> None:
        if rng is not None:
            restore_rng_state(rng)
            return
        # Another world size: no per-rank RNG stream to continue; re-seed deterministically.
        torch.manual_seed(self.config.seed * 1_000_003 + step * 131 + self.env.rank)

    def _restore_meta(self, state: dict) -> None:
        stored = state.get("config") or {}
        before = int(stored.get("batch_size", self.config.batch_size)) * int(state.get("world_size", 1)) * int(
            stored.get("grad_accum", 1))
        now = self.shard.global_batch(self.config.batch_size)
        if before != now:
            self.warn(f"resumed with a global batch of {now} (the checkpoint's run had {before}: --batch-size x "
                      "processes x --grad-accum); the batch order from here on differs from the original run's")
        self.start = self.last_checkpoint_step = int(state["step"])
        self.result.history = list(state.get("history", []))
        self.result.evaluations = list(state.get("evaluations", []))
        self.result.seconds = float(state.get("seconds", 0.0))
        self.skipped_total = int(state.get("skipped_steps", 0))

    # -- the step loop --------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        if self.env.is_main:
            warnings.warn(message, TrainingWarning, stacklevel=3)

    def steps(self, description: str):
        """The remaining step indices, with a progress bar (rank 0). SIGINT/SIGTERM during a step
        let it finish, write a checkpoint and raise `TrainingInterrupted` (on every rank together)."""
        self.bar = tqdm(range(self.start, self.config.steps), desc=description,
                        disable=not self.config.progress or not self.env.is_main, dynamic_ncols=True)
        with self.signals:
            for step in self.bar:
                yield step
                if self._agreed(self.signals.received is not None):
                    self._stop_on_signal(step + 1)

    def _agreed(self, flag: bool) -> bool:
        """``flag`` on any rank (one tiny all-reduce per step when distributed)."""
        if not is_distributed():
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def _stop_on_signal(self, done: int) -> None:
        self.bar.close()
        where = ""
        if self.checkpoint_path is not None:
            if self.last_checkpoint_step != done:
                self._save(done)
            where = f"; checkpoint at step {done} in {self.out_dir}, continue with --resume"
        self.logger.close()
        raise TrainingInterrupted(f"{self.signals.received or 'SIGTERM'} at step {done}{where}")

    def micro_backward(self, step: int, loss: torch.Tensor) -> torch.Tensor | None:
        """Backpropagate one micro-step's ``loss`` (already divided by the accumulation count);
        the loss averaged over ranks, or None when it is not finite on some rank (the step is then
        skipped on every rank, and the caller must stop its micro-steps and not step)."""
        reduced = all_reduce_mean(loss.detach())
        reason = non_finite_reason(reduced)
        if reason is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.skip(step, reason)
            return None
        loss.backward()
        return reduced

    def clip(self, step: int, parameters, clip: float) -> torch.Tensor | None:
        """Clip the accumulated gradients; their global norm, or None (step skipped) when not finite."""
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        reason = non_finite_reason(torch.zeros(()), grad_norm)
        if reason is None:
            return grad_norm
        self.optimizer.zero_grad(set_to_none=True)
        self.skip(step, reason)
        return None

    def backward(self, step: int, loss: torch.Tensor, parameters, clip: float) -> torch.Tensor | None:
        """Zero the gradients, backpropagate ``loss`` (one micro-step) and clip; the global
        gradient norm, or None when the loss or the norm is not finite (the step is skipped)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.micro_backward(step, loss) is None:
            return None
        return self.clip(step, parameters, clip)

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
        self.warn(f"step {step + 1} skipped: {reason}")

    def _kept_message(self) -> str:
        if self.checkpoint_path is None or self.last_checkpoint_step is None:
            return "no checkpoint was written"
        return f"the last finite checkpoint (step {self.last_checkpoint_step}) is kept in {self.out_dir}"

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, step: int) -> None:
        """Write the checkpoint of ``step`` unless the weights stopped being finite: then the last
        finite checkpoint stays and `TrainingDiverged` says so."""
        if self.checkpoint_path is None:
            return
        tensors = list(self.model.parameters()) + ([] if self.ema is None else list(self.ema.parameters()))
        local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
        if self._agreed(not _all_finite(local)):
            self.logger.close()
            raise TrainingDiverged(f"training diverged: the weights became non-finite by step {step} "
                                   f"(lr {self.config.lr:g}); {self._kept_message()}; lower the learning rate (--lr)")
        self._save(step)

    def _meta(self, step: int) -> dict:
        from artok.distributed.sharding import data_position

        return {"step": step, "history": self.result.history, "evaluations": self.result.evaluations,
                "seconds": self.result.seconds, "skipped_steps": self.skipped_total, "config": asdict(self.config),
                "world_size": self.env.world_size, "scheduler": self.scheduler.state_dict(),
                "data": data_position(self.extra_meta.get("num_items", 1) or 1,
                                      self.shard.global_batch(self.config.batch_size), step),
                **self.extra_meta}

    def _save(self, step: int) -> None:
        if self.parallel.sharded:
            tensors = {n: v for n, v in self.extra_state.items() if isinstance(v, torch.nn.Module | torch.optim.Optimizer)}
            state = tensor_state(self.model, self.optimizer, self.ema, tensors)
            meta = {**self._meta(step), "extra": {n: v.state_dict() for n, v in self.extra_state.items() if n not in tensors}}
            save_dcp(self.out_dir, step, state, meta, capture_rng_state(), rank=self.env.rank,
                                    keep=self.config.keep)
            if self.env.is_main:
                for old in checkpoint_candidates(self.out_dir):  # older, other-format checkpoints
                    old.unlink(missing_ok=True)
        else:
            ranks = all_gather_objects(capture_rng_state())
            if self.env.is_main:
                save_checkpoint(self.checkpoint_path, {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    **{name: stateful.state_dict() for name, stateful in self.extra_state.items()},
                    "ema": None if self.ema is None else self.ema.state_dict(),
                    "rng": ranks[0], "rng_ranks": ranks,
                    **self._meta(step),
                })
                keep_checkpoint(self.checkpoint_path, step, self.config.keep)
                for old in dcp_checkpoints(self.out_dir):  # older, other-format checkpoints
                    shutil.rmtree(old, ignore_errors=True)
            barrier()
        self.last_checkpoint_step = step
        self._last_checkpoint_time = time.perf_counter()

    def _checkpoint_due(self, done: int) -> bool:
        config = self.config
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            return True
        if not config.checkpoint_minutes:
            return False
        minutes = (time.perf_counter() - self._last_checkpoint_time) / 60
        return self._agreed(minutes >= config.checkpoint_minutes)

    # -- records --------------------------------------------------------------------------------
    def end_step(self, step: int, loss: torch.Tensor, grad_norm, metrics: dict, batch_size: int, eval_fn=None,
                 postfix: dict | None = None) -> None:
        """After the optimiser steps of ``step``: EMA update, curve record, evaluation, checkpoint.
        ``loss`` is the step's loss averaged over ranks and micro-steps, ``batch_size`` the images
        of this process's step (images/s counts all ranks)."""
        config = self.config
        self.skipped_in_row = 0
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self._window_images += batch_size * self.env.world_size
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
        if not self.env.is_main or self.parallel.sharded:  # evaluation runs on rank 0's whole model only
            return
        evaluation = eval_fn(self.result.final_model, done)
        images = evaluation.pop("images", None) if isinstance(evaluation, dict) else None
        self.result.evaluations.append({"step": done, **evaluation})
        self.logger.scalars({f"eval/{key}": value for key, value in evaluation.items()}, done)
        if images is not None:
            self.logger.images("eval/samples", images, done)
        self.model.train()

    def finish(self, eval_fn=None) -> TrainResult:
        """Final checkpoint and evaluation (when steps ran), eval mode, ``history.json``; under
        FSDP2 the final (EMA) weights are gathered into a whole model on every rank."""
        self.result.seconds += time.perf_counter() - self._run_start
        if self.start < self.config.steps:
            self.checkpoint(self.config.steps)
        if self.parallel.sharded:
            self.result.model, self.result.ema = self._gathered(), None
        if self.start < self.config.steps and eval_fn is not None:
            self._evaluate(eval_fn, self.config.steps)
        self.model.eval()
        self.logger.close()
        if self.out_dir is not None and self.env.is_main:
            atomic_write_text(self.out_dir / "history.json", json.dumps(self.result.history))
        return self.result

    def _gathered(self) -> torch.nn.Module:
        """A fresh one-device copy of the model holding the gathered final (EMA) weights."""
        from artok.distributed.parallel import full_state_dict

        state = self.ema.full_state_dict() if self.ema is not None else full_state_dict(self.model)
        whole = type(self.model)(self.model.config)
        whole.load_state_dict(state, strict=False)
        return whole.eval()


def _sharded(parallel: ParallelConfig | None, env: DistributedEnv) -> bool:
    return parallel is not None and parallel.sharded and env.distributed


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


def train(
    model: torch.nn.Module,
    loss_fn: Callable,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    description: str = "train",
    parallel: ParallelConfig | None = None,
    env: DistributedEnv = SINGLE,
    routed: tuple[str, ...] = ("loss",),
    extra_meta: dict | None = None,
) -> TrainResult:
    """Run ``config.steps`` optimisation steps of ``loss_fn(model, step, micro)``.

    ``loss_fn`` draws its own (micro-)batch for ``step`` and micro-step ``micro`` (see
    `artok.distributed.sharding.Shard.indices`; a two-argument ``loss_fn(model, step)`` is called
    in one process without accumulation) and returns a dict with ``"loss"`` (minimised), optional
    scalar metrics, and ``"batch_size"`` (for images/s). The model it gets is the session's view
    (through DDP/FSDP when distributed). With ``resume`` and a checkpoint in ``out_dir``,
    training continues from it.
    """
    session = TrainingSession(model, config, out_dir=out_dir, resume=resume, parallel=parallel, env=env,
                              routed=routed, extra_meta=extra_meta)
    clip = config.grad_clip if config.grad_clip > 0 else math.inf
    accumulation = config.grad_accum
    per_micro = len(inspect.signature(loss_fn).parameters) >= 3
    if not per_micro and (accumulation > 1 or env.distributed):
        raise ValueError("loss_fn(model, step) cannot be split over ranks or micro-steps; take (model, step, micro)")
    for step in session.steps(description):
        session.optimizer.zero_grad(set_to_none=True)
        loss, images = torch.zeros((), device=session.device), 0
        for micro in range(accumulation):
            with session.parallel.gradient_sync(micro == accumulation - 1), config.autocast():
                outputs = loss_fn(session.view, step, micro) if per_micro else loss_fn(session.view, step)
                micro_loss = outputs["loss"] / accumulation if accumulation > 1 else outputs["loss"]
                reduced = session.micro_backward(step, micro_loss)
            if reduced is None:
                break
            loss, images = loss + reduced, images + int(outputs.get("batch_size", config.batch_size))
        if reduced is None:
            continue
        grad_norm = session.clip(step, model.parameters(), clip)
        if grad_norm is None:
            continue
        session.optimizer.step()
        session.scheduler.step()
        metrics = {k: v for k, v in outputs.items() if k not in ("loss", "batch_size")}
        session.end_step(step, loss, grad_norm, metrics, images, eval_fn)
    return session.finish(eval_fn)
