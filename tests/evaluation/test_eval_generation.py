import math

import pytest
import torch

from artok.evaluation import evaluate_generation, reference_fd, reference_statistics


def test_real_images_score_like_real_images(digits_splits, digits_classifier):
    train, test = digits_splits
    images, labels = train.batch(torch.arange(300))
    result = evaluate_generation(digits_classifier, images, labels, test)
    assert set(result) == {"class_accuracy", "fd", "num_samples", "num_reference"}
    assert result["class_accuracy"] > 0.9
    assert result["num_samples"] == 300 and result["num_reference"] == len(test)

    noise = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = evaluate_generation(digits_classifier, noise, labels, test)
    assert bad["fd"] > 5 * result["fd"]

    # Wrong labels: accuracy collapses, FD is unchanged.
    shuffled = evaluate_generation(digits_classifier, images, (labels + 1) % 10, test)
    assert shuffled["class_accuracy"] < 0.2
    assert shuffled["fd"] == pytest.approx(result["fd"])


def test_precomputed_reference_statistics_and_unconditional(digits_splits, digits_classifier):
    train, test = digits_splits
    images, labels = train.batch(torch.arange(200))
    stats = reference_statistics(digits_classifier, test)
    direct = evaluate_generation(digits_classifier, images, labels, test)
    cached = evaluate_generation(digits_classifier, images, None, stats)
    assert cached["fd"] == pytest.approx(direct["fd"])
    assert math.isnan(cached["class_accuracy"])


def test_reference_fd_floor_matches_sample_count(digits_splits, digits_classifier):
    train, test = digits_splits
    floor_small = reference_fd(digits_classifier, train, test, 100)
    floor_large = reference_fd(digits_classifier, train, test, 1000)
    assert 0 < floor_large < floor_small  # fewer samples, larger upward bias
    assert reference_fd(digits_classifier, train, test, 100, seed=0) == pytest.approx(floor_small)
    images, _ = train.batch(torch.arange(len(train)))
    assert reference_fd(digits_classifier, images, test, 100) == pytest.approx(floor_small, rel=1e-5)
    with pytest.raises(ValueError, match="n must lie"):
        reference_fd(digits_classifier, train, test, len(train) + 1)
