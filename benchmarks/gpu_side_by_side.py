"""Issue 15: artok's fast samplers against the peers' own sampling code, side by side in one GPU run,
on the same random weights (each peer's model built from its own code with seeded weights, its
zero-initialised layers re-drawn, and converted with artok's converters), bf16, CFG on, the peers'
default sampling settings:

    part         peer's own code (best mode it offers)                     artok                    goal
    gpt-b-1      LlamaGen generate(), torch.compile reduce-overhead        SamplingEngine           >= 8x, <= 40 ms/img
    gpt-b-64     same, batch 64                                            same                     >= 4x
    gpt-l-64     same, GPT-L, batch 64                                     same                     >= 4x
    var-d16-64   VAR autoregressive_infer_cfg (bf16 autocast, + VAE decode) NextScaleEngine + decode >= 4x
    mar-b-64     MAR sample_tokens, 64 iterations x 100 steps (autocast)   sample_mar, head graphs  >= 8x
    speculative  -                                                         Jacobi W=8 vs its engine  speed-up at equal law
    cuda-tests   ``pytest -m cuda`` on the test files with CUDA tests, in a subprocess with a timeout
    ceilings     measured copy bandwidth (2 GiB copy) and bf16 matmul rate (8192^3): the roofline ceilings

Every row records both sides' seconds per call (median of the timed calls after a warm-up that
includes compilation), images/s, s/image, the ratio (peer seconds / artok seconds), peak memory per
side (`artok.benchmarking.PeakMemory`, i.e. ``torch.cuda.max_memory_allocated`` above the start,
plus the absolute maximum), and the roofline fraction against the measured ceilings (raster: the
weight + valid-length KV bytes floor of `artok.benchmarking.roofline`; VAR / MAR: the slower of the
weight-bytes and FLOP floors counted on one batch-1 call of artok's plain sampler), and one profiled
artok call per row (torch.profiler, device activity: kernels per step, CUDA graph launches, device
busy time over wall time, the top kernels; the report explains each row below its goal from it;
``--no-profile`` skips it). When a peer's
clone is not in ``--peers`` (``benchmarks/prepare_peers.py`` puts them there), its side is skipped
with the reason and artok's side times the preset of the same shape (``artok.presets``).

DIR/results.json is rewritten after EVERY part (a time-out or crash keeps what was measured); a part
that raises is recorded with its one-line error and the next part runs. Parts run in the order of
``--parts``; once ``--budget-s`` seconds have passed the remaining parts are recorded as skipped,
past half the budget each row times one call instead of ``--repeats``, and a side stops timing once
its calls add up to ``--side-cap-s`` (MAR's peer takes seconds per call). DIR/report.html holds
the table and notes.

On the device machine (H200: its python3 has torch, timm and huggingface_hub, and every package
artok imports; artok runs from src/ with PYTHONPATH, so no venv is carried). Prepare peers/ here,
then fire ONE call (the peers' folder is git-ignored, so it travels only when carried; ~3 MiB):

    python benchmarks/prepare_peers.py --llamagen /tmp/LlamaGen --var /tmp/VAR --mar /tmp/mar --out peers
    run(command="set -o pipefail; export PYTHONUNBUFFERED=1 PYTHONPATH=src; python3 benchmarks/gpu_side_by_side.py --out $OUT/gpu --peers peers --budget-s 420 2>&1 | tee $OUT/gpu_log.txt",
        carry=["peers"], timeout_s=595)

A part that starts just before the budget runs to its end (a raster row compiles LlamaGen's model
and artok's engine: minutes), hence 420 s of budget inside a 595 s call; results.json holds every
part finished before a time-out. Parts skipped for the budget can go in a second call right after
(the machine stays warm 30 s): the same command with ``--parts gpt-l-64,speculative`` (say) and
``--out $OUT/gpu2``.

CPU dry run of every code path (tiny shapes, fp32, both sides when peers/ is there):

    .venv/bin/python benchmarks/gpu_side_by_side.py --smoke --out runs/side_by_side_smoke [--peers peers]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import re
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from artok.generators.mar.sample import sample_mar

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent

#: the default order: ceilings first (every roofline uses them), then the rows by value per second of
#: GPU time (each raster row costs two compilations: LlamaGen's and the engine's 8 attention buckets)
PARTS = ("ceilings", "gpt-b-64", "var-d16-64", "mar-b-64", "gpt-b-1", "cuda-tests", "gpt-l-64", "speculative")
#: part -> (metric the issue's table uses, goal on the ratio peer / artok, extra absolute goal)
GOALS = {"gpt-b-1": ("s_per_image", 8.0, ("artok_s_per_image", "<=", 0.040)), "gpt-b-64": ("images_per_s", 4.0, None),
         "gpt-l-64": ("images_per_s", 4.0, None), "var-d16-64": ("images_per_s", 4.0, None),
         "mar-b-64": ("images_per_s", 8.0, None)}
#: the ceilings KINDS.md read on an H200 of this workplace (used only when the ceilings part did not run)
H200_READING = {"bandwidth_gbs": 4300.0, "bf16_tflops": 788.0, "source": "KINDS.md H200 reading (not measured here)"}
LLAMAGEN_SAMPLING = {"cfg_scale": 4.0, "temperature": 1.0, "top_k": 2000, "top_p": 1.0}  # sample_c2i.py defaults
VAR_SAMPLING = {"cfg": 4.0, "top_k": 900, "top_p": 0.95}  # VAR's demo_sample.ipynb
MAR_SAMPLING = {"num_iter": 64, "steps": 100, "cfg": 2.9, "cfg_schedule": "linear", "temperature": 1.0}  # MAR-B


def parity_script(name: str):
    """``benchmarks/<name>.py`` as a module (its builders are reused, not copied; benchmarks/ is no
    package and is not put on sys.path)."""
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def one_line(error: BaseException) -> str:
    return (f"{type(error).__name__}: {error}".splitlines() or [type(error).__name__])[0][:300]


def shapes(smoke: bool) -> dict:
    """Model shapes and settings: the issue's (256 px token grids) or tiny ones for the CPU dry run."""
    if smoke:
        return {"gpt": {"gpt-b": {"dim": 64, "depth": 2, "heads": 4}, "gpt-l": {"dim": 64, "depth": 2, "heads": 4}},
                "grid": 4, "vocab": 64, "classes": 10, "batch": 2,
                "var": {"depth": 2, "ch": 32, "image_size": 64, "patch_nums": (1, 2, 3, 4), "vocab": 64},
                "mar": "tiny", "mar_iterations": 4, "mar_steps": 5, "jacobi_window": 4}
    return {"gpt": {"gpt-b": {"name": "GPT-B"}, "gpt-l": {"name": "GPT-L"}}, "grid": 16, "vocab": 16384,
            "classes": 1000, "batch": 64,
            "var": {"depth": 16, "ch": 160, "image_size": 256, "patch_nums": (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
                    "vocab": 4096},
            "mar": "base", "mar_iterations": MAR_SAMPLING["num_iter"], "mar_steps": MAR_SAMPLING["steps"],
            "jacobi_window": 8}


@contextlib.contextmanager
def peer_code(root: Path):
    """``root`` importable for the duration; afterwards its modules are dropped from ``sys.modules``
    (VAR and MAR both have a top-level ``models`` package)."""
    root = root.resolve()
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = [entry for entry in sys.path if entry != str(root)]
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(str(root)) or name in ("models", "diffusion"):
                del sys.modules[name]


def ensure_timm(peers: Path | None) -> None:
    """timm from the environment, else from the wheel prepare_peers.py downloaded (a pure-Python
    wheel imports from its zip)."""
    try:
        import timm  # noqa: F401
        return
    except ImportError:
        wheels = sorted((peers / "wheels").glob("timm-*.whl")) if peers else []
        if not wheels:
            raise
    sys.path.insert(0, str(wheels[-1]))


class Run:
    """The state of one run: options, device, results (saved after every part), the time budget."""

    def __init__(self, args) -> None:
        self.args = args
        self.smoke = args.smoke
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.float32 if args.smoke else torch.bfloat16
        self.shapes = shapes(args.smoke)
        self.peers = Path(args.peers) if args.peers else None
        self.out = Path(args.out)
        self.begin = time.perf_counter()
        self.results = {"issue": 15, "smoke": args.smoke, "budget_s": args.budget_s, "parts": {},
                        "environment": environment(self.device), "command": " ".join(sys.argv)}

    def elapsed(self) -> float:
        return time.perf_counter() - self.begin

    def repeats(self) -> int:
        return self.args.repeats if self.elapsed() < self.args.budget_s / 2 else 1

    def peer(self, name: str, marker: str) -> tuple[Path | None, str | None]:
        """(the peer's folder, None) or (None, why it is skipped)."""
        if self.peers is None:
            return None, "no --peers folder given"
        folder = self.peers / name
        if not (folder / marker).is_file():
            return None, f"no {folder / marker} (run benchmarks/prepare_peers.py)"
        return folder, None

    def ceilings(self) -> dict:
        measured = self.results["parts"].get("ceilings", {})
        if measured.get("status") == "ok":
            return {"bandwidth_gbs": measured["copy_bandwidth_gbs"], "bf16_tflops": measured["matmul_tflops"],
                    "source": "measured in this run (ceilings part)"}
        if self.cuda:
            return dict(H200_READING)
        return {"bandwidth_gbs": None, "bf16_tflops": None, "source": "no ceilings measured"}

    def autocast(self, dtype: torch.dtype = torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype) if self.cuda else contextlib.nullcontext()

    def rng(self, seed: int = 0) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)

    def save(self) -> None:
        from artok.hub import atomic_write_text

        self.results["elapsed_s"] = self.elapsed()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "results.json", json.dumps(self.results, indent=2, default=str) + "\n")
        write_html(self.results, self.out / "report.html")


