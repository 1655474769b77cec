"""Up-front time estimates of a sweep, from a measured batch-1 image and counted FLOPs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from artok.benchmarking.config import BenchConfig
from artok.benchmarking.measure import (
    _plain_raster,
    _time_one,
    format_duration,
    measure_cost,
)

# -- estimates -------------------------------------------------------------------------------------
#: A CPU sweep estimated to take longer than this gets a warning with a quicker command.
SLOW_SWEEP_SECONDS = 60.0


#: What the suggested quick command should take.
QUICK_SWEEP_SECONDS = 20.0


def estimate_call_seconds(batch1_seconds: float, flops_per_image: float, tflops: float, batch_size: int,
                          token_fraction: float = 1.0) -> float:
    """Rough seconds of one sampling call at ``batch_size``: the measured batch-1 call plus the
    arithmetic of the other ``batch_size - 1`` images at the measured matmul rate (every image does
    the same work), scaled to the fraction of the sequence that is timed. Optimistic where the
    achieved rate stays below the large-matmul rate it is judged against."""
    extra = (batch_size - 1) * flops_per_image / (tflops * 1e12)
    return token_fraction * (batch1_seconds + extra)


def estimate_sweep_seconds(batch1_seconds: float, flops_per_image: float, tflops: float, batch_sizes,
                           calls_per_row: int, samplers: int, token_fraction: float = 1.0) -> float:
    """`estimate_call_seconds` summed over every batch size, call and sampler of a sweep."""
    per_batch = sum(estimate_call_seconds(batch1_seconds, flops_per_image, tflops, batch, token_fraction)
                    for batch in batch_sizes)
    return samplers * calls_per_row * per_batch


@dataclass
class Batch1Measure:
    """A measured batch-1 image, what a CPU sweep's estimate starts from: its seconds (``source``
    says how they were measured), its FLOPs and the matmul rate the extra images of a batch are
    charged at."""

    seconds: float
    flops: float
    tflops: float
    source: str
    seq_len: int


def sweep_notice(name: str, config: BenchConfig, measure: Batch1Measure, samplers: int, raster: bool,
                 counted_run: bool = False) -> str:
    """One line before a CPU sweep: its estimated time (`estimate_sweep_seconds` from ``measure``,
    plus the counted batch-1 image when it is still to come); when that is over
    `SLOW_SWEEP_SECONDS`, a warning with a command that finishes in about `QUICK_SWEEP_SECONDS`."""
    seq_len = measure.seq_len
    fraction = min(config.tokens or seq_len, seq_len) / seq_len if raster else 1.0
    calls = config.warmup + config.repeats
    rows = samplers * len(config.batch_sizes)
    total = estimate_sweep_seconds(measure.seconds, measure.flops, measure.tflops, config.batch_sizes, calls, samplers,
                                   fraction) + (measure.seconds if counted_run else 0.0)
    basis = (f"from a batch-1 image at {format_duration(measure.seconds)} ({measure.source}) and "
             f"{measure.flops / 1e9:.3g} GFLOP per image at a measured {measure.tflops:.3g} TFLOP/s")
    counted = " and one counted batch-1 image" if counted_run else ""
    if total <= SLOW_SWEEP_SECONDS:
        return f"{name} on cpu: {rows} rows x {calls} calls{counted}, estimated ~{format_duration(total)} ({basis})"
    quick, quick_seconds = _quick_command(measure, calls, samplers, raster, counted_run)
    smaller = " or a smaller preset (--preset tiny)" if config.checkpoint is None and name != "tiny" else ""
    return (f"warning: {name} on cpu: {rows} rows x {calls} calls{counted} will take roughly "
            f"{format_duration(total)} ({basis}); to try it quickly: {quick} (~{format_duration(quick_seconds)})"
            f"{smaller}")


#: Decode steps timed at batch 1 to estimate a raster sweep.
PROBE_TOKENS = 4


def raster_probe(generator, sampler, config: BenchConfig, device, tflops: float) -> Batch1Measure:
    """A batch-1 raster image from `PROBE_TOKENS` decode steps of the plain loop, scaled to the
    sequence: their FLOPs counted once (that call also warms up), their time the best of two. Every
    step costs the same (the loop reads the whole static cache), so this takes a second where the
    whole counted image takes half a minute on a CPU (gpt-b)."""
    seq_len = generator.config.seq_len
    probe = min(PROBE_TOKENS, seq_len)
    labels = torch.zeros(1, dtype=torch.long, device=device)

    def run():
        _plain_raster(generator, labels, sampler, torch.Generator(device).manual_seed(config.seed), probe)

    flops = measure_cost(run, generator)["flops"]
    seconds = min(_time_one(run, device) for _ in range(2))
    scale = seq_len / probe
    return Batch1Measure(seconds * scale, flops * scale, tflops, f"{probe} timed decode steps, scaled to {seq_len}",
                         seq_len)


def _quick_command(measure: Batch1Measure, calls: int, samplers: int, raster: bool,
                   counted_run: bool) -> tuple[str, float]:
    """Options that time batch 1 only (for raster generators the most tokens that still fit
    `QUICK_SWEEP_SECONDS`), with their estimated seconds (``--no-count`` when the counted image
    alone would not fit)."""
    counted = measure.seconds if counted_run else 0.0
    no_count = ""
    if counted > QUICK_SWEEP_SECONDS / 2:
        counted, no_count = 0.0, " --no-count"
    if not raster:
        return f"--batch-sizes 1 --repeats 1 --warmup 0{no_count}", samplers * measure.seconds + counted
    per_token = samplers * calls * measure.seconds / measure.seq_len
    tokens = max(1, min(measure.seq_len, int((QUICK_SWEEP_SECONDS - counted) / per_token)))
    return f"--batch-sizes 1 --tokens {tokens}{no_count}", tokens * per_token + counted
