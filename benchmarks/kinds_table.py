"""Issue 14's equal-compute table for the new generator kinds beside raster: RAR, NAR and
Token-Shuffle on the same VQ tokenizer, the same training budget (steps x batch, one CPU thread;
the FLOPs differ: Token-Shuffle's transformer sees 16 positions per image where raster sees 49, and
the train CPU seconds are recorded), parameters within 10% of raster's, scored by artok's reference classifier (class accuracy, FD with
its real-data floor), with sampling steps per image and CPU seconds per image, for several seeds.

    kind           steps per image (h x w grid)      paper
    raster         h w                               LlamaGen
    rar            h w (raster sampling)             RAR: random orders annealed to raster
    nar            h + w - 1                         NAR: next-neighbour fronts
    token-shuffle  ceil(h/s) ceil(w/s)               Token-Shuffle: s x s windows per step
    any-order      2 x ASSD iterations (measured)    ASSD: any-subset AR, exact parallel sampling
    maskgit        iterations (reference row)        MaskGIT

The tokenizer and the helpers come from ``benchmarks/generator_zoo.py`` (its Fashion-MNIST VQ
tokenizer, 28x28 -> 7x7 tokens, 256 codes; trained once and cached under ``OUT/tokenizers``).

    .venv/bin/python benchmarks/kinds_table.py [--out runs/kinds_table] [--steps 300] [--seeds 0,1]
                                               [--kinds raster,rar,nar,token-shuffle]

Writes ``OUT/results.json`` (after every run), one sample grid per kind (``OUT/grid_KIND.png``,
one row per class) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generator_zoo as zoo_bench  # noqa: E402 - the shared tokenizer recipe and helpers

from artok.data import load_dataset  # noqa: E402
from artok.data.token_cache import cached_tokens  # noqa: E402
from artok.evaluation import evaluate_generation, get_reference_classifier, reference_fd, reference_statistics  # noqa: E402
from artok.evaluation.report import save_image_grid  # noqa: E402
from artok.generators.any_order.speculative import sample_assd  # noqa: E402
from artok.sampling import MaskGITSamplerConfig, sampler_config_to_dict  # noqa: E402
from artok.sampling.configs import SamplerConfig  # noqa: E402
from artok.training import TrainConfig, train_generator  # noqa: E402
from artok.zoo import build_generator, sample  # noqa: E402

CFG = 3.0
WIDTH = {"dim": 128, "num_heads": 4}
#: kind -> (generator options, sampler); depths chosen so parameters are within 10% of raster's
KINDS = {
    "raster": ({**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),
    "rar": ({**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),  # anneal window: 50% -> 75% of the steps
    "nar": ({**WIDTH, "depth": 3, "vertical_depth": 1}, SamplerConfig(cfg_scale=CFG)),
    "token-shuffle": ({**WIDTH, "depth": 3, "window": 2, "unshuffle_depth": 0}, SamplerConfig(cfg_scale=CFG)),
    "any-order": ({**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),  # sampled with ASSD, DRAFT_LENGTH drafts
    "maskgit": ({**WIDTH, "depth": 4}, MaskGITSamplerConfig(iterations=8, choice_temperature=2.0, cfg_scale=CFG,
                                                            cfg_schedule="linear")),
}


DRAFT_LENGTH = 4


def sample_kind(kind: str, model, labels, sampler, rng, counts: list):
    """The kind's sampler; ASSD (any-order) appends its model passes per image to ``counts``."""
    if kind != "any-order":
        return sample(model, labels, sampler, rng)
    out = sample_assd(model, labels, sampler, rng, draft_length=DRAFT_LENGTH)
    counts.append(2 * out.iterations.double().mean().item())
    return out.tokens


def steps_per_image(kind: str, generator, sampler) -> int:
    """Transformer forward passes the kind's sampler makes per image."""
    config = generator.config
    if kind == "nar":
        return config.num_fronts
    if kind == "maskgit":
        return sampler.iterations
    return config.seq_len  # raster, rar: tokens; token-shuffle: merged windows


def options_for(kind: str, steps: int) -> dict:
    options = dict(KINDS[kind][0])
    if kind == "rar":
        options.update(anneal_start=steps // 2, anneal_end=(3 * steps) // 4)
    return options


def run_one(kind, seed, args, tokenizer, tokens, train, labels, classifier, test_stats, floor) -> tuple[dict, torch.Tensor]:
    _, sampler = KINDS[kind]
    torch.manual_seed(seed)
    generator = build_generator(kind, tokenizer, train.num_classes, tokens=tokens, **options_for(kind, args.steps))
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=2e-3, warmup_steps=30, ema_decay=0.98,
                         log_every=25, seed=seed, progress=False)
    with zoo_bench.Clock() as training:
        result = train_generator(generator, tokens, train.labels, config)
    model = result.final_model.eval()
    rng = torch.Generator().manual_seed(seed)
    with zoo_bench.Clock() as sampling:
        counts = []
        samples = [sample_kind(kind, model, labels[i : i + 100], sampler, rng, counts)
                   for i in range(0, labels.shape[0], 100)]
    images = torch.cat([tokenizer.decode(tokens_) for tokens_ in samples])
    scores = evaluate_generation(classifier, images, labels, test_stats)
    row = {
        "kind": kind, "seed": seed, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "class_accuracy": scores["class_accuracy"], "fd": scores["fd"], "fd_floor": floor,
        "steps_per_image": statistics.fmean(counts) if counts else steps_per_image(kind, model, sampler),
        "tokens_per_image": tokenizer.spec.seq_len,
        "sample_s_per_image": sampling.wall / labels.shape[0], "sample_cpu_s_per_image": sampling.cpu / labels.shape[0],
        "train_wall_s": training.wall, "train_cpu_s": training.cpu,
        "first_loss": result.history[0]["loss"], "final_loss": result.history[-1]["loss"],
        "generator_options": options_for(kind, args.steps), "sampler": sampler_config_to_dict(sampler),
    }
    return row, images


