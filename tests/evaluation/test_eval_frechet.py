import math

import numpy as np
import pytest
import torch

from artok.evaluation import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
)


def test_identical_gaussians_have_zero_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    stats = feature_statistics(a)
    assert frechet_distance(stats.mean, stats.covariance, stats.mean, stats.covariance) == pytest.approx(0.0, abs=1e-6)


def test_one_dimensional_closed_form():
    m1, s1, m2, s2 = 0.3, 2.0, -1.2, 0.5
    expected = (m1 - m2) ** 2 + s1 + s2 - 2 * math.sqrt(s1 * s2)
    assert frechet_distance(np.array([m1]), np.array([[s1]]), np.array([m2]), np.array([[s2]])) == pytest.approx(expected)


def test_diagonal_multivariate_case():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    d1, d2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    # For commuting (diagonal) covariances the trace term is sum (sqrt(a) - sqrt(b))^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert expected == pytest.approx(5.0 + 1.0 + 1.0 + 4.0)
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected)


def test_singular_covariances_use_the_offset_fallback():
    # Fewer samples than dimensions: rank-deficient covariances, the distance must stay finite.
    rng = np.random.default_rng(0)
    a = feature_statistics(rng.normal(size=(5, 20)))
    b = feature_statistics(rng.normal(size=(5, 20)) + 1.0)
    distance = frechet_distance_from_statistics(a, b)
    assert math.isfinite(distance) and distance > 0
    zero = np.zeros((4, 4))
    assert frechet_distance(np.zeros(4), zero, np.ones(4), zero) == pytest.approx(4.0, abs=1e-9)
    # Identical singular covariances (dead features): exactly 0, not the -2 * dim * eps bias.
    singular = np.diag([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(np.zeros(4), singular, np.zeros(4), singular) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_accepts_tensors_and_checks_shape():
    features = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
    stats = feature_statistics(features)
    assert stats.count == 100 and stats.mean.shape == (6,) and stats.covariance.shape == (6, 6)
    assert np.allclose(stats.covariance, np.cov(features.double().numpy(), rowvar=False))
    with pytest.raises(ValueError):
        feature_statistics(torch.randn(1, 6))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
