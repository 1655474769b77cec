"""`run_benchmark`: load a preset or checkpoint, time every sampler at every batch size."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from artok.benchmarking.config import (
    DTYPES,
    H100_BANDWIDTH_GBS,
    H100_PEAK_TFLOPS,
    BenchConfig,
    BenchResult,
    BenchRow,
)
from artok.benchmarking.estimates import Batch1Measure, raster_probe, sweep_notice
from artok.benchmarking.measure import (
    _is_oom,
    _plain_raster,
    _print_to_stderr,
    _sync,
    _timed,
    _write_above_bars,
    measure_cost,
    measure_matmul_tflops,
    measure_memcpy_bandwidth,
)
from artok.benchmarking.memory import PeakMemory, memory_method
from artok.benchmarking.report import _device_name, format_row
from artok.benchmarking.roofline import floor_images_per_s, raster_traffic
from artok.presets import GeneratorPreset, get_preset


def _load(config: BenchConfig, device: torch.device):
    """(generator, kind, preset-or-None, sampler config)."""
    if config.checkpoint:
        from artok.generators.raster.model import RasterGenerator
        from artok.zoo import (
            from_pretrained,
            kind_of,
            sampler_config_for,
            sampler_kind_for,
        )

        generator = from_pretrained(config.checkpoint, device, role="generator").eval()
        kind = sampler_kind_for(generator)
        if kind == "raster" and type(generator) is not RasterGenerator:  # subclasses (RAR, any-order) too
            kind = kind_of(generator).name  # a registered kind with raster sampling: timed by its own loop
        sampler = sampler_config_for(generator, generator.extra.get("sampling"), _overrides(config, kind))
        return generator, kind, None, sampler
    preset: GeneratorPreset = get_preset(config.preset)
    torch.manual_seed(config.seed)
    generator = preset.build(device)
    return generator, preset.kind, preset, preset.sampler_config(**_overrides(config, preset.kind))


def _overrides(config: BenchConfig, kind: str) -> dict:
    """The sampler fields the bench options set (None: keep the preset's / checkpoint's)."""
    overrides = {"cfg_scale": config.cfg_scale}
    if kind in ("raster", "next-scale", "maskgit"):
        overrides["top_k"] = config.top_k
    if kind in ("maskgit", "mar", "next-x"):
        overrides["iterations"] = config.iterations
    if kind in ("mar", "next-x"):
        overrides["steps"] = config.steps
    return overrides


def run_benchmark(config: BenchConfig, log=print, notify=None) -> BenchResult:
    """Measure every sampler at every batch size; see `BenchConfig`.

    ``log`` gets one table line per row (`format_row`); ``notify`` (default: stderr) gets the
    estimates: one line before a CPU sweep, and with ``config.progress`` one per row after its
    first call."""
    notify = notify or _print_to_stderr
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available")
    dtype = DTYPES.get(config.dtype) or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    generator, kind, preset, sampler = _load(config, device)
    name = preset.name if preset else config.checkpoint
    for parameter in generator.parameters():  # buffers (rotary tables, masks) keep their dtypes
        parameter.data = parameter.data.to(dtype)
    params = sum(p.numel() for p in generator.parameters())
    guided = getattr(sampler, "uses_cfg", False)
    bandwidth = config.bandwidth_gbs
    bandwidth_source = "given"
    if bandwidth is None:
        if device.type == "cuda":
            bandwidth, bandwidth_source = H100_BANDWIDTH_GBS, "H100 HBM3 default"
        else:
            bandwidth, bandwidth_source = measure_memcpy_bandwidth(device), "measured memcpy"
    roofline = {"bandwidth_gbs": bandwidth, "bandwidth_source": bandwidth_source}
    if kind == "raster":  # (a bitwise / dimwise head adds its own per-step work to this floor)
        roofline.update(raster_traffic(generator, dtype, guided))
    timed_kind, samplers = _timed_kind_and_samplers(generator, kind, config)
    raster, cpu = timed_kind == "raster", device.type == "cpu"
    matmul_peak = _peak_tflops(config, device, dtype) if config.count_cost or (cpu and raster) else None
    if cpu:
        _notify_estimate_before_counting(generator, sampler, config, name, len(samplers), raster, matmul_peak, notify)
    if config.count_cost:
        if cpu and config.progress:
            notify(f"{name} on cpu: counting the FLOPs of one batch-1 image (the compute floor) ...")
        floors, counted_seconds = _compute_roofline(generator, sampler, config, device, matmul_peak)
        roofline.update(floors)
        if cpu and not raster:  # no cheap probe for these kinds: the counted image is the measurement
            measure = Batch1Measure(counted_seconds, floors["flops_per_image"], matmul_peak[0],
                                    "the counted image: high by the counter's overhead", _seq_len(generator))
            notify(sweep_notice(name, config, measure, len(samplers), raster))
    model = {"preset": preset.name if preset else None, "checkpoint": config.checkpoint, "kind": kind,
             "params": params, "sampler": asdict(sampler), "dtype": str(dtype).replace("torch.", "")}
    environment = {"torch": torch.__version__, "device": _device_name(device), "python": platform.python_version(),
                   "threads": torch.get_num_threads(), "memory_method": memory_method(device)}
    result = BenchResult(asdict(config), model, environment, roofline)
    batch_sizes = sorted(config.batch_sizes)
    with tqdm(total=len(samplers) * len(batch_sizes), desc=f"bench {name}", unit="row",
              disable=not config.progress, file=sys.stderr) as bar:
        for sampler_name in samplers:
            for batch_size in batch_sizes:
                row = _measure(generator, timed_kind, sampler_name, batch_size, sampler, config, device, roofline,
                               notify if config.progress else None)
                result.rows.append(row)
                _write_above_bars(log, format_row(row))
                bar.update()
                if row.error:
                    break
    return result


def _notify_estimate_before_counting(generator, sampler, config: BenchConfig, name: str, samplers: int, raster: bool,
                                     matmul_peak, notify) -> None:
    """The CPU estimate before anything long runs: for raster generators from `raster_probe` (a
    second's work), so the warning comes before the half-minute counted image of gpt-b; with
    ``--no-count`` on other kinds, a note that only the per-row estimates will come."""
    if raster:
        measure = raster_probe(generator, sampler, config, torch.device("cpu"), matmul_peak[0])
        notify(sweep_notice(name, config, measure, samplers, raster, counted_run=config.count_cost))
    elif not config.count_cost:
        notify(f"{name} on cpu: no estimate of the sweep without the counted batch-1 image (--no-count); "
               "each row prints its own after its first call")


def _timed_kind_and_samplers(generator, kind: str, config: BenchConfig) -> tuple[str, tuple]:
    """How a generator is timed: ``raster-head`` for raster generators with a bitwise / dimwise head
    (their own whole-sequence loop; the engine and the token-prefix timing drive softmax heads),
    and which samplers apply (the engines: `SamplingEngine` for raster, `NextScaleEngine`,
    `MaskGITEngine`, for categorical heads; every other kind has its own loop only)."""
    categorical = getattr(generator.config, "head", "categorical") == "categorical"
    if kind == "raster" and not categorical:
        kind = "raster-head"
    engines = kind == "raster" or (kind in ("next-scale", "maskgit") and categorical)
    return kind, config.samplers if engines else ("plain",)


def _seq_len(generator) -> int:
    return getattr(generator.config, "seq_len", None) or generator.config.spec.seq_len


def _peak_tflops(config: BenchConfig, device, dtype) -> tuple[float, str]:
    """(matmul peak TFLOP/s, where it comes from): given, the H100's table value, or measured."""
    if config.peak_tflops is not None:
        return config.peak_tflops, "given"
    if device.type == "cuda" and "H100" in torch.cuda.get_device_name(device) and dtype in H100_PEAK_TFLOPS:
        return H100_PEAK_TFLOPS[dtype], "H100 SXM dense"
    return measure_matmul_tflops(device, dtype), "measured matmul"


def _compute_roofline(generator, sampler, config: BenchConfig, device, matmul_peak: tuple[float, str]) -> tuple[dict, float]:
    """FLOPs per image and weight bytes per batch from one counted batch-1 run of the plain sampler,
    and the matmul peak they are judged against; with the seconds the counted run took."""
    from artok.zoo import sample

    labels = torch.zeros(1, dtype=torch.long, device=device)
    # engine=False: the plain loop runs every op through the dispatcher, where the counter sees it
    # (a CUDA graph replay would hide them).
    started = time.perf_counter()
    cost = measure_cost(lambda: sample(generator, labels, sampler, torch.Generator(device).manual_seed(config.seed),
                                       engine=False), generator)
    _sync(device)
    counted_seconds = time.perf_counter() - started
    floors = {"flops_per_image": cost["flops"], "weight_bytes_per_batch": cost["weight_bytes"],
              "peak_tflops": matmul_peak[0], "peak_source": matmul_peak[1]}
    return floors, counted_seconds


def _measure(generator, kind, sampler_name, batch_size, sampler, config: BenchConfig, device, roofline,
             notify=None) -> BenchRow:
    """One row: time the sampler at ``batch_size``; its peak memory is what building the sampler
    (an engine's KV cache) and its calls needed beyond what was allocated before (`PeakMemory`)."""
    labels = torch.arange(batch_size, device=device) % generator.config.num_classes
    seq_len = _seq_len(generator)
    tokens = min(config.tokens or seq_len, seq_len) if kind == "raster" else seq_len
    row = BenchRow(sampler_name, batch_size, tokens)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        with PeakMemory(device) as memory:
            run = _sampler_call(generator, kind, sampler_name, batch_size, labels, sampler, config, device, tokens)
            row.seconds = _timed(run, device, config, f"{sampler_name} batch {batch_size}", notify)
            del run  # an engine's buffers are freed before the next row
    except Exception as error:  # noqa: BLE001 - out-of-memory ends the sweep, anything else is a bug
        if not _is_oom(error):
            raise
        row.error = "out of memory"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return row
    row.ms_per_step = 1e3 * row.seconds / tokens
    row.latency_s = row.seconds * seq_len / tokens
    row.images_per_s = batch_size / row.latency_s
    row.peak_memory_mb = memory.peak_mb
    # One reference for every row of a kind: the ideal floor (valid-length KV reads for raster).
    row.roofline_images_per_s, row.bound = floor_images_per_s(roofline, batch_size)
    row.roofline_fraction = row.images_per_s / row.roofline_images_per_s
    return row


def _sampler_call(generator, kind, sampler_name, batch_size, labels, sampler, config: BenchConfig, device, tokens):
    """A no-argument function that samples one batch with the chosen sampler (engines are built here)."""
    def generator_rng():
        return torch.Generator(device).manual_seed(config.seed)

    if kind == "raster" and sampler_name == "engine":
        from artok.generators.raster.engine import SamplingEngine

        engine = SamplingEngine(generator, batch_size, compile=config.compile, cuda_graphs=config.cuda_graphs,
                                attention=config.attention, guidance=sampler.uses_cfg)
        return lambda: engine.generate(labels, sampler, generator_rng(), tokens)
    if kind in ("next-scale", "maskgit") and sampler_name == "engine":
        from artok.generators.maskgit.engine import MaskGITEngine
        from artok.generators.next_scale.engine import NextScaleEngine

        engine_class = NextScaleEngine if kind == "next-scale" else MaskGITEngine
        engine = engine_class(generator, batch_size, compile=config.compile, cuda_graphs=config.cuda_graphs,
                              guidance=sampler.uses_cfg)
        return lambda: engine.sample(labels, sampler, generator_rng())
    if kind == "raster":
        return lambda: _plain_raster(generator, labels, sampler, generator_rng(), tokens)
    from artok.zoo import sample

    return lambda: sample(generator, labels, sampler, generator_rng(), engine=False)
