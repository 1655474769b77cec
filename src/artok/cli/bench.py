"""``artok bench``: sampling speed of a generator preset or checkpoint (thin: parse, call
`artok.benchmarking`, print, write JSON)."""

from __future__ import annotations

import argparse

from artok.presets import PRESETS


def _batch_sizes(text: str) -> tuple:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sizes


def _switch(text: str):
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return choices[text]


def add_parser(subparsers) -> str:
    parser = subparsers.add_parser(
        "bench",
        help="measure sampling latency, images/s and memory against the memory and compute roofline",
        description="Time class-conditional sampling of a generator preset (random weights) or a saved checkpoint at "
        "several batch sizes; print a table with the HBM roofline of the configuration and write JSON. Raster "
        "generators are timed with the fast engine and/or the plain sampler. Presets: "
        + ", ".join(f"{name} ({preset.description})" for name, preset in PRESETS.items()),
    )
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="generator shape (default: tiny)")
    parser.add_argument("--checkpoint", help="saved generator folder (overrides --preset)")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 8, 64, 256),
                        help="comma-separated images per batch (default: 1,8,64,256); stops at out-of-memory")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="weights/cache dtype (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--sampler", default="both", choices=("engine", "plain", "both"),
                        help="samplers to time for raster, next-scale and MaskGIT generators: the fast engine, the plain loop, or both (default: both)")
    parser.add_argument("--compile", type=_switch, default="auto", help="engine torch.compile: auto|on|off")
    parser.add_argument("--cuda-graphs", type=_switch, default="auto", help="engine CUDA graphs: auto|on|off")
    parser.add_argument("--attention", default="auto", choices=("auto", "full", "bucketed"),
                        help="engine decode attention (default: bucketed on CUDA, full on CPU)")
    parser.add_argument("--tokens", type=int, help="time only the first N decode steps and extrapolate (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first, incl. compilation (default: 1)")
    parser.add_argument("--cfg-scale", type=float, help="guidance scale (default: the preset's)")
    parser.add_argument("--top-k", type=int, help="top-k (default: the preset's)")
    parser.add_argument("--iterations", type=int, help="masked / MAR iterations (default: the preset's)")
    parser.add_argument("--steps", type=int, help="diffusion / flow steps per token (default: the preset's)")
    parser.add_argument("--bandwidth-gbs", type=float,
                        help="memory bandwidth for the roofline (default: 3350 on CUDA, measured memcpy on CPU)")
    parser.add_argument("--peak-tflops", type=float,
                        help="matmul peak for the compute floor (default: 989 bf16 on an H100, a measured matmul "
                        "elsewhere)")
    parser.add_argument("--no-count", action="store_true",
                        help="skip the counted batch-1 run that gives FLOPs and the compute floor")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and of sampling")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars and no per-row time estimates (the CPU sweep estimate still prints)")
    parser.add_argument("--out", help="JSON output path (default: runs/bench/<preset>-<device>.json); an HTML report "
                        "with plots is written beside it (.html)")
    return "bench"


def run(args) -> int:
    from artok.benchmarking import (
        HEADER,
        BenchConfig,
        describe,
        run_benchmark,
        write_json,
        write_report,
    )

    samplers = ("engine", "plain") if args.sampler == "both" else (args.sampler,)
    config = BenchConfig(
        preset=args.preset, checkpoint=args.checkpoint, batch_sizes=args.batch_sizes, device=args.device,
        dtype=args.dtype, samplers=samplers, compile=args.compile, cuda_graphs=args.cuda_graphs,
        attention=args.attention, tokens=args.tokens, repeats=args.repeats, warmup=args.warmup,
        cfg_scale=args.cfg_scale, top_k=args.top_k, iterations=args.iterations, steps=args.steps,
        bandwidth_gbs=args.bandwidth_gbs, peak_tflops=args.peak_tflops, count_cost=not args.no_count, threads=args.threads,
        seed=args.seed, progress=not args.no_progress,
    )
    printed = []

    def log(line: str) -> None:
        if not printed:
            print(HEADER)
            printed.append(True)
        print(line, flush=True)

    result = run_benchmark(config, log=log)
    print(describe(result))
    name = (args.checkpoint.rstrip("/").split("/")[-1] if args.checkpoint else args.preset)
    path = write_json(result, args.out or f"runs/bench/{name}-{args.device.replace(':', '')}.json")
    report = write_report(result, path.with_suffix(".html"))
    print(f"wrote {path} and {report}")
    return 0