def environment(device: torch.device) -> dict:
    import platform

    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), multiprocessors=props.multi_processor_count,
                    memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda)
    return info


def sync(run: Run) -> None:
    if run.cuda:
        torch.cuda.synchronize()


def profile_call(run: Run, call, steps: int) -> dict:
    """One call under torch.profiler: device kernels launched (per step), CUDA graph launches, the
    sum of kernel durations against the wall time (busy fraction; the rest is launch overhead, host
    work and synchronisation), and the kernels that take the most time. On CPU (dry run): the ops."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    # CUDA: device activity only (kernels and runtime calls; no CPU op tree: MAR-B launches ~3e5 kernels)
    activities = [ProfilerActivity.CUDA] if run.cuda else [ProfilerActivity.CPU]
    sync(run)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        call()
        sync(run)
    wall = time.perf_counter() - start
    events = prof.events()
    device = DeviceType.CUDA if run.cuda else DeviceType.CPU
    kernels = [e for e in events if e.device_type == device and (run.cuda or e.cpu_parent is None)]
    per_name: dict[str, list] = {}
    for event in kernels:
        duration = event.time_range.elapsed_us() if run.cuda else event.cpu_time_total
        entry = per_name.setdefault(event.name, [0, 0.0])
        entry[0] += 1
        entry[1] += duration
    busy_us = sum(total for _, total in per_name.values())
    note = "no device kernels recorded (profiler saw none: CUPTI unavailable?)" if run.cuda and not kernels else ""
    top = sorted(per_name.items(), key=lambda item: -item[1][1])[:10]
    return {"wall_s_profiled": wall, "kernels": len(kernels), "kernels_per_step": len(kernels) / max(steps, 1),
            "steps": steps, "graph_launches": sum(1 for e in events if e.name == "cudaGraphLaunch"),
            "kernel_launches_outside_graphs": sum(1 for e in events if e.name == "cudaLaunchKernel"),
            "busy_s": busy_us / 1e6, "busy_fraction": busy_us / 1e6 / max(wall, 1e-9),
            "what": "CUDA kernels (device time)" if run.cuda else "top-level CPU ops (dry run)", "note": note,
            "top": [{"name": name[:120], "count": count, "ms": total / 1e3} for name, (count, total) in top]}


def time_side(run: Run, build, batch: int, profile_steps: int | None = None) -> dict:
    """Build a sampler (``build()`` returns ``(call, warm_call)``), warm it up (compilation, graph
    capture), time ``run.repeats()`` calls; seconds, images/s, peak memory."""
    from artok.benchmarking import PeakMemory

    if run.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    side = {}
    with PeakMemory(run.device) as memory:
        start = time.perf_counter()
        call, warm = build()
        side["build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        (warm or call)()
        sync(run)
        side["warmup_s"] = time.perf_counter() - start
        seconds = []
        for _ in range(run.repeats()):
            start = time.perf_counter()
            call()
            sync(run)
            seconds.append(time.perf_counter() - start)
            if run.elapsed() > run.args.budget_s or sum(seconds) > run.args.side_cap_s:
                break  # keep what was timed (at least one call); the budget check skips the next parts
        if profile_steps and run.args.profile and run.elapsed() < run.args.budget_s * 0.8:
            try:
                side["profile"] = profile_call(run, call, profile_steps)
            except Exception as error:  # noqa: BLE001 - the timing stands without it
                side["profile"] = {"error": one_line(error)}
    median = statistics.median(seconds)
    side.update(seconds=seconds, median_s=median, batch=batch, images_per_s=batch / median, s_per_image=median / batch,
                peak_memory_mb=memory.peak_mb)
    if run.cuda:
        side["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return side


def time_peer(run: Run, make_build, batch: int) -> dict:
    """`time_side` of a peer that runs under autocast: bf16 (the issue's dtype); if that raises on
    CUDA, fp16 (VAR's and MAR's own published setting), with the bf16 error recorded."""
    try:
        side = time_side(run, make_build(torch.bfloat16), batch)
        side["autocast"] = "bfloat16" if run.cuda else "none (CPU dry run)"
        return side
    except Exception as error:
        if not run.cuda:
            raise
        traceback.print_exc()
        side = time_side(run, make_build(torch.float16), batch)
        side.update(autocast="float16", bf16_error=one_line(error))
        return side


def peer_or_preset(part: dict, folder: Path | None, why: str | None, build_peer, build_preset, preset: str):
    """The peer's models (``build_peer()``), or None with ``part["peer"]`` saying why (no clone, or
    its build raised: then artok's side times the preset of the same shape)."""
    if folder is not None:
        try:
            return build_peer()
        except Exception as error:  # noqa: BLE001 - the artok side still runs, on the preset
            traceback.print_exc()
            why = f"building the peer's model failed: {one_line(error)}"
    part["peer"] = {"skipped": why}
    part["weights"] = f"artok preset {preset} (random weights; no peer to convert from)"
    part["artok_model"] = build_preset()
    return None


def floor_or_none(part: dict, function):
    """``(floor, roofline) = function()`` into the part; an error is recorded, the sides stand."""
    try:
        floor, roofline = function()
        part["roofline"] = roofline
        return floor
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        part["roofline"] = {"error": one_line(error)}
        return None


def guarded(part: dict, key: str, function) -> None:
    """``part[key] = function()``, or the one-line error (the other side still runs)."""
    try:
        part[key] = function()
    except Exception as error:  # noqa: BLE001 - recorded; the row's other side and the next parts run
        traceback.print_exc()
        part[key] = {"error": one_line(error)}


def finish_row(run: Run, name: str, part: dict, floor_images_per_s) -> None:
    """Ratio, goal verdict and roofline fractions of a two-sided row."""
    metric, goal, absolute = GOALS.get(name, (None, None, None))
    peer, ours = part.get("peer", {}), part.get("artok", {})
    for side in (peer, ours):
        if "images_per_s" in side and floor_images_per_s:
            side["roofline_fraction"] = side["images_per_s"] / floor_images_per_s
    part["roofline_images_per_s"] = floor_images_per_s
    if "median_s" in peer and "median_s" in ours:
        part["ratio"] = peer["median_s"] / ours["median_s"]  # artok's speed-up, same batch
        part["goal_ratio"] = goal
        passed = goal is None or part["ratio"] >= goal
        if absolute is not None:
            value = ours["s_per_image"]
            part["goal_absolute"] = f"artok s/image {absolute[1]} {absolute[2]}"
            passed = passed and value <= absolute[2]
        part["passed"] = passed
    part["metric"] = metric


# -- parts -----------------------------------------------------------------------------------------
def part_ceilings(run: Run) -> dict:
    from artok.benchmarking import measure_matmul_tflops, measure_memcpy_bandwidth

    megabytes, size, repeats = (64, 256, 3) if run.smoke else (2048, 8192, 10)
    return {"copy_bandwidth_gbs": measure_memcpy_bandwidth(run.device, megabytes=megabytes, repeats=repeats),
            "copy_megabytes": megabytes,
            "matmul_tflops": measure_matmul_tflops(run.device, run.dtype, size=size, repeats=repeats),
            "matmul_size": size, "matmul_dtype": str(run.dtype).replace("torch.", ""),
            "method": "best of repeats, host timer around synchronised calls (measure_memcpy_bandwidth: read + "
                      "write bytes; measure_matmul_tflops: random operands)"}


def build_llamagen(run: Run, folder: Path, preset: str):
    """LlamaGen's GPT of ``preset``'s shape with seeded weights (output layer re-drawn), converted."""
    from artok.convert.llamagen import convert_state_dict

    shape = run.shapes["gpt"][preset]
    with peer_code(folder):
        from autoregressive.models.generate import generate
        from autoregressive.models.gpt import GPT_models, ModelArgs, Transformer

        torch.manual_seed(0)
        common = {"vocab_size": run.shapes["vocab"], "block_size": run.shapes["grid"] ** 2,
                  "num_classes": run.shapes["classes"], "cls_token_num": 1, "model_type": "c2i"}
        if "name" in shape:
            theirs = GPT_models[shape["name"]](**common)
        else:
            theirs = Transformer(ModelArgs(dim=shape["dim"], n_layer=shape["depth"], n_head=shape["heads"], **common))
    theirs.eval()
    torch.nn.init.normal_(theirs.output.weight, std=0.02)  # LlamaGen zero-initialises its output layer
    grid = run.shapes["grid"]
    ours = convert_state_dict(theirs.state_dict(), grid=(grid, grid), num_heads=shape.get("heads"))
    return theirs, ours, generate


def artok_raster(run: Run, preset: str):
    """artok's preset of the same shape (no peer): random weights."""
    from artok.generators import RasterConfig, RasterGenerator
    from artok.presets import get_preset
    from artok.tokens import TokenSpec

    torch.manual_seed(0)
    if not run.smoke:
        return get_preset(preset).build("cpu")
    shape, grid = run.shapes["gpt"][preset], run.shapes["grid"]
    spec = TokenSpec("discrete", "grid", grid=(grid, grid), vocab_size=run.shapes["vocab"])
    return RasterGenerator(RasterConfig(token_spec=spec.to_dict(), num_classes=run.shapes["classes"], dim=shape["dim"],
                                        depth=shape["depth"], num_heads=shape["heads"], dropout=0.0)).eval()


def part_raster(run: Run, name: str, preset: str, batch: int) -> dict:
    from artok.benchmarking import raster_traffic, roofline_images_per_s
    from artok.generators.raster.engine import SamplingEngine
    from artok.sampling.configs import SamplerConfig

    vocab = run.shapes["vocab"]
    top_k = min(LLAMAGEN_SAMPLING["top_k"], vocab)
    labels = (torch.arange(batch) * 7 % run.shapes["classes"]).to(run.device)
    part = {"batch": batch, "sampling": {**LLAMAGEN_SAMPLING, "top_k": top_k}}
    folder, why = run.peer("LlamaGen", "autoregressive/models/gpt.py")
    built = peer_or_preset(part, folder, why, lambda: build_llamagen(run, folder, preset),
                           lambda: artok_raster(run, preset), preset)
    if built is None:
        ours = part.pop("artok_model")
    else:
        theirs, ours, generate = built
        part["weights"] = "LlamaGen's own model, seeded, output layer re-drawn, converted by artok.convert.llamagen"
        theirs = theirs.to(run.device, run.dtype)  # LlamaGen's sample_c2i: model.to(dtype=precision)
        seq_len = ours.config.seq_len

        def build_peer(compiled: bool):
            def build():
                model = torch.compile(theirs, mode="reduce-overhead", fullgraph=True) if compiled else theirs
                call = lambda: generate(model, labels, seq_len, cfg_scale=LLAMAGEN_SAMPLING["cfg_scale"],
                                        temperature=1.0, top_k=top_k, top_p=1.0, sample_logits=True)
                return call, None
            return build

        torch._dynamo.reset()
        try:
            part["peer"] = time_side(run, build_peer(run.cuda), batch)
            part["peer"]["mode"] = "generate() on torch.compile(mode='reduce-overhead', fullgraph=True)" if run.cuda \
                else "generate(), eager (CPU dry run)"
        except Exception as error:  # noqa: BLE001 - their compiled mode failed: time it eagerly, say so
            traceback.print_exc()
            torch._dynamo.reset()
            compile_error = one_line(error)
            guarded(part, "peer", lambda: time_side(run, build_peer(False), batch))
            part["peer"].update(mode="generate(), eager", compile_error=compile_error)
        del theirs
        gc.collect()
    ours = ours.to(run.device)
    config = SamplerConfig(cfg_scale=LLAMAGEN_SAMPLING["cfg_scale"], top_k=top_k)
    torch._dynamo.reset()

    def build_ours():
        engine = SamplingEngine(ours, batch)
        part["artok_engine"] = {"dtype": str(engine.dtype), "compiled": engine.compiled, "cuda_graphs": engine.cuda_graphs,
                                "attention": engine.attention}
        return (lambda: engine.generate(labels, config, run.rng())), None

    guarded(part, "artok", lambda: time_side(run, build_ours, batch, profile_steps=ours.config.seq_len))
    def floor():
        ceilings = run.ceilings()
        if not ceilings["bandwidth_gbs"]:
            return None, {"note": "no ceilings"}
        traffic = raster_traffic(ours, run.dtype, guided=True)
        return (roofline_images_per_s(traffic, batch, ceilings["bandwidth_gbs"]),
                {**traffic, **ceilings, "bound": "memory (weights per step + valid-length KV reads)"})

    finish_row(run, name, part, floor_or_none(part, floor))
    return part


def count_floor(run: Run, cost: dict, batch: int) -> tuple[float | None, dict]:
    """(images/s floor, details) from a counted batch-1 call's weight bytes and FLOPs (`measure_cost`)."""
    from artok.benchmarking import floor_images_per_s

    ceilings = run.ceilings()
    if not ceilings["bandwidth_gbs"]:
        return None, {"note": "no ceilings"}
    roofline = {"bandwidth_gbs": ceilings["bandwidth_gbs"], "peak_tflops": ceilings["bf16_tflops"],
                "weight_bytes_per_batch": cost["weight_bytes"], "flops_per_image": cost["flops"],
                "source": ceilings["source"], "counted": cost.get("counted", "one batch-1 call of artok's plain sampler")}
    floor, bound = floor_images_per_s(roofline, batch)
    roofline["bound"] = bound
    return floor, roofline


def build_var(run: Run, folder: Path):
    """VAR's VQVAE + transformer from its own code, weights re-drawn (parity_var's redraws), converted."""
    parity = parity_script("parity_var")
    import_var, initialisers_kept = parity.import_var, parity.initialisers_kept
    redraw_vae, redraw_var = parity.redraw_vae, parity.redraw_var

    from artok.convert.var import convert_state_dict as convert_var
    from artok.convert.var_vae import convert_state_dict as convert_vae

    shape = run.shapes["var"]
    with peer_code(folder):
        models = import_var(folder)
        with initialisers_kept():
            vae, var = models.build_vae_var(
                device=run.device, patch_nums=shape["patch_nums"], V=shape["vocab"], Cvae=32, ch=shape["ch"],
                share_quant_resi=4, num_classes=run.shapes["classes"], depth=shape["depth"], shared_aln=False,
                attn_l2_norm=True, flash_if_available=run.cuda, fused_if_available=run.cuda)
    vae.eval(), var.eval()
    torch.manual_seed(0)
    images = torch.rand(2, 3, shape["image_size"], shape["image_size"], device=run.device) * 2 - 1
    redraw_vae(vae, images, seed=0)
    redraw_var(var, seed=1)
    cpu = lambda module: {k: v.detach().cpu() for k, v in module.state_dict().items()}
    tokenizer = convert_vae(cpu(vae), shape["image_size"], shape["patch_nums"], source="VAR's seeded VQVAE")
    generator = convert_var(cpu(var), tokenizer)
    return vae, var, tokenizer.eval(), generator


def artok_next_scale(run: Run):
    from dataclasses import asdict

    from artok.generators.next_scale.model import NextScaleConfig, NextScaleGenerator
    from artok.presets import get_preset
    from artok.quantizers.multiscale import MultiScaleVQConfig
    from artok.tokens import TokenSpec

    torch.manual_seed(0)
    if not run.smoke:
        return get_preset("var-d16").build("cpu")
    shape = run.shapes["var"]
    scales = shape["patch_nums"]
    quantizer = MultiScaleVQConfig(dim=32, codebook_size=shape["vocab"], scales=scales)
    spec = TokenSpec("discrete", "scales", scales=tuple((s, s) for s in scales), vocab_size=shape["vocab"])
    return NextScaleGenerator(NextScaleConfig(token_spec=spec.to_dict(), quantizer=asdict(quantizer), dim=64,
                                              depth=shape["depth"], num_heads=2, num_classes=run.shapes["classes"])).eval()


def part_var(run: Run, batch: int) -> dict:
    from artok.generators.next_scale.engine import NextScaleEngine
    from artok.generators.next_scale.sample import sample_next_scale
    from artok.sampling.configs import NextScaleSamplerConfig

    top_k = min(VAR_SAMPLING["top_k"], run.shapes["var"]["vocab"])
    labels = (torch.arange(batch) * 7 % run.shapes["classes"]).to(run.device)
    part = {"batch": batch, "sampling": {**VAR_SAMPLING, "top_k": top_k, "artok_cfg_scale": 1 + VAR_SAMPLING["cfg"],
                                         "cfg_schedule": "linear"}}
    folder, why = run.peer("VAR", "models/var.py")
    tokenizer = None
    built = peer_or_preset(part, folder, why, lambda: build_var(run, folder), lambda: artok_next_scale(run), "var-d16")
    if built is None:
        generator = part.pop("artok_model")
        part["weights"] += "; artok side without VAE decode"
    else:
        vae, var, tokenizer, generator = built
        part["weights"] = "VAR's own VQVAE + VAR (build_vae_var), re-drawn as in parity_var.py, converted by artok.convert"

        def make_build(dtype):
            def call():
                with run.autocast(dtype):
                    var.autoregressive_infer_cfg(batch, labels, g_seed=0, cfg=VAR_SAMPLING["cfg"], top_k=top_k,
                                                 top_p=VAR_SAMPLING["top_p"])
            return lambda: (call, None)

        guarded(part, "peer", lambda: time_peer(run, make_build, batch))
        part["peer"]["mode"] = ("autoregressive_infer_cfg under autocast (VAR's demo: fp16 autocast), "
                                "includes its VAE decode") if run.cuda else "autoregressive_infer_cfg, fp32 (CPU dry run)"
        del vae, var
        gc.collect()
    generator = generator.to(run.device)
    config = NextScaleSamplerConfig(cfg_scale=1.0 + VAR_SAMPLING["cfg"], cfg_schedule="linear", top_k=top_k,
                                    top_p=VAR_SAMPLING["top_p"])
    if tokenizer is not None:
        tokenizer = tokenizer.to(run.device)
    torch._dynamo.reset()

    def build_ours():
        engine = NextScaleEngine(generator, batch)

        def call():
            tokens = engine.sample(labels, config, run.rng())
            if tokenizer is not None:
                with run.autocast():
                    tokenizer.decode(tokens)
        return call, None

    guarded(part, "artok", lambda: time_side(run, build_ours, batch, profile_steps=generator.num_scales))
    if tokenizer is not None and "mode" not in part["artok"]:
        part["artok"]["mode"] = "NextScaleEngine + artok VAE decode (bf16 autocast)"
    def floor():
        from artok.benchmarking import measure_cost

        cost = measure_cost(lambda: sample_next_scale(generator, labels[:1], config, run.rng()), generator)
        cost["weight_bytes"] *= torch.finfo(run.dtype).bits / 8 / next(generator.parameters()).element_size()
        return count_floor(run, cost, batch)  # (counted on the fp32 generator; bytes at the run's dtype)

    finish_row(run, "var-d16-64", part, floor_or_none(part, floor))
    return part


def part_mar(run: Run, batch: int) -> dict:
    from artok.sampling.configs import MARSamplerConfig

    iterations, steps = run.shapes["mar_iterations"], run.shapes["mar_steps"]
    labels = (torch.arange(batch) * 7 % run.shapes["classes"]).to(run.device)
    part = {"batch": batch, "sampling": {**MAR_SAMPLING, "num_iter": iterations, "steps": steps}}
    folder, why = run.peer("mar", "models/mar.py")
    built = peer_or_preset(part, folder, why, lambda: build_mar_pair(run, folder, steps), lambda: artok_mar(run), "mar-b")
    if built is None:
        ours = part.pop("artok_model")
    else:
        model, ours = built
        part["weights"] = "MAR's own model (models/mar.py), every weight perturbed as in parity_mar.py, converted"
        model = model.to(run.device)

        def make_build(dtype):
            def call(num_iter=iterations):
                with run.autocast(dtype):
                    model.sample_tokens(batch, num_iter=num_iter, cfg=MAR_SAMPLING["cfg"], cfg_schedule="linear",
                                        labels=labels, temperature=MAR_SAMPLING["temperature"])
            return lambda: (call, lambda: call(2))  # warm-up: 2 iterations (eager: nothing to compile)

        guarded(part, "peer", lambda: time_peer(run, make_build, batch))
        part["peer"]["mode"] = "sample_tokens under autocast (MAR's engine: torch.cuda.amp.autocast, fp16)" if run.cuda \
            else "sample_tokens, fp32 (CPU dry run)"
        del model
        gc.collect()
    ours = ours.to(run.device)
    for parameter in ours.parameters():  # as artok bench: bf16 weights (buffers keep their dtypes)
        parameter.data = parameter.data.to(run.dtype)
    config = MARSamplerConfig(iterations=iterations, steps=steps, cfg_scale=MAR_SAMPLING["cfg"], cfg_schedule="linear",
                              temperature=MAR_SAMPLING["temperature"], method="ddpm")
    guarded(part, "artok", lambda: time_side(
        run, lambda: ((lambda: sample_mar(ours, labels, config, run.rng())), None), batch,
        profile_steps=iterations * steps))
    if "mode" not in part["artok"]:
        part["artok"]["mode"] = "sample_mar, HeadSampler with one CUDA graph replay per iteration" if run.cuda \
            else "sample_mar (CPU: head graphs off)"
    floor = floor_or_none(part, lambda: count_floor(run, mar_cost(run, ours, labels[:1], config), batch))
    finish_row(run, "mar-b-64", part, floor)
    return part


def build_mar_pair(run: Run, folder: Path, steps: int):
    """MAR's own model (parity_mar's seeded build, its diffusion respaced to ``steps``), converted."""
    from artok.convert.mar import convert_state_dict

    parity = parity_script("parity_mar")
    ensure_timm(run.peers)
    size = parity.SIZES[run.shapes["mar"]]
    real_cuda = torch.Tensor.cuda
    with peer_code(folder):
        mar = parity.import_mar(folder)  # (patches Tensor.cuda for CPU scripts; put back on CUDA)
        if run.cuda:
            torch.Tensor.cuda = real_cuda
        model = parity.build_mar(mar, size, run.shapes["classes"], seed=0)
        model.diffloss.gen_diffusion = parity.mar_diffusion(steps)
    return model, convert_state_dict(model.state_dict(), num_heads=size["heads"], source="MAR's seeded model")


def mar_cost(run: Run, generator, labels: torch.Tensor, config) -> dict:
    """FLOPs and weight bytes of one batch-1 `sample_mar` call at ``config.steps``, counted at 2 and 4
    head steps and extrapolated (both are linear in the steps: the backbone's share is fixed by the
    iterations, the head's is steps x tokens), since counting 64 x 100 head steps op by op takes long."""
    from dataclasses import replace

    from artok.benchmarking import measure_cost

    counted = [measure_cost(lambda s=steps: sample_mar(generator, labels, replace(config, steps=s), run.rng(),
                                                       cuda_graphs=False), generator) for steps in (2, 4)]
    per_step = {key: (counted[1][key] - counted[0][key]) / 2 for key in counted[0]}
    cost = {key: counted[0][key] + (config.steps - 2) * per_step[key] for key in counted[0]}
    cost["counted"] = f"batch-1 sample_mar at 2 and 4 steps, extrapolated linearly to {config.steps}"
    return cost


def artok_mar(run: Run):
    from artok.generators.mar.model import MARConfig, MARGenerator
    from artok.presets import get_preset
    from artok.tokens import TokenSpec

    torch.manual_seed(0)
    if not run.smoke:
        return get_preset("mar-b").build("cpu")
    spec = TokenSpec("continuous", "grid", grid=(4, 4), channels=16)
    return MARGenerator(MARConfig(token_spec=spec.to_dict(), dim=64, encoder_depth=2, decoder_depth=2, num_heads=4,
                                  buffer_size=8, head_width=48, head_depth=2, num_classes=run.shapes["classes"])).eval()


def part_speculative(run: Run) -> dict:
    """Exact Jacobi decoding (training-free, equal law by construction) vs the plain engine, batch 1
    and the row batch: a trained generator from ``--trained`` (an artok folder), else GPT-B's preset
    with random weights (whose near-flat conditionals make acceptance a lower bound)."""
    from artok.generators.raster.engine import SamplingEngine
    from artok.generators.raster.jacobi import jacobi_sample
    from artok.sampling.configs import SamplerConfig

    window = run.shapes["jacobi_window"]
    part = {"window": window, "acceptance": "exact (equal law)"}
    if run.args.trained:
        from artok.zoo import from_pretrained

        target = from_pretrained(run.args.trained, role="generator").eval()
        part["generator"] = f"trained: {run.args.trained}"
    else:
        target = artok_raster(run, "gpt-b")
        part["generator"] = "gpt-b preset, random weights (no --trained folder): acceptance is a lower bound"
    target = target.to(run.device)
    vocab = target.config.vocab_size
    config = SamplerConfig(cfg_scale=LLAMAGEN_SAMPLING["cfg_scale"], top_k=min(LLAMAGEN_SAMPLING["top_k"], vocab))
    rows = {}
    for batch in sorted({1, min(8, run.shapes["batch"])}):
        labels = (torch.arange(batch) % target.config.num_classes).to(run.device)
        torch._dynamo.reset()
        row = {}

        def build_plain(batch=batch, labels=labels):
            engine = SamplingEngine(target, batch)
            return (lambda: engine.generate(labels, config, run.rng())), None

        def build_jacobi(batch=batch, labels=labels, row=row):
            engine = SamplingEngine(target, batch, extra_positions=window + 1)
            stats = {}

            def call():
                out = jacobi_sample(target, labels, config, run.rng(), window=window, engine=engine)
                stats.update(mean_accepted=out.stats.mean_accepted, target_forwards=out.stats.target_forwards)
            row["jacobi_stats"] = stats
            return call, None

        guarded(row, "plain_engine", lambda b=batch: time_side(run, build_plain, b))
        guarded(row, "jacobi", lambda b=batch: time_side(run, build_jacobi, b))
        if "median_s" in row["plain_engine"] and "median_s" in row["jacobi"]:
            row["speedup"] = row["plain_engine"]["median_s"] / row["jacobi"]["median_s"]
        rows[str(batch)] = row
    part["batches"] = rows
    return part


def cuda_test_files() -> list[str]:
    return sorted(str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("test_*.py")
                  if "pytest.mark.cuda" in path.read_text(errors="ignore"))


def part_cuda_tests(run: Run) -> dict:
    import os

    files = cuda_test_files()
    timeout = max(10.0, min(run.args.cuda_tests_timeout, run.args.budget_s - run.elapsed()))
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "-rfEs", *files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="ignore") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        code = None
    lines = [line for line in output.strip().splitlines() if line.strip()]
    counts = [line for line in lines if re.search(r"\d+ (passed|failed|skipped|errors?|deselected)", line)]
    summary = (counts or lines or ["no output"])[-1].strip("= ")
    if code is None:
        summary = f"timed out after {timeout:.0f} s; last line: {summary}"
    return {"files": files, "command": " ".join(command[1:]), "returncode": code, "summary": summary,
            "seconds": time.perf_counter() - start, "output_tail": output[-3000:],
            "cuda_available": torch.cuda.is_available()}


