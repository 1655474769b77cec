"""The command line under torchrun (2 processes, gloo): a tokenizer trained with FSDP2 and a
generator trained on its tokens with DDP and gradient accumulation, saved by rank 0 and sampled;
a streamed folder with a broken file trains and says what it skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from artok.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "artok", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_train_tokenizer_fsdp_then_generator_ddp_under_torchrun(tmp_path):
    tok, gen = tmp_path / "tok", tmp_path / "gen"
    done = torchrun("train-tokenizer", "--dataset", "digits", "--out", str(tok), "--steps", "6", "--batch-size", "8",
                    "--base-channels", "8", "--parallel", "fsdp", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tok / "model.safetensors").is_file() and (tok / "checkpoint-00000006.dcp").is_dir()
    assert done.stdout.count('"psnr"') == 1  # rank 0 alone evaluates and prints
    done = torchrun("train-generator", "--tokenizer", str(tok), "--out", str(gen), "--steps", "6", "--batch-size", "4",
                    "--dim", "32", "--depth", "1", "--heads", "2", "--grad-accum", "2", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("saved") == 1 and (gen / "checkpoint.pt").is_file()
    assert main(["sample", "--generator", str(gen), "--out", str(tmp_path / "grid.png"), "--per-label", "1"]) == 0


def test_streamed_folder_with_a_broken_file_trains(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(6):
            pixels = rng.integers(0, 255, (40 + index, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{index}.png")
        for index in range(3):  # some land in the held-out test split; the rest are read in training
            (tmp_path / "data" / label / f"broken{index}.png").write_bytes(b"not an image")
    code = main(["train-tokenizer", "--dataset", f"folder:{tmp_path / 'data'}", "--stream", "--workers", "1",
                 "--image-size", "16", "--steps", "8", "--batch-size", "13", "--base-channels", "8", "--flip",
                 "--out", str(tmp_path / "tok"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "tok" / "model.safetensors").is_file()
    assert "unreadable files were skipped" in out and "streamed training" in out
