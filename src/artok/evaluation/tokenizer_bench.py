"""The tokenizer benchmark behind ``artok eval-tokenizer``: any saved tokenizers, several
evaluation sets, one comparison.

For every (tokenizer, dataset) pair it measures reconstruction quality (PSNR, SSIM; LPIPS only
with user-supplied VGG16 weights; Frechet distance under the Fashion-MNIST reference classifier
between reconstructions and originals, an "rFD"), token statistics (codebook usage, entropy,
perplexity and rank/frequency slope with `CodebookStats`, bits per image) and cost (encode and
decode images/s and peak memory at a given batch size and device). Tokenizers that can decode
from a prefix of their tokens (``decode(tokens, num_tokens=k)``, e.g. `ViT1DTokenizer`) also get
a PSNR-versus-token-count curve.

Datasets: ``fashion-mnist`` (test split), ``photos`` (scikit-image's photographs, 256 x 256
crops), ``text`` (`artok.evaluation.text_set`, rendered at the tokenizer's resolution), any other
`load_dataset` name, or in-memory `ImageDataset`s. Images whose size or channel count differs
from the tokenizer's are resized (antialiased bilinear) and converted, and the results say so.

Outputs: ``results.json`` (every number, the settings and those notes) and a self-contained
``report.html`` (comparison tables, side-by-side reconstruction grids per dataset, the prefix
curves).

Peak memory: `artok.benchmarking.PeakMemory`, the one measure of every artok benchmark (on
CUDA ``torch.cuda.max_memory_allocated`` above the allocation before the timed calls; on CPU the
process's resident memory sampled in a background thread, peak minus the value before the calls);
``settings["memory_method"]`` in ``results.json`` says which.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from artok.benchmarking.measure import measure_throughput as measure_cost
from artok.benchmarking.memory import memory_method
from artok.data.base import ImageDataset
from artok.data.transforms import convert_channels, resize
from artok.evaluation.codebook import CodebookStats
from artok.evaluation.frechet import (
    classifier_features,
    feature_statistics,
    frechet_distance_from_statistics,
)
from artok.evaluation.metrics import psnr_per_image, ssim_per_image
from artok.evaluation.report import Report
from artok.tokenizers.base import Tokenizer

#: Dataset names `run_tokenizer_bench` understands besides any `load_dataset` name.
TEXT_DATASET = "text"
DEFAULT_DATASETS = ("fashion-mnist", "photos", TEXT_DATASET)


@dataclass
class TokenizerBenchConfig:
    """Settings of `run_tokenizer_bench`.

    Args:
        datasets: dataset names (``fashion-mnist``, ``photos``, ``text``, or any `load_dataset` name).
        limit: at most this many images per dataset (a class-stratified subset; None: all).
        batch_size: images per encode/decode call, for the metrics and the throughput timing.
        device: where the tokenizers run.
        timing_batches: batches timed (after one warm-up batch) for throughput and memory.
        fd_dataset: the dataset whose reference classifier scores the Frechet distance; FD is
            computed on that dataset only (None: no FD).
        lpips_weights: path to VGG16 weights for LPIPS (None: LPIPS is not reported).
        lpips_lin_weights: optional path to LPIPS's linear-layer weights.
        text_images: number of rendered text images.
        grid_images: images per reconstruction grid.
        prefix_lengths: token counts of the prefix curves (None: 1, 2, 4, ... and the full length).
        seed: chooses the ``limit`` subsets and the text set.
        progress: print one line per (tokenizer, dataset).
    """

    datasets: tuple[str, ...] = DEFAULT_DATASETS
    limit: int | None = 1000
    batch_size: int = 64
    device: str = "cpu"
    timing_batches: int = 5
    fd_dataset: str | None = "fashion-mnist"
    lpips_weights: str | None = None
    lpips_lin_weights: str | None = None
    text_images: int = 48
    grid_images: int = 8
    prefix_lengths: tuple[int, ...] | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.datasets = tuple(self.datasets)
        if not self.datasets:
            raise ValueError("give at least one dataset")
        if self.batch_size < 1 or self.timing_batches < 1 or self.grid_images < 1 or self.text_images < 1:
            raise ValueError("batch_size, timing_batches, grid_images and text_images must be positive")
        if self.limit is not None and self.limit < 2:
            raise ValueError(f"limit must be at least 2 (or None), got {self.limit}")
        if self.prefix_lengths is not None:
            self.prefix_lengths = tuple(int(k) for k in self.prefix_lengths)


# ---------------------------------------------------------------------------------------------
# Inputs


def supports_prefix_decoding(tokenizer: Tokenizer) -> bool:
    """Whether ``tokenizer.decode`` takes ``num_tokens`` (decoding from a prefix of the tokens)."""
    return "num_tokens" in inspect.signature(tokenizer.decode).parameters


def tokenizer_input_shape(tokenizer: Tokenizer) -> tuple[int, int]:
    """``(channels, side)`` of the square images ``tokenizer`` takes (from its config)."""
    config = tokenizer.config
    return int(config.in_channels), int(config.image_size)


def adapt_images(images: torch.Tensor, channels: int, side: int) -> torch.Tensor:
    """uint8 ``N x C x H x W`` -> ``N x channels x side x side`` (center crop, antialiased resize,
    luma / replication for channels)."""
    return resize(convert_channels(images, channels), (side, side))


def load_bench_dataset(name: str, tokenizer: Tokenizer, config: TokenizerBenchConfig) -> tuple[ImageDataset, str | None]:
    """The images of ``name`` at ``tokenizer``'s input shape, and a note when they were changed."""
    from artok.data import load_dataset
    from artok.evaluation.text_set import render_text_set

    channels, side = tokenizer_input_shape(tokenizer)
    if name == TEXT_DATASET:
        return render_text_set(side, channels, config.text_images, seed=config.seed), None
    split = "all" if name == "photos" else "test"
    dataset = load_dataset(name, split, limit=config.limit, seed=config.seed)
    return adapt_dataset(dataset, channels, side)


