"""Frechet distance between Gaussians fitted to feature sets (the "FD" of FID).

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", arXiv:1706.08500: fit ``N(mu, sigma)`` to the features of each image set and report

    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

The same code scores two feature spaces: the penultimate features of a `ReferenceClassifier`
(``fd``; comparable only between runs with the same classifier, reference set and sample count)
and the FID Inception's (``fid``/``sfid``, `artok.evaluation.inception_metrics`). The estimate
is biased upward for small sample counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((sigma1 sigma2)^(1/2))`` for covariance matrices.

    ``sigma1 sigma2`` is similar to the PSD matrix ``R sigma2 R`` with ``R = sigma1^(1/2)``, so its
    eigenvalues are those of ``R sigma2 R``. With ``sigma1 = V diag(w) V^T`` restricted to its
    range (eigenvalues above the usual rank tolerance ``max(w) * dim * eps``), those are the
    eigenvalues of the small ``r x r`` matrix ``diag(sqrt w) V^T sigma2 V diag(sqrt w)``.
    Symmetric eigendecompositions instead of ``scipy.linalg.sqrtm``'s Schur form: several times
    faster at 2048 dimensions, and exact for singular covariances (fewer samples than dimensions)
    without an offset; equal to torch-fidelity's ``sum(sqrt(eigvals(sigma1 sigma2)))`` and, for
    non-singular inputs, to ``Tr(sqrtm(sigma1 sigma2))`` (tested).
    """
    values, vectors = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    keep = values > max(float(values.max()), 0.0) * values.shape[0] * np.finfo(np.float64).eps
    if not keep.any():
        return 0.0
    basis = vectors[:, keep] * np.sqrt(values[keep])
    small = basis.T @ ((sigma2 + sigma2.T) / 2) @ basis
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    The trace of the matrix square root of ``sigma1 @ sigma2`` comes from `trace_sqrt_product`,
    which handles singular covariances (fewer samples than dimensions, dead ReLU features)
    exactly. Only if the result is not finite is ``eps`` added to both diagonals and the distance
    computed between the regularised Gaussians.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of the same size, got {mu1.shape} and {mu2.shape}")
    dim = mu1.shape[0]
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"covariances must be {dim} x {dim}, got {sigma1.shape} and {sigma2.shape}")
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all() and np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise ValueError("means and covariances must be finite")

    difference = mu1 - mu2
    try:
        trace_root = trace_sqrt_product(sigma1, sigma2)
    except np.linalg.LinAlgError:
        trace_root = float("nan")
    if not np.isfinite(trace_root):
        # Regularise both covariances and use them in the trace terms too, so the result is the
        # exact distance between the two regularised Gaussians.
        offset = np.eye(dim) * eps
        sigma1, sigma2 = sigma1 + offset, sigma2 + offset
        trace_root = trace_sqrt_product(sigma1, sigma2)
    distance = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root
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
