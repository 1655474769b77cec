"""artok's Inception FID / sFID / IS / precision-recall against torch-fidelity, same weights file and
same images; plus the FID of Fashion-MNIST test vs train and the reference ``.npz`` round trip.

The real 2015 FID weights cannot be downloaded here, so both sides use one seeded random weights
file of the published layout (``--weights PATH`` uses a real ``pt_inception-2015-12-05-6726825d.pth``
instead): this checks the network, the TF1 resize and the math, not the published constants.
torch-fidelity is loaded without its package ``__init__`` (which imports torchvision), as in
``tests/evaluation/test_inception_parity.py``; install it with ``pip install --no-deps torch-fidelity``.

    python benchmarks/inception_parity.py [--n 200] [--weights PATH] [--out benchmarks/inception_parity.json]

Image sets: ``--n`` Fashion-MNIST test images ("real") and ``--n`` train images with Gaussian noise
(std 0.3 in [-1, 1]; "generated"), both 28 x 28 grey -> uint8 -> RGB -> TF bilinear 299.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "evaluation"))

from test_inception_parity import load_torch_fidelity  # noqa: E402

from artok.data import load_dataset  # noqa: E402
from artok.data.base import to_uint8  # noqa: E402
from artok.evaluation.frechet import feature_statistics, frechet_distance_from_statistics  # noqa: E402
from artok.evaluation.inception import load_inception, random_inception_state_dict  # noqa: E402
from artok.evaluation.inception_metrics import (  # noqa: E402
    InceptionReference,
    inception_features,
    inception_score,
    precision_recall,
)
from artok.evaluation.reference_stats import load_reference, save_reference  # noqa: E402


def _image_sets(n: int, seed: int):
    test = load_dataset("fashion-mnist", "test")
    train = load_dataset("fashion-mnist", "train")
    generator = torch.Generator().manual_seed(seed)
    real = test.images[:n].expand(-1, 3, -1, -1).contiguous()
    noisy = train.images[:n].float() / 127.5 - 1 + 0.3 * torch.randn(train.images[:n].shape, generator=generator)
    fake = to_uint8(noisy).expand(-1, 3, -1, -1).contiguous()
    return real, fake, test, train


def _theirs(fidelity, weights: Path, real, fake, batch: int):
    extractor = fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights))
    outputs = []
    with torch.no_grad():
        for images in (real, fake):
            parts = [extractor(images[start : start + batch]) for start in range(0, images.shape[0], batch)]
            outputs.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
    (real_pool, _), (fake_pool, fake_logits) = outputs
    stats = [fidelity.metric_fid.fid_features_to_statistics(pool.double()) for pool in (fake_pool, real_pool)]
    fid = fidelity.metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    isc = fidelity.metric_isc.isc_features_to_metric(fake_logits, splits=10, shuffle=False)
    precision, recall = fidelity.metric_prc.calculate_precision_recall_full(fake_pool, real_pool, 3, 10000)
    return outputs, {"fid": fid, "inception_score": isc["inception_score_mean"],
                     "inception_score_std": isc["inception_score_std"], "precision": precision, "recall": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--weights", type=Path, help="a real FID Inception weights file (default: seeded random)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/inception_parity.json"))
    args = parser.parse_args()
    fidelity = load_torch_fidelity()
    if fidelity is None:
        raise SystemExit("torch-fidelity is not installed: pip install --no-deps torch-fidelity==0.4.0")
    workdir = Path(tempfile.mkdtemp(prefix="artok-inception-"))
    weights = args.weights
    if weights is None:
        weights = workdir / "random_inception.pth"
        torch.save(random_inception_state_dict(0), weights)
    real, fake, test, train = _image_sets(args.n, 0)

    started = time.perf_counter()
    network = load_inception(weights)
    ours = [inception_features(network, images, args.batch) for images in (real, fake)]
    artok_seconds = time.perf_counter() - started
    started = time.perf_counter()
    theirs, reference_metrics = _theirs(fidelity, weights, real, fake, args.batch)
    fidelity_seconds = time.perf_counter() - started

    mean, std = inception_score(ours[1].logits, 10)
    artok_metrics = {"fid": frechet_distance_from_statistics(feature_statistics(ours[1].pool), feature_statistics(ours[0].pool)),
                     "inception_score": mean, "inception_score_std": std, **precision_recall(ours[0].pool, ours[1].pool)}
    difference = {key: abs(artok_metrics[key] - reference_metrics[key]) for key in artok_metrics}
    relative = {key: difference[key] / max(abs(reference_metrics[key]), 1e-12) for key in artok_metrics}
    feature_max = {"pool": max(float((o.pool - t[0]).abs().max()) for o, t in zip(ours, theirs)),
                   "logits": max(float((o.logits - t[1]).abs().max()) for o, t in zip(ours, theirs))}

    # FID of n test vs n train images (no noise), and the reference .npz round trip.
    train_features = inception_features(network, train.images[: args.n], args.batch)
    reference = InceptionReference.from_features(ours[0], source="fashion-mnist test")
    path = save_reference(workdir / "fashion_test.npz", reference, network.weights_sha256)
    loaded = load_reference(path)
    round_trip = bool(np.array_equal(loaded.pool.mean, reference.pool.mean)
                      and np.array_equal(loaded.pool.covariance, reference.pool.covariance)
                      and np.array_equal(loaded.spatial.covariance, reference.spatial.covariance))
    fid_test_train = frechet_distance_from_statistics(feature_statistics(train_features.pool), loaded.pool)
    result = {
        "weights": "seeded random (random_inception_state_dict(0))" if args.weights is None else str(args.weights),
        "n": args.n, "artok": artok_metrics, "torch_fidelity": reference_metrics,
        "max_abs_difference": difference, "relative_difference": relative, "feature_max_abs_difference": feature_max,
        "fid_fashion_test_vs_train": fid_test_train, "reference_npz_round_trip": round_trip,
        "seconds": {"artok_features": artok_seconds, "torch_fidelity_features_and_metrics": fidelity_seconds},
        "torch_threads": torch.get_num_threads(),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
