"""Continuous speculative decoding (`artok.generators.mar.speculative`) on MAR generators trained on
Fashion-MNIST KL tokens: mean MAR iterations per target pass, token acceptance, wall-clock speed-up
over the plain sampler (batch 1 latency and batched throughput), and the change in FD / class
accuracy next to the plain sampler's seed noise. Also the quality cost of ``final_noise`` itself
(the plain sampler with and without it), since the exact method needs a stochastic last step, and
MAR ReCAP (`artok.sampling.recap.sample_mar_recap`, lossy feature reuse) at a few group sizes.

    python benchmarks/generator_zoo.py --only mar        # once: the shared KL tokenizer
    python benchmarks/continuous_speculative.py [--out runs/continuous_speculative]

The target (width 128, 3 layers, no MAE split so rows advance independently) and the draft (width
64, 1 layer, smaller head) are trained on the same cached tokens the first time and saved under
``OUT/target`` and ``OUT/draft``. Results: ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from artok.data import load_dataset
from artok.data.token_cache import cached_tokens
from artok.evaluation import (
    evaluate_generation,
    get_reference_classifier,
    reference_fd,
    reference_statistics,
)
from artok.generators.mar.recap import sample_mar_recap
from artok.generators.mar.speculative import speculative_sample_mar
from artok.hub import save_pretrained
from artok.sampling import MARSamplerConfig
from artok.training import TrainConfig, train_generator
from artok.zoo import build_generator, from_pretrained, sample

DATASET = "fashion-mnist"
MODELS = {
    "target": {"dim": 128, "depth": 3, "decoder_depth": 0, "num_heads": 4, "head_width": 128, "head_depth": 2},
    "draft": {"dim": 64, "depth": 1, "decoder_depth": 0, "num_heads": 2, "head_width": 64, "head_depth": 1},
}


def get_model(role: str, out: Path, tokenizer, tokens, train, steps: int):
    path = out / role
    if (path / "model.safetensors").is_file():
        return from_pretrained(path).eval()
    torch.manual_seed(0)
    model = build_generator("mar", tokenizer, train.num_classes, tokens=tokens, **MODELS[role])
    config = TrainConfig(steps=steps, batch_size=32, lr=2e-3, warmup_steps=30, ema_decay=0.98, log_every=50, progress=False)
    start = time.perf_counter()
    result = train_generator(model, tokens, train.labels, config)
    model = result.final_model.eval()
    save_pretrained(model, path, extra={"dataset": DATASET, "role": role, "train_wall_s": time.perf_counter() - start})
    print(f"{role}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, loss {result.history[-1]['loss']:.3f}, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", default="runs/generator_zoo", help="where generator_zoo.py saved the KL tokenizer")
    parser.add_argument("--out", default="runs/continuous_speculative")
    parser.add_argument("--steps", type=int, default=600, help="training steps of target and draft")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--final-noise", default="0.05,0.1,0.2")
    parser.add_argument("--draft-iterations", default="2,4")
    parser.add_argument("--latency-images", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--head-steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--recap-groups", default="2,4", help="ReCAP group sizes (final_noise 0 rows)")
    parser.add_argument("--methods", default="plain,speculative,recap", help="which rows to run")
    args = parser.parse_args()
    methods = set(args.methods.split(","))
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = from_pretrained(Path(args.zoo) / "tokenizers" / "kl").eval()
    train = load_dataset(DATASET, "train", limit=10000)
    test = load_dataset(DATASET, "test")
    tokens = cached_tokens(tokenizer, train, progress=False)
    target = get_model("target", out, tokenizer, tokens, train, args.steps)
    draft = get_model("draft", out, tokenizer, tokens, train, args.steps)
    classifier = get_reference_classifier(DATASET, progress=False)
    test_stats = reference_statistics(classifier, test)
    labels = torch.arange(train.num_classes).repeat_interleave(args.per_class)
    floor = reference_fd(classifier, load_dataset(DATASET, "train"), test_stats, n=labels.shape[0])

    def config(final_noise: float) -> MARSamplerConfig:
        return MARSamplerConfig(iterations=args.iterations, steps=args.head_steps, cfg_scale=args.cfg, final_noise=final_noise)

    def score(run, seed: int) -> dict:
        rng = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        values, stats = run(labels, rng)
        wall = time.perf_counter() - start
        with torch.no_grad():
            images = tokenizer.decode(values)
        result = evaluate_generation(classifier, images, labels, test_stats)
        return {"fd": result["fd"], "class_accuracy": result["class_accuracy"], "s_per_image": wall / labels.shape[0], **stats}

    def plain(final_noise):
        return lambda batch, rng: (sample(target, batch, config(final_noise), rng), {})

    def speculative(final_noise, k):
        def run(batch, rng):
            output = speculative_sample_mar(target, draft, batch, config(final_noise), draft_iterations=k, rng=rng)
            return output.tokens, output.stats.to_dict()
        return run

    def latency(run) -> float:
        rng = torch.Generator().manual_seed(123)
        start = time.perf_counter()
        for i in range(args.latency_images):
            run(labels[i * args.per_class : i * args.per_class + 1], rng)
        return (time.perf_counter() - start) / args.latency_images

    def recap(group):
        def run(batch, rng):
            tokens = sample_mar_recap(target, batch, config(0.0), rng, group_size=group)
            return tokens, dict(tokens.extras)
        return run

    path = out / "results.json"
    previous = json.loads(path.read_text())["rows"] if path.is_file() else []
    results = {"fd_floor": floor, "samples": int(labels.shape[0]), "settings": vars(args),
               "params_M": {role: sum(p.numel() for p in m.parameters()) / 1e6 for role, m in (("target", target), ("draft", draft))},
               "rows": [row for row in previous if row["method"].split()[0] not in methods]}
    noises = [0.0] + [float(x) for x in args.final_noise.split(",")]
    for final_noise in noises:
        runs = [("plain", None, plain(final_noise))] if "plain" in methods else []
        if final_noise > 0 and "speculative" in methods:
            runs += [(f"speculative k={k}", k, speculative(final_noise, k)) for k in map(int, args.draft_iterations.split(","))]
        if final_noise == 0 and "recap" in methods:
            runs += [(f"recap group={g}", None, recap(g)) for g in map(int, args.recap_groups.split(","))]
        for name, k, run in runs:
            seeds = [score(run, seed) for seed in range(args.seeds if k is None else max(1, args.seeds - 1))]
            row = {
                "method": name, "final_noise": final_noise, "draft_iterations": k,
                "fd_mean": statistics.mean(s["fd"] for s in seeds), "fd_std": statistics.pstdev(s["fd"] for s in seeds),
                "acc_mean": statistics.mean(s["class_accuracy"] for s in seeds),
                "acc_std": statistics.pstdev(s["class_accuracy"] for s in seeds),
                "batch_s_per_image": statistics.mean(s["s_per_image"] for s in seeds),
                "latency_s_per_image_b1": latency(run),
                "seeds": seeds,
            }
            for key in ("mean_accepted", "acceptance_rate"):
                if key in seeds[0]:
                    row[key] = statistics.mean(s[key] for s in seeds)
            results["rows"].append(row)
            (out / "results.json").write_text(json.dumps(results, indent=2))
            print(f"final_noise {final_noise:4.2f} {name:16s} FD {row['fd_mean']:6.1f} +- {row['fd_std']:4.1f}  "
                  f"acc {row['acc_mean']:.3f} +- {row['acc_std']:.3f}  batch {row['batch_s_per_image'] * 1000:6.1f} ms/img  "
                  f"b1 {row['latency_s_per_image_b1'] * 1000:6.1f} ms/img  "
                  f"iters/target pass {row.get('mean_accepted', 1.0):.2f}  token acceptance {row.get('acceptance_rate', float('nan')):.3f}",
                  flush=True)
    print(f"FD floor {floor:.2f}; wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
