"""Train a tokenizer on an image dataset.

The default objective is reconstruction (MSE + 0.2 L1) plus the quantizer's own loss, trained by
the shared loop (`artok.training.loop.train`). `TokenizerLossConfig` adds, optionally:

- an LPIPS-style perceptual term (`artok.losses.perceptual`), only with user-supplied VGG16
  weights (asked for without them: a warning, and the term stays off);
- an adversarial phase (`artok.losses.gan`): a PatchGAN discriminator trained by its own AdamW in
  alternation with the tokenizer (tokenizer step with the discriminator frozen, then a
  discriminator step on the same batch and the detached reconstructions), switched on at
  ``GANConfig.start_step``. The discriminator, its optimiser and schedule are part of
  ``checkpoint.pt``, so ``resume=True`` continues the game where it stopped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from artok.data.base import ImageDataset
from artok.losses import (
    AdversarialLoss,
    GANConfig,
    PerceptualLoss,
    load_perceptual_loss,
    reconstruction_loss,
)
from artok.distributed.env import SINGLE, all_reduce_mean
from artok.distributed.parallel import parallelize
from artok.tokenizers.base import Tokenizer
from artok.training.loop import (
    TrainConfig,
    TrainingSession,
    TrainingWarning,
    TrainResult,
    non_finite_reason,
    train,
)
from artok.training.optim import build_optimizer, warmup_cosine


@dataclass
class TokenizerLossConfig:
    """Loss terms of tokenizer training; the defaults are the plain recipe (MSE + 0.2 L1 + quantizer loss).

    Args:
        l2_weight, l1_weight: weights of the pixel MSE and L1.
        perceptual_weight: weight of the perceptual term (0 = off).
        perceptual_weights: path to VGG16 weights; the perceptual term needs it (nothing is downloaded).
        lpips_weights: optional path to LPIPS's linear-layer weights.
        adversarial: a `GANConfig` to add the adversarial phase (None = off).
        discriminator_lr: peak learning rate of the discriminator (None: the tokenizer's).
    """

    l2_weight: float = 1.0
    l1_weight: float = 0.2
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None
    lpips_weights: str | None = None
    adversarial: GANConfig | None = None
    discriminator_lr: float | None = None

    def __post_init__(self) -> None:
        if min(self.l2_weight, self.l1_weight, self.perceptual_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if isinstance(self.adversarial, dict):
            self.adversarial = GANConfig(**self.adversarial)
        if self.discriminator_lr is not None and self.discriminator_lr <= 0:
            raise ValueError(f"discriminator_lr must be positive, got {self.discriminator_lr}")


def tokenizer_loss(
    model: Tokenizer,
    images: torch.Tensor,
    l1_weight: float = 0.2,
    *,
    l2_weight: float = 1.0,
    perceptual: PerceptualLoss | None = None,
    perceptual_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Reconstruction (+ perceptual) + quantizer loss for one batch of images in [-1, 1].

    Returns ``loss`` (minimised), ``reconstruction_loss`` (the pixel + perceptual part, not
    detached, for the adaptive GAN weight), ``reconstruction`` (the decoded batch) and detached
    metrics (``mse``, ``quantizer_loss``, ``perceptual``, the quantizer's own metrics).
    """
    out = model(images)
    pixel = reconstruction_loss(out.reconstruction, images, l2_weight=l2_weight, l1_weight=l1_weight)
    rec = pixel.total
    losses = {"mse": pixel.l2.detach(), "quantizer_loss": out.quantizer.loss.detach()}
    if perceptual is not None and perceptual_weight > 0:
        distance = perceptual(out.reconstruction, images)
        rec = rec + perceptual_weight * distance
        losses["perceptual"] = distance.detach()
    for key, value in out.quantizer.metrics.items():
        losses[key] = value.detach()
    return {"loss": rec + out.quantizer.loss, "reconstruction_loss": rec, "reconstruction": out.reconstruction, **losses}


def last_decoder_layer(tokenizer: Tokenizer) -> torch.Tensor:
    """The weight the adaptive GAN weight is measured at: ``tokenizer.last_layer`` when defined,
    else the last matrix-shaped parameter of ``tokenizer.decoder``."""
    layer = getattr(tokenizer, "last_layer", None)
    if isinstance(layer, torch.Tensor):
        return layer
    decoder = getattr(tokenizer, "decoder", None)
    weights = [p for p in decoder.parameters() if p.dim() > 1] if decoder is not None else []
    if not weights:
        raise ValueError(f"{type(tokenizer).__name__} has neither last_layer nor a decoder; the adaptive GAN weight needs one")
    return weights[-1]


def _set_quantizer_step(tokenizer: Tokenizer, step: int) -> None:
    # Quantizers with scheduled terms (LFQ/BSQ entropy annealing) follow the training step.
    set_step = getattr(tokenizer.quantizer, "set_step", None)
    if callable(set_step):
        set_step(step)


def train_tokenizer(
    tokenizer: Tokenizer,
    dataset: ImageDataset,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    eval_fn=None,
    losses: TokenizerLossConfig | None = None,
    parallel=None,
    env=None,
) -> TrainResult:
    """Train ``tokenizer`` on ``dataset``: images in memory (an `ImageDataset`, batches drawn by
    `artok.distributed.sharding.Shard.indices`) or a streaming source with
    ``micro_batches(step) -> [(images, labels), ...]`` (`artok.data.stream`).

    ``losses`` selects the objective (default: `TokenizerLossConfig()`); with
    ``losses.adversarial`` set, the two-optimiser adversarial loop runs instead of the shared one.
    Under torchrun, ``parallel`` and ``env`` spread the tokenizer (and the discriminator) over
    the ranks (`artok.distributed`).
    """
    env = env or SINGLE
    source = step_batches(dataset, config, env)
    losses = losses or TokenizerLossConfig()
    torch.manual_seed(config.seed)
    perceptual = None
    if losses.perceptual_weight > 0:
        perceptual = load_perceptual_loss(losses.perceptual_weights, losses.lpips_weights, config.device)
    if losses.adversarial is not None:
        return _train_adversarial(tokenizer, source, config, losses, perceptual, out_dir, resume, eval_fn, parallel, env)

    def loss_fn(model, step, micro):
        _set_quantizer_step(model, step)
        images, _ = source.micro_batches(step)[micro]
        empty = images.shape[0] == 0  # every file of this micro-batch was unreadable (streaming)
        if empty:  # a zero loss on one blank image: every rank still runs the same collectives
            images = images.new_zeros((1, *images.shape[1:]))
        out = tokenizer_loss(model, images, losses.l1_weight, l2_weight=losses.l2_weight, perceptual=perceptual,
                             perceptual_weight=losses.perceptual_weight)
        del out["reconstruction"], out["reconstruction_loss"]
        if empty:
            out["loss"] = out["loss"] * 0.0
        return {**out, "batch_size": 0 if empty else images.shape[0]}

    return train(tokenizer, loss_fn, config, out_dir=out_dir, resume=resume, eval_fn=eval_fn, description="tokenizer",
                 parallel=parallel, env=env, routed=(), extra_meta={"num_items": _num_items(source)})


def step_batches(dataset, config: TrainConfig, env):
    """The step-keyed batch source for ``dataset`` (`artok.data.step_batches`; a streaming source
    already is one)."""
    from artok.data.step_batches import InMemoryBatches

    if hasattr(dataset, "micro_batches"):
        return dataset
    device = env.device if env.distributed else config.device
    return InMemoryBatches(dataset, config.batch_size, env.shard(config.grad_accum), seed=config.seed, device=device)


def _num_items(source) -> int:
    return len(source.dataset)


def _train_adversarial(
    tokenizer: Tokenizer,
    source,
    config: TrainConfig,
    losses: TokenizerLossConfig,
    perceptual: PerceptualLoss | None,
    out_dir: str | Path | None,
    resume: bool,
    eval_fn,
    parallel=None,
    env=SINGLE,
) -> TrainResult:
    """`artok.training.loop.train` with a second player: same schedule, clipping, EMA,
    evaluation and checkpoint conventions, plus the discriminator's optimiser step. Under
    torchrun the discriminator is wrapped like the tokenizer (DDP or FSDP2)."""
    if config.grad_accum > 1:
        raise ValueError("the adversarial phase takes no --grad-accum (two players alternate every micro-batch); "
                         "use more processes or a larger --batch-size")
    if parallel is not None and parallel.sharded and env.distributed:
        raise ValueError("the adversarial phase runs under --parallel ddp, not fsdp (its adaptive weight needs the whole "
                         "gradient of the decoder's last layer on every rank)")
    device = torch.device(env.device if env.distributed else config.device)
    adversarial = AdversarialLoss(losses.adversarial, in_channels=tokenizer.config.in_channels).to(device).train()
    last_layer = last_decoder_layer(tokenizer)
    d_optimizer = build_optimizer(adversarial, losses.discriminator_lr or config.lr, config.weight_decay, config.betas)
    # The discriminator's schedule starts (warmup included) when the discriminator does.
    d_steps = max(1, config.steps - losses.adversarial.start_step)
    d_scheduler = warmup_cosine(d_optimizer, min(config.warmup_steps, d_steps), d_steps, config.min_lr_ratio)
    session = TrainingSession(
        tokenizer, config, out_dir=out_dir, resume=resume,
        extra_state={"discriminator": adversarial, "discriminator_optimizer": d_optimizer,
                     "discriminator_scheduler": d_scheduler},
        extra_meta={"losses": asdict(losses), "num_items": _num_items(source)}, parallel=parallel, env=env, routed=(),
    )
    critic = parallelize(adversarial, parallel, env).view(("generator_loss", "discriminator_loss"))
    clip = config.grad_clip if config.grad_clip > 0 else math.inf
    for step in session.steps("tokenizer+gan"):
        _set_quantizer_step(tokenizer, step)
        images, _ = source.micro_batches(step)[0]
        # Tokenizer step; the discriminator is frozen so L_G only reaches the tokenizer.
        adversarial.requires_grad_(False)
        with config.autocast():
            out = tokenizer_loss(session.view, images, losses.l1_weight, l2_weight=losses.l2_weight, perceptual=perceptual,
                                 perceptual_weight=losses.perceptual_weight)
            generator = critic.generator_loss(out["reconstruction"], out["reconstruction_loss"], last_layer, step)
        loss = out["loss"] + generator["loss"]
        grad_norm = session.backward(step, loss, tokenizer.parameters(), clip)
        if grad_norm is None:
            continue
        session.optimizer.step()
        session.scheduler.step()
        # Discriminator step on the same batch (no update before the start step).
        adversarial.requires_grad_(True)
        with config.autocast():
            disc = critic.discriminator_loss(images, out["reconstruction"].detach(), step)
        if adversarial.active(step):
            d_optimizer.zero_grad(set_to_none=True)
            d_reason = non_finite_reason(all_reduce_mean(disc["loss"].detach()))
            if d_reason is None:
                disc["loss"].backward()
                d_reason = non_finite_reason(disc["loss"], torch.nn.utils.clip_grad_norm_(adversarial.parameters(), clip))
            if d_reason is None:
                d_optimizer.step()
            else:  # the tokenizer step stands; only the discriminator's update is dropped
                d_optimizer.zero_grad(set_to_none=True)
                warnings.warn(f"discriminator update of step {step + 1} skipped: {d_reason}", TrainingWarning, stacklevel=2)
            d_scheduler.step()
        metrics = {k: v for k, v in out.items() if k not in ("loss", "reconstruction", "reconstruction_loss")}
        metrics.update({k: v for k, v in generator.items() if k != "loss"})
        metrics.update({f"discriminator_{k}": v for k, v in disc.items()})
        session.end_step(step, loss, grad_norm, metrics, images.shape[0], eval_fn, postfix={"d": "discriminator_loss"})
    adversarial.eval()
    return session.finish(eval_fn)