def part_functions(run: Run) -> dict:
    batch = run.shapes["batch"]
    return {"ceilings": lambda: part_ceilings(run),
            "gpt-b-1": lambda: part_raster(run, "gpt-b-1", "gpt-b", 1),
            "gpt-b-64": lambda: part_raster(run, "gpt-b-64", "gpt-b", batch),
            "gpt-l-64": lambda: part_raster(run, "gpt-l-64", "gpt-l", batch),
            "var-d16-64": lambda: part_var(run, batch),
            "mar-b-64": lambda: part_mar(run, batch),
            "speculative": lambda: part_speculative(run),
            "cuda-tests": lambda: part_cuda_tests(run)}


# -- report ----------------------------------------------------------------------------------------
def table_rows(results: dict) -> list[dict]:
    rows = []
    for name in GOALS:
        part = results["parts"].get(name)
        if part is None:
            continue
        metric = GOALS[name][0]
        row = {"workload": name, "status": part.get("status")}
        for side in ("peer", "artok"):
            data = part.get(side) or {}
            row[f"{side} {metric}"] = data.get(metric, data.get("error") or data.get("skipped"))
            row[f"{side} peak MB"] = data.get("peak_memory_mb")
            row[f"{side} roofline fraction"] = data.get("roofline_fraction")
        profile = (part.get("artok") or {}).get("profile") or {}
        row.update(ratio=part.get("ratio"), goal=part.get("goal_ratio"), passed=part.get("passed"),
                   **{"artok kernels/step": profile.get("kernels_per_step"), "artok busy fraction": profile.get("busy_fraction")},
                   note=part.get("error") or part.get("skipped"))
        rows.append(row)
    return rows