def adapt_dataset(dataset: ImageDataset, channels: int, side: int) -> tuple[ImageDataset, str | None]:
    """``dataset`` at ``channels x side x side``, with a note saying what changed (None: nothing)."""
    native_channels, (height, width) = dataset.channels, dataset.image_size
    if (native_channels, height, width) == (channels, side, side):
        return dataset, None
    changes = []
    if (height, width) != (side, side):
        changes.append(f"resized from {height}x{width} to {side}x{side}")
    if native_channels != channels:
        changes.append("converted to grey" if channels == 1 else "converted to RGB")
    images = adapt_images(dataset.images, channels, side)
    adapted = replace(dataset, images=images.contiguous())
    return adapted, f"{dataset.name}: images {' and '.join(changes)} to fit the tokenizer input"


# ---------------------------------------------------------------------------------------------
# Cost: throughput and peak memory


# `measure_cost` is the measuring kit's `artok.benchmarking.measure.measure_throughput`.


# ---------------------------------------------------------------------------------------------
# Evaluation of one tokenizer on one dataset


def default_prefix_lengths(length: int) -> list[int]:
    """1, 2, 4, ... up to ``length``, plus ``length`` itself."""
    lengths, k = [], 1
    while k < length:
        lengths.append(k)
        k *= 2
    return lengths + [length]


def _fit_classifier(images: torch.Tensor, classifier) -> torch.Tensor:
    """Float images in [-1, 1] -> the classifier's channels and size (no-op when they match)."""
    channels, (height, width) = classifier.config.in_channels, classifier.config.image_size
    if images.shape[1] != channels:
        if channels == 1:
            weights = torch.tensor((0.299, 0.587, 0.114), device=images.device).view(1, 3, 1, 1)
            images = (images * weights).sum(1, keepdim=True)
        else:
            images = images.expand(-1, 3, -1, -1)
    if tuple(images.shape[-2:]) != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return images


