"""D-AR previews on CPU: train the sequential diffusion tokenizer and a small next-token GPT on
digits (16x16; or Fashion-MNIST / MNIST with --dataset), measure reconstruction PSNR from every prefix of token groups and draw
one grid of images decoded from 1/4, 1/2, 3/4 and all of their tokens.

D-AR (Gao, Shou et al., "D-AR: Diffusion via Autoregressive Models", https://arxiv.org/abs/2505.23660):
the tokenizer's ``K`` 1D tokens are ``G`` groups; a pixel flow decoder denoises over ``G`` time
intervals, coarse to fine, and in interval ``g`` sees groups ``1..g`` only, so any prefix of the
tokens decodes to a whole image (`artok.tokenizers.dar`). The generator is a plain next-token GPT
over the tokens (the ``d-ar`` kind, `artok.generators.dar`); during sampling, each finished group
is decoded into a preview (`artok.generators.dar.sample.sample_with_previews`).

What this script runs (one CPU thread, fp32, fixed seeds):
1. `DARTokenizer` (``--dim``, ``--tokens`` K in ``--groups`` G, VQ ``--codebook``) trained with the
   shared tokenizer trainer (`artok.training.train_tokenizer`) for ``--steps`` x ``--batch-size``;
2. PSNR / SSIM of ``--eval-images`` test images decoded from the first 1/4, 1/2, 3/4 and all tokens
   (``--decode-steps`` Euler steps, the same seeded noise for every prefix);
3. a ``d-ar`` GPT trained on the encoded training set for ``--gen-steps``; one sample per class,
   each decoded at the same prefixes while it is generated;
4. ``previews.png``: rows of [original, 1/4, 1/2, 3/4, all] for test reconstructions, then rows
   of [blank, 1/4, 1/2, 3/4, all] for generated samples; ``dar_previews.json`` with the figures.

Simplified vs the paper (see `artok.tokenizers.dar` for the model): a 0.3M-parameter tokenizer
trained for about five CPU minutes on 16x16 grey digits (D-AR: ImageNet 256^2, a 12-layer SiT decoder, LPIPS /
GAN / REPA terms, second-order sampling); Euler steps; a 4-layer GPT instead of LlamaGen-L/XL.
Usage::

    python benchmarks/dar_previews.py --out runs/dar_previews
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (models, previews.png, dar_previews.json)")
    parser.add_argument("--dataset", default="digits", help="digits (default, 16x16), fashion-mnist or mnist")
    parser.add_argument("--steps", type=int, default=1500, help="tokenizer training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--encoder-depth", type=int, default=2)
    parser.add_argument("--decoder-depth", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16, help="K, tokens per image")
    parser.add_argument("--groups", type=int, default=4, help="G, token groups (time intervals)")
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--prefix-dropout", type=float, default=0.2)
    parser.add_argument("--time-shift", type=float, default=4.0,
                        help="D-AR's time shift s (paper: 2; here 4 measured better: 17.3 vs 15.8 dB)")
    parser.add_argument("--decode-steps", type=int, default=16, help="Euler steps of every decode")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--gen-steps", type=int, default=300, help="GPT training steps (0: no generated row)")
    parser.add_argument("--gen-batch-size", type=int, default=64)
    parser.add_argument("--gen-images", type=int, default=10000, help="training images encoded for the GPT")
    parser.add_argument("--gen-dim", type=int, default=128)
    parser.add_argument("--gen-depth", type=int, default=4)
    parser.add_argument("--cfg-scale", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train_tokenizer_model(args, train) -> tuple[torch.nn.Module, dict]:
    from artok.tokenizers.dar import DARTokenizer, DARTokenizerConfig
    from artok.training import TrainConfig, train_tokenizer

    config = DARTokenizerConfig(
        in_channels=train.channels, image_size=train.image_size[0], patch_size=args.patch_size, dim=args.dim,
        encoder_depth=args.encoder_depth, decoder_depth=args.decoder_depth, num_latent_tokens=args.tokens,
        num_groups=args.groups, latent_dim=8, quantizer="vq",
        quantizer_options={"codebook_size": args.codebook, "codebook_dim": 8, "dead_code_threshold": 1.0},
        decode_steps=args.decode_steps,
        prefix_dropout=args.prefix_dropout, time_shift=args.time_shift)
    torch.manual_seed(args.seed)
    tokenizer = DARTokenizer(config)
    schedule = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=min(50, args.steps // 10),
                           seed=args.seed, progress=False, log_every=max(1, args.steps // 10))
    started = time.perf_counter()
    result = train_tokenizer(tokenizer, train, schedule)
    seconds = time.perf_counter() - started
    history = [{key: float(value) for key, value in row.items() if isinstance(value, (int, float))} for row in result.history]
    info = {"parameters": sum(p.numel() for p in tokenizer.parameters()), "steps": args.steps,
            "batch_size": args.batch_size, "train_seconds": round(seconds, 1), "history": history}
    return result.final_model.eval(), info


@torch.no_grad()
def prefix_metrics(tokenizer, test, count: int) -> tuple[dict, dict]:
    """PSNR / SSIM of the first ``count`` test images decoded from each prefix; and the first
    four images with their reconstructions (for the grid)."""
    from artok.evaluation import psnr, ssim

    lengths = tokenizer.prefix_lengths(FRACTIONS)
    sums = {k: {"psnr": 0.0, "ssim": 0.0} for k in lengths}
    shown: dict = {}
    started = time.perf_counter()
    for start in range(0, count, 100):
        images, _ = test.batch(torch.arange(start, min(start + 100, count)), "cpu")
        tokens = tokenizer.encode(images)
        for k in lengths:
            decoded = tokenizer.decode(tokens, num_tokens=k)
            sums[k]["psnr"] += psnr(decoded, images) * images.shape[0]
            sums[k]["ssim"] += ssim(decoded, images) * images.shape[0]
            if start == 0:
                shown[k] = decoded[:4]
        if start == 0:
            shown["original"] = images[:4]
    metrics = {f"{k}/{lengths[-1]}": {name: round(value / count, 3) for name, value in sums[k].items()} for k in lengths}
    metrics["decode_seconds_per_image_and_prefix"] = round((time.perf_counter() - started) / (count * len(lengths)), 4)
    return metrics, shown


def train_gpt(args, tokenizer, train) -> tuple[torch.nn.Module, dict]:
    from dataclasses import replace

    from artok.training import TrainConfig, encode_dataset, train_generator
    from artok.zoo import build_generator

    count = min(args.gen_images, len(train))  # the splits are shuffled and class-balanced
    images = replace(train, images=train.images[:count], labels=train.labels[:count])
    started = time.perf_counter()
    tokens = encode_dataset(tokenizer, images, progress=False)
    encode_seconds = time.perf_counter() - started
    torch.manual_seed(args.seed)
    generator = build_generator("d-ar", tokenizer, num_classes=10, dim=args.gen_dim, depth=args.gen_depth, num_heads=4)
    schedule = TrainConfig(steps=args.gen_steps, batch_size=args.gen_batch_size, lr=1e-3,
                           warmup_steps=min(50, args.gen_steps // 10), seed=args.seed, progress=False,
                           log_every=max(1, args.gen_steps // 10))
    started = time.perf_counter()
    result = train_generator(generator, tokens, images.labels.long(), schedule)
    losses = [float(row["loss"]) for row in result.history if "loss" in row]
    info = {"parameters": sum(p.numel() for p in generator.parameters()), "steps": args.gen_steps,
            "batch_size": args.gen_batch_size, "images": count, "encode_seconds": round(encode_seconds, 1),
            "train_seconds": round(time.perf_counter() - started, 1),
            "loss_first": round(losses[0], 4) if losses else None, "loss_last": round(losses[-1], 4) if losses else None}
    return result.final_model.eval(), info


@torch.no_grad()
def generated_previews(args, tokenizer, generator) -> tuple[dict, dict]:
    from dataclasses import replace

    from artok.generators.dar.sample import sample_with_previews
    from artok.zoo import default_sampler_config

    config = replace(default_sampler_config(generator), cfg_scale=args.cfg_scale)
    labels = torch.arange(10)
    lengths = tokenizer.prefix_lengths(FRACTIONS)
    started = time.perf_counter()
    _, previews = sample_with_previews(generator, labels, config, torch.Generator().manual_seed(args.seed),
                                       decode=lambda prefix, k: tokenizer.decode(prefix), preview_lengths=lengths)
    info = {"cfg_scale": args.cfg_scale, "labels": labels.tolist(), "preview_lengths": lengths,
            "seconds_with_previews": round(time.perf_counter() - started, 2)}
    return previews, info


def grid_rows(shown: dict, generated: dict | None, lengths: list[int]) -> torch.Tensor:
    """Cells of the grid, 5 per row: [original or blank, then each prefix]."""
    rows = []
    for i in range(shown["original"].shape[0]):
        rows.append(torch.stack([shown["original"][i], *(shown[k][i] for k in lengths)]))
    if generated:
        blank = torch.ones_like(shown["original"][0])
        for i in range(generated[lengths[0]].shape[0]):
            rows.append(torch.stack([blank, *(generated[k][i] for k in lengths)]))
    return torch.cat(rows)


def main(argv=None) -> int:
    from artok.data import load_dataset
    from artok.evaluation.report import save_image_grid
    from artok.hub import atomic_write_text, save_pretrained

    args = parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    tokenizer, tokenizer_info = train_tokenizer_model(args, train)
    save_pretrained(tokenizer, out / "tokenizer", extra={"dataset": args.dataset})
    metrics, shown = prefix_metrics(tokenizer, test, min(args.eval_images, len(test)))
    print(json.dumps(metrics, indent=1))
    report = {"dataset": args.dataset, "arguments": vars(args), "tokenizer": tokenizer_info, "reconstruction": metrics}
    generated = None
    if args.gen_steps > 0:
        generator, report["generator"] = train_gpt(args, tokenizer, train)
        save_pretrained(generator, out / "generator", extra={"dataset": args.dataset})
        generated, report["sampling"] = generated_previews(args, tokenizer, generator)
    lengths = tokenizer.prefix_lengths(FRACTIONS)
    save_image_grid(out / "previews.png", grid_rows(shown, generated, lengths), nrow=5, scale=4)
    report["grid"] = {"file": "previews.png", "columns": ["original (test rows) / blank (generated rows)",
                                                           *(f"first {k} of {lengths[-1]} tokens" for k in lengths)],
                      "rows": f"{shown['original'].shape[0]} test reconstructions, then "
                              f"{0 if generated is None else generated[lengths[0]].shape[0]} generated samples (labels 0..9)"}
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(out / "dar_previews.json", json.dumps(report, indent=1) + "\n")
    print(f"wrote {out / 'previews.png'} and {out / 'dar_previews.json'} ({report['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
