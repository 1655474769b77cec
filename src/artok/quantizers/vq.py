"""Vector quantization (VQ-VAE, https://arxiv.org/abs/1711.00937) with the improvements that make
large codebooks usable: l2-normalised codes and low-dimensional code lookup (ViT-VQGAN,
https://arxiv.org/abs/2110.04627; LlamaGen, https://arxiv.org/abs/2406.06525), commitment loss,
codebook-usage tracking and dead-code restart (Jukebox, https://arxiv.org/abs/2005.00341),
EMA codebook updates (VQ-VAE appendix / VQ-VAE-2, https://arxiv.org/abs/1906.00446), k-means
initialisation (SoundStream, https://arxiv.org/abs/2107.03312) and the rotation trick
(Fifty et al., https://arxiv.org/abs/2410.06424).

All codebook statistics (usage counts, EMA cluster sizes and sums, k-means sums) are all-reduced
across ranks when torch.distributed is initialised, so every rank holds the same codebook and the
result equals what one process would compute on the concatenated global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    all_reduce_,
    channels_first,
    channels_last,
    is_distributed,
    linear_fp32,
    usage_metrics,
)


@dataclass
class VQConfig:
    """Configuration of `VectorQuantizer`.

    Args:
        dim: channel count of the encoder features.
        codebook_size: number of codes.
        codebook_dim: size of the lookup space; features are projected ``dim -> codebook_dim``
            before the nearest-neighbour search and back after (None: no projection).
        l2_normalize: search and store codes on the unit sphere (cosine similarity).
        commitment_weight: weight of ``||z - sg(c)||^2`` (pulls the encoder to its code).
        codebook_weight: weight of ``||sg(z) - c||^2`` (pulls the code to the encoder); unused
            when ``ema_decay`` is set (the EMA moves the codes instead of a gradient).
        usage_decay: decay of the running per-code usage counts.
        dead_code_threshold: a code whose running usage (expected hits per batch) falls below this
            is restarted on a random encoder output of the current batch; 0 disables restarts.
        ema_decay: when set, codes are the exponential moving average of the (lookup-space)
            encoder outputs assigned to them: ``N_k <- d N_k + (1-d) n_k``,
            ``m_k <- d m_k + (1-d) sum_{i->k} z_i``, ``c_k = m_k / N~_k`` with Laplace-smoothed
            ``N~_k = (N_k + eps) / (N + K eps) * N``; the codebook then gets no gradient.
        ema_epsilon: the Laplace smoothing ``eps`` above.
        kmeans_init: initialise the codebook by k-means++ seeding and ``kmeans_iters`` Lloyd
            iterations on the first training batch's lookup-space features (done once; a buffer
            records it, so it survives save/load).
        kmeans_iters: Lloyd iterations for ``kmeans_init``.
        rotation_trick: pass the gradient through the rotation + rescaling that maps the encoder
            output onto its code (https://arxiv.org/abs/2410.06424) instead of copying it
            (straight-through). The forward value is the same.
    """

    dim: int
    codebook_size: int
    codebook_dim: int | None = 8
    l2_normalize: bool = True
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    usage_decay: float = 0.99
    dead_code_threshold: float = 0.0
    ema_decay: float | None = None
    ema_epsilon: float = 1e-5
    kmeans_init: bool = False
    kmeans_iters: int = 10
    rotation_trick: bool = False

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 2:
            raise ValueError(f"VQConfig needs dim >= 1 and codebook_size >= 2, got {self.dim}, {self.codebook_size}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be positive or None, got {self.codebook_dim}")
        if not 0.0 <= self.usage_decay < 1.0:
            raise ValueError(f"usage_decay must be in [0, 1), got {self.usage_decay}")
        if self.commitment_weight < 0 or self.codebook_weight < 0:
            raise ValueError(
                f"loss weights must be >= 0, got commitment_weight={self.commitment_weight}, "
                f"codebook_weight={self.codebook_weight}"
            )
        if self.dead_code_threshold < 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.ema_epsilon <= 0:
            raise ValueError(f"ema_epsilon must be positive, got {self.ema_epsilon}")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1, got {self.kmeans_iters}")


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantizer with a straight-through (or rotation-trick) gradient.

    ``z``: ``B x dim x *spatial`` -> ``quantized`` same shape, ``ids``: ``B x *spatial``.

    State: ``codebook`` (parameter, ``codebook_size x lookup_dim``) and ``usage`` (buffer); with
    ``ema_decay`` also the buffers ``ema_cluster_size`` and ``ema_embed_sum``; with
    ``kmeans_init`` the buffer ``kmeans_initialized``. The extra buffers exist only when their
    option is on, so checkpoints of the plain configuration keep their keys.
    """

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        lookup_dim = config.codebook_dim or config.dim
        self.in_proj = nn.Linear(config.dim, lookup_dim) if config.codebook_dim else nn.Identity()
        self.out_proj = nn.Linear(lookup_dim, config.dim) if config.codebook_dim else nn.Identity()
        self.codebook = nn.Parameter(torch.randn(config.codebook_size, lookup_dim) / lookup_dim**0.5)
        # Running usage (expected hits per batch); starts "alive" so nothing restarts on step 0.
        self.register_buffer("usage", torch.ones(config.codebook_size), persistent=True)
        if config.ema_decay is not None:
            self.codebook.requires_grad_(False)
            # Every code starts as "one sample at its initial position".
            self.register_buffer("ema_cluster_size", torch.ones(config.codebook_size))
            self.register_buffer("ema_embed_sum", self.codebook.detach().clone())
        if config.kmeans_init:
            self.register_buffer("kmeans_initialized", torch.tensor(False))
        # Host-side copy of ``kmeans_initialized`` once it is True, so training steps need no
        # device sync to check it; cleared whenever a state dict is loaded.
        self._kmeans_done = False

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def lookup_dim(self) -> int:
        return self.codebook.shape[1]

    def normalized_codebook(self) -> torch.Tensor:
        codebook = self.codebook.float()
        return F.normalize(codebook, dim=-1) if self.config.l2_normalize else codebook

    def _lookup(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``N x lookup_dim`` fp32 -> (ids ``N``, codes ``N x lookup_dim``)."""
        codebook = self.normalized_codebook()
        ids = nearest_code(flat, codebook, self.config.l2_normalize)
        return ids, codebook[ids]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            features = channels_last(z).float()
            spatial = features.shape[1:-1]
            flat = rearrange(linear_fp32(self.in_proj, features), "b ... d -> (b ...) d")
            if self.config.l2_normalize:
                flat = F.normalize(flat, dim=-1)
            if self.training and self.config.kmeans_init and not self._kmeans_done:
                if not bool(self.kmeans_initialized):
                    self._kmeans_init(flat.detach())
                self._kmeans_done = True
            ids, codes = self._lookup(flat)

            commitment = F.mse_loss(flat, codes.detach())
            loss = self.config.commitment_weight * commitment
            if self.config.ema_decay is None:
                loss = loss + self.config.codebook_weight * F.mse_loss(codes, flat.detach())

            if self.config.rotation_trick:
                quantized = rotate_to(flat, codes.detach())
            else:
                # Straight-through estimator: forward uses the code, backward copies the gradient to z
                # (written as code + (x - sg(x)) so the forward value is the code bit for bit).
                quantized = codes.detach() + (flat - flat.detach())
            quantized = linear_fp32(self.out_proj, quantized)
            quantized = quantized.reshape(z.shape[0], *spatial, -1)

            counts = torch.bincount(ids, minlength=self.codebook_size).float()
            if self.training:  # statistics are global in training; an eval encode stays on its rank
                all_reduce_(counts)
                if self.config.ema_decay is not None:
                    self._ema_update(counts, flat.detach(), ids)
                self._update_usage(counts, flat)
            metrics = usage_metrics(counts)
            metrics["commitment"] = commitment.detach()
        return QuantizerOutput(
            quantized=channels_first(quantized).to(input_dtype),
            ids=ids.reshape(z.shape[0], *spatial),
            loss=loss,
            metrics=metrics,
        )

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._kmeans_done = False

    @torch.no_grad()
    def _ema_update(self, counts: torch.Tensor, flat: torch.Tensor, ids: torch.Tensor) -> None:
        """EMA of cluster sizes and sums (``counts`` are already all-reduced; sums are reduced here)."""
        decay, eps = self.config.ema_decay, self.config.ema_epsilon
        sums = torch.zeros(self.codebook_size, flat.shape[1], device=flat.device).index_add_(0, ids, flat)
        all_reduce_(sums)
        cluster_size = self.ema_cluster_size.float() * decay + counts * (1 - decay)
        embed_sum = self.ema_embed_sum.float() * decay + sums * (1 - decay)
        self.ema_cluster_size.copy_(cluster_size)
        self.ema_embed_sum.copy_(embed_sum)
        # Laplace smoothing keeps never-hit codes from a division by ~0.
        total = cluster_size.sum()
        smoothed = (cluster_size + eps) / (total + self.codebook_size * eps) * total
        self.codebook.data.copy_(embed_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Lloyd's k-means on the (global) batch (see `kmeans`); every rank ends with the same codebook."""
        centroids, counts = kmeans(
            flat, self.codebook_size, self.config.kmeans_iters, spherical=self.config.l2_normalize
        )
        self.codebook.data.copy_(centroids)
        if self.config.ema_decay is not None:
            cluster_size = counts.clamp_min(1.0)
            self.ema_cluster_size.copy_(cluster_size)
            self.ema_embed_sum.copy_(centroids * cluster_size.unsqueeze(1))
        self.kmeans_initialized.fill_(True)

    @torch.no_grad()
    def _update_usage(self, counts: torch.Tensor, flat: torch.Tensor) -> None:
        self.usage.mul_(self.config.usage_decay).add_(counts, alpha=1 - self.config.usage_decay)
        if self.config.dead_code_threshold <= 0:
            return
        dead = self.usage < self.config.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        # Restart dead codes on random encoder outputs of this batch (every rank picks the same
        # rows of rank 0's batch, broadcast, so the codebooks stay identical under DDP; the usage
        # counts are all-reduced, so every rank finds the same dead codes).
        choice = torch.randint(0, flat.shape[0], (num_dead,), device=flat.device)
        new_codes = flat[choice].detach().float().clone()
        if is_distributed():
            torch.distributed.broadcast(new_codes, src=0)
        self.codebook.data[dead] = new_codes.to(self.codebook.dtype)
        self.usage[dead] = self.config.dead_code_threshold * 2  # grace period before the next restart
        if self.config.ema_decay is not None:
            # The restarted code counts as one fresh sample at its new position.
            self.ema_cluster_size[dead] = 1.0
            self.ema_embed_sum[dead] = new_codes.to(self.ema_embed_sum.dtype)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return channels_first(linear_fp32(self.out_proj, self.normalized_codebook()[ids]))


def nearest_code(flat: torch.Tensor, codebook: torch.Tensor, cosine: bool) -> torch.Tensor:
    """Index of the nearest row of ``codebook`` (``K x d``) for each row of ``flat`` (``N x d``)."""
    if cosine:
        return (flat @ codebook.t()).argmax(dim=-1)
    distance = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(-1)
    return distance.argmin(dim=-1)


@torch.no_grad()
def kmeans(
    samples: torch.Tensor, num_clusters: int, iters: int, spherical: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means over ``samples`` (``N x d``, fp32), distributed-aware.

    Starting centroids are k-means++ seeds (`kmeans_plus_plus_seeds`) from rank 0's samples,
    broadcast to every rank; each iteration all-reduces the cluster
    sums and counts, so the result is the k-means of the union of all ranks' samples. Clusters
    that lose every sample keep their previous centroid. ``spherical`` uses cosine assignment and
    re-normalises the centroids.

    Returns:
        (centroids ``num_clusters x d``, counts ``num_clusters`` of the last assignment).
    """
    samples = samples.float()
    centroids = kmeans_plus_plus_seeds(samples, num_clusters)
    if is_distributed():
        torch.distributed.broadcast(centroids, src=0)
    counts = torch.zeros(num_clusters, device=samples.device)
    for _ in range(iters):
        ids = nearest_code(samples, F.normalize(centroids, dim=-1) if spherical else centroids, spherical)
        counts = all_reduce_(torch.bincount(ids, minlength=num_clusters).float())
        sums = all_reduce_(torch.zeros_like(centroids).index_add_(0, ids, samples))
        means = sums / counts.clamp_min(1.0).unsqueeze(1)
        if spherical:
            means = F.normalize(means, dim=-1)
        centroids = torch.where(counts.unsqueeze(1) > 0, means, centroids)
    return centroids, counts


@torch.no_grad()
def kmeans_plus_plus_seeds(samples: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each next seed is a sample drawn with
    probability proportional to its squared distance to the nearest seed so far; it avoids the
    merged clusters that uniformly drawn seeds often leave Lloyd's iterations stuck in. When the
    samples run out of distinct points the draw becomes uniform (seeds may then repeat).

    ``samples``: ``N x d`` -> seeds ``num_clusters x d``. Costs ``num_clusters`` passes over the
    samples, once per training run.
    """
    num_samples = samples.shape[0]
    chosen = torch.empty(num_clusters, dtype=torch.int64, device=samples.device)
    chosen[0] = torch.randint(0, num_samples, (), device=samples.device)
    min_distance = (samples - samples[chosen[0]]).pow(2).sum(-1)
    for index in range(1, num_clusters):
        # The tiny floor keeps the weights valid (uniform) once every sample is a seed.
        chosen[index] = torch.multinomial(min_distance.clamp_min(0) + 1e-30, 1)[0]
        min_distance = torch.minimum(min_distance, (samples - samples[chosen[index]]).pow(2).sum(-1))
    return samples[chosen].clone()


def rotate_to(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The rotation trick (https://arxiv.org/abs/2410.06424), row-wise over the last dimension.

    Returns a tensor equal (in the forward pass) to ``target`` whose gradient with respect to
    ``source`` is ``lambda * R``: ``R`` the rotation taking ``source``'s direction onto
    ``target``'s (``R = I - 2 w w^T + 2 t s^T`` with ``s``, ``t`` the unit directions and
    ``w = (s + t) / ||s + t||``) and ``lambda = ||target|| / ||source||``; both are treated as
    constants. ``R`` is applied without forming a ``d x d`` matrix.
    """
    source_norm = source.norm(dim=-1, keepdim=True)
    target_norm = target.norm(dim=-1, keepdim=True)
    source_dir = (source / source_norm.clamp_min(eps)).detach()
    target_dir = (target / target_norm.clamp_min(eps)).detach()
    bisector = F.normalize(source_dir + target_dir, dim=-1, eps=eps).detach()
    rotated = (
        source
        - 2 * (source * bisector).sum(-1, keepdim=True) * bisector
        + 2 * (source * source_dir).sum(-1, keepdim=True) * target_dir
    )
    scaled = rotated * (target_norm / source_norm.clamp_min(eps)).detach()
    # R s = t in exact arithmetic; adding only the (zero-valued) gradient path keeps the forward
    # value bit-identical to ``target``.
    return target.detach() + (scaled - scaled.detach())


# Kept for code that imported the private names from this module.
_linear_fp32 = linear_fp32
_usage_metrics = usage_metrics
