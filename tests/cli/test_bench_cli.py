"""``artok bench``: help text, a tiny CPU run (well under 3 s), roofline arithmetic, errors."""

import json

import pytest
import torch

from artok.benchmarking import (
    Batch1Measure,
    BenchConfig,
    PeakMemory,
    estimate_call_seconds,
    floor_images_per_s,
    measure_cost,
    raster_traffic,
    raster_traffic_from_config,
    roofline_images_per_s,
    run_benchmark,
    sweep_notice,
)
from artok.cli.main import main
from artok.generators import RasterConfig
from artok.presets import PRESETS, get_preset


def test_bench_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: artok bench" in out and "gpt-b" in out and "--bandwidth-gbs" in out


def test_tiny_bench_run_writes_json(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "bench.json"
    try:
        code = main(["bench", "--preset", "tiny", "--batch-sizes", "1,2", "--tokens", "4", "--repeats", "1",
                     "--warmup", "0", "--bandwidth-gbs", "10", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    printed = capsys.readouterr().out
    assert "ms/step" in printed and "roofline @ 10 GB/s" in printed
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["sampler"], r["batch_size"]) for r in rows] == [("engine", 1), ("engine", 2), ("plain", 1), ("plain", 2)]
    assert all(r["images_per_s"] > 0 and r["tokens_timed"] == 4 and r["error"] is None for r in rows)
    assert result["model"]["params"] > 0 and result["roofline"]["weight_bytes_per_step"] > 0
    assert result["roofline"]["flops_per_image"] > 0 and all(r["bound"] in ("memory", "compute") for r in rows)
    report = (tmp_path / "bench.html").read_text()  # the HTML report beside the JSON: plots and the table
    assert report.count("data:image/png;base64,") == 2 and "images/s against batch size" in report
    assert result["environment"]["memory_method"].startswith("cpu: ")
    assert "sampler: temperature: 1.0, top_k: 16" in printed  # settings for people, not a Python dict
    assert "{'temperature'" not in printed and "{&#x27;temperature" not in report
    assert '<div class="table-scroll"><table class="metrics">' in report  # wide tables scroll in their box
    assert 'peak_<wbr>memory_mb <span class="unit">(MB)</span>' in report


def test_bench_shows_progress_and_estimates_on_stderr(tmp_path, capsys):
    """Before the sweep one estimate line (CPU); after the first call of each row its own
    estimate; progress bars on stderr. --no-progress keeps only the up-front estimate."""
    threads = torch.get_num_threads()
    options = ["bench", "--preset", "tiny", "--batch-sizes", "1,2", "--tokens", "4", "--repeats", "1", "--threads", "1",
               "--sampler", "plain", "--out", str(tmp_path / "bench.json")]
    try:
        assert main(options) == 0
        shown = capsys.readouterr()
        assert main([*options, "--no-progress"]) == 0
        quiet = capsys.readouterr()
    finally:
        torch.set_num_threads(threads)
    assert "tiny on cpu: 2 rows x 2 calls and one counted batch-1 image, estimated ~" in shown.err
    assert "plain batch 1: ~" in shown.err and "per call, ~" in shown.err and "for this row" in shown.err
    assert "bench tiny" in shown.err and "call" in shown.err  # the bars
    assert "ms/step" in shown.out and "per call" not in shown.out  # the table alone on stdout
    assert "tiny on cpu: 2 rows x 2 calls" in quiet.err
    assert "for this row" not in quiet.err and "bench tiny" not in quiet.err


def test_slow_cpu_sweep_warns_with_a_quicker_command():
    """The README's `artok bench --preset gpt-b` on a CPU: from a measured batch-1 image (25 s) and
    its counted FLOPs, the default sweep is estimated at an hour and the warning proposes batch 1
    with fewer tokens, sized to finish in ~20 s; a quick sweep gets a plain estimate."""
    measure = Batch1Measure(seconds=25.0, flops=105e9, tflops=0.09, source="probe", seq_len=256)
    line = sweep_notice("gpt-b", BenchConfig(preset="gpt-b"), measure, samplers=2, raster=True, counted_run=True)
    assert line.startswith("warning: gpt-b on cpu: 8 rows x 4 calls") and "roughly 64.3 min" in line
    assert "--batch-sizes 1 --tokens 25 --no-count" in line and "--preset tiny" in line
    quick = sweep_notice("gpt-b", BenchConfig(preset="gpt-b", batch_sizes=(1,), tokens=25), measure, 2, raster=True)
    assert not quick.startswith("warning") and "estimated ~19.5 s" in quick
    # Arithmetic: the batch-1 image plus the FLOPs of the other images at the measured rate.
    assert estimate_call_seconds(25.0, 105e9, 0.09, 8, token_fraction=0.5) == pytest.approx(0.5 * (25 + 7 * 105e9 / 0.09e12))


def _long_tiny_checkpoint(directory):
    """The tiny preset's generator with a 16 x 16 grid (256 tokens): enough activations and cache
    that memory per call clearly scales with the batch."""
    from artok.generators import RasterConfig, RasterGenerator
    from artok.hub import save_pretrained
    from artok.tokens import TokenSpec

    options = dict(get_preset("tiny").options)
    options["token_spec"] = TokenSpec("discrete", "grid", grid=(16, 16), vocab_size=64).to_dict()
    torch.manual_seed(0)
    generator = RasterGenerator(RasterConfig(**options)).eval()
    save_pretrained(generator, directory)
    return generator


def test_peak_memory_per_call_grows_with_the_batch(tmp_path):
    """Peak MB is per row (before: the process's peak RSS, the same for every batch size): the plain
    sampler's static KV cache alone is 2 rows (CFG) x layers x K,V x width x 256 slots x 4 bytes per
    image, so batch 64 needs at least 64 times that, batch 1 a small fraction of it."""
    generator = _long_tiny_checkpoint(tmp_path / "long")
    threads = torch.get_num_threads()
    try:
        result = run_benchmark(BenchConfig(checkpoint=str(tmp_path / "long"), batch_sizes=(1, 64), samplers=("plain",),
                                           cfg_scale=2.0, repeats=1, warmup=0, count_cost=False, threads=1, progress=False),
                               log=lambda line: None, notify=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    config = generator.config
    cache_mb_per_image = 2 * config.depth * 2 * config.dim * config.seq_len * 4 / 2**20
    small, large = (row.peak_memory_mb for row in result.rows)
    assert large >= 0.9 * 64 * cache_mb_per_image
    assert small < large / 10


def test_peak_memory_of_a_call_that_allocates_nothing_large_is_near_zero():
    with PeakMemory("cpu") as idle:
        torch.ones(16).sum()
    assert idle.peak_mb < 1.0
    with PeakMemory("cpu") as busy:  # 64 MB held for a while: the sampler sees it
        held = torch.ones(16 * 2**20)
        torch.ones(1).add_(1)
        import time

        time.sleep(0.2)
        del held
    assert 60 < busy.peak_mb < 70
    assert busy.method.startswith("cpu: anonymous resident memory")


def test_gpt_b_roofline_matches_the_anchors():
    """ANCHORS.md: GPT-B bf16 + CFG reads ~195 MB of weights per step and ~2.43 GB of KV per image;
    batch-1 floor ~15.6 ms/image, large-batch bound ~1,380 img/s with valid-length KV reads (~670-690
    when every step reads the whole static cache)."""
    traffic = raster_traffic_from_config(RasterConfig(**get_preset("gpt-b").options), torch.bfloat16, guided=True)
    assert traffic["weight_bytes_per_step"] / 1e6 == pytest.approx(195, rel=0.01)
    assert traffic["kv_bytes_per_image_valid"] / 1e9 == pytest.approx(2.43, rel=0.01)
    assert 1 / roofline_images_per_s(traffic, 1, 3350) * 1e3 == pytest.approx(15.6, rel=0.02)
    assert roofline_images_per_s(traffic, 10**6, 3350) == pytest.approx(1380, rel=0.01)
    assert roofline_images_per_s(traffic, 10**6, 3350, valid_length=False) == pytest.approx(680, rel=0.03)
    # The arithmetic agrees with a real model's parameters (tiny preset).
    tiny = get_preset("tiny")
    built = raster_traffic(tiny.build(), torch.float32, guided=True)
    assert built == raster_traffic_from_config(RasterConfig(**tiny.options), torch.float32, guided=True)


def test_presets_and_errors(capsys):
    assert {"tiny", "gpt-b", "gpt-l", "var-d16", "mar-b"} <= set(PRESETS)
    assert main(["bench", "--preset", "tiny", "--checkpoint", "/nonexistent/dir"]) == 2
    assert "artok: error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--batch-sizes", "0"])


