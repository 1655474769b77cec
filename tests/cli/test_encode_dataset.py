"""``artok encode-dataset`` in real processes: 2 torchrun ranks write the very bytes 1 process writes;
a SIGKILLed run resumed keeps its finished shards and ends equal to a clean run; one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from artok_test_helpers import tiny_tokenizer
from PIL import Image

from artok.cli.main import main
from artok.data.token_shards import TokenShards
from artok.hub import save_pretrained

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("encode")
    save_pretrained(tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4}), root / "tok")
    rng = np.random.default_rng(0)
    for k in range(26):
        folder = root / "photos" / f"class{k % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        size = tuple(int(s) for s in rng.integers(9, 30, 2))
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{k:03d}.jpg", quality=90)
    (root / "photos" / "class1" / "zero.jpg").write_bytes(b"")
    (root / "photos" / "class2" / "text.jpg").write_text("not a photo")
    return root


def _arguments(setup: Path, out: Path, *extra: str) -> list[str]:
    return ["encode-dataset", "--tokenizer", str(setup / "tok"), "--dataset", f"folder:{setup / 'photos'}",
            "--split", "all", "--out", str(out), "--shard-size", "4", "--batch-size", "3", "--augment", "flip",
            "--workers", "1", "--no-progress", *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_two_torchrun_processes_write_the_cache_one_process_writes(setup, capsys):
    assert main(_arguments(setup, setup / "one")) == 0
    assert "wrote 7 shards, kept 0 shards" in capsys.readouterr().out
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "artok",
               *_arguments(setup, setup / "two")]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 7 shards, kept 0 shards (2 processes); 26 images x 2 views, 2 files skipped" in result.stdout
    one, two = _files(setup / "one"), _files(setup / "two")
    assert sorted(one) == sorted(two) and len(one) == 7 * 3 + 1
    assert all(one[name] == two[name] for name in one)  # manifest included: same records, same checksums
    cache = TokenShards(setup / "two")
    assert len(cache) == 52 and cache.num_classes == 3


def test_a_sigkilled_run_resumes_keeping_its_finished_shards(setup, capsys):
    out = setup / "killed"
    process = subprocess.Popen([sys.executable, "-m", "artok", *_arguments(setup, out, "--shard-size", "1",
                                "--workers", "0")], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(out.glob("shard-*.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(out.glob("shard-*.json")))
    assert 3 <= finished < 28 and not (out / "manifest.json").exists()
    (out / ".shard-00027.npy.abcdefgh.tmp").write_bytes(b"torn")  # as a kill inside atomic_write leaves
    assert main(_arguments(setup, out, "--shard-size", "1", "--workers", "0")) == 0
    assert f"kept {finished} shards" in capsys.readouterr().out
    assert main(_arguments(setup, setup / "clean", "--shard-size", "1", "--workers", "0")) == 0
    assert _files(out) == _files(setup / "clean")


@pytest.mark.parametrize("change, message", [
    (["--tokenizer", "/nonexistent/tok"], "/nonexistent/tok"),
    (["--image-size", "16"], "the tokenizer takes 8 x 8 images"),
    (["--dataset", "folder:/nonexistent/photos"], "does not exist"),
    (["--dataset", "imagenet:/nonexistent"], "no such folder"),
    (["--split", "val"], "splits 'train', 'test' and 'all'"),
])
def test_bad_arguments_are_one_line_errors(setup, tmp_path, capsys, change, message):
    arguments = _arguments(setup, tmp_path / "out")
    flag, value = change
    if flag in arguments:
        arguments[arguments.index(flag) + 1] = value
    else:
        arguments += change
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_generator_trains_from_the_cache_and_refuses_another_tokenizer(setup, tmp_path, capsys):
    out = setup / "for-generator"
    assert main(_arguments(setup, out)) == 0
    generator = ["train-generator", "--tokenizer", str(setup / "tok"), "--tokens", str(out), "--steps", "3",
                 "--batch-size", "4", "--dim", "32", "--depth", "1", "--heads", "2", "--no-progress"]
    assert main([*generator, "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "gen" / "model.safetensors").is_file()
    torch.manual_seed(123)
    save_pretrained(tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4}), tmp_path / "other")
    capsys.readouterr()
    other = [*generator, "--out", str(tmp_path / "gen2")]
    other[other.index(str(setup / "tok"))] = str(tmp_path / "other")
    assert main(other) == 2
    assert "encoded by another tokenizer" in capsys.readouterr().err
