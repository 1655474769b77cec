"""Continuous latents: the diagonal-Gaussian posterior of a KL-regularised autoencoder (VAE,
https://arxiv.org/abs/1312.6114; latent diffusion, https://arxiv.org/abs/2112.10752), as MAR's
tokenizer uses it (Li et al., "Autoregressive Image Generation without Vector Quantization",
https://arxiv.org/abs/2406.11838), and a plain pass-through with an optional bound.

Both are `Quantizer`s with ``discrete = False``: ``ids`` is None and there is no ``ids_to_codes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from artok.quantizers.base import Quantizer, QuantizerOutput


@dataclass
class DiagonalGaussianConfig:
    """Configuration of `DiagonalGaussian`.

    Args:
        dim: latent channels ``D``; the encoder emits ``2 * D`` (mean, then log-variance).
        kl_weight: weight of the KL term (averaged over all elements) in ``loss``.
        logvar_min, logvar_max: the log-variance is clamped to this range (MAR uses [-30, 20]).
        sample: draw ``mean + std * eps`` in training; when False (or in eval) return the mean.
    """

    dim: int
    kl_weight: float = 1e-6
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    sample: bool = True

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"DiagonalGaussianConfig.dim must be positive, got {self.dim}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.logvar_min >= self.logvar_max:
            raise ValueError(f"logvar_min must be < logvar_max, got {self.logvar_min}, {self.logvar_max}")


class DiagonalGaussian(Quantizer):
    """``z`` ``B x 2D x *spatial`` (mean and log-variance along channels) -> ``quantized``
    ``B x D x *spatial``: a sample in training, the mean otherwise.

    ``loss = kl_weight * mean(0.5 * (mean^2 + var - 1 - logvar))``: KL(q || N(0, I)) per element,
    averaged over batch, channels and positions. ``dim`` is the output channel count ``D``;
    ``input_dim`` is ``2 * D``.
    """

    discrete = False

    def __init__(self, config: DiagonalGaussianConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def input_dim(self) -> int:
        return 2 * self.config.dim

    @property
    def codebook_size(self) -> None:
        return None

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``B x 2D x *spatial`` -> (mean, clamped log-variance), each ``B x D x *spatial`` fp32."""
        if z.shape[1] != self.input_dim:
            raise ValueError(f"DiagonalGaussian expects {self.input_dim} input channels, got {z.shape[1]}")
        mean, logvar = z.float().chunk(2, dim=1)
        return mean, logvar.clamp(self.config.logvar_min, self.config.logvar_max)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            mean, logvar = self.split(z)
            std = torch.exp(0.5 * logvar)
            if self.training and self.config.sample:
                latent = mean + std * torch.randn_like(mean)
            else:
                latent = mean
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
            metrics = {"kl": kl.detach(), "std": std.detach().mean()}
        return QuantizerOutput(
            quantized=latent.to(input_dtype), ids=None, loss=self.config.kl_weight * kl, metrics=metrics
        )


@dataclass
class ContinuousConfig:
    """Configuration of `PlainContinuous`.

    Args:
        dim: channel count.
        bound: ``"none"`` (identity), ``"l2"`` (unit norm over channels) or ``"tanh"`` (each
            channel squashed into (-1, 1)).
    """

    dim: int
    bound: str = "none"

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"ContinuousConfig.dim must be positive, got {self.dim}")
        if self.bound not in ("none", "l2", "tanh"):
            raise ValueError(f"ContinuousConfig.bound must be 'none', 'l2' or 'tanh', got {self.bound!r}")


class PlainContinuous(Quantizer):
    """Continuous tokens as the encoder emits them, optionally bounded; no loss."""

    discrete = False

    def __init__(self, config: ContinuousConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> None:
        return None

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            latent = z.float()
            if self.config.bound == "l2":
                latent = F.normalize(latent, dim=1)
            elif self.config.bound == "tanh":
                latent = torch.tanh(latent)
        return QuantizerOutput(quantized=latent.to(input_dtype), ids=None, loss=z.new_zeros((), dtype=torch.float32))
