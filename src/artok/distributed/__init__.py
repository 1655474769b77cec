"""Parallelism applied from outside single-device models (torchtitan style): the process group
from torchrun's environment (`init_distributed`, `distributed_run`), DDP or FSDP2 with optional
per-block activation checkpointing and compile (`parallelize`), and which items each rank reads
(`Shard`)."""

from artok.distributed.env import (
    SINGLE,
    DistributedEnv,
    all_reduce_mean,
    all_reduce_sum_int,
    barrier,
    destroy_distributed,
    distributed_run,
    init_distributed,
    is_distributed,
)
from artok.distributed.parallel import PARALLEL_MODES, ParallelConfig, Parallelized, parallelize
from artok.distributed.sharding import Shard, data_position, global_batch_indices

__all__ = [
    "PARALLEL_MODES", "SINGLE", "DistributedEnv", "ParallelConfig", "Parallelized", "Shard", "all_reduce_mean",
    "all_reduce_sum_int", "barrier", "data_position", "destroy_distributed", "distributed_run", "global_batch_indices",
    "init_distributed", "is_distributed", "parallelize",
]
