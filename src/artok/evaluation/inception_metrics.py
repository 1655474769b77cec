"""Inception features of an image set and the standard metrics computed from them.

- FID (Heusel et al., arXiv:1706.08500) on the 2048 ``pool`` features, sFID (Nash et al.,
  arXiv:2103.03841) on the 2023 ``spatial`` features: `artok.evaluation.frechet.frechet_distance`
  (equal to torch-fidelity's eigenvalue form and to the ADM evaluator's ``sqrtm``; tested);
- IS (Salimans et al., arXiv:1606.03498) from the bias-free ``logits``: ``exp(E_x KL(p(y|x) ||
  p(y)))`` on ``splits`` consecutive chunks (10, as the ADM evaluator's 5,000-image chunks of 50k
  and torch-fidelity with ``samples_shuffle=False``), mean and standard deviation over chunks;
- improved precision and recall (Kynkaanniemi et al., arXiv:1904.06991) on ``pool`` features:
  each set's manifold is the union of balls reaching each point's ``k``-th nearest neighbour
  (k = 3); precision is the fraction of samples inside the real manifold, recall the fraction of
  real images inside the sample manifold. Distances are computed in row blocks, so memory stays
  ``block x N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from artok.data.base import ImageDataset
from artok.evaluation.frechet import FeatureStatistics, feature_statistics, frechet_distance_from_statistics
from artok.evaluation.inception import inception_input


@dataclass
class InceptionFeatures:
    """``pool`` ``N x 2048``, ``logits`` ``N x 1008``, ``spatial`` ``N x 2023`` (float32, CPU)."""

    pool: torch.Tensor
    logits: torch.Tensor
    spatial: torch.Tensor

    def __len__(self) -> int:
        return self.pool.shape[0]


def as_image_tensor(images) -> torch.Tensor:
    """A uint8 ``N x H x W x 3`` numpy array (the ADM ``arr_0`` layout) as ``N x 3 x H x W``;
    tensors pass through."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 N x H x W x 3 images, got {images.dtype} of shape {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected images as a tensor, a uint8 array or an ImageDataset, got {type(images).__name__}")
    return images


def _batches(images, batch_size: int, workers: int):
    """uint8 or float ``B x C x H x W`` batches of an image set (see `inception_features`)."""
    if isinstance(images, torch.utils.data.Dataset) and not isinstance(images, ImageDataset):
        from artok.data.stream import collate_samples  # a StreamingImages (folder:/imagenet: read from disk)

        loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=workers, collate_fn=collate_samples)
        for batch in loader:
            if batch.images.shape[0]:
                yield batch.images
        return
    tensor = images.images if isinstance(images, ImageDataset) else as_image_tensor(images)
    for start in range(0, tensor.shape[0], batch_size):
        yield tensor[start : start + batch_size]


@torch.no_grad()
def inception_features(network, images, batch_size: int = 50, device: str | torch.device | None = None,
                       progress: bool = False, workers: int = 0) -> InceptionFeatures:
    """`InceptionFeatures` of ``images``: a float ``N x C x H x W`` tensor in [-1, 1], a uint8
    tensor ``N x C x H x W`` or array ``N x H x W x C``, an `ImageDataset`, or a streaming dataset
    (`artok.data.stream.StreamingImages`, read by ``workers`` loader processes; unreadable files
    are left out)."""
    device = next(network.parameters()).device if device is None else torch.device(device)
    parts = {"pool": [], "logits": [], "spatial": []}
    bar = tqdm(total=len(images), unit="img", desc="inception features", disable=not progress, leave=False)
    for batch in _batches(images, batch_size, workers):
        output = network(inception_input(batch.to(device)))
        for key in parts:
            parts[key].append(output[key].float().cpu())
        bar.update(batch.shape[0])
    bar.close()
    if not parts["pool"]:
        raise ValueError("no images given")
    return InceptionFeatures(**{key: torch.cat(value) for key, value in parts.items()})


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS mean and standard deviation over ``splits`` consecutive chunks of ``N x classes`` logits."""
    if logits.dim() != 2 or logits.shape[0] < splits:
        raise ValueError(f"inception score needs at least {splits} images (one per split), got {logits.shape[0]}")
    log_p = logits.double().log_softmax(dim=1)
    count = logits.shape[0]
    scores = []
    for index in range(splits):
        chunk = log_p[index * count // splits : (index + 1) * count // splits]
        log_marginal = chunk.exp().mean(dim=0).log()
        scores.append(float((chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _distances(rows: torch.Tensor, columns: torch.Tensor, block: int) -> torch.Tensor:
    return torch.cat([torch.cdist(rows, part) for part in columns.split(block)], dim=1)


def manifold_radii(features: torch.Tensor, k: int = 3, block: int = 1024) -> torch.Tensor:
    """Distance of each point to its ``k``-th nearest other point (its own zero distance is the first)."""
    if features.shape[0] <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} images per set, got {features.shape[0]}")
    return torch.cat([_distances(rows, features, block).kthvalue(k + 1, dim=1).values for rows in features.split(block)])


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> float:
    """Fraction of ``points`` inside at least one ball ``(centre, radius)``."""
    inside = [(_distances(rows, centres, block) <= radii).any(dim=1) for rows in points.split(block)]
    return float(torch.cat(inside).float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, block: int = 1024,
                     device: str | torch.device | None = None) -> dict[str, float]:
    """Improved precision and recall of ``fake`` against ``real`` (``N x D`` features each);
    distances in ``block`` rows at a time (``block x N`` floats of memory), on ``device``
    (default: where the features are; pass ``"cuda"`` for 50k x 50k)."""
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected N x D feature sets of the same D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real, fake = real.float().to(device or real.device), fake.float().to(device or real.device)
    precision = _coverage(fake, real, manifold_radii(real, k, block), block)
    recall = _coverage(real, fake, manifold_radii(fake, k, block), block)
    return {"precision": precision, "recall": recall}


@dataclass
class InceptionReference:
    """What the metrics compare samples against: FID statistics, optional sFID statistics and
    optional ``pool`` features (precision/recall need the real points, not just a Gaussian)."""

    pool: FeatureStatistics
    spatial: FeatureStatistics | None = None
    features: torch.Tensor | None = None
    source: str = ""

    @classmethod
    def from_features(cls, features: InceptionFeatures, source: str = "") -> "InceptionReference":
        return cls(feature_statistics(features.pool), feature_statistics(features.spatial), features.pool, source)


def inception_metrics(samples: InceptionFeatures, reference: InceptionReference, *, splits: int = 10,
                      k: int = 3, device: str | torch.device | None = None) -> dict[str, float]:
    """FID, sFID (when the reference has spatial statistics), IS (at least ``splits`` samples) and
    precision/recall (when the reference has features, both sets more than ``k``) of ``samples``,
    with the sample and reference counts."""
    metrics = {"fid": frechet_distance_from_statistics(feature_statistics(samples.pool), reference.pool)}
    if reference.spatial is not None:
        metrics["sfid"] = frechet_distance_from_statistics(feature_statistics(samples.spatial), reference.spatial)
    if len(samples) >= splits:
        metrics["inception_score"], metrics["inception_score_std"] = inception_score(samples.logits, splits)
    if reference.features is not None and min(len(samples), reference.features.shape[0]) > k:
        metrics.update(precision_recall(reference.features, samples.pool, k, device=device))
    metrics["num_samples"] = float(len(samples))
    metrics["num_reference"] = float(reference.pool.count)
    return metrics
