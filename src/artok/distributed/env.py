"""The process group, read from torchrun's environment, and the few collectives the trainers use.

``init_distributed()`` reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and torchrun's
``MASTER_ADDR``/``MASTER_PORT``), picks ``nccl`` on CUDA and ``gloo`` on CPU, binds each process
to ``cuda:LOCAL_RANK`` on CUDA, and returns a `DistributedEnv`; without torchrun (no
``WORLD_SIZE`` or ``WORLD_SIZE=1``) it returns the one-process environment and starts nothing.
``distributed_run()`` is the context every multi-process command runs in: errors leave it with
the rank in their message (``rank 1: ...``), and the process group is destroyed on the way out,
on success and on error alike.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from artok.distributed.sharding import Shard


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process stands: rank ``rank`` of ``world_size`` on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that shows progress, logs and writes reports and models."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, accumulation: int = 1) -> Shard:
        return Shard(self.rank, self.world_size, accumulation)


SINGLE = DistributedEnv()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${name}={text!r} is not an integer; start artok with torchrun, which sets it") from None


def torchrun_world_size() -> int:
    """``$WORLD_SIZE`` (1 when artok was not started by torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def init_distributed(device: str = "cpu") -> DistributedEnv:
    """Join torchrun's process group (if any) and return where this process stands.

    ``device`` is the user's ``--device``: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per
    process, nccl), ``cpu`` uses gloo. Calling it twice returns the running group's environment.
    """
    world_size = torchrun_world_size()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"$RANK={rank} and $WORLD_SIZE={world_size} do not fit; start artok with torchrun")
    kind = torch.device(device).type
    if world_size == 1:
        return DistributedEnv(device=device)
    if kind == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise ValueError(f"rank {rank}: $LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices "
                             "are visible; use --nproc-per-node <= the GPU count")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    backend = "nccl" if kind == "cuda" else "gloo"
    if not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ValueError(f"${name} is not set; start multi-process runs with torchrun --nproc-per-node N -m artok ...")
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedEnv(rank, world_size, local_rank, device, backend)


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class RankError(RuntimeError):
    """An error raised on one rank, with the rank in its message."""


@contextmanager
def distributed_run(device: str = "cpu"):
    """``with distributed_run(args.device) as env:`` — init, then always destroy the group; an
    error on a rank of a multi-process run carries ``rank R:`` in its (unchanged-type) message."""
    env = init_distributed(device)
    try:
        yield env
    except Exception as error:
        if env.distributed and not str(error).startswith(f"rank {env.rank}:"):
            error.args = (f"rank {env.rank}: {error}", *error.args[1:]) if error.args else (f"rank {env.rank}",)
        raise
    finally:
        destroy_distributed()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over ranks (a copy; the tensor itself when running in one process)."""
    if not is_distributed():
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


def all_reduce_sum_int(value: int, device: str | torch.device = "cpu") -> int:
    """``value`` summed over ranks (e.g. skipped files)."""
    if not is_distributed():
        return int(value)
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return int(tensor.item())


def all_gather_objects(value) -> list:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` in one process."""
    if not is_distributed():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value, source: int = 0):
    """Rank ``source``'s ``value`` on every rank."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()
