"""The dry-run table of issue 11: parameters and memory per GPU of every published training shape
(`artok.training.dry_run.TRAIN_PRESETS`) at its published global batch on ``--world-size`` GPUs,
under DDP and FSDP2, with and without activation checkpointing.

    python benchmarks/dry_run_table.py --world-size 8 --out runs/bench/dry_run.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from artok.provenance import run_metadata
from artok.training.dry_run import TRAIN_PRESETS, estimate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-size", type=int, default=8)
    parser.add_argument("--presets", default=",".join(TRAIN_PRESETS))
    parser.add_argument("--out", default="runs/bench/dry_run.json")
    args = parser.parse_args(argv)
    rows = []
    for name in args.presets.split(","):
        started = time.perf_counter()
        for mode in ("ddp", "fsdp"):
            for checkpointing in (False, True):
                rows.append(estimate(TRAIN_PRESETS[name], args.world_size, parallel=mode,
                                     activation_checkpointing=checkpointing))
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "meta": run_metadata(seed=0, device="meta")}, indent=2))
    print("| preset | params | per-GPU batch | DDP GiB | DDP+AC GiB | FSDP2 GiB | FSDP2+AC GiB | activations by |")
    print("|---|---|---|---|---|---|---|---|")
    for index in range(0, len(rows), 4):
        ddp, ddp_ac, fsdp, fsdp_ac = rows[index:index + 4]
        print(f"| {ddp['preset']} | {ddp['parameters'] / 1e6:.0f}M | {ddp['per_gpu_batch']} | {ddp['total_gib']:.1f} | "
              f"{ddp_ac['total_gib']:.1f} | {fsdp['total_gib']:.1f} | {fsdp_ac['total_gib']:.1f} | "
              f"{ddp['activations_measured_by']} |")
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    raise SystemExit(main())
