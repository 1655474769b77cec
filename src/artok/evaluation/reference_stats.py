"""Reference statistics for Inception metrics: artok's cached ``.npz`` and the ADM evaluator's
reference batches.

artok's file (`save_reference`): ``mu`` (2048), ``sigma`` (2048 x 2048), ``count``, ``mu_s`` /
``sigma_s`` / ``count_s`` (sFID), optionally ``features`` (``N x 2048`` float32, for
precision/recall), ``weights_sha256`` (the Inception file they came from) and ``source``.

The ADM evaluator's reference batches (Dhariwal & Nichol, arXiv:2105.05233; e.g.
``VIRTUAL_imagenet256_labeled.npz``) hold ``arr_0`` (uint8 ``N x H x W x 3`` real images) and
the TensorFlow-computed ``mu`` / ``sigma`` / ``mu_s`` / ``sigma_s``. `load_reference` reads either
layout: the stored statistics are used as they are (so FID is comparable to published numbers),
and the ``arr_0`` images are run through the Inception network only when something needs them
(precision/recall needs the real features; a file with images but no statistics needs both).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from artok.data.base import ImageDataset
from artok.evaluation.frechet import FeatureStatistics, feature_statistics
from artok.evaluation.inception_metrics import InceptionReference, inception_features
from artok.hub import atomic_write

POOL_DIM = 2048


def save_reference(path: str | Path, reference: InceptionReference, weights_sha256: str = "",
                   with_features: bool = True) -> Path:
    """Write ``reference`` as an artok reference ``.npz`` (atomically)."""
    arrays = {"mu": reference.pool.mean, "sigma": reference.pool.covariance, "count": np.int64(reference.pool.count),
              "weights_sha256": np.str_(weights_sha256), "source": np.str_(reference.source)}
    if reference.spatial is not None:
        arrays.update(mu_s=reference.spatial.mean, sigma_s=reference.spatial.covariance,
                      count_s=np.int64(reference.spatial.count))
    if with_features and reference.features is not None:
        arrays["features"] = reference.features.float().numpy()

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    return atomic_write(path, write)


def _statistics(file, mean_key: str, covariance_key: str, count: int, path: Path) -> FeatureStatistics | None:
    if mean_key not in file.files:
        return None
    if covariance_key not in file.files:
        raise ValueError(f"reference {path} has {mean_key!r} but no {covariance_key!r}")
    mean, covariance = np.asarray(file[mean_key], np.float64), np.asarray(file[covariance_key], np.float64)
    if mean.ndim != 1 or covariance.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"reference {path}: {mean_key} has shape {mean.shape} and {covariance_key} {covariance.shape}; "
                         "expected D and D x D")
    return FeatureStatistics(mean, covariance, count)


def load_reference(path: str | Path, network=None, *, need_features: bool = False, batch_size: int = 50,
                   progress: bool = False) -> InceptionReference:
    """An `InceptionReference` from an artok or ADM-layout ``.npz``.

    ``network`` (a loaded `FIDInceptionV3`) is used only on ``arr_0`` images: when the file has no
    statistics, or when ``need_features`` asks for the real features (precision/recall) and the
    file does not store them. Without images or a network those stay ``None``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference statistics {path} do not exist; make them with "
                                "'artok reference --dataset NAME --out FILE.npz' or give an ADM reference batch")
    try:
        file = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"reference statistics {path} are not a readable .npz ({' '.join(str(error).split())[:80]})") from None
    with file:
        has_images = "arr_0" in file.files
        count = int(file["count"]) if "count" in file.files else (len(file["arr_0"]) if has_images else 0)
        pool = _statistics(file, "mu", "sigma", count, path)
        spatial = _statistics(file, "mu_s", "sigma_s", int(file["count_s"]) if "count_s" in file.files else count, path)
        features = torch.from_numpy(np.asarray(file["features"], np.float32)) if "features" in file.files else None
        source = str(file["source"]) if "source" in file.files else path.name
        if pool is None and not has_images:
            raise ValueError(f"reference {path} has neither 'mu'/'sigma' nor 'arr_0' images; keys: {', '.join(file.files)}")
        if (pool is None or (need_features and features is None)) and has_images and network is not None:
            computed = inception_features(network, file["arr_0"], batch_size, progress=progress)
            features = computed.pool
            if pool is None:
                pool, spatial = feature_statistics(computed.pool), feature_statistics(computed.spatial)
        elif pool is None:
            raise ValueError(f"reference {path} holds only images; Inception weights are needed to compute its statistics")
    if pool.mean.shape != (POOL_DIM,):
        raise ValueError(f"reference {path}: mu has {pool.mean.shape[0]} dimensions, Inception pool features have {POOL_DIM}")
    return InceptionReference(pool, spatial, features, source)


def reference_cache_name(dataset: ImageDataset, weights_sha256: str) -> str:
    """A cache file name that changes with the dataset's name, split, size and the weights."""
    key = f"{dataset.name}|{dataset.split}|{tuple(dataset.images.shape)}|{weights_sha256}"
    readable = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.name.split("/")[-1])[:40]
    return f"{readable}-{dataset.split}-{dataset.images.shape[-1]}px-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def default_reference_dir() -> Path:
    """``<artok cache>/inception``, beside the reference classifiers."""
    from artok.evaluation.classifier import default_cache_dir

    return default_cache_dir().parent / "inception"


def dataset_reference(dataset: ImageDataset, network, cache_dir: str | Path | None = None, *, batch_size: int = 50,
                      progress: bool = False) -> tuple[InceptionReference, Path]:
    """The reference of ``dataset`` under ``network``, read from ``cache_dir`` (default:
    `default_reference_dir`) when already computed, else computed and cached there."""
    sha = getattr(network, "weights_sha256", "")
    path = Path(cache_dir or default_reference_dir()) / reference_cache_name(dataset, sha)
    if path.is_file():
        return load_reference(path), path
    features = inception_features(network, dataset, batch_size, progress=progress)
    reference = InceptionReference.from_features(features, source=f"{dataset.name} ({dataset.split})")
    save_reference(path, reference, sha)
    return reference, path
