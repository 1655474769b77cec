"""Exactness check of exact speculative sampling on a trained raster generator (default: the
Fashion-MNIST demo generator ``runs/fashion`` and the draft ``benchmarks/speculative.py`` trained for
it): N sequences from the engine's plain sampler and N from speculative sampling (same labels, same
sampler config), compared position by position with a two-sample chi-square test on the token
histograms (tokens with fewer than 10 draws in the pooled sample are merged into one bin). Under
exactness the per-position p-values are uniform (merged bins make the test conservative): the
script reports how many fall below 0.05 and 0.01, Fisher's combined p-value (positions treated as
independent), the smallest p-value with its Bonferroni bound, and the reference classifier's
accuracy and the FD of all N images for both samplers (FD at N = 4,000 is far less noisy than at 500).

    python benchmarks/speculative_exactness.py [--demo runs/fashion] [--n 4000] [--k 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from artok.data import load_dataset
from artok.evaluation import (
    evaluate_generation,
    get_reference_classifier,
    reference_statistics,
)
from artok.generators.raster.engine import SamplingEngine
from artok.generators.raster.speculative import speculative_sample
from artok.hub import from_pretrained
from artok.pipeline import load_pair
from artok.sampling.configs import SamplerConfig
from artok.tokens import Tokens


def position_p_values(a: np.ndarray, b: np.ndarray, min_count: int = 10) -> list[float]:
    """Two-sample chi-square p-value per position for id arrays ``N x L``."""
    p_values = []
    for position in range(a.shape[1]):
        ids = np.concatenate([a[:, position], b[:, position]])
        values, counts = np.unique(ids, return_counts=True)
        common = set(values[counts >= min_count].tolist())
        def histogram(x):
            keep = np.array([np.sum(x == v) for v in sorted(common)])
            return np.append(keep, len(x) - keep.sum())
        table = np.stack([histogram(a[:, position]), histogram(b[:, position])])
        table = table[:, table.sum(0) > 0]
        p_values.append(float(stats.chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0)
    return p_values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/fashion")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", default="runs/bench/speculative_exactness.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    demo = Path(args.demo)
    target, tokenizer = load_pair(demo / "generator")
    target.eval()
    draft = from_pretrained(demo / "draft").eval()
    config = SamplerConfig(**target.extra["sampling"])
    labels = torch.arange(target.config.num_classes).repeat(args.n // target.config.num_classes)
    classifier = get_reference_classifier(target.extra.get("dataset", "digits"), progress=False)
    guided = config.uses_cfg
    plain_engine = SamplingEngine(target, args.batch, guidance=guided)
    target_engine = SamplingEngine(target, args.batch, guidance=guided, extra_positions=args.k + 1)
    draft_engine = SamplingEngine(draft, args.batch, guidance=guided, extra_positions=args.k + 1)
    plain, spec, accepted = [], [], []
    rng = torch.Generator().manual_seed(2024)
    start = time.perf_counter()
    for i in range(0, len(labels), args.batch):
        batch = labels[i : i + args.batch]
        plain.append(plain_engine.generate(batch, config, rng))
        out = speculative_sample(target, draft, batch, config, rng, num_draft=args.k, target_engine=target_engine,
                                 draft_engine=draft_engine)
        spec.append(out.tokens.ids)
        accepted.append(out.stats.mean_accepted)
    plain, spec = torch.cat(plain), torch.cat(spec)

    dataset = target.extra.get("dataset", "digits")
    test_stats = reference_statistics(classifier, load_dataset(dataset, "test"))

    def scores(ids):
        with torch.no_grad():
            images = torch.cat([tokenizer.decode(Tokens(target.spec, ids=ids[i : i + 500])) for i in range(0, len(ids), 500)])
        return evaluate_generation(classifier, images, labels, test_stats)

    p_values = position_p_values(plain.numpy(), spec.numpy())
    result = {
        "n": len(labels), "k": args.k, "positions": len(p_values), "mean_accepted": float(np.mean(accepted)),
        "below_0.05": sum(p < 0.05 for p in p_values), "below_0.01": sum(p < 0.01 for p in p_values),
        "fisher_combined_p": float(stats.combine_pvalues(p_values, method="fisher").pvalue), "min_p": min(p_values),
        "min_p_bonferroni": min(1.0, min(p_values) * len(p_values)),
        "plain": scores(plain), "speculative": scores(spec),
        "accuracy_se": float(np.sqrt(0.25 / len(labels))), "wall_s": time.perf_counter() - start,
        "p_values": p_values,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print({k: v for k, v in result.items() if k != "p_values"})


if __name__ == "__main__":
    main()