def summarise(rows: list[dict]) -> dict:
    """Mean and (with two or more seeds) the spread of each quality figure, per kind."""
    summary = {}
    for kind in dict.fromkeys(row["kind"] for row in rows):
        mine = [row for row in rows if row["kind"] == kind]
        entry = {"seeds": [row["seed"] for row in mine], "params_M": mine[0]["params_M"],
                 "steps_per_image": mine[0]["steps_per_image"]}
        for field in ("class_accuracy", "fd", "sample_s_per_image", "sample_cpu_s_per_image", "train_wall_s",
                      "train_cpu_s"):
            values = [row[field] for row in mine]
            entry[field] = statistics.fmean(values)
            if len(values) > 1:
                entry[f"{field}_spread"] = max(values) - min(values)
        summary[kind] = entry
    return summary


def print_table(results: dict) -> None:
    floor = results["budget"]["fd_floor"]
    print(f"{'kind':14s} {'params':>7s} {'steps/img':>9s} {'s/img':>7s} {'cpu s/img':>9s} {'acc':>12s} "
          f"{'fd':>14s}  (fd floor {floor:.2f})")
    for kind, entry in results["summary"].items():
        acc = f"{entry['class_accuracy']:.3f}" + (f"±{entry['class_accuracy_spread'] / 2:.3f}"
                                                  if "class_accuracy_spread" in entry else "")
        fd = f"{entry['fd']:.2f}" + (f"±{entry['fd_spread'] / 2:.2f}" if "fd_spread" in entry else "")
        print(f"{kind:14s} {entry['params_M']:6.3f}M {entry['steps_per_image']:9.1f} {entry['sample_s_per_image']:7.4f} "
              f"{entry['sample_cpu_s_per_image']:9.4f} {acc:>12s} {fd:>14s}")


def run(args) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kinds, seeds = args.kinds.split(","), [int(seed) for seed in args.seeds.split(",")]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SystemExit(f"kinds_table.py: unknown kind(s) {unknown}; choose from {sorted(KINDS)}")
    train = load_dataset(zoo_bench.DATASET, "train", limit=args.limit)
    full_train, test = load_dataset(zoo_bench.DATASET, "train"), load_dataset(zoo_bench.DATASET, "test")
    classifier = get_reference_classifier(zoo_bench.DATASET, progress=False)
    test_stats = reference_statistics(classifier, test)
    labels = torch.arange(train.num_classes).repeat_interleave(args.samples_per_class)
    floor = reference_fd(classifier, full_train, test_stats, n=labels.shape[0])
    tokenizer = zoo_bench.get_tokenizer("vq", out, train, args.tokenizer_steps, {})
    tokens = cached_tokens(tokenizer, train, progress=False)
    results_path = out / "results.json"
    results = {"budget": {"dataset": zoo_bench.DATASET, "threads": args.threads, "train_subset": len(train),
                          "generator_steps": args.steps, "generator_batch": args.batch_size,
                          "tokenizer_steps": args.tokenizer_steps, "samples": int(labels.shape[0]), "fd_floor": floor,
                          "grid": list(tokenizer.spec.grid), "vocab_size": tokenizer.spec.vocab_size,
                          "command": " ".join(sys.argv)},
               "rows": []}
    started = time.perf_counter()
    for kind in kinds:
        for seed in seeds:
            row, images = run_one(kind, seed, args, tokenizer, tokens, train, labels, classifier, test_stats, floor)
            results["rows"].append(row)
            if seed == seeds[0]:
                per_class = args.samples_per_class
                grid = images.view(train.num_classes, per_class, *images.shape[1:])[:, : min(per_class, 10)]
                save_image_grid(out / f"grid_{kind}.png", grid.flatten(0, 1), nrow=min(per_class, 10), scale=2)
            results["summary"] = summarise(results["rows"])
            results["total_wall_s"] = time.perf_counter() - started
            results_path.write_text(json.dumps(results, indent=2))
            print(f"{kind:14s} seed {seed}: acc {row['class_accuracy']:.3f} fd {row['fd']:.2f} "
                  f"steps/img {row['steps_per_image']} {row['sample_s_per_image'] * 1000:.1f} ms/img "
                  f"train {row['train_wall_s']:.0f}s params {row['params_M']:.3f}M", flush=True)
    print_table(results)
    print(f"wrote {results_path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/kinds_table")
    parser.add_argument("--kinds", default="raster,rar,nar,token-shuffle")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=300, help="generator training steps (every kind)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokenizer-steps", type=int, default=400)
    parser.add_argument("--limit", type=int, default=10000, help="class-balanced train subset")
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
