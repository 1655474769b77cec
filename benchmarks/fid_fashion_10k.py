"""FID / sFID / IS / precision-recall of 10,000 Fashion-MNIST test images vs 10,000 train images
with artok's Inception, computed in resumable chunks (a killed run continues where it stopped).

The real 2015 FID weights are not available offline, so by default the extractor is the seeded
random network of the published layout (``random_inception_state_dict(0)``); pass ``--weights``
for a real ``pt_inception-2015-12-05-6726825d.pth``. Features of each chunk of ``--chunk`` images
are written to ``--work/<split>_<start>.pt`` atomically; the metrics are computed once all chunks
exist, and written with the wall time spent on features to ``--out``.

    python benchmarks/fid_fashion_10k.py [--n 10000] [--work runs/fid10k] [--out benchmarks/fid_fashion_10k.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from artok.data import load_dataset
from artok.evaluation.frechet import (
    feature_statistics,
    frechet_distance_from_statistics,
)
from artok.evaluation.inception import load_inception, random_inception_state_dict
from artok.evaluation.inception_metrics import (
    InceptionFeatures,
    inception_features,
    inception_score,
    precision_recall,
)
from artok.hub import atomic_write
from artok.provenance import run_metadata


def _chunked_features(network, images: torch.Tensor, name: str, work: Path, chunk: int, batch: int,
                      reverse: bool = False) -> tuple[InceptionFeatures, float, int]:
    seconds, computed = 0.0, 0
    starts = list(range(0, images.shape[0], chunk))
    for start in reversed(starts) if reverse else starts:
        path = work / f"{name}_{start:05d}.pt"
        if not path.exists():
            began = time.perf_counter()
            features = inception_features(network, images[start : start + chunk], batch)
            seconds += time.perf_counter() - began
            computed += min(chunk, images.shape[0] - start)
            atomic_write(path, lambda temporary, f=features: torch.save(vars(f), temporary))
            print(f"{name} {start + chunk}/{images.shape[0]} ({time.perf_counter() - began:.0f} s)", flush=True)
    parts = [torch.load(work / f"{name}_{start:05d}.pt", weights_only=True) for start in starts]
    joined = InceptionFeatures(**{key: torch.cat([part[key] for part in parts]) for key in ("pool", "logits", "spatial")})
    return joined, seconds, computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--work", type=Path, default=Path("runs/fid10k"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/fid_fashion_10k.json"))
    parser.add_argument("--reverse", action="store_true",
                        help="featurise the chunks last to first: a second process beside a first one "
                             "(a chunk either finds done is skipped; the files are written atomically)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    weights = args.weights
    if weights is None:
        weights = args.work / "random_inception.pth"
        if not weights.exists():
            atomic_write(weights, lambda temporary: torch.save(random_inception_state_dict(0), temporary))
    network = load_inception(weights)
    test = load_dataset("fashion-mnist", "test").images[: args.n]
    train = load_dataset("fashion-mnist", "train").images[: args.n]
    jobs = [("test", test), ("train", train)]
    done = {name: _chunked_features(network, images, name, args.work, args.chunk, args.batch, args.reverse)
            for name, images in (reversed(jobs) if args.reverse else jobs)}
    (real, real_seconds, real_count), (fake, fake_seconds, fake_count) = done["test"], done["train"]
    seconds, count = real_seconds + fake_seconds, real_count + fake_count
    began = time.perf_counter()
    mean, std = inception_score(fake.logits, 10)
    result = {
        "real": f"fashion-mnist test[:{args.n}]", "generated": f"fashion-mnist train[:{args.n}]",
        "weights": "seeded random (random_inception_state_dict(0))" if args.weights is None else str(args.weights),
        "weights_sha256": network.weights_sha256,
        "fid": frechet_distance_from_statistics(feature_statistics(fake.pool), feature_statistics(real.pool)),
        "sfid": frechet_distance_from_statistics(feature_statistics(fake.spatial), feature_statistics(real.spatial)),
        "inception_score": mean, "inception_score_std": std, **precision_recall(real.pool, fake.pool),
        "images_featurised_this_run": count, "feature_seconds_this_run": seconds,
        "images_per_second_this_run": count / seconds if seconds else None,
        "metric_seconds": time.perf_counter() - began, "torch_threads": torch.get_num_threads(), **run_metadata(seed=0),
    }
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
