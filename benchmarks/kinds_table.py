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
    d-ar           K = 16 1D tokens                  D-AR: next-token GPT over a diffusion tokenizer
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
from artok.evaluation import Report  # noqa: E402
from artok.sampling import MARSamplerConfig, MaskGITSamplerConfig, sampler_config_to_dict  # noqa: E402
from artok.sampling.configs import SamplerConfig  # noqa: E402
from artok.training import TrainConfig, train_generator  # noqa: E402
from artok.zoo import build_generator, sample  # noqa: E402

CFG = 3.0
WIDTH = {"dim": 128, "num_heads": 4}
#: kind -> (tokenizer, generator options, sampler); depths chosen so parameters are within 10% of raster's.
#: The new kinds run on the shared VQ tokenizer; the others on their natural tokenizer from
#: ``generator_zoo.py`` (same recipe: msvq for next-scale, KL for the continuous kinds, PTQ of the
#: KL for dimwise, BSQ for bitwise).
KINDS = {
    "raster": ("vq", {**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),
    "rar": ("vq", {**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),  # anneal window: 50% -> 75% of the steps
    "nar": ("vq", {**WIDTH, "depth": 3, "vertical_depth": 1}, SamplerConfig(cfg_scale=CFG)),
    "token-shuffle": ("vq", {**WIDTH, "depth": 3, "window": 2, "unshuffle_depth": 0}, SamplerConfig(cfg_scale=CFG)),
    "any-order": ("vq", {**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),  # sampled with ASSD, DRAFT_LENGTH drafts
    "maskgit": ("vq", {**WIDTH, "depth": 4}, MaskGITSamplerConfig(iterations=8, choice_temperature=2.0, cfg_scale=CFG,
                                                                   cfg_schedule="linear")),
    "hi-mar": ("kl", {**WIDTH, "depth": 3, "head_width": 128, "head_depth": 2},
               MARSamplerConfig(iterations=16, steps=25, cfg_scale=CFG)),
    "d-ar": ("dar", {**WIDTH, "depth": 4}, SamplerConfig(cfg_scale=CFG)),  # plain GPT over D-AR's 16 1D tokens
    **{kind: entry for kind, entry in zoo_bench.GENERATORS.items() if kind not in ("raster", "maskgit")},
    "dimwise": ("ptq", {**WIDTH, "depth": 4, "head_width": 64, "head_depth": 2}, SamplerConfig(cfg_scale=CFG)),
}
#: narrower MLPs (SwiGLU hidden size) where generator_zoo's depth alone leaves the kind > 5% off raster's size
for _kind, _hidden in {"next-scale": 288, "next-x-tf": 288, "next-x-tf-teacher": 288, "next-x-scale": 288,
                       "bitwise": 400}.items():
    KINDS[_kind] = (KINDS[_kind][0], {**KINDS[_kind][1], "hidden_dim": _hidden}, KINDS[_kind][2])
#: table rows that are variants of a kind (generator_zoo's next-X designs)
KIND_OF = {**zoo_bench.GENERATOR_KIND}


DRAFT_LENGTH = 4


def sample_kind(kind: str, model, labels, sampler, rng, counts: list):
    """The kind's sampler; ASSD (any-order) appends its model passes per image to ``counts``."""
    if kind != "any-order":
        return sample(model, labels, sampler, rng)
    out = sample_assd(model, labels, sampler, rng, draft_length=DRAFT_LENGTH)
    counts.append(2 * out.iterations.double().mean().item())
    return out.tokens


def assd_alternatives(model, labels, sampler, seed: int) -> dict:
    """CPU seconds per image of the same any-order model sampled by ASSD without its KV cache and by
    the plain one-token-per-step cached loop (same law), beside the cached ASSD of the row; and
    cached ASSD vs the plain loop at batch 1 (one image at a time, the latency-bound regime)."""
    from artok.generators.any_order.sample import sample_any_order

    def assd(batch, use_cache=True):
        return sample_assd(model, batch, sampler, rng, DRAFT_LENGTH, use_cache=use_cache)

    out = {}
    runs = (("assd_uncached", lambda b: assd(b, use_cache=False), 100),
            ("plain_loop", lambda b: sample_any_order(model, b, sampler, rng), 100),
            ("batch1_assd", assd, 1), ("batch1_plain_loop", lambda b: sample_any_order(model, b, sampler, rng), 1))
    for name, run, batch in runs:
        rng = torch.Generator().manual_seed(seed)
        chosen = labels if batch > 1 else labels[:: max(1, labels.shape[0] // 20)]  # 20 images, every class
        with zoo_bench.Clock() as clock:
            for i in range(0, chosen.shape[0], batch):
                run(chosen[i : i + batch])
        out[f"{name}_cpu_s_per_image"] = clock.cpu / chosen.shape[0]
        out[f"{name}_s_per_image"] = clock.wall / chosen.shape[0]
    return out


def steps_per_image(kind: str, generator, sampler) -> int:
    """Transformer forward passes the kind's sampler makes per image (the per-token heads' denoising
    steps, which run a small MLP, are not counted)."""
    config = generator.config
    kind = KIND_OF.get(kind, kind)
    if kind == "nar":
        return config.num_fronts
    if kind in ("maskgit", "mar"):
        return sampler.iterations
    if kind == "hi-mar":
        from artok.generators.hi_mar.sample import phase_iterations

        return sum(phase_iterations(sampler.iterations, config.num_pivots, generator.spec.seq_len))
    if kind == "next-scale":
        return len(generator.spec.scales)
    if kind == "next-x":  # the transformer denoiser runs every flow step (+1 cache write per entity)
        if config.denoiser == "transformer":
            return generator.num_units * (sampler.steps + 1) - 1
        return generator.num_units
    return config.seq_len  # raster, rar, dimwise, bitwise: tokens; token-shuffle: merged windows


def get_tokenizer(name: str, out: Path, train, steps: int, dar_steps: int = 1500):
    """The shared tokenizer ``name`` (cached under ``out/tokenizers``): generator_zoo's recipe, or
    for ``dar`` D-AR's sequential diffusion tokenizer with ``dar_previews.py``'s defaults (16
    tokens in 4 groups, 256 codes) trained for ``dar_steps`` x 64."""
    if name != "dar":
        return zoo_bench.get_tokenizer(name, out, train, steps, {})
    import dar_previews

    from artok.hub import save_pretrained
    from artok.zoo import from_pretrained

    directory = out / "tokenizers" / name
    if (directory / "model.safetensors").is_file():
        return from_pretrained(directory).eval()
    tokenizer, _ = dar_previews.train_tokenizer_model(dar_previews.parse_args(
        ["--out", str(out), "--dataset", zoo_bench.DATASET, "--steps", str(dar_steps)]), train)
    save_pretrained(tokenizer, directory, extra={"dataset": zoo_bench.DATASET})
    return tokenizer


@torch.no_grad()
def tokenizer_floor(tokenizer, full_train, classifier, test_stats, n: int) -> dict:
    """FD (and PSNR) of the tokenizer's reconstructions of the same ``n`` train images the real
    floor uses: the best FD a generator that samples this tokenizer's codes perfectly can expect."""
    from artok.evaluation import psnr

    index = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(0))[:n]
    images, _ = full_train.batch(index, "cpu")
    reconstruction = torch.cat([tokenizer.decode(tokenizer.encode(images[i : i + 100])) for i in range(0, n, 100)])
    return {"fd": evaluate_generation(classifier, reconstruction, None, test_stats)["fd"],
            "psnr": psnr(reconstruction, images)}


def options_for(kind: str, steps: int) -> dict:
    options = dict(KINDS[kind][1])
    if kind == "rar":
        options.update(anneal_start=steps // 2, anneal_end=(3 * steps) // 4)
    return options


def run_one(kind, seed, args, tokenizer, tokens, train, labels, classifier, test_stats, floor) -> tuple[dict, torch.Tensor]:
    tokenizer_name, _, sampler = KINDS[kind]
    torch.manual_seed(seed)
    generator = build_generator(KIND_OF.get(kind, kind), tokenizer, train.num_classes, tokens=tokens,
                                **options_for(kind, args.steps))
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
    extra = assd_alternatives(model, labels, sampler, seed) if kind == "any-order" else {}
    row = {
        "kind": kind, "tokenizer": tokenizer_name, "seed": seed, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "class_accuracy": scores["class_accuracy"], "fd": scores["fd"], "fd_floor": floor,
        "steps_per_image": statistics.fmean(counts) if counts else steps_per_image(kind, model, sampler),
        "tokens_per_image": tokenizer.spec.seq_len, "generator_steps": args.steps, "generator_batch": args.batch_size,
        "sample_s_per_image": sampling.wall / labels.shape[0], "sample_cpu_s_per_image": sampling.cpu / labels.shape[0],
        "train_wall_s": training.wall, "train_cpu_s": training.cpu,
        "first_loss": result.history[0]["loss"], "final_loss": result.history[-1]["loss"],
        "generator_options": options_for(kind, args.steps), "sampler": sampler_config_to_dict(sampler), **extra,
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
          f"{'fd':>14s} {'tok fd':>7s}  (fd floor {floor:.2f}; tok fd: the tokenizer's reconstructions)")
    for kind, entry in results["summary"].items():
        acc = f"{entry['class_accuracy']:.3f}" + (f"±{entry['class_accuracy_spread'] / 2:.3f}"
                                                  if "class_accuracy_spread" in entry else "")
        fd = f"{entry['fd']:.2f}" + (f"±{entry['fd_spread'] / 2:.2f}" if "fd_spread" in entry else "")
        tokenizer_fd = results["budget"]["tokenizers"].get(KINDS[kind][0], {}).get("reconstruction_fd", float("nan"))
        print(f"{kind:14s} {entry['params_M']:6.3f}M {entry['steps_per_image']:9.1f} {entry['sample_s_per_image']:7.4f} "
              f"{entry['sample_cpu_s_per_image']:9.4f} {acc:>12s} {fd:>14s} {tokenizer_fd:7.2f}")


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
    results_path = out / "results.json"
    earlier = json.loads(results_path.read_text()) if args.resume and results_path.is_file() else {"rows": []}
    tokenizers, token_sets, tokenizer_floors = {}, {}, {}
    needed = [KINDS[kind][0] for kind in kinds]  # ... and the floors of the kept rows' tokenizers
    for name in dict.fromkeys(needed + [KINDS[row["kind"]][0] for row in earlier["rows"] if row["kind"] in KINDS]):
        tokenizers[name] = get_tokenizer(name, out, train, args.tokenizer_steps, args.dar_steps)
        if name in needed:
            token_sets[name] = cached_tokens(tokenizers[name], train, progress=False)
        tokenizer_floors[name] = tokenizer_floor(tokenizers[name], full_train, classifier, test_stats, labels.shape[0])
        print(f"tokenizer {name}: FD of reconstructions {tokenizer_floors[name]['fd']:.2f} "
              f"(real {floor:.2f}), PSNR {tokenizer_floors[name]['psnr']:.2f} dB", flush=True)
    results = {"budget": {"dataset": zoo_bench.DATASET, "threads": args.threads, "train_subset": len(train),
                          "generator_steps": args.steps, "generator_batch": args.batch_size,
                          "tokenizer_steps": args.tokenizer_steps, "samples": int(labels.shape[0]), "fd_floor": floor,
                          "tokenizers": {name: {"grid": list(t.spec.grid) if t.spec.grid else None, "layout": t.spec.layout,
                                                "kind": t.spec.kind, "vocab_size": t.spec.vocab_size,
                                                "seq_len": t.spec.seq_len,
                                                "reconstruction_fd": tokenizer_floors[name]["fd"],
                                                "reconstruction_psnr": tokenizer_floors[name]["psnr"]}
                                         for name, t in tokenizers.items()},
                          "command": " ".join(sys.argv)},
               "rows": []}
    if earlier["rows"]:  # --resume: keep the rows of other kinds / seeds from earlier runs
        redo = {(kind, seed) for kind in kinds for seed in seeds}
        results["rows"] = [row for row in earlier["rows"] if (row["kind"], row["seed"]) not in redo]
        results["budget"]["tokenizers"] = {**earlier["budget"].get("tokenizers", {}), **results["budget"]["tokenizers"]}
    started = time.perf_counter()
    for kind in kinds:
        for seed in seeds:
            name = KINDS[kind][0]
            row, images = run_one(kind, seed, args, tokenizers[name], token_sets[name], train, labels, classifier,
                                  test_stats, floor)
            results["rows"].append(row)
            if seed == seeds[0]:
                per_class = args.samples_per_class
                grid = images.view(train.num_classes, per_class, *images.shape[1:])[:, : min(per_class, 10)]
                save_image_grid(out / f"grid_{kind}.png", grid.flatten(0, 1), nrow=min(per_class, 10), scale=2)
                torch.save(grid.flatten(0, 1).clone(), out / f"grid_{kind}.pt")
            results["summary"] = summarise(results["rows"])
            results["total_wall_s"] = time.perf_counter() - started
            results_path.write_text(json.dumps(results, indent=2))
            print(f"{kind:14s} seed {seed}: acc {row['class_accuracy']:.3f} fd {row['fd']:.2f} "
                  f"steps/img {row['steps_per_image']} {row['sample_s_per_image'] * 1000:.1f} ms/img "
                  f"train {row['train_wall_s']:.0f}s params {row['params_M']:.3f}M", flush=True)
    results["summary"] = summarise(results["rows"])
    results_path.write_text(json.dumps(results, indent=2))
    print_table(results)
    write_report(out, results, train.class_names, min(args.samples_per_class, 10))
    print(f"wrote {results_path} and {out / 'report.html'}")


def write_report(out: Path, results: dict, class_names, columns: int) -> None:
    """``OUT/report.html``: the budget, the summary table and one sample grid per kind."""
    budget = results["budget"]
    report = Report("artok generator kinds at equal budget: Fashion-MNIST, class-conditional")
    report.add_text(
        f"Every kind trains {budget['generator_steps']} steps of {budget['generator_batch']} sequences "
        f"({budget['threads']} CPU thread(s)) on a {budget['train_subset']}-image class-balanced subset, with its "
        f"natural tokenizer ({', '.join(budget['tokenizers'])}; {budget['tokenizer_steps']} tokenizer steps), at "
        f"parameters within 10% of raster's. {budget['samples']} samples are scored by the reference classifier: "
        f"class accuracy and FD against the test split; the FD floor (as many real train images) is "
        f"{budget['fd_floor']:.2f}; tokenizer_fd is the FD of the kind's tokenizer reconstructing those same "
        f"train images (the floor a perfect generator of its codes can expect). With several seeds the table "
        f"shows the mean +- half the spread.")
    rows = []
    for kind, entry in results["summary"].items():
        row = {"kind": kind, "tokenizer": KINDS[kind][0] if kind in KINDS else "", "params_M": entry["params_M"],
               "steps_per_image": entry["steps_per_image"], "sample_cpu_s_per_image": entry["sample_cpu_s_per_image"],
               "train_wall_s": entry["train_wall_s"], "seeds": ",".join(map(str, entry["seeds"])),
               "class_accuracy": entry["class_accuracy"], "fd": entry["fd"], "fd_floor": budget["fd_floor"],
               "tokenizer_fd": budget["tokenizers"].get(KINDS.get(kind, ("",))[0], {}).get("reconstruction_fd")}
        for field in ("class_accuracy", "fd"):
            if f"{field}_spread" in entry:
                row[f"{field}_half_spread"] = entry[f"{field}_spread"] / 2
        rows.append(row)
    report.add_heading("Results")
    report.add_metrics_table(rows, caption="lower fd is better; steps_per_image counts transformer passes")
    report.add_heading("Samples (one row per class, first seed)")
    for kind in results["summary"]:
        if (out / f"grid_{kind}.pt").is_file():
            report.add_heading(kind, level=3)
            report.add_image_grid(torch.load(out / f"grid_{kind}.pt", weights_only=True), nrow=columns,
                                  row_labels=class_names, caption=f"{kind}: accuracy "
                                  f"{results['summary'][kind]['class_accuracy']:.3f}, FD {results['summary'][kind]['fd']:.2f}")
    report.save(out / "report.html")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/kinds_table")
    parser.add_argument("--kinds", default="raster,rar,nar,token-shuffle")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=300, help="generator training steps (every kind)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokenizer-steps", type=int, default=400)
    parser.add_argument("--dar-steps", type=int, default=1500, help="D-AR tokenizer steps (x 64)")
    parser.add_argument("--limit", type=int, default=10000, help="class-balanced train subset")
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="keep the rows of other kinds/seeds in OUT/results.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
