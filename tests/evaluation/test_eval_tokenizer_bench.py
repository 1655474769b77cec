"""The tokenizer benchmark end to end on tiny random tokenizers, the text set, and PTQ copies."""

import json
import time

import torch

from artok.data.base import ImageDataset
from artok.evaluation import (
    TokenizerBenchConfig,
    post_training_quantize,
    render_text_set,
    run_tokenizer_bench,
)
from artok.evaluation.text_set import find_fonts
from artok.evaluation.tokenizer_bench import measure_cost
from artok.hub import from_pretrained, save_pretrained
from artok.tokenizers import (
    CNNTokenizer,
    CNNTokenizerConfig,
    ViT1DTokenizer,
    ViT1DTokenizerConfig,
)


def _cnn(quantizer="vq", options=None, latent_dim=8):
    options = {"codebook_size": 16, "codebook_dim": 4} if options is None else options
    return CNNTokenizer(CNNTokenizerConfig(image_size=16, base_channels=8, channel_multipliers=(1, 2), latent_dim=latent_dim,
                                           quantizer=quantizer, quantizer_options=options))


def _vit():
    return ViT1DTokenizer(ViT1DTokenizerConfig(image_size=16, patch_size=4, dim=32, encoder_depth=1, decoder_depth=1,
                                               num_heads=2, num_latent_tokens=8, latent_dim=4,
                                               quantizer_options={"codebook_size": 32, "codebook_dim": 4}))


