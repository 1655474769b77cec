"""Timing and counting: FLOPs and weight bytes of one call, matmul rate, memory bandwidth, timed calls."""

from __future__ import annotations

import math
import sys
import time

import torch
from tqdm.auto import tqdm

from artok.benchmarking.config import BenchConfig
from artok.benchmarking.memory import PeakMemory


def measure_cost(run, generator) -> dict:
    """FLOPs (matmuls and attention, `torch.utils.flop_counter`) and weight bytes read (one read of
    its weight per `nn.Linear` call) by one call of ``run()``."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    # The CPU attention kernel is not in the counter's table (the CUDA ones are); count it alike.
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops}
    weight_bytes = [0]

    def count(module, inputs, output):
        weight_bytes[0] += module.weight.numel() * module.weight.element_size()

    hooks = [m.register_forward_hook(count) for m in generator.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with FlopCounterMode(display=False, custom_mapping=custom) as counter:
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return {"flops": float(counter.get_total_flops()), "weight_bytes": float(weight_bytes[0])}


def measure_matmul_tflops(device: torch.device, dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    """Achieved TFLOP/s of a ``size``-cubed matmul in ``dtype`` (the CPU's compute peak, roughly)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def measure_memcpy_bandwidth(device: torch.device, megabytes: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth (GB/s, read + write) of ``device`` with a ``megabytes`` buffer."""
    source = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)
    target = torch.empty_like(source)
    target.copy_(source)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        target.copy_(source)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


# -- measurement -----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(error).lower()


def _time_one(run, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def _timed(run, device: torch.device, config: BenchConfig, label: str, notify=None) -> float:
    """Mean seconds of ``config.repeats`` timed calls after ``config.warmup`` untimed ones. A bar
    counts the calls, and the first call's time gives the row's estimate (sent to ``notify``) so a
    slow row says up front how long it will take."""
    calls = config.warmup + config.repeats
    times = []
    with tqdm(total=calls, desc=label, unit="call", leave=False, disable=not config.progress, file=sys.stderr) as bar:
        for index in range(calls):
            seconds = _time_one(run, device)
            if index == 0 and notify is not None:
                _write_above_bars(notify, f"{label}: ~{format_duration(seconds)} per call, "
                                          f"~{format_duration(seconds * calls)} for this row")
            if index >= config.warmup:
                times.append(seconds)
            bar.update()
    return sum(times) / len(times)


def _write_above_bars(write, line: str) -> None:
    """Print a line without tearing the progress bars (they are cleared, then redrawn)."""
    with tqdm.external_write_mode():
        write(line)


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """``12 ms``, ``3.4 s``, ``5.2 min`` or ``1.3 h``: a duration at a glance."""
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms" if seconds >= 0.001 else f"{seconds * 1e3:.2f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@torch.no_grad()
def _plain_raster(generator, labels, config, rng, num_tokens: int) -> torch.Tensor:
    """`sample_raster`'s own loop, stopped after ``num_tokens`` tokens."""
    from artok.generators.raster.sample import raster_token_ids

    return raster_token_ids(generator, labels, config, rng, num_tokens)


@torch.no_grad()
def measure_throughput(fn, inputs: list, device: torch.device | str, batch_size: int) -> dict[str, float]:
    """Run ``fn`` on ``inputs[0]`` once (warm-up), then time it over every input.

    Returns ``images_per_s`` (``batch_size * len(inputs) / seconds``) and ``peak_memory_mb``, the
    most memory a timed call needed beyond what was allocated before them (`PeakMemory`, the same
    measure as ``artok bench``; its sampler thread costs the timing next to nothing).
    """
    device = torch.device(device)
    fn(inputs[0])
    _sync(device)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        for item in inputs:
            fn(item)
        _sync(device)
        seconds = time.perf_counter() - start
    return {"images_per_s": batch_size * len(inputs) / max(seconds, 1e-9), "peak_memory_mb": memory.peak_mb}
