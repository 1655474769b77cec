"""Physical floors of the preset shapes on an H100, from counted work (no GPU needed).

For every preset (random weights) one batch-1 run of its plain sampler is counted with
`artok.benchmarking.measure_cost` (matmul + attention FLOPs per image, weight bytes read per batch;
device-independent, so a CPU run gives the H100's numbers). Raster presets add their valid-length KV
reads. The floor at batch ``B`` is the slower of ``(weights + B x KV) / 3,350 GB/s`` and
``B x FLOPs / 989 TFLOP/s`` (bf16 dense); it is what `artok bench` divides by for its roofline
fraction, here tabulated for the issue's targets without a GPU.

    python benchmarks/preset_floors.py                      # all four presets (MAR-B takes minutes)
    python benchmarks/preset_floors.py --presets gpt-b --threads 2

Writes ``runs/bench/preset_floors.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from artok.benchmarking import (
    H100_BANDWIDTH_GBS,
    H100_PEAK_TFLOPS,
    floor_images_per_s,
    measure_cost,
    raster_traffic,
)
from artok.presets import get_preset
from artok.zoo import sample

TARGETS = {("gpt-b", 1): "<= 40 ms/image", ("gpt-b", 64): ">= 700 img/s", ("gpt-l", 64): ">= 350 img/s",
           ("var-d16", 64): ">= 500 img/s", ("mar-b", 64): ">= 20 img/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="gpt-b,gpt-l,var-d16,mar-b")
    parser.add_argument("--batch-sizes", default="1,8,64,256")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench/preset_floors.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in args.presets.split(","):
        preset = get_preset(name)
        torch.manual_seed(0)
        generator = preset.build("cpu")  # fp32 on the CPU: FLOPs do not depend on the dtype
        sampler = preset.sampler_config()
        labels = torch.zeros(1, dtype=torch.long)
        start = time.perf_counter()
        cost = measure_cost(lambda: sample(generator, labels, sampler, torch.Generator().manual_seed(0), engine=False), generator)
        roofline = {"bandwidth_gbs": H100_BANDWIDTH_GBS, "peak_tflops": H100_PEAK_TFLOPS[torch.bfloat16],
                    "flops_per_image": cost["flops"], "weight_bytes_per_batch": cost["weight_bytes"] / 2}  # bf16
        if preset.kind == "raster":
            roofline.update(raster_traffic(generator, torch.bfloat16, sampler.uses_cfg))
        rows = []
        for batch in batches:
            images_per_s, bound = floor_images_per_s(roofline, batch)
            rows.append({"batch_size": batch, "floor_images_per_s": images_per_s, "floor_ms_per_image": 1e3 / images_per_s,
                         "bound": bound, "target": TARGETS.get((name, batch))})
        results[name] = {"params": sum(p.numel() for p in generator.parameters()), "sampler": str(sampler),
                         "roofline": roofline, "rows": rows, "count_seconds": time.perf_counter() - start}
        print(f"{name}: {cost['flops'] / 1e9:.1f} GFLOP/image, weights {roofline['weight_bytes_per_batch'] / 1e9:.2f} GB/batch "
              f"(counted in {time.perf_counter() - start:.0f} s)", flush=True)
        for row in rows:
            target = f"  target {row['target']}" if row["target"] else ""
            print(f"  batch {row['batch_size']:4d}: floor {row['floor_images_per_s']:9.1f} img/s "
                  f"({row['floor_ms_per_image']:8.2f} ms/image, {row['bound']}-bound){target}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
