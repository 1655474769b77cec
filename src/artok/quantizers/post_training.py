"""Post-training dimension-wise quantization of continuous latents (TokenBridge, Wang et al.,
"Bridging Continuous and Discrete Tokens for Autoregressive Visual Generation",
https://arxiv.org/abs/2503.16430).

A trained continuous tokenizer's latent channels are standardised with per-channel statistics
(``calibrate``; or assumed standard normal) and each channel is quantized **independently** into
``M = 2^bits`` bins of equal probability under ``N(0, 1)``: boundaries
``b_k = Phi^{-1}(k / M)`` for ``k = 1 .. M-1`` (``b_0 = -inf``, ``b_M = +inf``). A bin is
dequantized to its conditional mean under the Gaussian (the mean of a truncated normal),

    E[x | b_k < x <= b_{k+1}] = (phi(b_k) - phi(b_{k+1})) / (Phi(b_{k+1}) - Phi(b_k)),

then un-standardised (``mean + std * value``). Nothing is trained. Each position gets one id per
channel, so ``ids`` are ``B x *spatial x D`` and a generator predicts ``D`` sub-tokens of
``2^bits`` values each.

For ``N(0, 1)`` data the expected squared error of this quantizer is ``1 - mean_k c_k^2`` (the
centroid condition makes the error orthogonal to the reconstruction); `expected_mse` returns it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    all_reduce_,
    channels_first,
    channels_last,
)


@dataclass
class PostTrainingQuantizerConfig:
    """Configuration of `PostTrainingQuantizer`.

    Args:
        dim: latent channel count ``D`` (= sub-tokens per position).
        bits: bits per channel; each channel has ``2^bits`` bins (1 to 16).
        min_std: floor of the calibrated per-channel standard deviation.
    """

    dim: int
    bits: int = 4
    min_std: float = 1e-6

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"PostTrainingQuantizerConfig.dim must be positive, got {self.dim}")
        if not 1 <= self.bits <= 16:
            raise ValueError(f"PostTrainingQuantizerConfig.bits must be in [1, 16], got {self.bits}")
        if self.min_std <= 0:
            raise ValueError(f"min_std must be positive, got {self.min_std}")


def gaussian_bin_boundaries(bits: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``2^bits - 1`` inner boundaries ``Phi^{-1}(k / 2^bits)`` of equal-mass bins of ``N(0, 1)``."""
    num_bins = 2**bits
    quantiles = torch.arange(1, num_bins, dtype=torch.float64) / num_bins
    return torch.special.ndtri(quantiles).to(dtype)


def gaussian_bin_centers(bits: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``2^bits`` conditional means of ``N(0, 1)`` inside each equal-mass bin (computed in fp64)."""
    inf = torch.tensor([math.inf], dtype=torch.float64)
    edges = torch.cat([-inf, gaussian_bin_boundaries(bits), inf])
    density = torch.exp(-0.5 * edges.pow(2)) / math.sqrt(2 * math.pi)  # phi(+-inf) = 0
    mass = torch.special.ndtr(edges[1:]) - torch.special.ndtr(edges[:-1])  # = 1 / num_bins
    centers = (density[:-1] - density[1:]) / mass
    # The bins are symmetric; averaging with the mirror image removes fp64 rounding asymmetry.
    centers = 0.5 * (centers - centers.flip(0))
    return centers.to(dtype)


def expected_mse(bits: int) -> float:
    """Expected squared error per element for ``N(0, 1)`` data: ``1 - mean_k c_k^2``."""
    return float(1.0 - gaussian_bin_centers(bits).pow(2).mean())


class PostTrainingQuantizer(Quantizer):
    """Dimension-wise Gaussian-quantile quantizer: ``z`` ``B x D x *spatial`` -> ``quantized``
    same shape (a straight-through gradient passes to ``z``), ``ids`` ``B x *spatial x D``.

    Buffers ``mean`` and ``std`` (``D``, saved) hold the per-channel statistics (0 and 1 until
    `calibrate` is called); ``calibrated`` records whether it was.
    """

    def __init__(self, config: PostTrainingQuantizerConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.dim))
        self.register_buffer("std", torch.ones(config.dim))
        self.register_buffer("calibrated", torch.tensor(False))
        # Derived from ``bits``: not saved.
        self.register_buffer("boundaries", gaussian_bin_boundaries(config.bits, torch.float32), persistent=False)
        self.register_buffer("centers", gaussian_bin_centers(config.bits, torch.float32), persistent=False)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> int:
        return 2**self.config.bits

    @property
    def subtokens(self) -> int:
        return self.config.dim

    @torch.no_grad()
    def calibrate(self, latents: torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Estimate per-channel mean and std from latents ``B x D x *spatial`` (one tensor or an
        iterable of batches); sums are all-reduced across ranks under torch.distributed."""
        batches = [latents] if isinstance(latents, torch.Tensor) else latents
        count = total = total_sq = None
        for batch in batches:
            if batch.shape[1] != self.dim:
                raise ValueError(f"calibrate expects {self.dim} channels, got {batch.shape[1]}")
            flat = channels_last(batch).reshape(-1, self.dim).double()
            if count is None:
                count = torch.zeros((), dtype=torch.float64, device=flat.device)
                total = torch.zeros(self.dim, dtype=torch.float64, device=flat.device)
                total_sq = torch.zeros(self.dim, dtype=torch.float64, device=flat.device)
            count += flat.shape[0]
            total += flat.sum(0)
            total_sq += flat.pow(2).sum(0)
        if count is None:
            raise ValueError("calibrate needs at least one batch of latents")
        stats = all_reduce_(torch.cat([count.reshape(1), total, total_sq]))
        count, total, total_sq = stats[0], stats[1 : 1 + self.dim], stats[1 + self.dim :]
        if count < 2:
            raise ValueError("calibrate needs at least two latent vectors")
        mean = total / count
        variance = ((total_sq - count * mean.pow(2)) / (count - 1)).clamp_min(0)
        self.mean.copy_(mean)
        self.std.copy_(variance.sqrt().clamp_min(self.config.min_std))
        self.calibrated.fill_(True)

    def quantize_ids(self, z: torch.Tensor) -> torch.Tensor:
        """``B x D x *spatial`` -> ids ``B x *spatial x D`` (int64 in ``[0, 2^bits)``)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            standardized = (channels_last(z).float() - self.mean.float()) / self.std.float()
            return torch.bucketize(standardized.contiguous(), self.boundaries.float())

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            features = z.float()
            ids = self.quantize_ids(features)
            values = self.ids_to_codes(ids)
            quantized = values + (features - features.detach())
            metrics = {"quantization_mse": (values - features).detach().pow(2).mean()}
        return QuantizerOutput(
            quantized=quantized.to(input_dtype),
            ids=ids,
            loss=z.new_zeros((), dtype=torch.float32),
            metrics=metrics,
        )

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``B x *spatial x D`` -> dequantized latents ``B x D x *spatial`` (fp32)."""
        values = self.centers.float()[ids] * self.std.float() + self.mean.float()
        return channels_first(values)