@torch.no_grad()
def evaluate_on_dataset(
    tokenizer: Tokenizer,
    dataset: ImageDataset,
    config: TokenizerBenchConfig,
    *,
    classifier=None,
    perceptual=None,
) -> tuple[dict, dict[str, torch.Tensor], dict | None]:
    """Metrics of ``tokenizer`` on every image of ``dataset`` (already at its input shape).

    Returns ``(metrics, grid_rows, prefix_curve)``: a flat dict of numbers; grid rows
    ``{"original": ..., "reconstruction": ..., "k=1": ..., ...}`` of the first ``grid_images``
    images (``n x C x H x W`` each; the ``k=`` rows are decodes from a prefix of the tokens, for
    prefix-decodable tokenizers); and for those ``{"num_tokens": [...], "psnr": [...],
    "ssim": [...]}`` (else None).
    """
    device = torch.device(config.device)
    tokenizer.to(device).eval()
    spec = tokenizer.spec
    stats = CodebookStats(spec.vocab_size) if spec.kind == "discrete" else None
    prefix = supports_prefix_decoding(tokenizer)
    lengths = list(config.prefix_lengths or default_prefix_lengths(spec.seq_len)) if prefix else []
    lengths = [k for k in lengths if 1 <= k <= spec.seq_len]
    psnrs, ssims, lpips, real_features, fake_features = [], [], [], [], []
    prefix_psnr = {k: [] for k in lengths}
    prefix_ssim = {k: [] for k in lengths}
    shown = min(config.grid_images, len(dataset))
    grid_rows: dict[str, torch.Tensor] = {}
    for start in range(0, len(dataset), config.batch_size):
        index = torch.arange(start, min(start + config.batch_size, len(dataset)))
        images, _ = dataset.batch(index, device)
        tokens = tokenizer.encode(images)
        reconstruction = tokenizer.decode(tokens).float()
        psnrs.append(psnr_per_image(reconstruction, images).cpu())
        ssims.append(ssim_per_image(reconstruction, images))
        if perceptual is not None:
            lpips.append(perceptual.distance(reconstruction, images).cpu())
        if classifier is not None:
            real_features.append(classifier_features(classifier, _fit_classifier(images, classifier)))
            fake_features.append(classifier_features(classifier, _fit_classifier(reconstruction, classifier)))
        if stats is not None:
            stats.update(tokens.ids)
        for k in lengths:
            partial = reconstruction if k == spec.seq_len else tokenizer.decode(tokens, num_tokens=k).float()
            prefix_psnr[k].append(psnr_per_image(partial, images).cpu())
            prefix_ssim[k].append(ssim_per_image(partial, images))
            if start == 0 and k < spec.seq_len:
                grid_rows[f"k={k}"] = partial[:shown].cpu()
        if start == 0:
            grid_rows = {"original": images[:shown].cpu(), "reconstruction": reconstruction[:shown].cpu(), **grid_rows}

    metrics: dict[str, float] = {
        "images": float(len(dataset)),
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "lpips": float(torch.cat(lpips).mean()) if lpips else math.nan,
        "fd": math.nan,
        "tokens_per_image": float(spec.seq_len * spec.subtokens),
        "bits_per_image": float(spec.bits_per_image),
    }
    if real_features:
        real, fake = feature_statistics(torch.cat(real_features)), feature_statistics(torch.cat(fake_features))
        metrics["fd"] = frechet_distance_from_statistics(fake, real)
    if stats is not None:
        summary = stats.summary()
        metrics.update({
            "codebook_size": float(spec.vocab_size), "codebook_usage": summary["usage"],
            "codes_used": float(summary["codes_used"]), "entropy_bits": summary["entropy_bits"],
            "perplexity": summary["perplexity"], "rank_frequency_slope": summary["rank_frequency_slope"],
        })
    curve = None
    if lengths:
        curve = {
            "num_tokens": lengths,
            "psnr": [float(torch.cat(prefix_psnr[k]).mean()) for k in lengths],
            "ssim": [float(torch.cat(prefix_ssim[k]).mean()) for k in lengths],
        }
    return metrics, grid_rows, curve


@torch.no_grad()
def measure_tokenizer_cost(tokenizer: Tokenizer, dataset: ImageDataset, config: TokenizerBenchConfig) -> dict[str, float]:
    """Encode and decode images/s and peak memory at ``config.batch_size`` on ``config.device``
    (``timing_batches`` batches, drawn cyclically from ``dataset``)."""
    device = torch.device(config.device)
    tokenizer.to(device).eval()
    batches = []
    for b in range(config.timing_batches):
        index = (torch.arange(config.batch_size) + b * config.batch_size) % len(dataset)
        batches.append(dataset.batch(index, device)[0])
    encode = measure_cost(tokenizer.encode, batches, device, config.batch_size)
    tokens = [tokenizer.encode(batch) for batch in batches]
    decode = measure_cost(tokenizer.decode, tokens, device, config.batch_size)
    return {
        "encode_images_per_s": encode["images_per_s"], "decode_images_per_s": decode["images_per_s"],
        "encode_peak_memory_mb": encode["peak_memory_mb"], "decode_peak_memory_mb": decode["peak_memory_mb"],
    }


