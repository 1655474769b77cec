"""Finite scalar quantization (FSQ, Mentzer et al., https://arxiv.org/abs/2309.15505).

Each of ``len(levels)`` channels is bounded to a fixed range and rounded to one of ``levels[i]``
values; the codebook is implicit (the grid of all combinations, ``prod(levels)`` codes), so there
is nothing to learn, no auxiliary loss and no dead codes.

Per channel with ``L`` levels (paper, appendix A.1): ``half = (L - 1) (1 + 1e-3) / 2``,
``offset = 0.5`` for even ``L`` (0 for odd), ``shift = atanh(offset / half)``, then
``bounded = tanh(z + shift) * half - offset`` rounds to the ``L`` integers ``-L/2 .. L/2 - 1``
(even ``L``: the range is shifted by half a step, ``shift`` keeps ``z = 0`` at 0) or
``-(L-1)/2 .. (L-1)/2`` (odd ``L``); it is rounded with a straight-through gradient and divided by
``L // 2`` so codes lie in ``[-1, 1]``.

Ids are mixed-radix numbers of the per-channel digits ``digit_i = round(bounded_i) + L_i // 2``
(in ``[0, L_i)``), with channel 0 the least significant digit:
``id = sum_i digit_i * prod_{j<i} L_j``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    channels_first,
    channels_last,
    id_histogram,
    linear_fp32,
    usage_metrics,
)

_BOUND_EPS = 1e-3


@dataclass
class FSQConfig:
    """Configuration of `FiniteScalarQuantizer`.

    Args:
        levels: number of values per quantized channel, e.g. ``(8, 5, 5, 5)`` (1000 codes).
        dim: channel count of the encoder features; when it differs from ``len(levels)`` a linear
            projection maps ``dim -> len(levels)`` before and back after quantization
            (None: ``len(levels)``, no projection).
    """

    levels: tuple[int, ...] = (8, 5, 5, 5)
    dim: int | None = None

    def __post_init__(self) -> None:
        self.levels = tuple(int(level) for level in self.levels)
        if not self.levels or min(self.levels) < 2:
            raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {self.levels}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"FSQ dim must be positive or None, got {self.dim}")
        if math.prod(self.levels) > 2**62:
            raise ValueError(f"FSQ codebook of {math.prod(self.levels)} codes does not fit int64 ids")


class FiniteScalarQuantizer(Quantizer):
    """FSQ: ``z`` ``B x dim x *spatial`` -> ``quantized`` same shape, ``ids`` ``B x *spatial``."""

    def __init__(self, config: FSQConfig) -> None:
        super().__init__()
        self.config = config
        num_channels = len(config.levels)
        dim = config.dim or num_channels
        self._dim = dim
        self.in_proj = nn.Linear(dim, num_channels) if dim != num_channels else nn.Identity()
        self.out_proj = nn.Linear(num_channels, dim) if dim != num_channels else nn.Identity()
        levels = torch.tensor(config.levels, dtype=torch.int64)
        basis = torch.cumprod(torch.tensor((1,) + config.levels[:-1], dtype=torch.int64), dim=0)
        # Derived from the config, so not saved.
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def codebook_size(self) -> int:
        return math.prod(self.config.levels)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """``... x len(levels)`` fp32 -> values in the per-channel open range that rounds to ``L`` integers."""
        levels = self.levels.float()
        half = (levels - 1) * (1 + _BOUND_EPS) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """``... x len(levels)`` fp32 -> codes in ``[-1, 1]`` with a straight-through round."""
        bounded = self.bound(z)
        rounded = bounded.round().detach() + (bounded - bounded.detach())
        return rounded / (self.levels // 2).float()

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``... x len(levels)`` (values on the grid) -> ids ``...`` int64."""
        half_width = self.levels // 2
        digits = (codes * half_width).round().long() + half_width
        return (digits * self.basis).sum(dim=-1)

    def ids_to_digits(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``...`` -> per-channel digits ``... x len(levels)`` in ``[0, levels[i])``."""
        return (ids.long().unsqueeze(-1) // self.basis) % self.levels

    def ids_to_lookup_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``...`` -> codes ``... x len(levels)`` before the output projection (fp32)."""
        half_width = self.levels // 2
        return (self.ids_to_digits(ids) - half_width).float() / half_width.float()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            features = linear_fp32(self.in_proj, channels_last(z).float())
            codes = self.quantize(features)
            ids = self.codes_to_ids(codes.detach())
            quantized = linear_fp32(self.out_proj, codes)
            metrics = usage_metrics(id_histogram(ids, self.codebook_size, self.training)) if self.codebook_size <= 2**20 else {}
        return QuantizerOutput(
            quantized=channels_first(quantized).to(input_dtype),
            ids=ids,
            loss=z.new_zeros((), dtype=torch.float32),
            metrics=metrics,
        )

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return channels_first(linear_fp32(self.out_proj, self.ids_to_lookup_codes(ids)))
