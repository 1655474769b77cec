"""Which items each rank and micro-step reads: the one place batches are split across processes.

A training step's **global batch** is a function of ``(seed, step)`` only (`global_batch_indices`:
consecutive slices of a per-(seed, epoch) permutation), whatever the world size. Rank ``r`` of ``W``
takes the ``r``-th contiguous slice of it, and gradient-accumulation micro-step ``m`` of ``K`` the
``m``-th slice of that. So one process with batch ``B`` and two processes with ``B / 2`` each (or one
process with ``B / 2`` and ``--grad-accum 2``) read exactly the same images at every step, and a
resumed run reads exactly the batches the uninterrupted one would have read.

Within one epoch no item repeats: the ``num_items mod global_batch`` items at the end of each
epoch's permutation are not read that epoch (different ones every epoch), as with a drop-last
sampler; a global batch larger than the dataset draws with replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def global_batch_indices(num_items: int, global_batch: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the whole (all ranks, all micro-steps) batch of ``step``."""
    per_epoch = max(1, num_items // global_batch)
    epoch, position = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if global_batch >= num_items:
        return torch.randint(0, num_items, (global_batch,), generator=generator)
    order = torch.randperm(num_items, generator=generator)
    return order[position * global_batch : (position + 1) * global_batch]


def data_position(num_items: int, global_batch: int, step: int) -> dict:
    """``{"epoch", "index"}``: where in the epoch's permutation the batch of ``step`` starts."""
    per_epoch = max(1, num_items // global_batch)
    epoch, position = divmod(step, per_epoch)
    return {"epoch": epoch, "index": position * global_batch}


@dataclass(frozen=True)
class Shard:
    """This process's part of every global batch: rank ``rank`` of ``world_size``, split further
    into ``accumulation`` micro-batches."""

    rank: int = 0
    world_size: int = 1
    accumulation: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world_size}")
        if self.accumulation < 1:
            raise ValueError(f"gradient accumulation must be >= 1, got {self.accumulation}")

    def global_batch(self, per_rank_batch: int) -> int:
        """Global batch = per-rank batch x world size x accumulation steps."""
        return per_rank_batch * self.world_size * self.accumulation

    def rank_slice(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch (the global batch divides evenly)."""
        if indices.shape[0] % self.world_size:
            raise ValueError(f"a global batch of {indices.shape[0]} does not split over {self.world_size} ranks")
        size = indices.shape[0] // self.world_size
        return indices[self.rank * size : (self.rank + 1) * size]

    def micro_batches(self, indices: torch.Tensor) -> list[torch.Tensor]:
        """This rank's part split into ``accumulation`` equal micro-batches."""
        local = self.rank_slice(indices)
        if local.shape[0] % self.accumulation:
            raise ValueError(f"a per-rank batch of {local.shape[0]} does not split into {self.accumulation} micro-steps")
        return list(local.chunk(self.accumulation))

    def indices(self, num_items: int, per_rank_batch: int, step: int, seed: int) -> list[torch.Tensor]:
        """The micro-batches this rank reads at ``step``."""
        return self.micro_batches(global_batch_indices(num_items, self.global_batch(per_rank_batch), step, seed))