def _tiny_dataset(n=24, side=16):
    images = (torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return ImageDataset(images, torch.arange(n) % 2, ["a", "b"], "tiny", "test")


def test_bench_end_to_end(tmp_path):
    from artok.evaluation import train_reference_classifier

    classifier = train_reference_classifier(_tiny_dataset(), steps=3, width=4, feature_dim=8, progress=False)
    save_pretrained(_cnn(), tmp_path / "cnn")
    save_pretrained(_vit(), tmp_path / "vit")
    tokenizers = {"cnn": from_pretrained(tmp_path / "cnn"), "vit": from_pretrained(tmp_path / "vit")}
    config = TokenizerBenchConfig(datasets=("tiny", "text"), batch_size=8, timing_batches=2, fd_dataset="tiny",
                                  text_images=6, grid_images=4, progress=False)
    result = run_tokenizer_bench(tokenizers, config, tmp_path / "bench", datasets={"tiny": _tiny_dataset()},
                                 classifier=classifier)
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert {(r["tokenizer"], r["dataset"]) for r in results["results"]} == {
        (t, d) for t in ("cnn", "vit") for d in ("tiny", "text")}
    row = next(r for r in results["results"] if r["tokenizer"] == "cnn" and r["dataset"] == "tiny")
    for key in ("psnr", "ssim", "fd", "codebook_usage", "perplexity", "entropy_bits", "rank_frequency_slope",
                "bits_per_image", "encode_images_per_s", "decode_images_per_s", "encode_peak_memory_mb"):
        assert row[key] is not None, key
    assert row["lpips"] is None  # no weights: not reported (NaN -> null in JSON)
    assert row["bits_per_image"] == 8 * 8 * 4  # 8x8 tokens of 4 bits (16 codes)
    assert 0 < row["codebook_usage"] <= 1 and row["encode_images_per_s"] > 0
    text_row = next(r for r in results["results"] if r["tokenizer"] == "cnn" and r["dataset"] == "text")
    assert text_row["fd"] is None  # FD only on the reference classifier's dataset
    curve = results["prefix_curves"]["vit"]["tiny"]
    assert curve["num_tokens"] == [1, 2, 4, 8] and len(curve["psnr"]) == 4
    assert "cnn" not in results["prefix_curves"]
    html = (tmp_path / "bench" / "report.html").read_text()
    assert "Dataset: tiny" in html and "Decoding from the first k tokens" in html and html.count("<img") >= 4
    assert any("LPIPS not reported" in note for note in result.notes)
    assert results["settings"]["memory_method"].startswith("cpu: ")
    assert "1,000.0" not in html and ">24<" in html  # 24 images: a count prints as an integer


def test_bench_resizes_inputs_and_says_so(tmp_path):
    config = TokenizerBenchConfig(datasets=("big",), batch_size=8, timing_batches=1, fd_dataset=None, progress=False)
    result = run_tokenizer_bench({"cnn": _cnn()}, config, None, datasets={"big": _tiny_dataset(n=8, side=32)})
    assert any("resized from 32x32 to 16x16" in note for note in result.notes)
    assert result.rows[0]["images"] == 8


def test_cli_eval_tokenizer_on_the_text_set(tmp_path, capsys):
    from artok.cli.main import main

    save_pretrained(_cnn(), tmp_path / "a")
    save_pretrained(_vit(), tmp_path / "b")
    status = main(["eval-tokenizer", str(tmp_path / "a"), str(tmp_path / "b"), "--datasets", "text", "--no-fd",
                   "--batch-size", "8", "--timing-batches", "1", "--out", str(tmp_path / "out"), "--no-progress"])
    assert status == 0
    assert (tmp_path / "out" / "results.json").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert "report:" in capsys.readouterr().out


def test_text_set_renders_non_empty_images():
    dataset = render_text_set(28, channels=1, num_images=8)
    assert dataset.images.shape == (8, 1, 28, 28) and dataset.class_names == ["word", "lines"]
    for image in dataset.images.float():
        assert image.std() > 10  # both ink and background
        ink = (image > 127).float().mean()
        assert 0.01 < min(ink, 1 - ink)
    assert dataset.labels.tolist() == [0, 1] * 4
    rgb = render_text_set(64, channels=3, num_images=2, fonts=[])  # Pillow's built-in font
    assert rgb.images.shape == (2, 3, 64, 64) and rgb.images.float().std() > 10
    assert torch.equal(render_text_set(28, num_images=4).images, render_text_set(28, num_images=4).images)


def test_find_fonts_returns_existing_files():
    assert all(path.is_file() for path in find_fonts())


def test_post_training_quantized_copy_approaches_its_parent():
    torch.manual_seed(0)
    parent = _cnn("kl", {}, latent_dim=4).eval()
    data = _tiny_dataset()
    images, _ = data.batch(torch.arange(8))
    reference = parent.decode(parent.encode(images))
    errors = {}
    for bits in (2, 8):
        ptq = post_training_quantize(parent, bits, data)
        tokens = ptq.encode(images)
        assert tokens.spec.subtokens == 4 and tokens.spec.vocab_size == 2**bits
        assert bool(ptq.quantizer.calibrated)
        errors[bits] = (ptq.decode(tokens) - reference).pow(2).mean().item()
    assert errors[8] < errors[2] and errors[8] < 1e-3


def test_measure_cost_reports_throughput_and_memory():
    """The extra memory of the timed calls, by the same measure as ``artok bench``: ~32 MB for a
    call that holds a 32 MB tensor, ~0 for one that allocates nothing large."""
    def holds_32_mb(x):
        held = torch.ones(8 * 2**20).add_(x.sum())  # in place: one 32 MB tensor
        time.sleep(0.1)  # long enough for the sampler thread to see it whatever the load
        return held.sum()

    cost = measure_cost(holds_32_mb, [torch.ones(8)] * 2, "cpu", batch_size=8)
    assert cost["images_per_s"] > 0
    # resident memory: one 32 MB buffer, or two when the allocator did not reuse the first one's pages
    # yet (seen once in a full-suite run: 64 MB); never less than the tensor itself
    assert 30 < cost["peak_memory_mb"] < 70
    assert measure_cost(lambda x: x + 1, [torch.ones(8)] * 3, "cpu", batch_size=8)["peak_memory_mb"] < 1.0


def test_both_benchmarks_measure_memory_with_one_function():
    import artok.benchmarking
    from artok.evaluation import tokenizer_bench

    assert tokenizer_bench.measure_cost is artok.benchmarking.measure_throughput  # one kit, one memory measure
    assert not hasattr(tokenizer_bench, "LiveTensorMemory") and not hasattr(tokenizer_bench, "_synchronize")
