"""``artok eval-tokenizer``: benchmark saved tokenizers side by side (reconstruction quality,
codebook statistics, throughput, memory) on Fashion-MNIST, photographs and rendered text, and
write ``results.json`` and ``report.html``. The work is done by
`artok.evaluation.tokenizer_bench`; this module only parses and prints."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "eval-tokenizer"


def add_parser(subparsers) -> str:
    parser = subparsers.add_parser(
        NAME,
        help="benchmark saved tokenizers side by side; write results.json and report.html",
        description="Compare saved tokenizers on Fashion-MNIST (test split), scikit-image photographs (256x256 crops, "
        "resized to each tokenizer's input) and a locally rendered text set: PSNR, SSIM, LPIPS (with --lpips-weights), "
        "reconstruction FD under the Fashion-MNIST reference classifier, codebook usage / entropy / perplexity / "
        "rank-frequency slope, bits per image, encode/decode images/s and peak memory. Tokenizers that decode from a "
        "prefix of their tokens also get a PSNR-vs-token-count curve.",
    )
    parser.add_argument("tokenizers", nargs="+", metavar="DIR", help="saved tokenizer folders (config.json + model.safetensors)")
    parser.add_argument("--names", help="comma-separated display names (default: the folder names)")
    parser.add_argument("--out", default="runs/eval-tokenizer", help="output folder (default: runs/eval-tokenizer)")
    parser.add_argument("--datasets", default="fashion-mnist,photos,text",
                        help="comma-separated: fashion-mnist, photos, text, or any dataset name (default: all three)")
    parser.add_argument("--limit", type=int, default=1000, help="images per dataset (default: 1000; 0 = all)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encode/decode call (default: 64)")
    parser.add_argument("--timing-batches", type=int, default=5, help="batches timed for throughput (default: 5)")
    parser.add_argument("--lpips-weights", help="VGG16 weights (torchvision state dict) for LPIPS; nothing is downloaded")
    parser.add_argument("--lpips-lin-weights", help="LPIPS linear-layer weights (optional, with --lpips-weights)")
    parser.add_argument("--no-fd", action="store_true", help="skip the Frechet distance (no reference classifier)")
    parser.add_argument("--ptq-bits", default=None,
                        help="also evaluate post-training-quantized copies of continuous (kl) tokenizers at these bits "
                        "per channel, e.g. 2,4,6,8 (calibrated on the train split of the tokenizer's recorded dataset)")
    parser.add_argument("--ptq-calibration-images", type=int, default=10000,
                        help="images used to calibrate --ptq-bits (default: 10000)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the evaluation subsets and the text set (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="print nothing but the final table")
    return NAME


def _names(args) -> list[str]:
    if args.names is None:
        return [Path(path).resolve().name for path in args.tokenizers]
    names = [name.strip() for name in args.names.split(",")]
    if len(names) != len(args.tokenizers) or not all(names):
        raise ValueError(f"--names needs {len(args.tokenizers)} non-empty comma-separated names, got {args.names!r}")
    return names


def _bits(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--ptq-bits must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import torch

    from artok.data import load_dataset
    from artok.evaluation.tokenizer_bench import (
        TokenizerBenchConfig,
        post_training_quantize,
        run_tokenizer_bench,
    )
    from artok.zoo import from_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    names = _names(args)
    if len(set(names)) != len(names):
        raise ValueError(f"tokenizer names must be unique, got {names}; pass --names")
    tokenizers = {name: from_pretrained(path, args.device) for name, path in zip(names, args.tokenizers)}
    for bits in _bits(args.ptq_bits):
        for name, tokenizer in list(tokenizers.items()):
            if tokenizer.config.quantizer not in ("kl", "continuous"):
                continue
            dataset = getattr(tokenizer, "extra", {}).get("dataset")
            if dataset is None:
                raise ValueError(f"{name} does not record its training dataset; PTQ calibration needs it")
            calibration = load_dataset(dataset, "train", limit=args.ptq_calibration_images, seed=args.seed)
            tokenizers[f"{name}-ptq{bits}"] = post_training_quantize(tokenizer, bits, calibration, device=args.device)
    config = TokenizerBenchConfig(
        datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()),
        limit=args.limit or None,
        batch_size=args.batch_size,
        device=args.device,
        timing_batches=args.timing_batches,
        fd_dataset=None if args.no_fd else "fashion-mnist",
        lpips_weights=args.lpips_weights,
        lpips_lin_weights=args.lpips_lin_weights,
        seed=args.seed,
        progress=not args.no_progress,
    )
    result = run_tokenizer_bench(tokenizers, config, args.out)
    columns = ("psnr", "ssim", "fd", "codebook_usage", "perplexity", "bits_per_image")
    print(f"{'tokenizer':>20s} {'dataset':>14s} " + " ".join(f"{c:>14s}" for c in columns))
    for row in result.rows:
        values = " ".join(f"{row.get(c, float('nan')):14.4g}" for c in columns)
        print(f"{row['tokenizer']:>20s} {row['dataset']:>14s} {values}")
    print(f"results: {Path(args.out) / 'results.json'}\nreport: {Path(args.out) / 'report.html'}")
    return 0