# ---------------------------------------------------------------------------------------------
# Post-training quantization of a continuous tokenizer (TokenBridge)


def post_training_quantize(
    tokenizer: Tokenizer, bits: int, calibration: ImageDataset, batch_size: int = 256, device: str = "cpu"
) -> Tokenizer:
    """`artok.tokenizers.ptq.post_training_quantized` (the one PTQ conversion) of ``tokenizer`` on
    ``device``, calibrated on the ``calibration`` images."""
    from artok.tokenizers.ptq import post_training_quantized

    return post_training_quantized(tokenizer.to(device), calibration, bits=bits, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# The whole benchmark


@dataclass
class TokenizerBenchResult:
    """What `run_tokenizer_bench` returns (and writes as ``results.json``)."""

    rows: list[dict] = field(default_factory=list)
    prefix_curves: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "notes": self.notes, "results": self.rows, "prefix_curves": self.prefix_curves}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run_tokenizer_bench(
    tokenizers: dict[str, Tokenizer],
    config: TokenizerBenchConfig,
    out_dir: str | Path | None = None,
    *,
    datasets: dict[str, ImageDataset] | None = None,
    classifier=None,
) -> TokenizerBenchResult:
    """Benchmark ``tokenizers`` (``{name: tokenizer}``) on ``config.datasets``.

    Args:
        datasets: in-memory datasets by name, used instead of loading (any name of
            ``config.datasets`` not in it is loaded with `load_bench_dataset`).
        classifier: the reference classifier for FD on ``config.fd_dataset`` (default: the cached
            `get_reference_classifier` of that dataset, trained once if needed).
        out_dir: where ``results.json`` and ``report.html`` go (None: nothing written).
    """
    if not tokenizers:
        raise ValueError("give at least one tokenizer")
    datasets = dict(datasets or {})
    result = TokenizerBenchResult(settings={
        **asdict(config), "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "device_name": _device_name(config.device), "load_average_at_start": _load_average(),
        "memory_method": memory_method(config.device),
    })
    perceptual = None
    if config.lpips_weights is not None:
        from artok.losses.perceptual import load_perceptual_loss

        perceptual = load_perceptual_loss(config.lpips_weights, config.lpips_lin_weights, config.device)
    else:
        result.notes.append("LPIPS not reported: no VGG16 weights were given (--lpips-weights PATH); nothing is downloaded.")
    if config.fd_dataset is not None and config.fd_dataset in config.datasets and classifier is None:
        from artok.evaluation.classifier import get_reference_classifier

        classifier = get_reference_classifier(config.fd_dataset, device=config.device, progress=config.progress)
    if config.fd_dataset is not None and config.fd_dataset in config.datasets:
        result.notes.append(
            f"FD: Frechet distance between reference-classifier features ({config.fd_dataset}) of the reconstructions "
            f"and of the same original images (an rFD; comparable only at the same image count)."
        )
    grids: dict[str, dict[str, torch.Tensor]] = {}
    adapted: dict[str, list[str]] = {}  # note -> tokenizers it applies to
    for dataset_name in config.datasets:
        grids[dataset_name] = {}
        for name, tokenizer in tokenizers.items():
            if dataset_name in datasets:
                channels, side = tokenizer_input_shape(tokenizer)
                dataset, note = adapt_dataset(datasets[dataset_name], channels, side)
            else:
                dataset, note = load_bench_dataset(dataset_name, tokenizer, config)
            if note:
                adapted.setdefault(note, []).append(name)
            use_fd = classifier is not None and dataset_name == config.fd_dataset
            tick = time.perf_counter()
            metrics, grid, curve = evaluate_on_dataset(
                tokenizer, dataset, config, classifier=classifier if use_fd else None, perceptual=perceptual
            )
            row = {"tokenizer": name, "dataset": dataset_name, **metrics}
            if dataset_name == config.datasets[0]:
                row.update(measure_tokenizer_cost(tokenizer, dataset, config))
            row["params"] = float(sum(p.numel() for p in tokenizer.parameters()))
            row["seconds"] = time.perf_counter() - tick
            result.rows.append(row)
            grids[dataset_name][name] = grid
            if curve is not None:
                result.prefix_curves.setdefault(name, {})[dataset_name] = curve
            if config.progress:
                print(f"{name:>20s} {dataset_name:>14s}  PSNR {metrics['psnr']:.2f}  SSIM {metrics['ssim']:.3f}", flush=True)
    result.notes += [f"{note} ({', '.join(names)})" for note, names in adapted.items()]
    result.notes.append(
        f"Throughput and peak memory: measured on {config.datasets[0]} at batch size {config.batch_size} on "
        f"{result.settings['device_name']} with {torch.get_num_threads()} torch thread(s), {config.timing_batches} timed "
        f"batches after one warm-up; peak memory: {memory_method(config.device)}. "
        f"1-minute load average: {result.settings['load_average_at_start']:.1f} at the start, {_load_average():.1f} at the end."
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(_json_safe(result.to_dict()), indent=2))
        write_bench_report(result, grids, out / "report.html", config)
    return result


