"""``artok bench``: help text, a tiny CPU run (well under 3 s), roofline arithmetic, errors."""

import json

import pytest
import torch

from artok.benchmarking import (
    floor_images_per_s,
    measure_cost,
    raster_traffic,
    raster_traffic_from_config,
    roofline_images_per_s,
)
from artok.generators import RasterConfig
from artok.cli.main import main
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
    from artok.sampling import SamplerConfig, sample_raster

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
    from artok.generators import build_generator
    from artok.hub import save_pretrained
    from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig

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
