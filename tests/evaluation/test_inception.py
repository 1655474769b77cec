"""artok's FID Inception network, its input conventions, the metrics and the reference files, on a
seeded random weights file of the published layout (the real 2015 weights are not available offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artok.data.base import ImageDataset, to_uint8
from artok.evaluation.frechet import feature_statistics
from artok.evaluation.inception import (
    WEIGHTS_ENV,
    WEIGHTS_URL,
    inception_input,
    load_inception,
    random_inception_state_dict,
    resize_like_tensorflow,
)
from artok.evaluation.inception_metrics import (
    InceptionReference,
    inception_features,
    inception_metrics,
    inception_score,
    precision_recall,
)
from artok.evaluation.reference_stats import dataset_reference, load_reference, save_reference


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(random_inception_state_dict(0), path)
    return path


@pytest.fixture(scope="module")
def network(weights):
    return load_inception(weights)


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(8, 3, 16, 16, generator=generator) * 2 - 1
    noisy = (base + 0.6 * torch.randn(base.shape, generator=generator)).clamp(-1, 1)
    return base, noisy


@pytest.fixture(scope="module")
def features(network, images):
    base, noisy = images
    return inception_features(network, base, batch_size=8), inception_features(network, noisy, batch_size=8)


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="--inception-weights") as error:
        load_inception(None)
    assert WEIGHTS_URL in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_inception(tmp_path / "nope.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "also-missing.pth"))
    with pytest.raises(FileNotFoundError, match="also-missing"):
        load_inception(None)


def test_wrong_weight_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable state dict"):
        load_inception(tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="missing keys"):
        load_inception(tmp_path / "other.pth")
    state = random_inception_state_dict(0)
    state["fc.weight"] = torch.zeros(10, 2048)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="fc.weight has shape"):
        load_inception(tmp_path / "shape.pth")


def test_environment_variable_names_the_weights(monkeypatch, weights):
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    network = load_inception(None)
    assert len(network.weights_sha256) == 64


def test_tensorflow_resize_samples_without_half_pixel_offset():
    row = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    resized = resize_like_tensorflow(row, size=8)
    # Output pixel i reads input position i * 4 / 8 = i / 2; the last ones clamp to the border.
    assert torch.allclose(resized[0, 0, 0], torch.tensor([0.0, 5, 10, 15, 20, 25, 30, 30]))
    same = torch.rand(1, 3, 299, 299)
    assert torch.equal(resize_like_tensorflow(same), same)


def test_input_convention_uint8_round_trip_and_grey_to_rgb(images):
    base, _ = images
    assert torch.equal(inception_input(base), inception_input(to_uint8(base)))
    grey = base[:, :1]
    assert torch.equal(inception_input(grey), inception_input(grey.expand(-1, 3, -1, -1)))
    assert inception_input(base).shape == (8, 3, 299, 299)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        inception_input(torch.zeros(2, 4, 8, 8))


def test_features_do_not_depend_on_batching(network, images, features):
    again = inception_features(network, images[0][:5], batch_size=3)
    assert torch.allclose(again.pool, features[0].pool[:5], atol=1e-5)
    assert features[0].pool.shape == (8, 2048) and features[0].logits.shape == (8, 1008)
    assert features[0].spatial.shape == (8, 17 * 17 * 7)


def test_metric_sanity(features):
    clean, noisy = features
    reference = InceptionReference.from_features(clean)
    self_metrics = inception_metrics(clean, reference)
    assert abs(self_metrics["fid"]) < 1e-4 * max(1.0, float(clean.pool.var(0).sum()))
    assert abs(self_metrics["sfid"]) < 1e-4 * max(1.0, float(clean.spatial.var(0).sum()))
    assert self_metrics["precision"] == 1.0 and self_metrics["recall"] == 1.0
    noisy_metrics = inception_metrics(noisy, reference)
    assert noisy_metrics["fid"] > 1.0 and noisy_metrics["sfid"] > 1.0
    mean, std = inception_score(clean.logits, splits=2)
    assert 1.0 <= mean <= 1008 and std >= 0


def test_inception_score_laws():
    certain = torch.full((20, 5), -1e4)
    certain[torch.arange(20), torch.arange(20) % 5] = 1e4
    mean, _ = inception_score(certain, splits=2)
    assert mean == pytest.approx(5.0, rel=1e-6)  # confident and uniform over 5 classes: IS = 5
    assert inception_score(torch.zeros(20, 5), splits=2)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 10"):
        inception_score(torch.zeros(3, 5))


def test_precision_recall_on_separated_sets():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(40, 3, generator=generator)
    far = real + 100.0
    assert precision_recall(real, far, k=3) == {"precision": 0.0, "recall": 0.0}
    inner = real[:20] * 0.1  # inside the real manifold, covering little of it
    result = precision_recall(real, inner, k=3, block=7)
    assert result["precision"] == 1.0 and result["recall"] < 1.0


def test_reference_file_round_trip(tmp_path, features):
    reference = InceptionReference.from_features(features[0], source="unit")
    path = save_reference(tmp_path / "ref.npz", reference, weights_sha256="abc")
    loaded = load_reference(path)
    assert np.array_equal(loaded.pool.mean, reference.pool.mean) and loaded.pool.count == 8
    assert np.array_equal(loaded.spatial.covariance, reference.spatial.covariance)
    assert torch.equal(loaded.features, reference.features) and loaded.source == "unit"
    assert set(np.load(path).files) >= {"mu", "sigma", "count", "mu_s", "sigma_s", "features", "weights_sha256"}


def test_adm_reference_batch_layout(tmp_path, network, images, features):
    """``arr_0`` uint8 N x H x W x 3 plus the stored mu/sigma/mu_s/sigma_s, as in VIRTUAL_imagenet256_labeled.npz."""
    arr_0 = to_uint8(images[0]).permute(0, 2, 3, 1).numpy()
    stats = feature_statistics(features[1].pool)  # deliberately not arr_0's: stored statistics must win
    spatial = feature_statistics(features[1].spatial)
    np.savez(tmp_path / "VIRTUAL_tiny.npz", arr_0=arr_0, mu=stats.mean, sigma=stats.covariance,
             mu_s=spatial.mean, sigma_s=spatial.covariance)
    loaded = load_reference(tmp_path / "VIRTUAL_tiny.npz", network, need_features=True)
    assert np.array_equal(loaded.pool.mean, stats.mean) and loaded.pool.count == 8
    assert np.array_equal(loaded.spatial.mean, spatial.mean)
    assert torch.allclose(loaded.features, features[0].pool, atol=1e-5)  # precision/recall features from arr_0
    np.savez(tmp_path / "images_only.npz", arr_0=arr_0)
    computed = load_reference(tmp_path / "images_only.npz", network)
    assert np.allclose(computed.pool.mean, features[0].pool.double().mean(0).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="Inception weights are needed"):
        load_reference(tmp_path / "images_only.npz")
    np.savez(tmp_path / "bad.npz", something=np.zeros(3))
    with pytest.raises(ValueError, match="neither"):
        load_reference(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_reference(tmp_path / "absent.npz")


def test_dataset_reference_is_cached(tmp_path, network, images):
    dataset = ImageDataset(to_uint8(images[0][:, :1]), torch.zeros(8, dtype=torch.long), ["x"], "folder:/data/x", "test")
    first, path = dataset_reference(dataset, network, tmp_path)
    assert path.is_file() and path.parent == tmp_path
    stamp = path.stat().st_mtime_ns
    second, again = dataset_reference(dataset, network, tmp_path)
    assert again == path and path.stat().st_mtime_ns == stamp
    assert np.array_equal(first.pool.covariance, second.pool.covariance) and second.pool.count == 8
