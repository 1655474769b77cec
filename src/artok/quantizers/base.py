"""The quantizer contract shared by every method in this folder.

A quantizer maps encoder features ``z`` of shape ``B x D x *spatial`` (channel first, as conv
features come; ``*spatial`` is ``H x W`` for 2D tokenizers and ``L`` for 1D ones) to
``QuantizerOutput``. Quantizer math runs in fp32 whatever the surrounding autocast, so bf16
training does not corrupt nearest-neighbour search or entropy terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    Attributes:
        quantized: ``B x D x *spatial``, same shape and dtype as the input; carries the
            straight-through (or method-specific) gradient back to the encoder.
        ids: ``B x *spatial`` int64 for single-index methods; ``B x *spatial x S`` for methods
            with several indices per position (residual depth, per-channel bins); ``None`` for
            continuous methods.
        loss: scalar auxiliary loss to add to the reconstruction loss (commitment, codebook,
            entropy, KL); already weighted by the quantizer's own weights.
        metrics: scalar tensors for logging (detached), e.g. ``perplexity``, ``usage``.
    """

    quantized: torch.Tensor
    ids: torch.Tensor | None
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Quantizer(nn.Module):
    """Base class: subclasses implement `forward` and, for discrete methods, `ids_to_codes`.

    Class attributes a subclass sets:
        discrete: whether ``ids`` are produced.
        subtokens: indices per position (1 for VQ/FSQ/LFQ).
    """

    discrete: bool = True

    @property
    def dim(self) -> int:
        """Channel count of ``z`` and ``quantized``."""
        raise NotImplementedError

    @property
    def codebook_size(self) -> int | None:
        """Number of values one index can take (per sub-token); None for continuous methods."""
        raise NotImplementedError

    @property
    def subtokens(self) -> int:
        return 1

    def forward(self, z: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Map ``ids`` (``B x *spatial`` or ``B x *spatial x S``) to ``B x D x *spatial`` codes."""
        raise NotImplementedError(f"{type(self).__name__} is continuous and has no ids")


def channels_last(z: torch.Tensor) -> torch.Tensor:
    """``B x D x *spatial`` -> ``B x *spatial x D`` (a view when possible)."""
    return z.movedim(1, -1)


def channels_first(z: torch.Tensor) -> torch.Tensor:
    """``B x *spatial x D`` -> ``B x D x *spatial``."""
    return z.movedim(-1, 1)


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce when torch.distributed is initialised; a no-op otherwise."""
    if is_distributed():
        reduce_op = torch.distributed.ReduceOp.SUM if op in ("sum", "mean") else torch.distributed.ReduceOp.MAX
        torch.distributed.all_reduce(tensor, op=reduce_op)
        if op == "mean":
            tensor /= torch.distributed.get_world_size()
    return tensor


def linear_fp32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply an ``nn.Linear`` (or ``nn.Identity``) in fp32 without changing the module's own dtype."""
    if isinstance(layer, nn.Identity):
        return x
    return torch.nn.functional.linear(x, layer.weight.float(), None if layer.bias is None else layer.bias.float())


def usage_metrics(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batch perplexity and used fraction from a histogram of ids (``counts``: ``codebook_size``)."""
    counts = counts.detach().float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return {"perplexity": entropy.exp(), "batch_usage": (counts > 0).float().mean()}


def id_histogram(ids: torch.Tensor, codebook_size: int, reduce: bool = True) -> torch.Tensor:
    """Counts of each id in ``ids`` (negative ids, e.g. dropped levels, are ignored), all-reduced
    across ranks when torch.distributed is initialised and ``reduce`` (quantizers pass
    ``self.training``: an eval-mode ``encode`` on one rank must never wait on the others)."""
    ids = ids.reshape(-1)
    counts = torch.bincount(ids[ids >= 0], minlength=codebook_size).float()
    return all_reduce_(counts) if reduce else counts
