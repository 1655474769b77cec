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
"""

from __future__ import annotations

import json
import math
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

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


# -- measurement -----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(error).lower()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


@torch.no_grad()
def _plain_raster(generator, labels, config, rng, num_tokens: int) -> torch.Tensor:
    """`sample_raster`'s loop (same functions), stopped after ``num_tokens`` tokens."""
    from artok.sampling.kv_cache import static_kv_cache
    from artok.sampling.loops import decode_one_token, guided_labels, next_token, prefill

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


def _timed(run, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def _load(config: BenchConfig, device: torch.device):
    """(generator, kind, preset-or-None, sampler config)."""
    if config.checkpoint:
        from artok.hub import from_pretrained
        from artok.sampling.dispatch import sampler_config_for, sampler_kind_for

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


def run_benchmark(config: BenchConfig, log=print) -> BenchResult:
    """Measure every sampler at every batch size; see `BenchConfig`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available")
    dtype = DTYPES.get(config.dtype) or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    generator, kind, preset, sampler = _load(config, device)
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
    if config.count_cost:
        roofline.update(_compute_roofline(generator, kind, sampler, config, device, dtype))
    model = {"preset": preset.name if preset else None, "checkpoint": config.checkpoint, "kind": kind,
             "params": params, "sampler": asdict(sampler), "dtype": str(dtype).replace("torch.", "")}
    environment = {"torch": torch.__version__, "device": _device_name(device), "python": platform.python_version(),
                   "threads": torch.get_num_threads()}
    result = BenchResult(asdict(config), model, environment, roofline)
    # The engine and the token-prefix timing drive softmax heads; bitwise / dimwise raster heads and
    # the other generator kinds are timed through their own whole-sequence loop.
    categorical = getattr(generator.config, "head", "categorical") == "categorical"
    if kind == "raster" and not categorical:
        kind = "raster-head"
    # The engines: `SamplingEngine` (raster), `NextScaleEngine`, `MaskGITEngine`; categorical heads.
    samplers = config.samplers if kind == "raster" or (kind in ("next-scale", "maskgit") and categorical) else ("plain",)
    for sampler_name in samplers:
        for batch_size in sorted(config.batch_sizes):
            row = _measure(generator, kind, sampler_name, batch_size, sampler, config, device, roofline)
            result.rows.append(row)
            log(format_row(row))
            if row.error:
                break
    return result


def _compute_roofline(generator, kind, sampler, config: BenchConfig, device, dtype) -> dict:
    """FLOPs per image and weight bytes per batch from one counted batch-1 run of the plain sampler,
    and the matmul peak they are judged against."""
    from artok.sampling.dispatch import sample

    labels = torch.zeros(1, dtype=torch.long, device=device)
    # engine=False: the plain loop runs every op through the dispatcher, where the counter sees it
    # (a CUDA graph replay would hide them).
    cost = measure_cost(lambda: sample(generator, labels, sampler, torch.Generator(device).manual_seed(config.seed),
                                       engine=False), generator)
    peak, source = config.peak_tflops, "given"
    if peak is None:
        if device.type == "cuda" and "H100" in torch.cuda.get_device_name(device) and dtype in H100_PEAK_TFLOPS:
            peak, source = H100_PEAK_TFLOPS[dtype], "H100 SXM dense"
        else:
            peak, source = measure_matmul_tflops(device, dtype), "measured matmul"
    return {"flops_per_image": cost["flops"], "weight_bytes_per_batch": cost["weight_bytes"], "peak_tflops": peak,
            "peak_source": source}


def _measure(generator, kind, sampler_name, batch_size, sampler, config: BenchConfig, device, roofline) -> BenchRow:
    labels = torch.arange(batch_size, device=device) % generator.config.num_classes
    seq_len = getattr(generator.config, "seq_len", None) or generator.config.spec.seq_len
    tokens = min(config.tokens or seq_len, seq_len) if kind == "raster" else seq_len
    row = BenchRow(sampler_name, batch_size, tokens)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        if kind == "raster" and sampler_name == "engine":
            from artok.sampling.engine import SamplingEngine

            engine = SamplingEngine(generator, batch_size, compile=config.compile, cuda_graphs=config.cuda_graphs,
                                    attention=config.attention, guidance=sampler.uses_cfg)

            def run():
                engine.generate(labels, sampler, torch.Generator(device).manual_seed(config.seed), tokens)
        elif kind in ("next-scale", "maskgit") and sampler_name == "engine":
            from artok.sampling.maskgit_engine import MaskGITEngine
            from artok.sampling.next_scale_engine import NextScaleEngine

            engine_class = NextScaleEngine if kind == "next-scale" else MaskGITEngine
            engine = engine_class(generator, batch_size, compile=config.compile, cuda_graphs=config.cuda_graphs,
                                  guidance=sampler.uses_cfg)

            def run():
                engine.sample(labels, sampler, torch.Generator(device).manual_seed(config.seed))
        elif kind == "raster":
            def run():
                _plain_raster(generator, labels, sampler, torch.Generator(device).manual_seed(config.seed), tokens)
        else:
            from artok.sampling.dispatch import sample

            def run():
                sample(generator, labels, sampler, torch.Generator(device).manual_seed(config.seed), engine=False)
        row.seconds = _timed(run, device, config.repeats, config.warmup)
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
    row.peak_memory_mb = _peak_memory_mb(device)
    # One reference for every row of a kind: the ideal floor (valid-length KV reads for raster).
    row.roofline_images_per_s, row.bound = floor_images_per_s(roofline, batch_size)
    row.roofline_fraction = row.images_per_s / row.roofline_images_per_s
    return row


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
            f"{row.images_per_s:9.2f} {row.peak_memory_mb:9.0f} {row.roofline_images_per_s:15.1f} "
            f"{row.roofline_fraction:8.4f} {row.bound:>7s}")


def describe(result: BenchResult) -> str:
    """Header lines: the model, the sampler settings and the roofline inputs."""
    model, roofline = result.model, result.roofline
    lines = [f"{model['preset'] or model['checkpoint']} ({model['kind']}, {model['params'] / 1e6:.1f}M params, "
             f"{model['dtype']}) on {result.environment['device']}, torch {result.environment['torch']}, "
             f"{result.environment['threads']} threads",
             f"sampler: {model['sampler']}"]
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
    return "\n".join(lines)


def write_report(result: BenchResult, path: str | Path) -> Path:
    """An HTML report of a benchmark: the setup, images/s against batch size for every sampler beside
    the roofline, the fraction of the roofline reached, and the table."""
    from artok.evaluation.report import Report

    model = result.model
    report = Report(f"artok bench: {model['preset'] or model['checkpoint']}")
    report.add_text(describe(result))
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
    return report.save(path)


def write_json(result: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return path