def explain(name: str, part: dict) -> str:
    """A profile-based line for a row below its goal: kernels per step, busy fraction, top kernels."""
    ours = part.get("artok") or {}
    profile = ours.get("profile") or {}
    text = f"{name}: ratio {part.get('ratio', float('nan')):.2f} (goal {part.get('goal_ratio')}); artok at " \
           f"{ours.get('roofline_fraction') or float('nan'):.3f} of its roofline."
    if "kernels" in profile:
        top = ", ".join(f"{k['name'][:60]} x{k['count']} ({k['ms']:.1f} ms)" for k in profile["top"][:4])
        text += (f" One profiled call: {profile['kernels']} {profile['what']} ({profile['kernels_per_step']:.0f} per step "
                 f"over {profile['steps']} steps), {profile['graph_launches']} graph launches, device busy "
                 f"{100 * profile['busy_fraction']:.0f}% of the wall time (the rest is launch / host overhead); "
                 f"top: {top}.")
    return text


def write_html(results: dict, path: Path) -> None:
    from artok.evaluation.report import Report

    report = Report("issue 15: artok vs the peers' own code, same weights, one run")
    env = results["environment"]
    report.add_text(f"{env.get('gpu', env['device'])}, torch {env['torch']}; smoke={results['smoke']}; "
                    f"{results.get('elapsed_s', 0):.0f} s of a {results['budget_s']:.0f} s budget. Ratio = peer seconds / "
                    "artok seconds at the same batch (artok's speed-up); roofline fraction = images/s over the floor "
                    "at the measured ceilings.")
    rows = table_rows(results)
    if rows:
        report.add_metrics_table(rows, caption="the issue's table")
    notes = [explain(name, part) for name, part in results["parts"].items() if name in GOALS and part.get("passed") is False]
    if notes:
        report.add_heading("rows below their goal: what the profile says")
        report.add_text("\n\n".join(notes))
    status = [{"part": name, "status": part.get("status"), "seconds": part.get("seconds"),
               "note": part.get("error") or part.get("skipped") or ""} for name, part in results["parts"].items()]
    report.add_heading("parts")
    report.add_metrics_table(status)
    ceilings = results["parts"].get("ceilings", {})
    if ceilings.get("status") == "ok":
        report.add_heading("ceilings")
        report.add_metrics_table({k: v for k, v in ceilings.items() if k not in ("status", "method")},
                                 caption=ceilings.get("method"))
    spec = results["parts"].get("speculative", {})
    if spec.get("status") == "ok":
        report.add_heading("speculative (Jacobi, exact)")
        report.add_metrics_table([{"batch": b, "speedup": r.get("speedup"), **r.get("jacobi_stats", {}),
                                   "plain s": (r.get("plain_engine") or {}).get("median_s"),
                                   "jacobi s": (r.get("jacobi") or {}).get("median_s")}
                                  for b, r in spec.get("batches", {}).items()], caption=spec.get("generator"))
    tests = results["parts"].get("cuda-tests", {})
    if tests.get("status") == "ok":
        report.add_heading("CUDA tests")
        report.add_text(f"{tests['command']}: {tests['summary']} (exit {tests['returncode']})")
    report.save(path)