def test_counted_cost_of_a_raster_sampler_matches_the_arithmetic():
    """`measure_cost` on the plain raster sampler (batch 1, CFG): every position runs the blocks on
    2 rows, attention reads the whole static cache (L slots) and the head projects to the vocabulary;
    each step reads every linear weight once."""
    from artok.generators.raster.sample import sample_raster
    from artok.sampling.configs import SamplerConfig

    torch.manual_seed(0)
    generator = get_preset("tiny").build()
    config = generator.config
    d, hidden, length, vocab = config.dim, generator.blocks[0].ffn.down.in_features, config.seq_len, config.vocab_size
    cost = measure_cost(lambda: sample_raster(generator, torch.tensor([1]), SamplerConfig(cfg_scale=2.0)), generator)
    per_position = 2 * (config.depth * (4 * d * d + 3 * d * hidden) + d * vocab) + config.depth * 4 * length * d
    assert cost["flops"] == 2 * length * per_position
    linear = sum(m.weight.numel() for m in generator.modules() if isinstance(m, torch.nn.Linear))
    assert cost["weight_bytes"] == length * linear * 4


def test_floor_takes_the_slower_of_memory_and_compute():
    roofline = {"bandwidth_gbs": 1.0, "weight_bytes_per_batch": 1e9, "flops_per_image": 1e12, "peak_tflops": 10.0}
    assert floor_images_per_s(roofline, 1) == (pytest.approx(1.0), "memory")  # 1 s of weights vs 0.1 s of math
    assert floor_images_per_s(roofline, 100) == (pytest.approx(10.0), "compute")  # 10 s of math


