"""``artok eval`` on a ``folder:`` dataset: the one-line reason when there is no classifier FD and no
Inception weights; Inception FID/sFID/IS/precision/recall of the samples and the tokenizer's rFID with
a (random) weights file; ``artok reference`` writes a reusable .npz; ``--reference`` reads one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from artok.cli.main import main
from artok.evaluation.inception import random_inception_state_dict
from artok.generators import RasterConfig, RasterGenerator
from artok.hub import save_pretrained
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    tokenizer = CNNTokenizer(CNNTokenizerConfig(in_channels=3, image_size=8, base_channels=8, channel_multipliers=(1, 2),
                                                latent_dim=8, quantizer="vq",
                                                quantizer_options={"codebook_size": 16, "codebook_dim": 4})).eval()
    save_pretrained(tokenizer, root / "tok")
    generator = RasterGenerator(RasterConfig(token_spec=tokenizer.spec.to_dict(), num_classes=2, dim=32, depth=1,
                                             num_heads=2)).eval()
    save_pretrained(generator, root / "gen", extra={"tokenizer": "../tok"})
    rng = np.random.default_rng(0)
    for index in range(60):
        folder = root / "photos" / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index:03d}.png")
    torch.save(random_inception_state_dict(0), root / "inception.pth")
    return root


def _eval(setup, *extra):
    return ["eval", "--generator", str(setup / "gen"), "--dataset", f"folder:{setup / 'photos'}",
            "--samples-per-class", "5", "--no-progress", *extra]


def test_folder_dataset_without_weights_says_why(setup, capsys, monkeypatch):
    monkeypatch.delenv("ARTOK_INCEPTION", raising=False)
    assert main(_eval(setup, "--report", str(setup / "report.html"))) == 0
    captured = capsys.readouterr()
    page = (setup / "report.html").read_text()
    assert "tokenizer.psnr" in page and page.count("<img") == 1
    metrics = json.loads(captured.out)
    assert "tokenizer.psnr" in metrics and not any(key.startswith("generator.fid") for key in metrics)
    warnings = [line for line in captured.err.splitlines() if line.startswith("artok: warning:")]
    assert any("reference classifier exists only for digits, mnist and fashion-mnist" in line and "--inception-weights" in line
               for line in warnings)
    assert any("pt_inception-2015-12-05-6726825d.pth" in line and "https://" in line for line in warnings)


def test_folder_dataset_with_weights_reports_inception_metrics(setup, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ARTOK_CACHE", str(tmp_path / "cache"))
    assert main(_eval(setup, "--inception-weights", str(setup / "inception.pth"), "--out", str(tmp_path / "m.json"),
                      "--report", str(tmp_path / "r.html"))) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    page = (tmp_path / "r.html").read_text()
    assert "generator.fid" in page and "inception.weights_sha256" in page
    for key in ("generator.fid", "generator.sfid", "generator.inception_score", "generator.precision", "generator.recall",
                "tokenizer.rfid", "tokenizer.rsfid"):
        assert np.isfinite(metrics[key]), key
    assert metrics["generator.fid"] > 0 and metrics["generator.num_samples"] == 10
    assert len(metrics["inception.weights_sha256"]) == 64
    cached = list((tmp_path / "cache" / "inception").glob("*.npz"))
    assert len(cached) == 1 and metrics["inception.reference"] == str(cached[0])
    capsys.readouterr()

    # artok reference writes the same statistics; eval --reference uses them and gives the same FID.
    assert main(["reference", "--dataset", f"folder:{setup / 'photos'}", "--split", "test", "--out", str(tmp_path / "ref.npz"),
                 "--inception-weights", str(setup / "inception.pth"), "--no-progress"]) == 0
    with np.load(tmp_path / "ref.npz") as written, np.load(cached[0]) as cache:
        assert np.array_equal(written["mu"], cache["mu"]) and int(written["count"]) == int(cache["count"])
    # Streaming from disk (as for imagenet:ROOT) reads the same images: the same statistics.
    assert main(["reference", "--dataset", f"folder:{setup / 'photos'}", "--stream", "--image-size", "8", "--workers", "0",
                 "--out", str(tmp_path / "streamed.npz"), "--inception-weights", str(setup / "inception.pth"),
                 "--no-progress"]) == 0
    with np.load(tmp_path / "ref.npz") as written, np.load(tmp_path / "streamed.npz") as streamed:
        assert np.allclose(written["mu"], streamed["mu"], atol=1e-6) and int(streamed["count"]) == int(written["count"])
    assert main(["eval", "--tokenizer", str(setup / "tok"), "--dataset", f"folder:{setup / 'photos'}", "--no-progress",
                 "--inception-weights", str(setup / "inception.pth"), "--reference", str(tmp_path / "ref.npz"),
                 "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["tokenizer.rfid"] == pytest.approx(metrics["tokenizer.rfid"], rel=1e-9)
    assert again["inception.reference"] == str(tmp_path / "ref.npz")


def test_inception_errors_are_one_line(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("ARTOK_INCEPTION", raising=False)
    assert main(_eval(setup, "--inception-weights", str(tmp_path / "missing.pth"))) == 2
    error = capsys.readouterr().err.strip()
    assert "do not exist" in error and "\n" not in error
    assert main(["reference", "--dataset", "digits", "--out", str(tmp_path / "r.npz")]) == 2
    error = capsys.readouterr().err.strip()
    assert "--inception-weights" in error and "\n" not in error
    assert main(_eval(setup, "--inception-weights", str(setup / "inception.pth"), "--reference", str(tmp_path / "nope.npz"))) == 2
    assert "reference statistics" in capsys.readouterr().err