# -- main ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for results.json and report.html")
    parser.add_argument("--peers", default=None, help="the folder benchmarks/prepare_peers.py filled (peers/)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU, fp32: a dry run of every code path")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, run in this order ({','.join(PARTS)})")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip the remaining parts after this many seconds")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side (1 once half the budget is spent)")
    parser.add_argument("--side-cap-s", type=float, default=20.0,
                        help="stop timing a side once its timed calls add up to this (at least one call)")
    parser.add_argument("--cuda-tests-timeout", type=float, default=150.0)
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the one profiled artok call per row (kernels per step, busy fraction)")
    parser.add_argument("--trained", default=None, help="an artok generator folder for the speculative part")
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts.split(",") if p and p not in PARTS]
    if unknown:
        parser.exit(2, f"gpu_side_by_side.py: unknown parts {unknown}; choose from {','.join(PARTS)}\n")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_side_by_side.py: needs CUDA (no GPU here); --smoke dry-runs it on CPU", file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    run = Run(args)
    functions = part_functions(run)
    for name in [p for p in args.parts.split(",") if p]:
        if run.elapsed() > args.budget_s:
            run.results["parts"][name] = {"status": "skipped", "skipped": f"the {args.budget_s:.0f} s budget was spent"}
            print(f"== {name}: skipped (budget spent)", flush=True)
            run.save()
            continue
        print(f"== {name} (at {run.elapsed():.0f} s)", flush=True)
        start = time.perf_counter()
        try:
            part = {"status": "ok", **functions[name]()}
        except Exception as error:  # noqa: BLE001 - recorded in one line; the next part runs
            traceback.print_exc()
            part = {"status": "error", "error": one_line(error)}
        part["seconds"] = time.perf_counter() - start
        run.results["parts"][name] = part
        run.save()
        torch._dynamo.reset()
        gc.collect()
        if run.cuda:
            torch.cuda.empty_cache()
        print(f"   {summary_line(name, part)}", flush=True)
    print("\n== summary")
    for name, part in run.results["parts"].items():
        print(f"{name:12s} {summary_line(name, part)}")
    print(f"wrote {run.out / 'results.json'} and {run.out / 'report.html'} ({run.elapsed():.0f} s)")
    return 0


