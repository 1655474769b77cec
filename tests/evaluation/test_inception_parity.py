"""artok's Inception features and metrics equal torch-fidelity's on the same weights file and images.

torch-fidelity (installed ``--no-deps``: its torchvision dependency does not install with this
torch) is the reference; its package ``__init__`` and ``utils`` import torchvision, so only the
modules used here are loaded, under a package stub. Skipped when torch-fidelity is absent.
The weights are a seeded random file of the published layout: this checks the network, the
resize and the math, not the published constants.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from artok.evaluation.frechet import feature_statistics, frechet_distance
from artok.evaluation.inception import load_inception, random_inception_state_dict, resize_like_tensorflow
from artok.evaluation.inception_metrics import inception_features, inception_score, precision_recall


def load_torch_fidelity():
    """torch-fidelity's Inception extractor and metric modules without running its package
    ``__init__`` (which imports torchvision); None when it is not installed."""
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        return None
    saved = {name: module for name, module in sys.modules.items() if name.startswith("torch_fidelity")}
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("torch_fidelity.utils")
    utils.__getattr__ = lambda name: None  # names the metric modules import but these tests never call
    sys.modules.update({"torch_fidelity": package, "torch_fidelity.utils": utils})
    try:
        return types.SimpleNamespace(**{name: importlib.import_module(f"torch_fidelity.{name}") for name in (
            "feature_extractor_inceptionv3", "interpolate_compat_tensorflow", "metric_fid", "metric_isc", "metric_prc")})
    finally:
        for name in [name for name in sys.modules if name.startswith("torch_fidelity")]:
            del sys.modules[name]
        sys.modules.update(saved)


fidelity = load_torch_fidelity()
pytestmark = pytest.mark.skipif(fidelity is None, reason="torch-fidelity is not installed (pip install --no-deps torch-fidelity)")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(random_inception_state_dict(1), path)
    return path


@pytest.fixture(scope="module")
def image_sets():
    generator = torch.Generator().manual_seed(3)
    real = torch.randint(0, 256, (12, 3, 28, 28), dtype=torch.uint8, generator=generator)
    fake = (real.float() * 0.6 + 40 * torch.rand(real.shape, generator=generator)).round().clamp(0, 255).to(torch.uint8)
    return real, fake


@pytest.fixture(scope="module")
def both(weights, image_sets):
    reference = fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights))
    network = load_inception(weights)
    with torch.no_grad():
        theirs = [reference(images) for images in image_sets]
    ours = [inception_features(network, images, batch_size=6) for images in image_sets]
    return theirs, ours


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def test_resize_equals_torch_fidelity():
    images = torch.rand(2, 3, 28, 17, generator=torch.Generator().manual_seed(0)) * 255
    theirs = fidelity.interpolate_compat_tensorflow.interpolate_bilinear_2d_like_tensorflow1x(
        images, size=(299, 299), align_corners=False)
    assert (resize_like_tensorflow(images) - theirs).abs().max() < 1e-3  # of 255: float rounding only


def test_features_equal_torch_fidelity(both):
    theirs, ours = both
    for (pool, logits), mine in zip(theirs, ours):
        assert (mine.pool - pool).abs().max() <= 1e-4 * pool.abs().max()
        assert (mine.logits - logits).abs().max() <= 1e-4 * logits.abs().max()


def test_fid_is_precision_recall_equal_torch_fidelity(both):
    theirs, ours = both
    (real_pool, _), (fake_pool, fake_logits) = theirs
    stats = [fidelity.metric_fid.fid_features_to_statistics(pool.double()) for pool in (fake_pool, real_pool)]
    their_fid = fidelity.metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    a, b = feature_statistics(ours[1].pool), feature_statistics(ours[0].pool)
    assert _relative(frechet_distance(a.mean, a.covariance, b.mean, b.covariance), their_fid) < 1e-4

    their_is = fidelity.metric_isc.isc_features_to_metric(fake_logits, splits=10, shuffle=False)
    mean, std = inception_score(ours[1].logits, splits=10)
    assert _relative(mean, their_is["inception_score_mean"]) < 1e-4
    assert abs(std - their_is["inception_score_std"]) < 1e-4 * their_is["inception_score_mean"]

    precision, recall = fidelity.metric_prc.calculate_precision_recall_full(fake_pool, real_pool, 3, 10000)
    assert precision_recall(ours[0].pool, ours[1].pool, k=3) == {"precision": precision, "recall": recall}


def test_frechet_distance_equals_torch_fidelity_well_conditioned():
    generator = np.random.default_rng(0)
    x, y = generator.normal(size=(600, 40)), generator.normal(size=(500, 40)) * 1.3 + 0.2
    stats = [{"mu": v.mean(0), "sigma": np.cov(v, rowvar=False)} for v in (x, y)]
    theirs = fidelity.metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    ours = frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])
    assert _relative(ours, theirs) < 1e-9
