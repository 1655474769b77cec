"""Vector quantization (VQ-VAE, https://arxiv.org/abs/1711.00937) with the improvements that make
large codebooks usable: l2-normalised codes and low-dimensional code lookup (ViT-VQGAN,
https://arxiv.org/abs/2110.04627; LlamaGen, https://arxiv.org/abs/2406.06525), commitment loss,
codebook-usage tracking and dead-code restart (Jukebox, https://arxiv.org/abs/2005.00341).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.quantizers.base import Quantizer, QuantizerOutput, all_reduce_, channels_first, channels_last, is_distributed


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
        codebook_weight: weight of ``||sg(z) - c||^2`` (pulls the code to the encoder).
        usage_decay: decay of the running per-code usage counts.
        dead_code_threshold: a code whose running usage (expected hits per batch) falls below this
            is restarted on a random encoder output of the current batch; 0 disables restarts.
    """

    dim: int
    codebook_size: int
    codebook_dim: int | None = 8
    l2_normalize: bool = True
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    usage_decay: float = 0.99
    dead_code_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 2:
            raise ValueError(f"VQConfig needs dim >= 1 and codebook_size >= 2, got {self.dim}, {self.codebook_size}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be positive or None, got {self.codebook_dim}")
        if not 0.0 <= self.usage_decay < 1.0:
            raise ValueError(f"usage_decay must be in [0, 1), got {self.usage_decay}")


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantizer with a straight-through gradient.

    ``z``: ``B x dim x *spatial`` -> ``quantized`` same shape, ``ids``: ``B x *spatial``.
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

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def normalized_codebook(self) -> torch.Tensor:
        codebook = self.codebook.float()
        return F.normalize(codebook, dim=-1) if self.config.l2_normalize else codebook

    def _lookup(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``N x lookup_dim`` fp32 -> (ids ``N``, codes ``N x lookup_dim``)."""
        codebook = self.normalized_codebook()
        if self.config.l2_normalize:
            ids = (flat @ codebook.t()).argmax(dim=-1)
        else:
            distance = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(-1)
            ids = distance.argmin(dim=-1)
        return ids, codebook[ids]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            features = channels_last(z).float()
            spatial = features.shape[1:-1]
            flat = rearrange(_linear_fp32(self.in_proj, features), "b ... d -> (b ...) d")
            if self.config.l2_normalize:
                flat = F.normalize(flat, dim=-1)
            ids, codes = self._lookup(flat)

            commitment = F.mse_loss(flat, codes.detach())
            codebook_loss = F.mse_loss(codes, flat.detach())
            loss = self.config.commitment_weight * commitment + self.config.codebook_weight * codebook_loss

            # Straight-through estimator: forward uses the code, backward copies the gradient to z.
            quantized = flat + (codes - flat).detach()
            quantized = _linear_fp32(self.out_proj, quantized)
            quantized = quantized.reshape(z.shape[0], *spatial, -1)

            counts = torch.bincount(ids, minlength=self.codebook_size).float()
            all_reduce_(counts)
            if self.training:
                self._update_usage(counts, flat)
            metrics = _usage_metrics(counts)
            metrics["commitment"] = commitment.detach()
        return QuantizerOutput(
            quantized=channels_first(quantized).to(input_dtype),
            ids=ids.reshape(z.shape[0], *spatial),
            loss=loss,
            metrics=metrics,
        )

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
        # rows of rank 0's batch, broadcast, so the codebooks stay identical under DDP).
        choice = torch.randint(0, flat.shape[0], (num_dead,), device=flat.device)
        new_codes = flat[choice].detach().clone()
        if is_distributed():
            torch.distributed.broadcast(new_codes, src=0)
        self.codebook.data[dead] = new_codes.to(self.codebook.dtype)
        self.usage[dead] = self.config.dead_code_threshold * 2  # grace period before the next restart

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return channels_first(_linear_fp32(self.out_proj, self.normalized_codebook()[ids]))


def _linear_fp32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear (or Identity) in fp32 without changing the module's own dtype."""
    if isinstance(layer, nn.Identity):
        return x
    return F.linear(x, layer.weight.float(), None if layer.bias is None else layer.bias.float())


def _usage_metrics(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batch perplexity and used fraction from a histogram of ids."""
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return {"perplexity": entropy.exp(), "batch_usage": (counts > 0).float().mean()}
