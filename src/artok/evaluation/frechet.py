"""Frechet distance between Gaussians fitted to feature sets (the "FD" of FID).

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", arXiv:1706.08500: fit ``N(mu, sigma)`` to the features of each image set and report

    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

artok computes it on the penultimate features of a `ReferenceClassifier` rather than Inception
(see `artok.evaluation.classifier`), so values are comparable only between runs that use the same
classifier, the same reference set and the same number of samples (the estimate is biased upward
for small sample counts).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg

from artok.data.base import ImageDataset


@dataclass
class FeatureStatistics:
    """Mean ``D`` and covariance ``D x D`` (float64) of ``count`` feature vectors."""

    mean: np.ndarray
    covariance: np.ndarray
    count: int


def feature_statistics(features: torch.Tensor | np.ndarray) -> FeatureStatistics:
    """Mean and unbiased (``N - 1``) covariance of ``N x D`` features, in float64."""
    array = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"expected N x D features with N >= 2, got shape {array.shape}")
    return FeatureStatistics(mean=array.mean(axis=0), covariance=np.cov(array, rowvar=False).reshape(array.shape[1], -1), count=array.shape[0])


def _sqrtm(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """``scipy.linalg.sqrtm`` and whether scipy found the matrix singular (it warns, not raises)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(matrix)
    return root, any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    The matrix square root of ``sigma1 @ sigma2`` comes from ``scipy.linalg.sqrtm``. When the
    product is singular (e.g. fewer samples than dimensions, or dead ReLU features) or the root
    is not finite, ``eps`` is added to both diagonals and the distance computed between the
    regularised Gaussians. Round-off leaves a
    small imaginary part in the root, which is dropped; a large one raises ``ValueError``.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of the same size, got {mu1.shape} and {mu2.shape}")
    dim = mu1.shape[0]
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"covariances must be {dim} x {dim}, got {sigma1.shape} and {sigma2.shape}")

    difference = mu1 - mu2
    root, singular = _sqrtm(sigma1 @ sigma2)
    if singular or not np.isfinite(root).all():
        # Regularise both covariances and use them in the trace terms too, so the result is the
        # exact distance between the two regularised Gaussians (identical inputs still give 0;
        # offsetting only the root would bias the distance by -2 * dim * eps).
        offset = np.eye(dim) * eps
        sigma1, sigma2 = sigma1 + offset, sigma2 + offset
        root, _ = _sqrtm(sigma1 @ sigma2)
    if np.iscomplexobj(root):
        # Relative tolerance: the imaginary parts scale with the covariances themselves.
        scale = max(1.0, float(np.abs(root.real).max()))
        largest = float(np.abs(root.imag).max())
        if largest > 1e-3 * scale:
            raise ValueError(f"matrix square root has an imaginary component of {largest:.3g}")
        root = root.real
    distance = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root)
    return float(distance)


def frechet_distance_from_statistics(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """`frechet_distance` of two `FeatureStatistics`."""
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)


@torch.no_grad()
def classifier_features(
    classifier: torch.nn.Module,
    images: torch.Tensor | ImageDataset,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Penultimate features ``N x feature_dim`` (float32, CPU) of ``images`` under ``classifier``.

    Args:
        classifier: a `ReferenceClassifier` (anything with a ``features(images)`` method).
        images: float ``N x C x H x W`` in [-1, 1] (any device), or an `ImageDataset`.
        batch_size: images per forward pass.
        device: where to run; defaults to the classifier's device.

    The classifier runs in eval mode (BatchNorm uses its running statistics, so a feature does
    not depend on which other images share its batch); its previous mode is restored afterwards.
    """
    device = next(classifier.parameters()).device if device is None else torch.device(device)
    if isinstance(images, ImageDataset):
        count = len(images)
    elif isinstance(images, torch.Tensor) and images.is_floating_point() and images.dim() == 4:
        count = images.shape[0]
    else:
        raise ValueError("images must be a float N x C x H x W tensor in [-1, 1] or an ImageDataset")
    was_training = classifier.training
    classifier.eval()
    chunks = []
    for start in range(0, count, batch_size):
        if isinstance(images, ImageDataset):
            batch, _ = images.batch(torch.arange(start, min(start + batch_size, count)), device)
        else:
            batch = images[start : start + batch_size].to(device=device, dtype=torch.float32)
        chunks.append(classifier.features(batch).float().cpu())
    classifier.train(was_training)
    if not chunks:
        raise ValueError("no images given")
    return torch.cat(chunks)