def summary_line(name: str, part: dict) -> str:
    if part.get("status") != "ok":
        return f"{part.get('status')}: {part.get('error') or part.get('skipped')} ({part.get('seconds', 0):.0f} s)"
    if name in GOALS:
        metric = GOALS[name][0]
        peer, ours = part.get("peer", {}), part.get("artok", {})
        value = lambda side: f"{side[metric]:.4g}" if metric in side else (side.get("error") or side.get("skipped"))
        ratio = f"ratio {part['ratio']:.2f} (goal {part['goal_ratio']:g}: {'PASS' if part['passed'] else 'FAIL'})" \
            if "ratio" in part else "no ratio"
        fraction = ours.get("roofline_fraction")
        return (f"{metric}: peer {value(peer)} | artok {value(ours)} | {ratio} | artok roofline "
                f"{'-' if fraction is None else f'{fraction:.3f}'} | {part['seconds']:.0f} s")
    if name == "ceilings":
        return f"copy {part['copy_bandwidth_gbs']:.0f} GB/s, matmul {part['matmul_tflops']:.1f} TFLOP/s"
    if name == "cuda-tests":
        return f"{part['summary']} (exit {part['returncode']}, {part['seconds']:.0f} s)"
    if name == "speculative":
        return "; ".join(f"batch {b}: speed-up {r.get('speedup', float('nan')):.2f}, accepted/forward "
                         f"{r.get('jacobi_stats', {}).get('mean_accepted', float('nan')):.2f}"
                         for b, r in part["batches"].items())
    return "ok"


if __name__ == "__main__":
    raise SystemExit(main())
