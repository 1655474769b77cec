"""End-to-end recipes the CLI calls: presets per dataset, tokenizer and generator evaluation, and
the demo (train tokenizer -> encode -> train generator -> sample -> report). Loading a model pair
and sampling images is `artok.pipeline`."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from artok.data import ImageDataset, load_dataset
from artok.evaluation import (
    CodebookStats,
    Report,
    evaluate_generation,
    get_reference_classifier,
    psnr,
    reference_fd,
    save_image_grid,
    ssim,
)
from artok.generators import RasterConfig, RasterGenerator
from artok.hub import atomic_write_text, save_pretrained
from artok.pipeline import sample_images, tokenizer_reference
from artok.provenance import run_metadata
from artok.sampling.configs import SamplerConfig
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig, Tokenizer
from artok.training import TrainConfig, encode_dataset, train_generator, train_tokenizer

CLASSIFIER_DATASETS = ("digits", "mnist", "fashion-mnist")


@dataclass
class Preset:
    """Default model sizes and schedules for one dataset (tuned for a 2-core CPU on `digits`)."""

    tokenizer: CNNTokenizerConfig
    generator: dict
    tokenizer_train: TrainConfig
    generator_train: TrainConfig
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(cfg_scale=1.5, temperature=0.9))
    samples_per_class: int = 50


def preset_for(dataset: ImageDataset) -> Preset:
    """Defaults for ``dataset``, sized for a 2-core CPU (``--steps`` / ``--tokenizer-steps`` train longer).

    The 16x16 ``digits`` set gets a 4x4 token grid (128 codes); 28x28 sets (mnist, fashion-mnist)
    a 7x7 grid (256 codes) and wider models.
    """
    channels, (height, _) = dataset.channels, dataset.image_size
    small = height <= 16
    tokenizer = CNNTokenizerConfig(
        in_channels=channels,
        image_size=height,
        base_channels=16 if small else 32,
        channel_multipliers=(1, 2, 2),
        latent_dim=32,
        quantizer="vq",
        quantizer_options={"codebook_size": 128 if small else 256, "codebook_dim": 8, "dead_code_threshold": 0.02},
    )
    generator = {"dim": 128, "depth": 4, "num_heads": 4, "dropout": 0.1, "class_dropout": 0.1}
    tokenizer_train = TrainConfig(steps=400 if small else 800, batch_size=64, lr=2e-3, warmup_steps=50, log_every=10,
                                  eval_every=100 if small else 200)
    generator_train = TrainConfig(
        # digits: 300 steps at lr 3e-3 reached 0.966 class accuracy (CFG 2) at 28% of the compute of a
        # 500-step width-192 model (0.974); the demo has to fit in 5 minutes on 2 CPU cores.
        steps=300 if small else 1500, batch_size=128 if small else 64, lr=3e-3 if small else 1e-3, warmup_steps=30 if small else 50,
        ema_decay=0.99 if small else 0.995, log_every=10, eval_every=100 if small else 300,
    )
    # Measured on digits: CFG 2 / T 0.9 -> 0.966 accuracy, FD 30 (CFG 1.5: 0.938, FD 25; CFG 3 was worse on both).
    sampler = SamplerConfig(cfg_scale=2.0 if small else 1.5, temperature=0.9)
    return Preset(tokenizer, generator, tokenizer_train, generator_train, sampler)


@torch.no_grad()
def evaluate_tokenizer(tokenizer: Tokenizer, dataset: ImageDataset, batch_size: int = 256, device: str = "cpu") -> dict:
    """PSNR, SSIM, codebook usage and perplexity of ``tokenizer`` on every image of ``dataset``."""
    tokenizer.to(device).eval()
    spec = tokenizer.spec
    stats = CodebookStats(spec.vocab_size) if spec.kind == "discrete" else None
    psnr_sum = ssim_sum = 0.0
    for start in range(0, len(dataset), batch_size):
        images, _ = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))), device)
        tokens = tokenizer.encode(images)
        reconstruction = tokenizer.decode(tokens)
        psnr_sum += psnr(reconstruction, images) * images.shape[0]
        ssim_sum += ssim(reconstruction, images) * images.shape[0]
        if stats is not None:
            stats.update(tokens.ids.cpu())
    metrics = {"psnr": psnr_sum / len(dataset), "ssim": ssim_sum / len(dataset), "bits_per_image": spec.bits_per_image}
    if stats is not None:
        metrics.update(codebook_usage=stats.usage, perplexity=stats.perplexity, codebook_size=spec.vocab_size)
    return metrics


def evaluate_samples(dataset_name: str, images: torch.Tensor, labels: torch.Tensor, train: ImageDataset, test: ImageDataset,
                     device: str = "cpu", progress: bool = True, with_floor: bool = True) -> dict:
    """Class accuracy and FD of samples under the dataset's reference classifier, with the real FD floor
    (``fd_reference``: as many real train images as samples, against the same real test split)."""
    if dataset_name not in CLASSIFIER_DATASETS:
        return {}
    classifier = get_reference_classifier(dataset_name, device=device, progress=progress)
    metrics = evaluate_generation(classifier, images, labels, test)
    if with_floor:
        metrics["fd_reference"] = reference_fd(classifier, train, test, n=min(images.shape[0], len(train)))
    return metrics


def _subset(dataset: ImageDataset, count: int) -> ImageDataset:
    """The first ``count`` images (splits are already shuffled and class-balanced)."""
    return replace(dataset, images=dataset.images[:count], labels=dataset.labels[:count])


@dataclass
class DemoConfig:
    """Options of `run_demo` (the CLI's ``artok demo``)."""

    dataset: str = "digits"
    out: str = "runs/demo"
    device: str = "cpu"
    steps: int | None = None
    tokenizer_steps: int | None = None
    samples_per_class: int | None = None
    cfg_scale: float | None = None
    seed: int = 0
    resume: bool = False
    progress: bool = True
    limit: int | None = None
    image_size: int | None = None
    checkpoint_every: int | None = None
    checkpoint_minutes: float = 10.0
    keep: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "tokenizer_steps", "samples_per_class", "limit", "image_size", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.cfg_scale is not None and not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise ValueError(f"cfg-scale must be a finite number >= 0, got {self.cfg_scale}")


def checkpoint_schedule(train: TrainConfig, every: int | None, minutes: float, keep: int) -> TrainConfig:
    """``train`` with periodic checkpoints: every ``every`` steps (default: every 10% of the run)
    or every ``minutes`` minutes, whichever comes first; ``keep`` of them kept."""
    every = every if every is not None else max(1, train.steps // 10)
    return replace(train, checkpoint_every=every, checkpoint_minutes=minutes, keep=keep)


def run_demo(config: DemoConfig) -> dict:
    """Train a tokenizer and a class-conditional generator on ``config.dataset``, sample, evaluate,
    and write ``report.html``, ``metrics.json`` and both models under ``config.out``."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    out = Path(config.out)
    train = load_dataset(config.dataset, "train", limit=config.limit, image_size=config.image_size)
    test = load_dataset(config.dataset, "test", image_size=config.image_size)
    out.mkdir(parents=True, exist_ok=True)
    preset = preset_for(train)
    timings = {}

    tokenizer_train = replace(preset.tokenizer_train, device=config.device, seed=config.seed, progress=config.progress)
    if config.tokenizer_steps:
        tokenizer_train = replace(tokenizer_train, steps=config.tokenizer_steps)
    tokenizer_train = checkpoint_schedule(tokenizer_train, config.checkpoint_every, config.checkpoint_minutes, config.keep)
    tokenizer = CNNTokenizer(preset.tokenizer)
    probe = _subset(test, 256)

    def tokenizer_eval(model, step):
        was_training = model.training
        metrics = evaluate_tokenizer(model, probe, device=config.device)
        model.train(was_training)
        return {"psnr": metrics["psnr"], "codebook_usage": metrics.get("codebook_usage", float("nan"))}

    tick = time.perf_counter()
    tokenizer_result = train_tokenizer(tokenizer, train, tokenizer_train, out_dir=out / "tokenizer", resume=config.resume,
                                       eval_fn=tokenizer_eval)
    timings["tokenizer_train_s"] = time.perf_counter() - tick
    save_pretrained(tokenizer, out / "tokenizer", extra={"dataset": config.dataset})
    tokenizer_metrics = evaluate_tokenizer(tokenizer, test, device=config.device)

    tick = time.perf_counter()
    tokens = encode_dataset(tokenizer, train, device=config.device, progress=config.progress)
    timings["encode_s"] = time.perf_counter() - tick
    generator_train = replace(preset.generator_train, device=config.device, seed=config.seed, progress=config.progress)
    if config.steps:
        generator_train = replace(generator_train, steps=config.steps)
    generator_train = checkpoint_schedule(generator_train, config.checkpoint_every, config.checkpoint_minutes, config.keep)
    generator_config = RasterConfig(token_spec=tokenizer.spec.to_dict(), num_classes=train.num_classes, **preset.generator)
    generator = RasterGenerator(generator_config)
    sampler = preset.sampler if config.cfg_scale is None else replace(preset.sampler, cfg_scale=config.cfg_scale)
    probe_labels = torch.arange(train.num_classes).repeat_interleave(10)

    def generator_eval(model, step):
        was_training = model.training
        model.eval()
        images = sample_images(model, tokenizer, probe_labels.to(config.device), sampler, seed=config.seed + 1)
        metrics = evaluate_samples(config.dataset, images, probe_labels, train, test, device=config.device,
                                   progress=config.progress, with_floor=False)
        model.train(was_training)
        return {**{k: metrics[k] for k in ("class_accuracy", "fd") if k in metrics}, "images": images}

    tick = time.perf_counter()
    generator_result = train_generator(
        generator, tokens, train.labels, generator_train, out_dir=out / "generator", resume=config.resume,
        eval_fn=generator_eval,
    )
    timings["generator_train_s"] = time.perf_counter() - tick
    generator = generator_result.final_model.eval()
    save_pretrained(generator, out / "generator", extra={
        "sampling": sampler.to_dict(), "tokenizer": tokenizer_reference(out / "tokenizer", out / "generator"), "dataset": config.dataset,
        "class_names": train.class_names})

    per_class = config.samples_per_class or preset.samples_per_class
    labels = torch.arange(train.num_classes).repeat_interleave(per_class)
    tick = time.perf_counter()
    images = sample_images(generator, tokenizer, labels, sampler, seed=config.seed)
    timings["sample_s"] = time.perf_counter() - tick
    generation_metrics = evaluate_samples(config.dataset, images, labels, train, test, progress=config.progress)

    metrics = {f"tokenizer.{k}": v for k, v in tokenizer_metrics.items()}
    metrics.update({f"generator.{k}": v for k, v in generation_metrics.items()})
    metrics.update({
        "generator.params": sum(p.numel() for p in generator.parameters()),
        "tokenizer.params": sum(p.numel() for p in tokenizer.parameters()),
        "generator.sample_seconds_per_image": timings["sample_s"] / labels.shape[0],
        "dataset": config.dataset, "train_images": len(train), "test_images": len(test),
        "tokenizer.steps": tokenizer_train.steps, "generator.steps": generator_train.steps,
        **{f"time.{k}": v for k, v in timings.items()},
    })
    metrics["seconds_total"] = time.perf_counter() - started
    metrics["run"] = run_metadata(config.seed, config.device)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    _demo_report(out, config, train, test, tokenizer, images, per_class, tokenizer_result, generator_result, metrics, sampler)
    return metrics


def _demo_report(out, config, train, test, tokenizer, images, per_class, tokenizer_result, generator_result, metrics, sampler):
    report = Report(f"artok demo: {config.dataset}")
    report.add_text(
        f"A {metrics['tokenizer.params'] / 1e6:.2f}M-parameter VQ tokenizer ({tokenizer.spec.grid[0]}x{tokenizer.spec.grid[1]} "
        f"tokens, {tokenizer.spec.vocab_size} codes) and a {metrics['generator.params'] / 1e6:.2f}M-parameter "
        f"LlamaGen-style generator trained on {len(train)} {config.dataset} images in "
        f"{metrics['seconds_total']:.0f} s; samples use CFG scale {sampler.cfg_scale} ({sampler.cfg_schedule})."
    )
    report.add_heading("Metrics")
    report.add_metrics_table({k: v for k, v in metrics.items() if not k.startswith("time.") and k != "run"})
    shown = min(len(test), 16)
    real, _ = test.batch(torch.arange(shown))
    reconstruction = tokenizer.decode(tokenizer.encode(real.to(next(tokenizer.parameters()).device))).cpu()
    report.add_heading("Reconstructions")
    report.add_image_grid(torch.cat([real, reconstruction]), nrow=shown, caption="top: real test images; bottom: reconstructed",
                          row_labels=["real", "recon"])
    report.add_heading("Class-conditional samples")
    columns = min(per_class, 12)
    grid = images.view(train.num_classes, per_class, *images.shape[1:])[:, :columns].flatten(0, 1)
    report.add_image_grid(grid, nrow=columns, caption="one row per class", row_labels=train.class_names)
    save_image_grid(out / "samples.png", grid, nrow=columns, scale=4)
    save_image_grid(out / "reconstructions.png", torch.cat([real, reconstruction]), nrow=shown, scale=4)
    report.add_heading("Training curves")
    for name, result in (("tokenizer", tokenizer_result), ("generator", generator_result)):
        records = [h for h in result.history if "loss" in h]  # skipped (non-finite) steps have none
        steps = [h["step"] for h in records]
        report.add_plot((steps, {f"{name} loss": [h["loss"] for h in records]}), caption=f"{name} training loss",
                        xlabel="step", ylabel="loss", logy=True)
    for name, result, key in (("tokenizer", tokenizer_result, "psnr"), ("generator", generator_result, "class_accuracy")):
        points = [e for e in result.evaluations if key in e]
        if points:
            report.add_plot(([e["step"] for e in points], {key: [e[key] for e in points]}),
                            caption=f"{name} {key} on held-out data during training", xlabel="step", ylabel=key)
    report.save(out / "report.html")