def _load_average() -> float:
    # Throughput on a shared CPU depends on what else runs; the load average says how busy it was.
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _device_name(device: str) -> str:
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({os.cpu_count()} logical cores)"


QUALITY_COLUMNS = ("psnr", "ssim", "lpips", "fd", "codebook_usage", "perplexity", "entropy_bits", "rank_frequency_slope",
                   "bits_per_image", "images")
COST_COLUMNS = ("encode_images_per_s", "decode_images_per_s", "encode_peak_memory_mb", "decode_peak_memory_mb", "params")


def write_bench_report(result: TokenizerBenchResult, grids: dict, path: str | Path, config: TokenizerBenchConfig) -> Path:
    """``report.html``: per dataset a comparison table and reconstruction grids; a cost table;
    the prefix curves."""
    report = Report("artok eval-tokenizer")
    names = list(dict.fromkeys(row["tokenizer"] for row in result.rows))
    report.add_text(f"Tokenizers: {', '.join(names)}. Datasets: {', '.join(config.datasets)}.")
    report.add_heading("Notes")
    report.add_text("\n\n".join(result.notes))
    for dataset_name in config.datasets:
        rows = [row for row in result.rows if row["dataset"] == dataset_name]
        report.add_heading(f"Dataset: {dataset_name}")
        report.add_metrics_table([{"tokenizer": r["tokenizer"], **{c: r.get(c, math.nan) for c in QUALITY_COLUMNS}} for r in rows])
        _add_grids(report, grids[dataset_name])
    cost_rows = [row for row in result.rows if "encode_images_per_s" in row]
    if cost_rows:
        report.add_heading("Cost")
        report.add_metrics_table([{"tokenizer": r["tokenizer"], **{c: r[c] for c in COST_COLUMNS}} for r in cost_rows],
                                 caption=result.notes[-1])
    if result.prefix_curves:
        report.add_heading("Decoding from the first k tokens")
        for name, curves in result.prefix_curves.items():
            first = next(iter(curves.values()))
            series = {f"{name} / {dataset}": curve["psnr"] for dataset, curve in curves.items()}
            report.add_plot((first["num_tokens"], series), caption=f"{name}: PSNR vs number of tokens decoded",
                            xlabel="tokens decoded (prefix length k)", ylabel="PSNR (dB)", logx=True)
            table = [{"num_tokens": k, **{f"psnr {d}": c["psnr"][i] for d, c in curves.items()}} for i, k in enumerate(first["num_tokens"])]
            report.add_metrics_table(table)
    return report.save(path)


def _add_grids(report: Report, grids: dict[str, dict[str, torch.Tensor]]) -> None:
    """One grid with the originals and every tokenizer's reconstructions when all share a shape,
    else one grid per tokenizer; prefix rows (``k=...``) follow a tokenizer's reconstructions."""
    shapes = {tuple(rows["original"].shape) for rows in grids.values()}
    if len(shapes) == 1:
        first = next(iter(grids.values()))
        images, labels = [first["original"]], ["original"]
        for name, rows in grids.items():
            for label, row in rows.items():
                if label != "original":
                    images.append(row)
                    labels.append(name if label == "reconstruction" else f"{name} {label}")
        report.add_image_grid(torch.cat(images), nrow=first["original"].shape[0], row_labels=labels,
                              caption="top row: originals; then each tokenizer's reconstructions (and, for tokenizers "
                              "that decode from a prefix, decodes from the first k tokens)")
    else:
        for name, rows in grids.items():
            count = next(iter(rows.values())).shape[0]
            report.add_image_grid(torch.cat(list(rows.values())), nrow=count, row_labels=list(rows), caption=name)
