"""The H100 speed targets of the sampling-engine issue, measured in one go (random weights, bf16, CFG,
the preset shapes of ``artok.presets``):

    target                                             preset    batch   need
    GPT-B latency                                      gpt-b     1       <= 40 ms / image
    GPT-B throughput                                   gpt-b     64      >= 700 img/s
    GPT-L throughput                                   gpt-l     64      >= 350 img/s
    VAR-d16 next-scale throughput                      var-d16   64      >= 500 img/s
    MAR-B masked + diffusion head (64 it., 100 steps)  mar-b     64      >= 20 img/s

Each preset is timed with `artok bench`'s `run_benchmark` (engines: compiled, CUDA graphs, bf16) at
the batch sizes its targets name; ``--batch-sizes 1,8,64,256`` sweeps the issue's full range (each
batch size of a compiled engine is its own compilation, so the sweep is a second call). Rows of
earlier calls in the same folder are kept. Every row has the roofline fraction and its bound. A
failing preset (compile error, out of memory) is recorded and the others still run.

    PYTHONPATH=src python3 benchmarks/gpu_targets.py --out runs/gpu                      # the targets
    PYTHONPATH=src python3 benchmarks/gpu_targets.py --presets gpt-b,gpt-l --batch-sizes 8,256

Writes ``<out>/<preset>.json`` (the bench result) and ``<out>/targets.json`` (pass / fail per target,
merged with what earlier runs in the same folder measured).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

from artok.benchmarking import (
    HEADER,
    BenchConfig,
    describe,
    run_benchmark,
    write_json,
    write_report,
)

# (name, preset, batch size, metric, comparison, threshold)
TARGETS = [
    ("GPT-B batch 1 latency (ms/image)", "gpt-b", 1, "ms_per_image", "<=", 40.0),
    ("GPT-B batch 64 throughput (img/s)", "gpt-b", 64, "images_per_s", ">=", 700.0),
    ("GPT-L batch 64 throughput (img/s)", "gpt-l", 64, "images_per_s", ">=", 350.0),
    ("VAR-d16 batch 64 throughput (img/s)", "var-d16", 64, "images_per_s", ">=", 500.0),
    ("MAR-B batch 64 throughput (img/s)", "mar-b", 64, "images_per_s", ">=", 20.0),
]
PRESETS = ("gpt-b", "gpt-l", "var-d16", "mar-b")


def batch_sizes_for(preset: str, option: str) -> tuple[int, ...]:
    """``targets``: only the batch sizes the targets name for this preset (each batch size of a
    compiled engine costs its own compilation and graphs: minutes for GPT-L); else a list."""
    if option == "targets":
        return tuple(sorted({batch for _, name, batch, *_ in TARGETS if name == preset}))
    return tuple(int(x) for x in option.split(","))


def merge(previous: dict | None, new: dict) -> dict:
    """``new``'s rows over ``previous``'s, per (sampler, batch size): sweeps add to earlier calls."""
    if not previous or "rows" not in previous:
        return new
    rows = {(row["sampler"], row["batch_size"]): row for row in previous["rows"]}
    rows.update({(row["sampler"], row["batch_size"]): row for row in new["rows"]})
    return {**new, "rows": sorted(rows.values(), key=lambda row: (row["sampler"], row["batch_size"]))}


def measure(preset: str, args) -> dict:
    config = BenchConfig(preset=preset, batch_sizes=batch_sizes_for(preset, args.batch_sizes), device=args.device,
                         samplers=("engine",), repeats=args.repeats, warmup=args.warmup)
    print(f"\n== {preset}", flush=True)
    print(HEADER, flush=True)
    start = time.perf_counter()
    result = run_benchmark(config, log=lambda line: print(line, flush=True))
    print(describe(result), flush=True)
    path = write_json(result, Path(args.out) / f"{preset}.json")
    write_report(result, path.with_suffix(".html"))
    print(f"wrote {path} and its .html ({time.perf_counter() - start:.0f} s)", flush=True)
    return result.to_dict()


def judge(results: dict) -> list[dict]:
    verdicts = []
    for name, preset, batch, metric, comparison, threshold in TARGETS:
        entry = {"target": name, "preset": preset, "batch_size": batch, "need": f"{comparison} {threshold:g}"}
        result = results.get(preset)
        row = None
        if isinstance(result, dict) and "rows" in result:
            row = next((r for r in result["rows"] if r["batch_size"] == batch and not r["error"]), None)
        if row is None:
            entry.update(measured=None, passed=False, note=(result or {}).get("error", "not measured"))
        else:
            value = 1e3 * row["latency_s"] / batch if metric == "ms_per_image" else row["images_per_s"]
            passed = value <= threshold if comparison == "<=" else value >= threshold
            entry.update(measured=value, passed=passed, roofline_fraction=row["roofline_fraction"], bound=row["bound"],
                         roofline_images_per_s=row["roofline_images_per_s"], sampler=row["sampler"])
        verdicts.append(entry)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all four)")
    parser.add_argument("--batch-sizes", default="targets",
                        help="'targets' (default: the batch sizes the targets name) or a list such as 1,8,64,256; "
                        "rows of earlier calls in the same --out are kept")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="start no new preset after this many seconds (a device call ends at 600 s)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default="runs/gpu")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_targets.py: CUDA is not available on this machine (these targets are H100 figures)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "targets.json"
    previous = json.loads(summary_path.read_text()).get("results", {}) if summary_path.exists() else {}
    results = dict(previous)
    begin = time.perf_counter()
    for preset in [p for p in args.presets.split(",") if p]:
        if time.perf_counter() - begin > args.budget_s:
            print(f"skipping {preset}: the {args.budget_s:.0f} s budget is spent (run it in another call)", flush=True)
            continue
        try:
            results[preset] = merge(previous.get(preset), measure(preset, args))
        except Exception as error:  # noqa: BLE001 - record it and go on with the other presets
            traceback.print_exc()
            results[preset] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
        verdicts = judge(results)
        summary_path.write_text(json.dumps({"targets": verdicts, "results": results}, indent=2, default=str))
    print("\n== targets")
    for verdict in judge(results):
        measured = "-" if verdict["measured"] is None else f"{verdict['measured']:.1f}"
        fraction = verdict.get("roofline_fraction")
        extra = f"roofline fraction {fraction:.3f} ({verdict['bound']}-bound)" if fraction is not None else verdict.get("note", "")
        print(f"{'PASS' if verdict['passed'] else 'FAIL'}  {verdict['target']:40s} {measured:>9s} (need {verdict['need']})  {extra}")
    print(f"wrote {summary_path}")


if __name__ == "__main__":
    main()
