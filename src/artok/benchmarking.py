"""Sampling-speed benchmarks: latency, images/s and peak memory per batch size, with the memory
roofline of the configuration (what `artok bench` and ``benchmarks/*.py`` call; never run inside the
test suite).

Roofline of a raster generator (one decode step per token; CFG doubles the rows of an image):
    weights bytes per step   W = (parameters except the embedding tables) x bytes per weight
    KV bytes per image       K = rows per image x layers x 2 (K and V) x width x bytes
                                 x sum over steps of the slots read (L (L + 1) / 2 for valid-length
                                 reads, L^2 when every step reads the whole static cache)
    time floor per batch     (L x W + batch x K) / bandwidth
For LlamaGen GPT-B in bf16 with CFG this gives W ~ 195 MB, K ~ 2.43 GB, a batch-1 floor of
~15.6 ms per image and a large-batch bound of ~1,380 img/s at 3,350 GB/s (ANCHORS.md). The reported
``roofline_fraction`` is floor / measured time against the valid-length floor for every row (1.0 would
be a bandwidth-bound implementation; a sampler that reads the whole static cache every step, as
`sample_raster` does, is bounded by the full-cache floor, also printed).

Every kind also gets a compute floor and a weight-traffic floor from one counted batch-1 run of its
plain sampler (`measure_cost`): FLOPs of every matmul and attention call (`torch.utils.flop_counter`,
scaled by the batch size: every row does the same work) against the peak matmul rate (989 TFLOP/s
bf16 dense on an H100 SXM; a measured matmul rate elsewhere), and the bytes of every weight read
(each `nn.Linear` call reads its weight once, whatever the batch). The row's floor is the slower of
the memory floor (weights + KV reads for raster; weights for the others, whose KV and activation
traffic is ignored, so their memory floor is optimistic) and the compute floor; ``bound`` says which.

Peak memory (``peak_memory_mb``) is per row: what building the sampler (an engine's KV cache) and
its calls needed beyond what was allocated before, measured by `PeakMemory` (CUDA: the allocator's
peak; CPU: the process's resident memory sampled in a background thread); ``memory_method`` in the
JSON says which. On a CPU a sweep first prints its estimated time, from a measured batch-1 image and
the counted FLOPs at a measured matmul rate, with a quicker command when it is long; with progress
on, every row shows a bar over its calls and, after its first call, its own estimate.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from artok.presets import GeneratorPreset, get_preset

H100_BANDWIDTH_GBS = 3350.0
H100_PEAK_TFLOPS = {torch.bfloat16: 989.4, torch.float16: 989.4, torch.float32: 66.9}  # SXM, dense
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SAMPLERS = ("engine", "plain")


@dataclass
class BenchConfig:
    """Options of `run_benchmark` (the CLI's ``artok bench``).

    Args:
        preset: a name of `artok.presets.PRESETS` (ignored for the shape when ``checkpoint`` is set).
        checkpoint: a saved generator folder to benchmark instead of random weights.
        batch_sizes: images per batch; larger ones are skipped after an out-of-memory error.
        device: torch device.
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        samplers: samplers to time: ``engine`` (`SamplingEngine` for raster, `NextScaleEngine` for
            next-scale, `MaskGITEngine` for MaskGIT) and/or ``plain`` (their plain loops). Other
            generator kinds always use their own loop.
        compile, cuda_graphs, attention: `SamplingEngine` options (``auto`` = the device default).
        tokens: time only the first ``tokens`` decode steps (raster; latency is extrapolated to the
            whole sequence from the per-step time). None: the whole sequence.
        repeats, warmup: timed and untimed runs per measurement (compilation happens in warmup).
        cfg_scale, top_k, iterations, steps: sampler overrides (None: the preset's / checkpoint's
            settings; ``iterations`` for masked kinds, ``steps`` = head / flow steps).
        bandwidth_gbs: memory bandwidth for the roofline; None: 3350 on CUDA (H100), a measured
            memcpy bandwidth on CPU.
        peak_tflops: matmul peak for the compute floor; None: the H100's for its dtype on an H100,
            else a measured large-matmul rate.
        count_cost: count FLOPs and weight bytes with one batch-1 run first (the compute floor).
        threads: torch CPU threads (None: leave as is).
        seed: seed of weights and sampling.
        progress: progress bars (stderr) over the rows and over the calls of a row, and after the
            first call of each row a line with its estimated time.
    """

    preset: str = "tiny"
    checkpoint: str | None = None
    batch_sizes: tuple = (1, 8, 64, 256)
    device: str = "cpu"
    dtype: str = "auto"
    samplers: tuple = SAMPLERS
    compile: bool | str = "auto"
    cuda_graphs: bool | str = "auto"
    attention: str = "auto"
    tokens: int | None = None
    repeats: int = 3
    warmup: int = 1
    cfg_scale: float | None = None
    top_k: int | None = None
    iterations: int | None = None
    steps: int | None = None
    bandwidth_gbs: float | None = None
    peak_tflops: float | None = None
    count_cost: bool = True
    threads: int | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {self.dtype!r}")
        unknown = set(self.samplers) - set(SAMPLERS)
        if unknown or not self.samplers:
            raise ValueError(f"samplers must be a non-empty subset of {SAMPLERS}, got {self.samplers}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be positive, got {self.batch_sizes}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")


@dataclass
class BenchRow:
    """One measurement: a sampler at a batch size."""

    sampler: str
    batch_size: int
    tokens_timed: int
    seconds: float = float("nan")  # mean over repeats, for tokens_timed steps
    ms_per_step: float = float("nan")
    latency_s: float = float("nan")  # a whole batch of images, extrapolated to the full sequence
    images_per_s: float = float("nan")
    peak_memory_mb: float = float("nan")
    roofline_images_per_s: float = float("nan")
    roofline_fraction: float = float("nan")
    bound: str = ""  # which floor the roofline is: "memory" or "compute"
    error: str | None = None


@dataclass
class BenchResult:
    config: dict
    model: dict
    environment: dict
    roofline: dict
    rows: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": self.config, "model": self.model, "environment": self.environment,
                "roofline": self.roofline, "rows": [asdict(row) for row in self.rows]}


# -- roofline --------------------------------------------------------------------------------------
def raster_traffic(generator, dtype: torch.dtype, guided: bool) -> dict:
    """Bytes a raster decode must move: weights per step, KV reads per image (valid / full)."""
    bytes_per = torch.finfo(dtype).bits // 8
    embedding = {id(p) for name, p in generator.named_parameters() if "embedding" in name}
    weights = sum(p.numel() for p in generator.parameters() if id(p) not in embedding) * bytes_per
    config = generator.config
    rows = 2 if guided else 1
    per_slot = rows * config.depth * 2 * config.dim * bytes_per
    length = config.seq_len
    return {"weight_bytes_per_step": weights, "kv_bytes_per_image_valid": per_slot * length * (length + 1) // 2,
            "kv_bytes_per_image_full": per_slot * length * length, "seq_len": length}


def raster_traffic_from_config(config, dtype: torch.dtype, guided: bool) -> dict:
    """`raster_traffic` from a `RasterConfig` alone (LLaMA block arithmetic, no model built): per
    block fused QKV + output projection (4 d^2), SwiGLU (3 d h), two RMSNorm gains; final norm; head."""
    from artok.nn import swiglu_hidden_dim

    bytes_per = torch.finfo(dtype).bits // 8
    dim, hidden = config.dim, config.hidden_dim or swiglu_hidden_dim(config.dim)
    weights = config.depth * (4 * dim * dim + 3 * dim * hidden + 2 * dim) + dim + dim * config.vocab_size
    rows = 2 if guided else 1
    per_slot = rows * config.depth * 2 * dim * bytes_per
    length = config.seq_len
    return {"weight_bytes_per_step": weights * bytes_per, "kv_bytes_per_image_valid": per_slot * length * (length + 1) // 2,
            "kv_bytes_per_image_full": per_slot * length * length, "seq_len": length}


def roofline_images_per_s(traffic: dict, batch_size: int, bandwidth_gbs: float, valid_length: bool = True) -> float:
    """Images/s at the memory-bandwidth floor for ``batch_size`` images per batch."""
    kv = traffic["kv_bytes_per_image_valid" if valid_length else "kv_bytes_per_image_full"]
    seconds = (traffic["seq_len"] * traffic["weight_bytes_per_step"] + batch_size * kv) / (bandwidth_gbs * 1e9)
    return batch_size / seconds


def floor_images_per_s(roofline: dict, batch_size: int) -> tuple[float, str]:
    """(images/s, bound) at the slower of the memory floor and the compute floor for a batch."""
    bandwidth = roofline["bandwidth_gbs"] * 1e9
    if "kv_bytes_per_image_valid" in roofline:
        memory = batch_size / roofline_images_per_s(roofline, batch_size, roofline["bandwidth_gbs"])
    else:
        memory = roofline.get("weight_bytes_per_batch", 0.0) / bandwidth
    compute = batch_size * roofline.get("flops_per_image", 0.0) / (roofline.get("peak_tflops", math.inf) * 1e12)
    seconds = max(memory, compute)
    if seconds <= 0:
        return float("nan"), ""
    return batch_size / seconds, "compute" if compute > memory else "memory"


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


# -- memory ----------------------------------------------------------------------------------------
#: How often the CPU memory sampler reads the process's resident memory.
MEMORY_SAMPLE_SECONDS = 0.001
_STATM = "/proc/self/statm"


def _anonymous_resident_bytes() -> int | None:
    """Resident memory of this process that is not file-backed (``/proc/self/statm``: resident
    minus shared pages), or None where /proc is missing. File-backed pages are left out because a
    first call faults in kernel code pages that are no allocation of the call."""
    try:
        with open(_STATM) as file:
            fields = file.read().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * _page_size()


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def _peak_resident_bytes() -> int:
    """The process's lifetime peak RSS (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


def _release_free_heap() -> None:
    """Hand freed heap pages back to the system (glibc ``malloc_trim``) before a measurement.

    Without it the resident memory at the start already holds what earlier calls freed but malloc
    kept, the measured call reuses that memory, and its peak reads ~0 (measured: tiny preset, batch
    64, 3.0 MB with the trim, 0.02 MB without). No-op where the C library has no ``malloc_trim``."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_method(device: torch.device | str) -> str:
    """What `PeakMemory` measures on ``device`` (written into the results as ``memory_method``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "cuda: torch.cuda.max_memory_allocated above memory_allocated at the start (reset_peak_memory_stats)"
    if _anonymous_resident_bytes() is not None:
        return (f"cpu: anonymous resident memory (/proc/self/statm) sampled every {MEMORY_SAMPLE_SECONDS * 1e3:g} ms "
                "in a background thread, peak minus the value at the start (heap trimmed first); peaks shorter than "
                "a sample can be missed")
    return "cpu: growth of the process's peak RSS (getrusage); a lower bound, 0 when the process peaked earlier"


class PeakMemory:
    """Context manager: the most memory the code inside needed beyond what was allocated when it
    started, in bytes (``peak_bytes``) and MB (``peak_mb``, 2^20 bytes). One measure for every
    benchmark in artok (`run_benchmark`, the tokenizer benchmark), described by `memory_method`.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``, minus the allocation at the
    start. CPU on Linux: a background thread samples the process's anonymous resident memory every
    `MEMORY_SAMPLE_SECONDS` (torch releases the GIL inside ops, so it samples during them); the
    peak minus the value at the start, after trimming the heap. The process's RSS alone (what was
    reported before) is the same for every batch size; torch.profiler's memory events only give
    the net allocation of each op, a peak has to be rebuilt from private records, and starting it
    costs ~1 s per call; a dispatch-mode tracker of tensor outputs misses the buffers ops use
    internally (tiny preset, batch 512: 20.1 MB against 24.5 MB resident). Elsewhere: the growth
    of the lifetime peak RSS (``getrusage``), a lower bound.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.method = memory_method(self.device)
        self.peak_bytes = 0
        self._start = 0
        self._peak = 0
        self._stop = None
        self._thread = None

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif _anonymous_resident_bytes() is not None:
            _release_free_heap()
            self._start = self._peak = _anonymous_resident_bytes()
            self._start_sampler()
        else:
            self._start = _peak_resident_bytes()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _anonymous_resident_bytes() or 0)
        else:
            peak = _peak_resident_bytes()
        self.peak_bytes = max(0, peak - self._start)

    def _start_sampler(self) -> None:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="artok-peak-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            resident = _anonymous_resident_bytes()
            if resident is not None and resident > self._peak:
                self._peak = resident


# -- measurement -----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(error).lower()


@torch.no_grad()
def _plain_raster(generator, labels, config, rng, num_tokens: int) -> torch.Tensor:
    """`sample_raster`'s loop (same functions), stopped after ``num_tokens`` tokens."""
    from artok.sampling.kv_cache import static_kv_cache
    from artok.sampling.loops import (
        decode_one_token,
        guided_labels,
        next_token,
        prefill,
    )

    seq_len = generator.config.seq_len
    rows = guided_labels(generator, labels, config)
    out = torch.empty(labels.shape[0], num_tokens, dtype=torch.long, device=labels.device)
    with static_kv_cache(generator, rows.shape[0]):
        ids = next_token(prefill(generator, rows), 0, seq_len, config, rng)
        out[:, 0] = ids[: labels.shape[0]]
        for step in range(1, num_tokens):
            input_pos = torch.tensor([step], device=labels.device)
            ids = next_token(decode_one_token(generator, ids, input_pos), step, seq_len, config, rng)
            out[:, step] = ids[: labels.shape[0]]
    return out


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


def _load(config: BenchConfig, device: torch.device):
    """(generator, kind, preset-or-None, sampler config)."""
    if config.checkpoint:
        from artok.hub import from_pretrained
        from artok.zoo import sampler_config_for, sampler_kind_for

        generator = from_pretrained(config.checkpoint, device).eval()
        kind = sampler_kind_for(generator)
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
        from artok.sampling.engine import SamplingEngine

        engine = SamplingEngine(generator, batch_size, compile=config.compile, cuda_graphs=config.cuda_graphs,
                                attention=config.attention, guidance=sampler.uses_cfg)
        return lambda: engine.generate(labels, sampler, generator_rng(), tokens)
    if kind in ("next-scale", "maskgit") and sampler_name == "engine":
        from artok.sampling.maskgit_engine import MaskGITEngine
        from artok.sampling.next_scale_engine import NextScaleEngine

        engine_class = NextScaleEngine if kind == "next-scale" else MaskGITEngine
        engine = engine_class(generator, batch_size, compile=config.compile, cuda_graphs=config.cuda_graphs,
                              guidance=sampler.uses_cfg)
        return lambda: engine.sample(labels, sampler, generator_rng())
    if kind == "raster":
        return lambda: _plain_raster(generator, labels, sampler, generator_rng(), tokens)
    from artok.zoo import sample

    return lambda: sample(generator, labels, sampler, generator_rng(), engine=False)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


# -- reporting -------------------------------------------------------------------------------------
HEADER = (f"{'sampler':8s} {'batch':>5s} {'tokens':>6s} {'ms/step':>9s} {'latency s':>10s} {'img/s':>9s} "
          f"{'peak MB':>9s} {'roofline img/s':>15s} {'fraction':>8s} {'bound':>7s}")


def format_row(row: BenchRow) -> str:
    if row.error:
        return f"{row.sampler:8s} {row.batch_size:5d} {row.tokens_timed:6d}  {row.error}"
    return (f"{row.sampler:8s} {row.batch_size:5d} {row.tokens_timed:6d} {row.ms_per_step:9.3f} {row.latency_s:10.4f} "
            f"{row.images_per_s:9.2f} {row.peak_memory_mb:9.2f} {row.roofline_images_per_s:15.1f} "
            f"{row.roofline_fraction:8.4f} {row.bound:>7s}")


def describe(result: BenchResult) -> str:
    """Header lines: the model, the sampler settings and the roofline inputs."""
    model, roofline = result.model, result.roofline
    lines = [f"{model['preset'] or model['checkpoint']} ({model['kind']}, {model['params'] / 1e6:.1f}M params, "
             f"{model['dtype']}) on {result.environment['device']}, torch {result.environment['torch']}, "
             f"{result.environment['threads']} threads",
             f"sampler: {format_settings(model['sampler'])}"]
    if "weight_bytes_per_step" in roofline:
        bandwidth = roofline["bandwidth_gbs"]
        batch1 = (roofline["seq_len"] * roofline["weight_bytes_per_step"] + roofline["kv_bytes_per_image_valid"]) / (bandwidth * 1e9)
        lines.append(
            f"roofline @ {bandwidth:.0f} GB/s ({roofline['bandwidth_source']}): weights {roofline['weight_bytes_per_step'] / 1e6:.0f} MB/step, "
            f"KV {roofline['kv_bytes_per_image_valid'] / 1e9:.3f} GB/image (valid-length; "
            f"{roofline['kv_bytes_per_image_full'] / 1e9:.3f} GB full-cache); batch-1 floor {1e3 * batch1:.1f} ms/image, "
            f"large-batch bound {bandwidth * 1e9 / roofline['kv_bytes_per_image_valid']:.0f} img/s")
    if "flops_per_image" in roofline:
        lines.append(
            f"compute: {roofline['flops_per_image'] / 1e9:.2f} GFLOP/image (matmul + attention, counted) at "
            f"{roofline['peak_tflops']:.1f} TFLOP/s ({roofline['peak_source']}); weights read "
            f"{roofline['weight_bytes_per_batch'] / 1e9:.3f} GB/batch")
    if len(lines) == 2:
        lines.append("roofline: not computed (count_cost off and not a raster generator)")
    if "memory_method" in result.environment:
        lines.append(f"peak MB: the most memory a row needed beyond what was allocated before it; "
                     f"{result.environment['memory_method']}")
    return "\n".join(lines)


def format_settings(settings: dict) -> str:
    """``key: value, key: value`` (a settings dict for people, not Python's repr)."""
    return ", ".join(f"{key}: {value}" for key, value in settings.items())


def write_report(result: BenchResult, path: str | Path) -> Path:
    """An HTML report of a benchmark: the setup, images/s against batch size for every sampler beside
    the roofline, the fraction of the roofline reached, and the table."""
    from artok.evaluation.report import Report

    model = result.model
    report = Report(f"artok bench: {model['preset'] or model['checkpoint']}")
    report.add_text("\n\n".join(describe(result).splitlines()))
    rows = [row for row in result.rows if not row.error]
    samplers = list(dict.fromkeys(row.sampler for row in rows))
    batches = sorted({row.batch_size for row in rows})
    if rows and len(batches) > 1:
        def series(sampler: str, field: str) -> list:
            by_batch = {row.batch_size: getattr(row, field) for row in rows if row.sampler == sampler}
            return [by_batch.get(batch, float("nan")) for batch in batches]

        throughput = {sampler: series(sampler, "images_per_s") for sampler in samplers}
        if not all(math.isnan(row.roofline_images_per_s) for row in rows):
            throughput["roofline"] = series(samplers[0], "roofline_images_per_s")
        report.add_plot((batches, throughput), "images/s against batch size (log-log), with the roofline",
                        xlabel="batch size", ylabel="images / s", logx=True, logy=True)
        report.add_plot((batches, {sampler: series(sampler, "roofline_fraction") for sampler in samplers}),
                        "fraction of the roofline reached", xlabel="batch size", ylabel="fraction", logx=True)
    report.add_metrics_table([{key: value for key, value in asdict(row).items() if value is not None}
                              for row in result.rows], "one row per sampler and batch size")
    report.add_heading("Setup")
    report.add_metrics_table({"model": model, "roofline": result.roofline, "environment": result.environment,
                              "options": result.config})
    return report.save(path)


def write_json(result: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return path
