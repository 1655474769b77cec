"""Generator zoo on Fashion-MNIST: every generator with its natural tokenizer, class-conditional, at a
similar parameter count and the same training budget, scored by the reference classifier.

    generator    tokenizer            paper
    raster       VQ                   LlamaGen  (next token)
    maskgit      VQ                   MaskGIT   (masked, confidence-ordered)
    next-scale   multi-scale VQ       VAR       (next scale)
    mar          KL (continuous)      MAR       (random-order masked, diffusion head)
    next-x       KL (continuous)      xAR       (next cell, per-token flow-matching MLP head, noisy context)
    next-x-tf    KL (continuous)      xAR       (next cell, the transformer denoises each cell, noisy context)
    next-x-tf-teacher                 xAR       (as next-x-tf, trained on clean context: no noisy context learning)
    next-x-scale KL (continuous)      xAR       (next scale 1,2,3,5,7, the transformer denoises each scale)
    dimwise      PTQ of the KL        TokenBridge (dimension-wise head)
    bitwise      BSQ, 16 bits         Infinity's bitwise head (2^16 vocabulary)

Budget (default, ``--scale 1``): one CPU thread; tokenizers (shared, trained once, cached under
``OUT/tokenizers``) ~0.16M parameters, 400 steps of 32 images; generators ~0.9M parameters, 300
steps of 32 sequences on a class-balanced 10,000-image subset of the train split (tokens cached
with `artok.data.token_cache`). Samples: 20 per class (200), scored against the real test split;
the FD floor is 200 real train images against the same test split. Numbers are far from
converged: the point is a like-for-like table and a harness, not state-of-the-art quality.

Writes ``OUT/results.json`` (updated after every generator) and ``OUT/report.html``.

    .venv/bin/python benchmarks/generator_zoo.py [--out runs/generator_zoo] [--scale 1.0] [--only raster,mar]
    .venv/bin/python benchmarks/generator_zoo.py --report-only      # rewrite report.html from OUT
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from artok.data import load_dataset
from artok.data.token_cache import cached_tokens
from artok.evaluation import (
    Report,
    evaluate_generation,
    get_reference_classifier,
    psnr,
    reference_fd,
    reference_statistics,
)
from artok.hub import save_pretrained
from artok.sampling import (
    MARSamplerConfig,
    MaskGITSamplerConfig,
    NextScaleSamplerConfig,
    NextXSamplerConfig,
    sampler_config_to_dict,
)
from artok.sampling.configs import SamplerConfig
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokenizers.ptq import post_training_quantized
from artok.training import TrainConfig, train_generator, train_tokenizer
from artok.zoo import build_generator, from_pretrained, sample

DATASET = "fashion-mnist"
LATENT = 16

TOKENIZERS = {
    "vq": ("vq", {"codebook_size": 256, "codebook_dim": 8, "dead_code_threshold": 0.02}, LATENT),
    "msvq": ("msvq", {"codebook_size": 256, "scales": [1, 2, 3, 5, 7]}, LATENT),
    "kl": ("kl", {"kl_weight": 1e-5}, 4),
    "bsq": ("bsq", {"codebook_dim": 16}, LATENT),
}

CFG = 3.0
GENERATORS = {
    # kind: (tokenizer, generator options, sampler config)
    "raster": ("vq", {"dim": 128, "depth": 4, "num_heads": 4}, SamplerConfig(cfg_scale=CFG)),
    "maskgit": ("vq", {"dim": 128, "depth": 4, "num_heads": 4},
                MaskGITSamplerConfig(iterations=8, choice_temperature=2.0, cfg_scale=CFG, cfg_schedule="linear")),
    "next-scale": ("msvq", {"dim": 128, "depth": 3, "num_heads": 4}, NextScaleSamplerConfig(cfg_scale=CFG)),
    "mar": ("kl", {"dim": 128, "depth": 2, "decoder_depth": 1, "num_heads": 4, "head_width": 128, "head_depth": 2},
            MARSamplerConfig(iterations=16, steps=25, cfg_scale=CFG)),
    "next-x": ("kl", {"dim": 128, "depth": 3, "num_heads": 4, "unit": "cell", "cell_size": 2, "denoiser": "head",
                      "head_width": 128, "head_depth": 2}, NextXSamplerConfig(steps=20, cfg_scale=CFG)),
    # xAR as in the paper: the transformer itself denoises each entity (no per-token head)
    # (constant guidance: the linear ramp from 1 scored FD 214 vs 150 for the same next-x-tf model)
    "next-x-tf": ("kl", {"dim": 128, "depth": 3, "num_heads": 4, "unit": "cell", "cell_size": 2,
                         "denoiser": "transformer"}, NextXSamplerConfig(steps=20, cfg_scale=CFG, cfg_schedule="constant")),
    "next-x-tf-teacher": ("kl", {"dim": 128, "depth": 3, "num_heads": 4, "unit": "cell", "cell_size": 2,
                                 "denoiser": "transformer", "noisy_context": False},
                          NextXSamplerConfig(steps=20, cfg_scale=CFG, cfg_schedule="constant")),
    "next-x-scale": ("kl", {"dim": 128, "depth": 3, "num_heads": 4, "unit": "scale", "scales": [1, 2, 3, 5, 7],
                            "denoiser": "transformer"}, NextXSamplerConfig(steps=20, cfg_scale=CFG, cfg_schedule="constant")),
    "dimwise": ("ptq", {"dim": 128, "depth": 3, "num_heads": 4, "head_width": 64, "head_depth": 2},
                SamplerConfig(cfg_scale=CFG)),
    "bitwise": ("bsq", {"dim": 128, "depth": 4, "num_heads": 4}, SamplerConfig(cfg_scale=CFG)),
}


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def tokenizer_config(name: str) -> CNNTokenizerConfig:
    quantizer, options, latent_dim = TOKENIZERS[name]
    return CNNTokenizerConfig(in_channels=1, image_size=28, base_channels=16, channel_multipliers=(1, 2, 2),
                              latent_dim=latent_dim, quantizer=quantizer, quantizer_options=options)


def get_tokenizer(name: str, out: Path, train, steps: int, log: dict) -> CNNTokenizer:
    """Train (or load from ``out/tokenizers/name``) one shared tokenizer."""
    directory = out / "tokenizers" / name
    if (directory / "model.safetensors").is_file():
        return from_pretrained(directory)
    if name == "ptq":
        kl = get_tokenizer("kl", out, train, steps, log)
        with Clock() as clock:
            images, _ = train.batch(torch.arange(min(len(train), 5000)))
            tokenizer = post_training_quantized(kl, images, bits=4)
        log[name] = {"train_wall_s": clock.wall, "train_cpu_s": clock.cpu, "steps": 0}
    else:
        torch.manual_seed(0)
        tokenizer = CNNTokenizer(tokenizer_config(name))
        config = TrainConfig(steps=steps, batch_size=32, lr=2e-3, warmup_steps=30, log_every=50, progress=False)
        with Clock() as clock:
            train_tokenizer(tokenizer, train, config)
        log[name] = {"train_wall_s": clock.wall, "train_cpu_s": clock.cpu, "steps": steps}
    save_pretrained(tokenizer.eval(), directory, extra={"dataset": DATASET})
    return tokenizer.eval()


@torch.no_grad()
def tokenizer_metrics(tokenizer, test, classifier, test_stats, count: int) -> dict:
    """PSNR and reconstruction FD on ``count`` random test images (the split is sorted by class)."""
    images, _ = test.batch(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:count])
    reconstruction = tokenizer.decode(tokenizer.encode(images))
    fd = evaluate_generation(classifier, reconstruction, None, test_stats)["fd"]
    return {"tokenizer_psnr": psnr(reconstruction, images), "tokenizer_recon_fd": fd,
            "tokenizer_bits_per_image": tokenizer.spec.bits_per_image,
            "tokenizer_params_M": sum(p.numel() for p in tokenizer.parameters()) / 1e6}


def run(args) -> None:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() and (args.resume or args.report_only) else {}
    results.setdefault("rows", {})
    kinds = [] if args.report_only else args.only.split(",") if args.only else list(GENERATORS)
    tokenizer_steps = max(1, int(400 * args.scale))
    generator_steps = max(1, int(300 * args.scale))
    per_class = args.samples_per_class

    with Clock() as setup:
        train = load_dataset(DATASET, "train", limit=args.limit)
        full_train = load_dataset(DATASET, "train")
        test = load_dataset(DATASET, "test")
        classifier = get_reference_classifier(DATASET, progress=False)
        test_stats = reference_statistics(classifier, test)
        labels = torch.arange(train.num_classes).repeat_interleave(per_class)
        floor = reference_fd(classifier, full_train, test_stats, n=labels.shape[0])
        # The same real images as the floor (reference_fd's seeded draw), scored like samples.
        index = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(0))[: labels.shape[0]]
        real_images, real_labels = full_train.batch(index)
        real = evaluate_generation(classifier, real_images, real_labels, test_stats)
    results["budget"] = results.get("budget") if args.report_only else {
        "threads": 1, "train_subset": len(train), "tokenizer_steps": tokenizer_steps, "tokenizer_batch": 32,
        "generator_steps": generator_steps, "generator_batch": 32, "samples": int(labels.shape[0]),
        "fd_floor_real_train_vs_test": floor, "setup_wall_s": setup.wall,
    }
    results["real_data"] = {"generator": "real train images", "class_accuracy": real["class_accuracy"], "fd": real["fd"],
                            "fd_floor": floor}
    tokenizer_log = results.setdefault("tokenizers", {})
    grids = {}
    started = time.perf_counter()
    for kind in kinds:
        tokenizer_name, options, sampler = GENERATORS[kind]
        tokenizer = get_tokenizer(tokenizer_name, out, train, tokenizer_steps, tokenizer_log)
        with Clock() as encode:
            tokens = cached_tokens(tokenizer, train, progress=False)
        torch.manual_seed(args.seed)
        generator = build_generator(GENERATOR_KIND.get(kind, kind), tokenizer, train.num_classes, tokens=tokens, **options)
        config = TrainConfig(steps=generator_steps, batch_size=32, lr=2e-3, warmup_steps=30, ema_decay=0.98,
                             log_every=25, seed=args.seed, progress=False)
        with Clock() as training:
            result = train_generator(generator, tokens, train.labels, config)
        model = result.final_model.eval()
        rng = torch.Generator().manual_seed(args.seed)
        with Clock() as sampling:
            images = torch.cat([tokenizer.decode(sample(model, labels[i : i + 100], sampler, rng))
                                for i in range(0, labels.shape[0], 100)])
        scores = evaluate_generation(classifier, images, labels, test_stats)
        row = {
            "generator": kind, "tokenizer": tokenizer_name, "paper": PAPERS[kind],
            "params_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "class_accuracy": scores["class_accuracy"], "fd": scores["fd"], "fd_floor": floor,
            "sample_s_per_image": sampling.wall / labels.shape[0],
            "sample_cpu_s_per_image": sampling.cpu / labels.shape[0],
            "train_wall_s": training.wall, "train_cpu_s": training.cpu, "encode_wall_s": encode.wall,
            "final_loss": result.history[-1]["loss"], "first_loss": result.history[0]["loss"],
            "tokens_per_image": tokenizer.spec.seq_len,
            **tokenizer_metrics(tokenizer, test, classifier, test_stats, labels.shape[0]),
            "sampler": sampler_config_to_dict(sampler), "generator_options": options,
            "loss_curve": [(h["step"], h["loss"]) for h in result.history],
        }
        results["rows"][kind] = row
        grids[kind] = images
        save_pretrained(model, out / "generators" / kind, extra={
            "sampling": sampler_config_to_dict(sampler), "tokenizer": str((out / "tokenizers" / tokenizer_name).resolve()),
            "dataset": DATASET, "class_names": train.class_names})
        torch.save(images, out / "generators" / kind / "samples.pt")
        results["total_wall_s"] = time.perf_counter() - started + setup.wall
        results["total_cpu_s"] = time.process_time()  # this process, all phases
        results_path.write_text(json.dumps(results, indent=2))
        print(f"{kind:10s} acc {row['class_accuracy']:.3f}  fd {row['fd']:8.2f} (floor {floor:.2f})  "
              f"{row['sample_s_per_image'] * 1000:.1f} ms/img  train {training.wall:.0f}s  params {row['params_M']:.2f}M",
              flush=True)
    if args.report_only:  # re-score the saved tokenizers (cheap), keep the generator rows
        for row in results["rows"].values():
            tokenizer = from_pretrained(out / "tokenizers" / row["tokenizer"])
            row.update(tokenizer_metrics(tokenizer, test, classifier, test_stats, labels.shape[0]))
        results_path.write_text(json.dumps(results, indent=2))
    for kind in results["rows"]:
        if kind not in grids and (out / "generators" / kind / "samples.pt").is_file():
            grids[kind] = torch.load(out / "generators" / kind / "samples.pt")
    write_report(out, results, grids, train.class_names, per_class)
    print(f"wrote {results_path} and {out / 'report.html'} ({results.get('total_wall_s', 0):.0f} s)")


# zoo entries that are variants of a generator kind
GENERATOR_KIND = {"next-x-tf": "next-x", "next-x-tf-teacher": "next-x", "next-x-scale": "next-x"}
PAPERS = {"raster": "LlamaGen", "maskgit": "MaskGIT", "next-scale": "VAR", "mar": "MAR", "next-x": "xAR (MLP head)",
          "next-x-tf": "xAR (next cell)", "next-x-tf-teacher": "xAR (next cell, teacher-forced)",
          "next-x-scale": "xAR (next scale)",
          "dimwise": "TokenBridge", "bitwise": "Infinity (bitwise head)"}

TABLE_COLUMNS = ("generator", "paper", "tokenizer", "params_M", "class_accuracy", "fd", "fd_floor",
                 "sample_s_per_image", "sample_cpu_s_per_image", "train_wall_s", "tokens_per_image",
                 "tokenizer_psnr", "tokenizer_recon_fd")


def write_report(out: Path, results: dict, grids: dict, class_names, per_class: int) -> None:
    budget = results["budget"]
    report = Report("artok generator zoo: Fashion-MNIST, class-conditional")
    report.add_text(
        f"Every generator is trained with its natural tokenizer for {budget['generator_steps']} steps of "
        f"{budget['generator_batch']} sequences (one CPU thread, ~1M parameters each) on a class-balanced "
        f"{budget['train_subset']}-image subset of the train split; tokenizers are shared, ~0.16M parameters, "
        f"{budget['tokenizer_steps']} steps of {budget['tokenizer_batch']} images. {budget['samples']} samples "
        f"({per_class} per class) are scored by the reference classifier: class accuracy, and Frechet distance to "
        f"the real test split next to the real-data floor ({budget['fd_floor_real_train_vs_test']:.2f}: as many real "
        "train images against the same split). tokenizer_recon_fd is the FD of reconstructed test images, the best a "
        "generator on that tokenizer can reach. Sampling seconds are wall-clock on a shared 2-core CPU (CPU seconds "
        "beside them). The budget is tiny; the numbers compare the zoo like for like, not its best."
    )
    report.add_heading("Results")
    rows = [{column: results["rows"][kind].get(column, "") for column in TABLE_COLUMNS} for kind in results["rows"]]
    if "real_data" in results:
        rows.append({column: results["real_data"].get(column, "") for column in TABLE_COLUMNS})
    report.add_metrics_table(rows, caption="lower fd is better; the last row scores real train images the same way")
    report.add_heading("Samples (one row per class)")
    columns = min(per_class, 10)
    for kind, images in grids.items():
        grid = images.view(len(class_names), per_class, *images.shape[1:])[:, :columns].flatten(0, 1)
        row = results["rows"][kind]
        report.add_heading(f"{kind} ({row['paper']}, {row['tokenizer']} tokens)", level=3)
        report.add_image_grid(grid, nrow=columns, row_labels=class_names,
                              caption=f"accuracy {row['class_accuracy']:.3f}, FD {row['fd']:.2f}")
    report.add_heading("Training losses")
    for kind in results["rows"]:
        curve = results["rows"][kind]["loss_curve"]
        report.add_plot(([s for s, _ in curve], {f"{kind} loss": [v for _, v in curve]}), caption=f"{kind} training loss",
                        xlabel="step", ylabel="loss")
    report.save(out / "report.html")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/generator_zoo")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training step count")
    parser.add_argument("--limit", type=int, default=10000, help="class-balanced train subset for the generators")
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--only", default=None, help="comma-separated generator kinds (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep rows of an earlier results.json")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: re-score the saved tokenizers and rewrite the report from OUT")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
