"""Batches keyed by training step, the same way for streamed and in-memory images.

Both sources read, at step ``s``, exactly ``shard.indices(len(dataset), per_rank_batch, s, seed)``
(`artok.distributed.sharding`): this rank's contiguous slice of the step's global batch, split into
``shard.accumulation`` micro-batches of ``per_rank_batch`` images. So every image is read once per
epoch across all ranks (minus the drop-last remainder), ranks never overlap, and a run resumed at
step ``k`` reads exactly what the uninterrupted run read from step ``k`` on, whatever the workers.

API (what a trainer calls)::

    source = StreamingBatches(open_stream("folder:/data", "train", image_size=256, flip=True),
                              per_rank_batch=32, shard=Shard(rank, world, accumulation), seed=0,
                              workers=8, start_step=resumed_step, device="cuda:0")
    # or InMemoryBatches(load_dataset(...), per_rank_batch=32, shard=..., seed=0, device=...)
    for step in range(start, steps):
        for images, labels in source.micro_batches(step):   # float32 [-1, 1] B x C x H x W, int64 B
            ...
        images, labels = source.batch(step)                 # or: the micro-batches concatenated
    total = sum_across_ranks(source.skipped)                # unreadable files met so far, all ranks
    source.close()                                          # stops the workers (also a context manager)

`StreamingBatches` prefetches with a ``torch.utils.data.DataLoader`` whose batch sampler yields the
micro-batches of step ``start_step``, ``start_step + 1``, ... forever; asking for any other step than
the next one restarts its workers at that step. A micro-batch holding unreadable files is smaller
by that many (possibly empty); ``skipped`` counts them on this rank. The flip of item ``i`` at step
``s`` is `artok.data.stream.flips(seed, epoch(s), i)` in both sources.
"""

from __future__ import annotations

import torch

from artok.data.stream import StreamBatch, collate_samples, flips
from artok.distributed.sharding import Shard, data_position


def sum_across_ranks(count: int) -> int:
    """``count`` summed over every rank when a process group is initialised, else ``count``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return int(count)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor([int(count)], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def _epoch(num_items: int, shard: Shard, per_rank_batch: int, step: int) -> int:
    return data_position(num_items, shard.global_batch(per_rank_batch), step)["epoch"]


class StepSampler:
    """A DataLoader ``batch_sampler``: this rank's micro-batches of every step from ``start_step``
    on, as lists of ``(index, epoch, seed)`` keys for `artok.data.stream.StreamingImages`."""

    def __init__(self, num_items: int, per_rank_batch: int, shard: Shard, seed: int, start_step: int = 0) -> None:
        self.num_items, self.per_rank_batch, self.shard, self.seed = num_items, per_rank_batch, shard, seed
        self.start_step = start_step

    def __iter__(self):
        step = self.start_step
        while True:
            epoch = _epoch(self.num_items, self.shard, self.per_rank_batch, step)
            for micro in self.shard.indices(self.num_items, self.per_rank_batch, step, self.seed):
                yield [(index, epoch, self.seed) for index in micro.tolist()]
            step += 1


def _check_batch(per_rank_batch: int, start_step: int) -> None:
    if isinstance(per_rank_batch, bool) or not isinstance(per_rank_batch, int) or per_rank_batch < 1:
        raise ValueError(f"per_rank_batch must be a positive integer, got {per_rank_batch!r}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")


def _to_device(images: torch.Tensor, labels: torch.Tensor, device, non_blocking: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=non_blocking).to(torch.float32).div_(127.5).sub_(1.0)
    return images, labels.to(device, non_blocking=non_blocking)


def _concatenate(micro: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    if len(micro) == 1:
        return micro[0]
    return torch.cat([images for images, _ in micro]), torch.cat([labels for _, labels in micro])


class StreamingBatches:
    """Step-keyed batches of a `StreamingImages`, decoded by ``workers`` DataLoader processes
    (0 = in this process). See the module docstring for the contract."""

    def __init__(self, dataset, per_rank_batch: int, shard: Shard = Shard(), *, seed: int = 0, workers: int = 2,
                 pin_memory: bool | None = None, start_step: int = 0, device: torch.device | str = "cpu",
                 prefetch_factor: int = 2) -> None:
        _check_batch(per_rank_batch, start_step)
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.dataset, self.per_rank_batch, self.shard, self.seed = dataset, per_rank_batch, shard, seed
        self.workers, self.device, self.prefetch_factor = workers, torch.device(device), prefetch_factor
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.skipped = 0
        self._iterator, self._next_step = None, start_step

    def _restart(self, step: int) -> None:
        self.close()
        sampler = StepSampler(len(self.dataset), self.per_rank_batch, self.shard, self.seed, step)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.workers, collate_fn=collate_samples,
            pin_memory=self.pin_memory, prefetch_factor=self.prefetch_factor if self.workers else None,
        )
        self._iterator, self._next_step = iter(loader), step

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``shard.accumulation`` micro-batches of ``step`` on ``device``."""
        if self._iterator is None or step != self._next_step:
            self._restart(step)
        micro = []
        for _ in range(self.shard.accumulation):
            batch: StreamBatch = next(self._iterator)
            self.skipped += batch.skipped
            micro.append(_to_device(batch.images, batch.labels, self.device, self.pin_memory))
        self._next_step = step + 1
        return micro

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's whole batch of ``step`` (its micro-batches concatenated)."""
        return _concatenate(self.micro_batches(step))

    def close(self) -> None:
        """Stop the workers (a later call to `batch` starts new ones)."""
        if self._iterator is not None and hasattr(self._iterator, "_shutdown_workers"):
            self._iterator._shutdown_workers()
        self._iterator = None

    def __enter__(self) -> StreamingBatches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class InMemoryBatches:
    """The same step-keyed interface over an in-memory `artok.data.ImageDataset`.

    ``skipped`` is always 0: files a loader left out are reported when the dataset is loaded (and
    every rank loads the same ones, so they must not be summed across ranks).
    """

    def __init__(self, dataset, per_rank_batch: int, shard: Shard = Shard(), *, seed: int = 0, flip: bool = False,
                 start_step: int = 0, device: torch.device | str = "cpu") -> None:
        _check_batch(per_rank_batch, start_step)
        self.dataset, self.per_rank_batch, self.shard, self.seed = dataset, per_rank_batch, shard, seed
        self.flip, self.device, self.skipped = flip, torch.device(device), 0

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        epoch = _epoch(len(self.dataset), self.shard, self.per_rank_batch, step)
        micro = []
        for index in self.shard.indices(len(self.dataset), self.per_rank_batch, step, self.seed):
            images = self.dataset.images[index]
            if self.flip:
                mirrored = torch.tensor([flips(self.seed, epoch, i) for i in index.tolist()], dtype=torch.bool)
                images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
            micro.append(_to_device(images, self.dataset.labels[index], self.device, False))
        return micro

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _concatenate(self.micro_batches(step))

    def close(self) -> None:
        pass

    def __enter__(self) -> InMemoryBatches:
        return self

    def __exit__(self, *exc) -> None:
        pass
