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

# The one measuring kit every benchmark uses, one concept per module.
from artok.benchmarking.config import (
    DTYPES,  # noqa: F401
    H100_BANDWIDTH_GBS,  # noqa: F401
    H100_PEAK_TFLOPS,  # noqa: F401
    SAMPLERS,  # noqa: F401
    BenchConfig,  # noqa: F401
    BenchResult,  # noqa: F401
    BenchRow,  # noqa: F401
)
from artok.benchmarking.estimates import (
    PROBE_TOKENS,  # noqa: F401
    QUICK_SWEEP_SECONDS,  # noqa: F401
    SLOW_SWEEP_SECONDS,  # noqa: F401
    Batch1Measure,  # noqa: F401
    estimate_call_seconds,  # noqa: F401
    estimate_sweep_seconds,  # noqa: F401
    format_duration,  # noqa: F401
    raster_probe,  # noqa: F401
    sweep_notice,  # noqa: F401
)
from artok.benchmarking.measure import (
    measure_cost,  # noqa: F401
    measure_matmul_tflops,  # noqa: F401
    measure_memcpy_bandwidth,  # noqa: F401
    measure_throughput,  # noqa: F401
)
from artok.benchmarking.memory import (
    MEMORY_SAMPLE_SECONDS,  # noqa: F401
    PeakMemory,  # noqa: F401
    memory_method,  # noqa: F401
)
from artok.benchmarking.report import (
    HEADER,  # noqa: F401
    describe,  # noqa: F401
    format_row,  # noqa: F401
    format_settings,  # noqa: F401
    write_json,  # noqa: F401
    write_report,  # noqa: F401
)
from artok.benchmarking.roofline import (
    floor_images_per_s,  # noqa: F401
    raster_traffic,  # noqa: F401
    raster_traffic_from_config,  # noqa: F401
    roofline_images_per_s,  # noqa: F401
)
from artok.benchmarking.run import run_benchmark  # noqa: F401
