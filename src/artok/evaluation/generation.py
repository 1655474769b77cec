"""Scores of generated images under a reference classifier: class accuracy and Frechet distance.

- ``class_accuracy``: how often the classifier's argmax on a generated image equals the label the
  generator was conditioned on (does the sample show the class it was asked for?).
- ``fd``: Frechet distance (Heusel et al., arXiv:1706.08500) between the classifier's
  penultimate features of the generated images and of a reference set (usually the real test
  split). Lower is better.

An FD is only meaningful next to its floor: `reference_fd` scores *real* train images against
the same reference set, with as many train images as there are generated ones. A generator
whose FD reaches that floor is as close to the reference set as fresh real data is.
"""

from __future__ import annotations

import math

import torch

from artok.data.base import ImageDataset
from artok.evaluation.classifier import ReferenceClassifier
from artok.evaluation.frechet import (
    FeatureStatistics,
    classifier_features,
    feature_statistics,
    frechet_distance_from_statistics,
)


def _statistics(
    classifier: ReferenceClassifier,
    images: torch.Tensor | ImageDataset | FeatureStatistics,
    batch_size: int,
    device: torch.device | str | None,
) -> FeatureStatistics:
    if isinstance(images, FeatureStatistics):
        return images
    return feature_statistics(classifier_features(classifier, images, batch_size, device))


def reference_statistics(
    classifier: ReferenceClassifier,
    images: torch.Tensor | ImageDataset,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> FeatureStatistics:
    """Feature statistics of a reference set, to compute once and pass to `evaluate_generation`
    as ``reference_images`` when scoring many sample sets against the same reference."""
    return _statistics(classifier, images, batch_size, device)


def evaluate_generation(
    classifier: ReferenceClassifier,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    reference_images: torch.Tensor | ImageDataset | FeatureStatistics,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Score generated images.

    Args:
        classifier: the dataset's reference classifier (`get_reference_classifier`).
        images: generated images ``N x C x H x W`` in [-1, 1], at the classifier's size.
        labels: ``N`` class labels the images were conditioned on, or ``None`` for unconditional
            samples (``class_accuracy`` is then ``nan``).
        reference_images: real images (tensor in [-1, 1] or `ImageDataset`, typically the test
            split) or their precomputed `reference_statistics`.
        batch_size: images per classifier forward pass.
        device: where to run the classifier; defaults to its own device.

    Returns:
        ``{"class_accuracy": fraction in [0, 1], "fd": Frechet distance, "num_samples": N,
        "num_reference": reference count}`` (all floats).
    """
    if labels is not None and (labels.dim() != 1 or labels.shape[0] != images.shape[0]):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    features = classifier_features(classifier, images, batch_size, device)
    if labels is None:
        accuracy = math.nan
    else:
        was_training = classifier.training
        classifier.eval()
        with torch.no_grad():
            head_device = next(classifier.parameters()).device
            predictions = classifier.classify(features.to(head_device)).argmax(dim=1).cpu()
        classifier.train(was_training)
        accuracy = float((predictions == labels.cpu()).float().mean())
    reference = _statistics(classifier, reference_images, batch_size, device)
    return {
        "class_accuracy": accuracy,
        "fd": frechet_distance_from_statistics(feature_statistics(features), reference),
        "num_samples": float(images.shape[0]),
        "num_reference": float(reference.count),
    }


def reference_fd(
    classifier: ReferenceClassifier,
    train_images: torch.Tensor | ImageDataset,
    test_images: torch.Tensor | ImageDataset | FeatureStatistics,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """The FD floor: Frechet distance between ``n`` real train images and the real test set.

    The FD estimate is biased upward by a term that shrinks as the sample count grows, so a floor
    computed from all train images would be unfairly low next to an FD from a few hundred
    samples. Pass ``n`` = the number of generated images; ``n`` train images are drawn without
    replacement by a permutation seeded with ``seed``.
    """
    total = len(train_images) if isinstance(train_images, ImageDataset) else train_images.shape[0]
    if not 2 <= n <= total:
        raise ValueError(f"n must lie in [2, {total}] (the number of train images), got {n}")
    index = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    if isinstance(train_images, ImageDataset):
        subset, _ = train_images.batch(index, "cpu")
    else:
        subset = train_images[index.to(train_images.device)]
    reference = _statistics(classifier, test_images, batch_size, device)
    return frechet_distance_from_statistics(_statistics(classifier, subset, batch_size, device), reference)