@pytest.mark.parametrize("kind", ["next-scale", "mar"])
def test_bench_other_kinds_from_a_checkpoint(kind, tmp_path, capsys):
    """A saved next-scale generator is timed with its engine and its plain loop, a MAR with its own
    loop (with --iterations / --steps); both get a compute floor and a roofline fraction."""
    from artok.hub import save_pretrained
    from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
    from artok.zoo import build_generator

    quantizer = {"next-scale": ("msvq", {"codebook_size": 16, "scales": (1, 2, 4)}), "mar": ("kl", {})}[kind]
    torch.manual_seed(0)
    tokenizer = CNNTokenizer(CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=4,
                                                quantizer=quantizer[0], quantizer_options=quantizer[1]))
    options = {"head_width": 16, "head_depth": 1} if kind == "mar" else {}
    generator = build_generator(kind, tokenizer, num_classes=3, dim=32, depth=1, num_heads=2, **options)
    save_pretrained(generator.eval(), tmp_path / kind)
    threads = torch.get_num_threads()
    extra = ["--iterations", "2", "--steps", "3"] if kind == "mar" else []
    try:
        code = main(["bench", "--checkpoint", str(tmp_path / kind), "--batch-sizes", "1,2", "--repeats", "1",
                     "--warmup", "0", "--threads", "1", "--out", str(tmp_path / "bench.json"), *extra])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    samplers = ["engine", "engine", "plain", "plain"] if kind == "next-scale" else ["plain", "plain"]
    assert [r["sampler"] for r in result["rows"]] == samplers
    assert all(r["roofline_fraction"] > 0 and r["bound"] for r in result["rows"])
    if kind == "mar":
        assert result["model"]["sampler"]["iterations"] == 2 and result["model"]["sampler"]["steps"] == 3
