"""Sampling speed of raster generator presets: the fast engine vs the plain sampler, per batch size,
against the memory roofline. Writes ``runs/bench/sampling_speed-<device>.json``.

CPU (a few images, first tokens only):
    python benchmarks/sampling_speed.py --device cpu --presets digits,gpt-b --batch-sizes 1,8 --tokens 16
H100 (the targets: GPT-B batch 1 <= 40 ms/image, batch 64 >= 700 img/s):
    python benchmarks/sampling_speed.py --device cuda --presets gpt-b,gpt-l --batch-sizes 1,8,64,256,512
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from artok.benchmarking import HEADER, BenchConfig, describe, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="digits,gpt-b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,8,64,256")
    parser.add_argument("--tokens", type=int, default=None, help="time only the first N tokens (CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = {}
    for preset in args.presets.split(","):
        config = BenchConfig(preset=preset, device=args.device, tokens=args.tokens, repeats=args.repeats,
                             batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")), attention=args.attention,
                             threads=args.threads)
        print(HEADER)
        result = run_benchmark(config)
        print(describe(result), "\n")
        results[preset] = result.to_dict()
        results[preset]["config"] = asdict(config)
    out = Path(args.out or f"runs/bench/sampling_speed-{args.device.replace(':', '')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
