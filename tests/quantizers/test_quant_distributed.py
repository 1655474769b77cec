"""Codebook statistics under torch.distributed: two gloo processes on CPU with different data must
end with identical codebooks, and EMA must equal one process on the concatenated batch.

Rank 1 runs in a spawned process; rank 0 runs in the test process itself (it has torch imported
already, which halves the wall time of the test on a 2-core machine).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from artok.quantizers import VectorQuantizer, VQConfig

WORLD_SIZE = 2


def rank_data(rank: int) -> torch.Tensor:
    """Each rank's batch ``B x D x L`` (different per rank)."""
    return torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(100 + rank)) + rank


def ema_vq() -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(VQConfig(4, 8, codebook_dim=None, l2_normalize=False, ema_decay=0.8))


def dead_code_vq() -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(
        VQConfig(4, 8, codebook_dim=None, l2_normalize=False, ema_decay=0.9, dead_code_threshold=0.5, usage_decay=0.0)
    )
    with torch.no_grad():
        vq.codebook[4:] = 1000.0  # never hit on any rank: dead after one step
        vq.ema_embed_sum.copy_(vq.codebook)
    return vq


def kmeans_vq() -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(VQConfig(4, 8, codebook_dim=None, l2_normalize=True, kmeans_init=True))


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
    )
    try:
        data = rank_data(rank)
        results = {}
        vq = ema_vq().train()
        vq(data)
        results["ema"] = vq.codebook.detach().clone()
        results["ema_cluster_size"] = vq.ema_cluster_size.clone()

        vq = dead_code_vq().train()
        torch.manual_seed(1000 + rank)  # different local RNG: only a broadcast keeps the restarts equal
        vq(data)
        results["dead"] = vq.codebook.detach().clone()

        vq = kmeans_vq().train()
        torch.manual_seed(2000 + rank)
        vq(data)
        results["kmeans"] = vq.codebook.detach().clone()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _child(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    worker(rank, init_file, out_dir)


def test_codebook_statistics_are_synchronised(tmp_path):
    args = (str(tmp_path / "init"), str(tmp_path))
    child = mp.get_context("spawn").Process(target=_child, args=(1, *args))
    child.start()
    num_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        worker(0, *args)
    finally:
        torch.set_num_threads(num_threads)
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs across ranks"

    # EMA under DDP == one process on the concatenated global batch.
    single = ema_vq().train()
    single(torch.cat([rank_data(rank) for rank in range(WORLD_SIZE)]))
    torch.testing.assert_close(ranks[0]["ema"], single.codebook.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ranks[0]["ema_cluster_size"], single.ema_cluster_size)

    # Dead codes were restarted onto rank 0's encoder outputs.
    rank0_points = rank_data(0).movedim(1, -1).reshape(-1, 4)
    for code in ranks[0]["dead"][4:]:
        assert (rank0_points - code).norm(dim=-1).min() < 1e-6
