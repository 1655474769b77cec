"""``artok sample --num-images``: class-balanced sharded export (PNG class folders + ADM .npz); 2 torchrun
processes (gloo, real processes) write the very images 1 process writes; a SIGKILLed export resumes
without duplicates; the one-grid behaviour without --num-images; one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from artok_test_helpers import tiny_tokenizer

from artok.cli.main import main
from artok.data import load_dataset
from artok.generators import RasterConfig, RasterGenerator
from artok.hub import save_pretrained

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4})
    save_pretrained(tokenizer, root / "tok", extra={"dataset": "digits"})
    generator = RasterGenerator(RasterConfig(token_spec=tokenizer.spec.to_dict(), num_classes=3, dim=32, depth=1,
                                             num_heads=2)).eval()
    save_pretrained(generator, root / "gen", extra={"tokenizer": "../tok", "dataset": "digits"})
    return root


def _arguments(pair: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--generator", str(pair / "gen"), "--num-images", "20", "--shard-size", "3", "--batch-size", "2",
            "--out", str(out), "--seed", "7", "--no-progress", *extra]


def _summary(text: str) -> dict:
    return json.loads(text[text.index("{"):])


def test_export_layout_balance_and_one_vs_two_processes(pair, capsys):
    assert main(_arguments(pair, pair / "one")) == 0
    one = _summary(capsys.readouterr().out)
    assert one["sampled_images"] == 20 and one["num_shards"] == 7 and one["images_per_second"] > 0
    with np.load(pair / "one" / "samples_20x8x8x3.npz") as file:
        images, labels = file["arr_0"], file["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (20, 8, 8, 3)  # grey -> 3 channels
    assert np.array_equal(images[..., 0], images[..., 2])
    assert np.bincount(labels).tolist() == [7, 7, 6]  # class-balanced to within one
    pngs = sorted((pair / "one" / "png").rglob("*.png"))
    assert len(pngs) == 20 and {p.parent.name for p in pngs} == {"0000", "0001", "0002"}
    back = load_dataset(f"folder:{pair / 'one' / 'png'}", "all")  # the PNGs read back as a folder dataset
    assert len(back) == 20 and back.num_classes == 3
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "artok",
               *_arguments(pair, pair / "two")]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(2 processes)" in result.stdout
    two = _summary(result.stdout)
    assert two["digest"] == one["digest"] and two["sampled_images"] == 20
    with np.load(pair / "two" / "samples_20x8x8x3.npz") as file:
        assert np.array_equal(file["arr_0"], images) and np.array_equal(file["arr_1"], labels)
    assert all(p.read_bytes() == (pair / "two" / p.relative_to(pair / "one")).read_bytes() for p in pngs)


def test_a_killed_export_resumes_without_duplicates(pair, capsys):
    out = pair / "killed"
    arguments = _arguments(pair, out, "--shard-size", "1", "--batch-size", "1", "--num-images", "24", "--format", "npz")
    process = subprocess.Popen([sys.executable, "-m", "artok", *arguments], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "shards").glob("shard-*.npz"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list((out / "shards").glob("shard-*.npz")))
    assert 3 <= finished < 24 and not (out / "samples_24x8x8x3.npz").exists()
    assert main(arguments) == 0
    resumed = _summary(capsys.readouterr().out)
    assert resumed["skipped_shards"] == finished and resumed["sampled_images"] == 24 - finished
    assert main(_arguments(pair, pair / "clean", "--shard-size", "1", "--batch-size", "1", "--num-images", "24",
                           "--format", "npz")) == 0
    assert _summary(capsys.readouterr().out)["digest"] == resumed["digest"]
    assert not list((out / "shards").glob(".*"))  # no temporaries left behind
    with np.load(out / "samples_24x8x8x3.npz") as a, np.load(pair / "clean" / "samples_24x8x8x3.npz") as b:
        assert np.array_equal(a["arr_0"], b["arr_0"]) and len(a["arr_1"]) == 24
    assert not (out / "png").exists()
    assert main(arguments) == 0  # a finished export: every shard skipped, nothing sampled
    assert _summary(capsys.readouterr().out)["sampled_images"] == 0


def test_per_class_and_grid_mode(pair, tmp_path, capsys):
    assert main(["sample", "--generator", str(pair / "gen"), "--per-class", "2", "--labels", "1,2", "--out",
                 str(tmp_path / "pc"), "--format", "png", "--no-progress"]) == 0
    assert sorted(p.parent.name for p in (tmp_path / "pc" / "png").rglob("*.png")) == ["0001", "0001", "0002", "0002"]
    assert not list((tmp_path / "pc").glob("samples_*.npz"))
    capsys.readouterr()
    assert main(["sample", "--generator", str(pair / "gen"), "--per-label", "1", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").is_file() and "wrote 3 samples" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (["--out", "x.png"], "an export is a folder"),
    (["--per-class", "3"], "is not --per-class 3 x 3 classes"),
    (["--labels", "7"], "labels must lie in [0, 3)"),
])
def test_bad_export_arguments_are_one_line_errors(pair, tmp_path, capsys, change, message):
    arguments = _arguments(pair, tmp_path / "out")
    for index in range(0, len(change), 2):
        if change[index] in arguments:
            arguments[arguments.index(change[index]) + 1] = change[index + 1]
        else:
            arguments += change[index : index + 2]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_a_different_plan_into_the_same_folder_is_refused(pair, tmp_path, capsys):
    assert main(_arguments(pair, tmp_path / "out", "--num-images", "3", "--format", "npz")) == 0
    capsys.readouterr()
    assert main(_arguments(pair, tmp_path / "out", "--num-images", "4", "--format", "npz")) == 2
    error = capsys.readouterr().err
    assert "holds an export with other settings" in error and "num_images" in error
