"""Speculative samplers on a raster generator (the dataset it was trained on: ``digits`` for the demo,
``fashion-mnist`` for ``artok demo --dataset fashion-mnist``; CPU or CUDA): mean accepted tokens per
target forward, wall-clock speed-up over the engine's plain sampler (batch 1 latency and large-batch
throughput), and the change in FD / class accuracy, next to the seed noise of the plain sampler.

    python -m artok demo --out runs/demo_spec            # once: tokenizer + target generator
    python benchmarks/speculative.py --demo runs/demo_spec

A draft generator (default width 64, 2 layers) is trained on the same tokens the first time and
saved under ``<demo>/draft``. Results: ``runs/bench/speculative.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from artok.data import load_dataset
from artok.generators import RasterConfig, RasterGenerator
from artok.generators.raster.engine import SamplingEngine
from artok.generators.raster.jacobi import jacobi_sample
from artok.generators.raster.speculative import speculative_sample
from artok.hub import from_pretrained, save_pretrained
from artok.pipeline import load_pair
from artok.recipes import evaluate_samples
from artok.sampling.configs import SamplerConfig
from artok.sampling.relaxed import (
    GroupedAcceptance,
    LanternAcceptance,
    latent_neighbours,
    tokenizer_codebook,
)
from artok.tokens import Tokens
from artok.training import TrainConfig, encode_dataset, train_generator


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def get_draft(demo: Path, target, tokenizer, train, args):
    path = Path(args.draft_dir) if args.draft_dir else demo / "draft"
    if (path / "model.safetensors").exists():
        return from_pretrained(path).eval()
    print(f"training a draft generator (width {args.draft_dim}, {args.draft_depth} layers, {args.draft_steps} steps)")
    tokens = encode_dataset(tokenizer, train, progress=False)
    config = RasterConfig(token_spec=target.spec.to_dict(), num_classes=target.config.num_classes, dim=args.draft_dim,
                          depth=args.draft_depth, num_heads=2, dropout=0.1, class_dropout=0.1)
    torch.manual_seed(0)
    draft = RasterGenerator(config)
    result = train_generator(draft, tokens, train.labels, TrainConfig(steps=args.draft_steps, batch_size=128, lr=1e-3,
                                                                       warmup_steps=50, ema_decay=0.99, progress=False))
    draft = result.final_model.eval()
    save_pretrained(draft, path, extra={"dataset": args.dataset, "role": "speculative draft"})
    print(f"draft final loss {result.history[-1]['loss']:.3f}")
    return draft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo_spec")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method (the plain sampler gets twice as many)")
    parser.add_argument("--batch", type=int, default=250, help="images per batch for quality and throughput")
    parser.add_argument("--latency-images", type=int, default=20, help="images sampled one at a time for latency")
    parser.add_argument("--repeats", type=int, default=3, help="paired throughput timings per method")
    parser.add_argument("--draft-dim", type=int, default=64)
    parser.add_argument("--draft-depth", type=int, default=2)
    parser.add_argument("--draft-steps", type=int, default=800)
    parser.add_argument("--draft-dir", default=None, help="where the draft is saved (default: <demo>/draft)")
    parser.add_argument("--methods", default=None, help="comma-separated name prefixes to run (plain always runs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default=None, help="dataset of the target (default: the one recorded with it)")
    parser.add_argument("--compile", action="store_true",
                        help="compile every engine (forward and per-round update; CPU inductor, CUDA graphs on CUDA)")
    parser.add_argument("--speed-only", action="store_true", help="skip the quality runs (FD / accuracy); time only")
    parser.add_argument("--out", default="runs/bench/speculative.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    demo = Path(args.demo)
    target, tokenizer = load_pair(demo / "generator", device=args.device)
    target.eval()
    args.dataset = args.dataset or target.extra.get("dataset", "digits")
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    draft = get_draft(demo, target, tokenizer, train, args).to(args.device)
    config = SamplerConfig(**target.extra["sampling"])
    neighbours = latent_neighbours(tokenizer_codebook(tokenizer), 8)
    codebook = tokenizer_codebook(tokenizer)
    labels = torch.arange(target.config.num_classes, device=args.device).repeat_interleave(args.per_class)
    batch = args.batch
    guided = config.uses_cfg

    engines = {}

    def engine(model, size, extra):
        key = (id(model), size, extra)
        if key not in engines:
            engines[key] = SamplingEngine(model, size, guidance=guided, extra_positions=extra, compile=args.compile)
        return engines[key]

    def plain(batch_labels, rng):
        return engine(target, len(batch_labels), 0).generate(batch_labels, config, rng), None

    def speculative(k, acceptance=None):
        def run(batch_labels, rng):
            size = len(batch_labels)
            out = speculative_sample(target, draft, batch_labels, config, rng, num_draft=k, acceptance=acceptance,
                                     measure_tv=acceptance is not None,
                                     target_engine=engine(target, size, k + 1), draft_engine=engine(draft, size, k + 1))
            return out.tokens.ids, out.stats
        return run

    def jacobi(window, acceptance=None):
        def run(batch_labels, rng):
            out = jacobi_sample(target, batch_labels, config, rng, window=window, acceptance=acceptance,
                                measure_tv=acceptance is not None, engine=engine(target, len(batch_labels), window + 1))
            return out.tokens.ids, out.stats
        return run

    methods = {
        "plain (engine)": plain,
        "speculative k=2": speculative(2),
        "speculative k=3": speculative(3),
        "speculative k=4": speculative(4),
        "jacobi W=4": jacobi(4),
        "jacobi W=8": jacobi(8),
        "lantern k=3 nb=8 delta=0.1": speculative(3, LanternAcceptance(neighbours, 0.1)),
        "lantern k=3 nb=8 delta=0.3": speculative(3, LanternAcceptance(neighbours, 0.3)),
        "gsd jacobi W=8 w=4 gap=0.05": jacobi(8, GroupedAcceptance(rank_window=4, prob_gap=0.05, codebook=codebook,
                                                                   max_distance=float("inf"))),
        "gsd spec k=3 w=4 gap=0.05": speculative(3, GroupedAcceptance(rank_window=4, prob_gap=0.05)),
    }

    if args.methods:
        prefixes = tuple(args.methods.split(","))
        methods = {k: v for k, v in methods.items() if k.startswith("plain") or k.startswith(prefixes)}
    results = {"config": vars(args), "sampler": config.to_dict(), "target_params": sum(p.numel() for p in target.parameters()),
               "draft_params": sum(p.numel() for p in draft.parameters()), "methods": {}}
    def timed(run, batch_labels, seed):
        rng = torch.Generator(args.device).manual_seed(seed)
        sync(args.device)
        begin = time.perf_counter()
        run(batch_labels, rng)
        sync(args.device)
        return time.perf_counter() - begin

    for name, run in methods.items():
        seeds = range(0 if args.speed_only else 2 * args.seeds if name.startswith("plain") else args.seeds)
        quality, stats = [], []
        for seed in seeds:
            rng = torch.Generator(args.device).manual_seed(seed)
            chunks = []
            for begin in range(0, len(labels), batch):
                ids, batch_stats = run(labels[begin : begin + batch], rng)
                chunks.append(ids)
                if batch_stats is not None:
                    stats.append(batch_stats)
            images = tokenizer.decode(Tokens(target.spec, ids=torch.cat(chunks))).cpu()
            quality.append(evaluate_samples(args.dataset, images, labels.cpu(), train, test, progress=False))
        # Wall clock on a shared CPU drifts with other jobs' load, so every timing of the method is
        # paired with a timing of the plain sampler taken right before it; speed-ups are medians of
        # the paired ratios.
        big = labels[:batch]
        throughput = [(timed(plain, big, 100 + r), timed(run, big, 100 + r)) for r in range(args.repeats)]
        singles = [labels[i * len(labels) // args.latency_images][None] for i in range(args.latency_images)]
        latency = [(timed(plain, one, 200 + i), timed(run, one, 200 + i)) for i, one in enumerate(singles)]
        if not stats and not name.startswith("plain"):  # speed-only: the statistics of one timed batch
            stats = [run(big, torch.Generator(args.device).manual_seed(0))[1]]
        entry = {
            "fd": [q["fd"] for q in quality], "class_accuracy": [q["class_accuracy"] for q in quality],
            "fd_reference": quality[0]["fd_reference"] if quality else float("nan"),
            "throughput_images_per_s": len(big) / statistics.median(t for _, t in throughput),
            "latency_ms_per_image": 1e3 * statistics.median(t for _, t in latency),
            "throughput_speedup": statistics.median(p / t for p, t in throughput),
            "latency_speedup": statistics.median(p / t for p, t in latency),
        }
        if stats:
            for key in ("mean_accepted", "acceptance_rate", "per_token_tv"):
                entry[key] = statistics.fmean(getattr(s, key) for s in stats)
            entry["target_forwards_per_batch"] = statistics.fmean(s.target_forwards for s in stats)
        else:
            entry.update(mean_accepted=1.0, acceptance_rate=float("nan"), per_token_tv=0.0,
                         target_forwards_per_batch=float(target.config.seq_len))
        results["methods"][name] = entry
        quality_text = "" if not quality else (
            f"  FD {statistics.fmean(entry['fd']):6.2f}+-{statistics.pstdev(entry['fd']):.2f}  "
            f"acc {statistics.fmean(entry['class_accuracy']):.3f}")
        print(f"{name:30s} acc/fwd {entry['mean_accepted']:.2f}  thr x{entry['throughput_speedup']:.2f} "
              f"({entry['throughput_images_per_s']:6.1f} img/s)  lat x{entry['latency_speedup']:.2f} "
              f"({entry['latency_ms_per_image']:6.1f} ms){quality_text}  tv {entry['per_token_tv']:.3f}", flush=True)
    base = results["methods"]["plain (engine)"]
    for entry in results["methods"].values() if not args.speed_only else ():
        entry["fd_change"] = statistics.fmean(entry["fd"]) - statistics.fmean(base["fd"])
        entry["accuracy_change"] = statistics.fmean(entry["class_accuracy"]) - statistics.fmean(base["class_accuracy"])
    if not args.speed_only:
        results["seed_noise"] = {"fd_std": statistics.stdev(base["fd"]),
                                 "accuracy_std": statistics.stdev(base["class_accuracy"])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: {m: round(v, 3) if isinstance(v, float) else v for m, v in e.items() if not isinstance(v, list)}
                      for k, e in results["methods"].items()}, indent=1))
    if "seed_noise" in results:
        print(f"seed noise of the plain sampler: FD std {results['seed_noise']['fd_std']:.2f}, "
              f"accuracy std {results['seed_noise']['accuracy_std']:.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
