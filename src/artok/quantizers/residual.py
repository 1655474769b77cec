"""Residual vector quantization (RVQ; SoundStream, https://arxiv.org/abs/2107.03312, algorithm 1;
RQ-VAE, https://arxiv.org/abs/2203.01941).

Level ``l`` quantizes what the previous levels left over, ``r_l = x - sum_{k<l} c_k``, with its own
`VectorQuantizer`; the output is ``sum_l c_l``. Quantize-dropout (SoundStream, section 3.3)
trains with a random number of levels so that any prefix of the levels is a usable (coarser)
code.

Gradients: each level's output carries its own straight-through (or rotation-trick) gradient to
its residual, and ``r_l`` keeps an identity path to ``x`` (the codes subtracted are detached), so
every level's commitment loss trains the encoder. Summing ``L`` straight-through outputs would
hand the encoder ``L`` times the gradient of one VQ; the sum's gradient is divided by the number
of active levels so that it equals one VQ's straight-through gradient (forward value unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    channels_first,
    channels_last,
    linear_fp32,
)
from artok.quantizers.vq import VectorQuantizer, VQConfig


@dataclass
class ResidualVQConfig:
    """Configuration of `ResidualVectorQuantizer`.

    Args:
        dim: channel count of the encoder features.
        codebook_size: codes per level.
        num_levels: number of residual levels (``ids`` get this many sub-tokens).
        codebook_dim: size of the shared lookup space (one projection ``dim -> codebook_dim``
            before all levels and one back after; None: no projection).
        l2_normalize: cosine lookup at every level (rarely wanted for residuals, whose norm shrinks).
        commitment_weight, codebook_weight, usage_decay, dead_code_threshold, ema_decay,
        ema_epsilon, kmeans_init, kmeans_iters, rotation_trick: per-level `VQConfig` options.
        quantize_dropout: during training use only the first ``n`` levels, ``n`` drawn uniformly
            from ``[quantize_dropout_min_levels, num_levels]`` once per forward (the same ``n``
            on every rank: it is drawn from a generator seeded by ``dropout_seed`` and the call
            count). Dropped levels get id ``-1``.
            Levels that are skipped get no gradient in that step, so a DDP wrapper needs
            ``find_unused_parameters=True`` (or ``ema_decay`` set, which takes the codebooks out
            of the gradient).
        quantize_dropout_min_levels: the fewest levels kept.
        dropout_seed: seed of the quantize-dropout generator.
    """

    dim: int
    codebook_size: int
    num_levels: int = 4
    codebook_dim: int | None = None
    l2_normalize: bool = False
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    usage_decay: float = 0.99
    dead_code_threshold: float = 0.0
    ema_decay: float | None = None
    ema_epsilon: float = 1e-5
    kmeans_init: bool = False
    kmeans_iters: int = 10
    rotation_trick: bool = False
    quantize_dropout: bool = False
    quantize_dropout_min_levels: int = 1
    dropout_seed: int = 0

    def __post_init__(self) -> None:
        if self.num_levels < 1:
            raise ValueError(f"ResidualVQConfig.num_levels must be >= 1, got {self.num_levels}")
        if not 1 <= self.quantize_dropout_min_levels <= self.num_levels:
            raise ValueError(
                f"quantize_dropout_min_levels must be in [1, num_levels={self.num_levels}], "
                f"got {self.quantize_dropout_min_levels}"
            )
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be positive or None, got {self.codebook_dim}")
        self.level_config()  # validates the shared VQ options

    def level_config(self) -> VQConfig:
        """The `VQConfig` of one level (in the lookup space, no per-level projection)."""
        return VQConfig(
            dim=self.codebook_dim or self.dim,
            codebook_size=self.codebook_size,
            codebook_dim=None,
            l2_normalize=self.l2_normalize,
            commitment_weight=self.commitment_weight,
            codebook_weight=self.codebook_weight,
            usage_decay=self.usage_decay,
            dead_code_threshold=self.dead_code_threshold,
            ema_decay=self.ema_decay,
            ema_epsilon=self.ema_epsilon,
            kmeans_init=self.kmeans_init,
            kmeans_iters=self.kmeans_iters,
            rotation_trick=self.rotation_trick,
        )


class ResidualVectorQuantizer(Quantizer):
    """RVQ: ``z`` ``B x dim x *spatial`` -> ``quantized`` same shape, ``ids`` ``B x *spatial x num_levels``.

    ``loss`` is the sum of the active levels' VQ losses.
    """

    def __init__(self, config: ResidualVQConfig) -> None:
        super().__init__()
        self.config = config
        lookup_dim = config.codebook_dim or config.dim
        self.in_proj = nn.Linear(config.dim, lookup_dim) if config.codebook_dim else nn.Identity()
        self.out_proj = nn.Linear(lookup_dim, config.dim) if config.codebook_dim else nn.Identity()
        self.levels = nn.ModuleList(VectorQuantizer(config.level_config()) for _ in range(config.num_levels))
        self._dropout_calls = 0

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def subtokens(self) -> int:
        return self.config.num_levels

    def _active_levels(self) -> int:
        if not (self.training and self.config.quantize_dropout):
            return self.config.num_levels
        # Same draw on every rank (same seed and call count), so all ranks run the same levels
        # and the levels' all-reduces stay matched.
        generator = torch.Generator().manual_seed(self.config.dropout_seed * 1_000_003 + self._dropout_calls)
        self._dropout_calls += 1
        low, high = self.config.quantize_dropout_min_levels, self.config.num_levels
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            features = linear_fp32(self.in_proj, channels_last(z).float())
            residual = features
            total = torch.zeros_like(features)
            loss = features.new_zeros(())
            ids_per_level, metrics = [], {}
            active = self._active_levels()
            for index, level in enumerate(self.levels):
                if index >= active:
                    ids_per_level.append(torch.full(features.shape[:-1], -1, dtype=torch.int64, device=z.device))
                    continue
                out = level(channels_first(residual))
                level_quantized = channels_last(out.quantized)
                residual = residual - level_quantized.detach()
                total = total + level_quantized
                loss = loss + out.loss
                ids_per_level.append(out.ids)
                metrics[f"perplexity_level{index}"] = out.metrics["perplexity"]
            # Forward value: the sum of codes; gradient: the mean of the levels' estimators.
            total = total.detach() + (total - total.detach()) / active
            quantized = linear_fp32(self.out_proj, total)
            metrics["active_levels"] = torch.tensor(float(active))
            metrics["residual_mse"] = residual.detach().pow(2).mean()
        return QuantizerOutput(
            quantized=channels_first(quantized).to(input_dtype),
            ids=torch.stack(ids_per_level, dim=-1),
            loss=loss,
            metrics=metrics,
        )

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` ``B x *spatial x S`` with ``S <= num_levels`` (a coarse prefix is allowed; id
        ``-1`` marks a dropped level and contributes nothing) -> ``B x dim x *spatial``."""
        if not 1 <= ids.shape[-1] <= self.config.num_levels:
            raise ValueError(f"ids have {ids.shape[-1]} levels, the quantizer has {self.config.num_levels}")
        total = None
        for index in range(ids.shape[-1]):
            level_ids = ids[..., index]
            valid = level_ids >= 0
            codes = self.levels[index].normalized_codebook()[level_ids.clamp_min(0)]
            codes = codes * valid.unsqueeze(-1)
            total = codes if total is None else total + codes
        return channels_first(linear_fp32(self.out_proj, total))
