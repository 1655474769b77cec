"""Benchmark settings and results (dataclasses) and the peak figures of the reference chip."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

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
