"""Multi-scale residual vector quantization, as VAR uses it (Tian et al., "Visual Autoregressive
Modeling: Scalable Image Generation via Next-Scale Prediction", https://arxiv.org/abs/2404.02905,
algorithm 1).

For scales ``(h_1, w_1) < ... < (h_K, w_K) = (H, W)`` and a latent ``f`` (``B x D x H x W``):

    rest = f; f_hat = 0
    for k in 1..K:
        ids_k = nearest code of area_downsample(rest, (h_k, w_k))     (ONE codebook for all scales)
        h_k = phi_k(bicubic_upsample(codebook[ids_k], (H, W)))
        f_hat += h_k; rest -= h_k

``phi_k`` is a small residual convolution blended with its input,
``phi(h) = (1 - ratio) h + ratio conv(h)``; ``num_phi`` convolutions are shared across the scales
(scale ``k`` uses the one whose tick in ``[0, 1]`` is nearest ``k / (K - 1)``, VAR's partially
shared scheme). The loss is VAR's: per scale
``commitment_weight * ||sg(f_hat) - f||^2 + codebook_weight * ||f_hat - sg(f)||^2``, averaged over
scales; the output passes a straight-through gradient to ``f``.

Token order: ``ids`` are one flat sequence of length ``sum_k h_k * w_k``, **scale by scale
(coarse to fine), raster order (row-major) inside a scale** — the order a next-scale generator
predicts them in. `ids_to_scale_features`, `add_scale` and `teacher_forcing_inputs` give a
generator the accumulated latent ``f_hat`` and the next scale's input
(``area_downsample(f_hat, (h_{k+1}, w_{k+1}))``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    id_histogram,
    usage_metrics,
)
from artok.quantizers.vq import nearest_code


@dataclass
class MultiScaleVQConfig:
    """Configuration of `MultiScaleVectorQuantizer`.

    Args:
        dim: channel count of the latent.
        codebook_size: codes in the one codebook shared by every scale.
        scales: token-map sizes, coarse to fine: ints (square maps) or ``(h, w)`` pairs; the last
            must equal the latent's ``H x W``. Stored as ``(h, w)`` pairs.
        l2_normalize: nearest code by cosine similarity (VAR's ``using_znorm``); the codes added
            to ``f_hat`` are the raw codebook rows either way.
        commitment_weight: weight of ``||sg(f_hat) - f||^2`` (VAR's ``beta``).
        codebook_weight: weight of ``||f_hat - sg(f)||^2`` (trains the codebook and phi).
        phi_ratio: blend ``ratio`` of the residual convolutions (0 disables them).
        num_phi: number of phi convolutions: 0 one per scale, 1 one shared, ``n`` a bank of ``n``.
        phi_kernel_size: odd kernel size of the phi convolutions.
        usage_decay: decay of the running per-scale code-usage counts (buffer ``usage``).
    """

    dim: int
    codebook_size: int
    scales: tuple = (1, 2, 3, 4)
    l2_normalize: bool = False
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    phi_ratio: float = 0.5
    num_phi: int = 4
    phi_kernel_size: int = 3
    usage_decay: float = 0.99

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 2:
            raise ValueError(
                f"MultiScaleVQConfig needs dim >= 1 and codebook_size >= 2, got {self.dim}, {self.codebook_size}"
            )
        if not self.scales:
            raise ValueError("MultiScaleVQConfig.scales must be a non-empty list")
        pairs = []
        for scale in self.scales:
            pair = (int(scale), int(scale)) if isinstance(scale, (int, np.integer)) else tuple(int(v) for v in scale)
            if len(pair) != 2 or min(pair) < 1:
                raise ValueError(f"each scale must be a positive int or an (h, w) pair, got {scale!r}")
            pairs.append(pair)
        self.scales = tuple(pairs)
        final_h, final_w = self.scales[-1]
        if any(h > final_h or w > final_w for h, w in self.scales):
            raise ValueError(f"every scale must fit inside the last (finest) one, got {self.scales}")
        if not 0.0 <= self.phi_ratio <= 1.0:
            raise ValueError(f"phi_ratio must be in [0, 1], got {self.phi_ratio}")
        if self.num_phi < 0:
            raise ValueError(f"num_phi must be >= 0, got {self.num_phi}")
        if self.phi_kernel_size < 1 or self.phi_kernel_size % 2 == 0:
            raise ValueError(f"phi_kernel_size must be a positive odd number, got {self.phi_kernel_size}")
        if self.commitment_weight < 0 or self.codebook_weight < 0:
            raise ValueError("loss weights must be >= 0")
        if not 0.0 <= self.usage_decay < 1.0:
            raise ValueError(f"usage_decay must be in [0, 1), got {self.usage_decay}")


@dataclass
class ScaleFeatures:
    """What a next-scale generator needs after the first ``num_scales`` scales.

    Attributes:
        f_hat: accumulated latent ``B x D x H x W`` (fp32).
        next_input: ``f_hat`` area-downsampled to the next scale, ``B x D x h_{k+1} x w_{k+1}``;
            None once every scale is in.
        num_scales: how many scales ``f_hat`` contains.
    """

    f_hat: torch.Tensor
    next_input: torch.Tensor | None
    num_scales: int


class Phi(nn.Module):
    """VAR's residual convolution: ``h -> (1 - ratio) h + ratio conv(h)`` (fp32)."""

    def __init__(self, dim: int, ratio: float, kernel_size: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        conv = F.conv2d(h, self.conv.weight.float(), self.conv.bias.float(), padding=self.conv.padding)
        return h * (1 - self.ratio) + conv * self.ratio


def phi_index_per_scale(num_scales: int, num_phi: int) -> list[int]:
    """Which of ``num_phi`` convolutions each scale uses: scale ``k`` takes the one whose tick is
    nearest ``k / (num_scales - 1)``; ticks are evenly spread in ``[1/(3n), 1 - 1/(3n)]`` for
    ``n = 4`` and ``[1/(2n), 1 - 1/(2n)]`` otherwise (VAR's values, kept for checkpoint parity)."""
    if num_phi == 1:
        return [0] * num_scales
    margin = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    ticks = np.linspace(margin, 1 - margin, num_phi)
    positions = [k / (num_scales - 1) if num_scales > 1 else 0.0 for k in range(num_scales)]
    return [int(np.argmin(np.abs(ticks - position))) for position in positions]


class MultiScaleVectorQuantizer(Quantizer):
    """VAR's multi-scale residual VQ: ``z`` ``B x dim x H x W`` -> ``quantized`` same shape,
    ``ids`` ``B x sum_k h_k w_k`` (scale by scale, raster inside a scale)."""

    def __init__(self, config: MultiScaleVQConfig) -> None:
        super().__init__()
        self.config = config
        num_scales = len(config.scales)
        self.codebook = nn.Parameter(torch.randn(config.codebook_size, config.dim) / config.dim**0.5)
        num_phi = config.num_phi or num_scales
        self.phi = nn.ModuleList(
            Phi(config.dim, config.phi_ratio, config.phi_kernel_size) if config.phi_ratio > 0 else nn.Identity()
            for _ in range(num_phi)
        )
        self._phi_for_scale = phi_index_per_scale(num_scales, num_phi)
        self.register_buffer("usage", torch.zeros(num_scales, config.codebook_size))

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def scales(self) -> tuple[tuple[int, int], ...]:
        return self.config.scales

    @property
    def num_scales(self) -> int:
        return len(self.config.scales)

    @property
    def scale_lengths(self) -> list[int]:
        """Tokens per scale, ``h_k * w_k``."""
        return [h * w for h, w in self.config.scales]

    @property
    def seq_len(self) -> int:
        return sum(self.scale_lengths)

    def _lookup(self, flat: torch.Tensor) -> torch.Tensor:
        codebook = self.codebook.float()
        if self.config.l2_normalize:
            return nearest_code(F.normalize(flat, dim=-1), F.normalize(codebook, dim=-1), cosine=True)
        return nearest_code(flat, codebook, cosine=False)

    def scale_residual(self, scale_index: int, scale_ids: torch.Tensor) -> torch.Tensor:
        """The contribution ``h_k`` of one scale: ids ``B x h_k x w_k`` (or ``B x h_k w_k``) ->
        ``B x D x H x W`` fp32 (codes, bicubic upsampling, phi)."""
        h, w = self.config.scales[scale_index]
        final = self.config.scales[-1]
        codes = self.codebook.float()[scale_ids.reshape(scale_ids.shape[0], h, w)]
        codes = rearrange(codes, "b h w d -> b d h w")
        if (h, w) != final:
            codes = F.interpolate(codes, size=final, mode="bicubic")
        return self.phi[self._phi_for_scale[scale_index]](codes)

    def _downsample(self, f: torch.Tensor, scale_index: int) -> torch.Tensor:
        size = self.config.scales[scale_index]
        return f if tuple(f.shape[-2:]) == size else F.interpolate(f, size=size, mode="area")

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.dim() != 4 or tuple(z.shape[-2:]) != self.config.scales[-1] or z.shape[1] != self.dim:
            raise ValueError(
                f"MultiScaleVectorQuantizer expects B x {self.dim} x {self.config.scales[-1][0]} x "
                f"{self.config.scales[-1][1]} latents, got {tuple(z.shape)}"
            )
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            f = z.float()
            f_detached = f.detach()
            rest = f_detached.clone()
            f_hat = torch.zeros_like(f_detached)
            loss = f.new_zeros(())
            ids_per_scale, counts = [], []
            for scale_index in range(self.num_scales):
                flat = rearrange(self._downsample(rest, scale_index), "b d h w -> (b h w) d")
                ids = self._lookup(flat).reshape(z.shape[0], -1)
                contribution = self.scale_residual(scale_index, ids)
                f_hat = f_hat + contribution
                rest = rest - contribution.detach()
                loss = loss + self.config.commitment_weight * F.mse_loss(f_hat.detach(), f)
                loss = loss + self.config.codebook_weight * F.mse_loss(f_hat, f_detached)
                ids_per_scale.append(ids)
                counts.append(id_histogram(ids, self.codebook_size, self.training))
            loss = loss / self.num_scales
            quantized = f_hat.detach() + (f - f.detach())
            counts = torch.stack(counts)
            if self.training:
                with torch.no_grad():
                    self.usage.mul_(self.config.usage_decay).add_(counts, alpha=1 - self.config.usage_decay)
            metrics = usage_metrics(counts.sum(0))
            metrics["residual_mse"] = rest.pow(2).mean()
        return QuantizerOutput(
            quantized=quantized.to(input_dtype), ids=torch.cat(ids_per_scale, dim=1), loss=loss, metrics=metrics
        )

    def split_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Flat ids ``B x L_k`` covering the first ``k`` scales -> ``k`` tensors ``B x h x w``."""
        lengths, total = [], 0
        for length in self.scale_lengths:
            if total + length > ids.shape[1]:
                break
            lengths.append(length)
            total += length
        if total != ids.shape[1]:
            raise ValueError(
                f"{ids.shape[1]} ids do not end on a scale boundary (cumulative lengths "
                f"{np.cumsum(self.scale_lengths).tolist()})"
            )
        chunks = torch.split(ids, lengths, dim=1) if lengths else []
        return [chunk.reshape(ids.shape[0], *self.config.scales[k]) for k, chunk in enumerate(chunks)]

    def add_scale(self, f_hat: torch.Tensor, scale_index: int, scale_ids: torch.Tensor) -> ScaleFeatures:
        """One next-scale step: add scale ``scale_index``'s contribution to ``f_hat`` (not in
        place) and return the next scale's input. For samplers, which produce one scale at a time."""
        f_hat = f_hat + self.scale_residual(scale_index, scale_ids)
        next_index = scale_index + 1
        next_input = self._downsample(f_hat, next_index) if next_index < self.num_scales else None
        return ScaleFeatures(f_hat=f_hat, next_input=next_input, num_scales=next_index)

    def ids_to_scale_features(self, ids: torch.Tensor) -> ScaleFeatures:
        """Flat ids of the first ``k`` scales (``B x sum_{j<=k} h_j w_j``, ``k`` may be 0) ->
        accumulated ``f_hat`` and the input of scale ``k + 1``."""
        final_h, final_w = self.config.scales[-1]
        with torch.autocast(device_type=ids.device.type, enabled=False):
            f_hat = torch.zeros(ids.shape[0], self.dim, final_h, final_w, device=ids.device)
            features = ScaleFeatures(f_hat=f_hat, next_input=self._downsample(f_hat, 0), num_scales=0)
            for scale_index, scale_ids in enumerate(self.split_ids(ids)):
                features = self.add_scale(features.f_hat, scale_index, scale_ids)
        return features

    def teacher_forcing_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """Full flat ids ``B x L`` -> the inputs of scales 2..K for teacher forcing,
        ``B x (L - h_1 w_1) x D`` fp32 channel-last, in token order (VAR's ``idxBl_to_var_input``;
        the first scale's input is the class / start token, which the generator supplies)."""
        if ids.shape[1] != self.seq_len:
            raise ValueError(f"teacher forcing needs all {self.seq_len} ids, got {ids.shape[1]}")
        final_h, final_w = self.config.scales[-1]
        inputs = []
        with torch.autocast(device_type=ids.device.type, enabled=False):
            f_hat = torch.zeros(ids.shape[0], self.dim, final_h, final_w, device=ids.device)
            for scale_index, scale_ids in enumerate(self.split_ids(ids)[:-1]):
                features = self.add_scale(f_hat, scale_index, scale_ids)
                f_hat = features.f_hat
                inputs.append(rearrange(features.next_input, "b d h w -> b (h w) d"))
        if not inputs:
            return torch.zeros(ids.shape[0], 0, self.dim, device=ids.device)
        return torch.cat(inputs, dim=1)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Full flat ids ``B x L`` -> the quantized latent ``B x D x H x W``."""
        if ids.shape[1] != self.seq_len:
            raise ValueError(f"ids_to_codes needs all {self.seq_len} ids, got {ids.shape[1]}")
        return self.ids_to_scale_features(ids).f_hat
