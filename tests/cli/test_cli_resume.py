"""A real ``artok train-generator`` process: SIGKILLed mid-run and resumed, it ends with the same
weights as an uninterrupted run; SIGINT/SIGTERM write a checkpoint and exit 130/143; a diverging
run stops with one line and keeps its last finite checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from artok.cli.main import main
from artok.training import load_checkpoint

STEPS = "300"
ARGS = ["--dim", "64", "--depth", "2", "--heads", "2", "--batch-size", "64", "--checkpoint-every", "20",
        "--no-progress"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer") / "tok"
    assert main(["train-tokenizer", "--dataset", "digits", "--out", str(path), "--base-channels", "8", "--steps", "2",
                 "--no-progress"]) == 0
    return path


def _environment(cache: Path) -> dict:
    return {**os.environ, "ARTOK_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _command(tokenizer: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "artok", "train-generator", "--tokenizer", str(tokenizer), "--out", str(out),
            "--steps", STEPS, *ARGS, *extra]


def _wait_for_checkpoint(out: Path, process: subprocess.Popen, at_least: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        path = out / "checkpoint.pt"
        if path.exists():
            step = load_checkpoint(path)["step"]
            if step >= at_least:
                return step
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared in time")


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(tokenizer, tmp_path):
    env = _environment(tmp_path / "cache")
    full = tmp_path / "full"
    subprocess.run(_command(tokenizer, full), env=env, check=True, capture_output=True, timeout=600)

    half = tmp_path / "half"
    process = subprocess.Popen(_command(tokenizer, half), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_after = _wait_for_checkpoint(half, process, at_least=60)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (half / "model.safetensors").exists()
    resumed = subprocess.run(_command(tokenizer, half, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    history_start = load_checkpoint(half / "checkpoint.pt")["history"]
    assert history_start[-1]["step"] == int(STEPS)
    expected, got = _weights(full), _weights(half)
    assert killed_after < int(STEPS) and expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_writes_a_checkpoint_and_says_how_to_resume(name, code, tokenizer, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(_command(tokenizer, out), env=_environment(tmp_path / "cache"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(out, process, at_least=20)
    process.send_signal(getattr(signal, name))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"artok: interrupted: {name} at step ") and "--resume" in line and "Traceback" not in stderr
    step = int(line.split(" at step ")[1].split(";")[0])
    assert load_checkpoint(out / "checkpoint.pt")["step"] == step


def test_divergence_keeps_the_last_finite_checkpoint(tokenizer, tmp_path, capsys):
    out = tmp_path / "diverged"
    code = main(["train-generator", "--tokenizer", str(tokenizer), "--out", str(out), "--steps", "60", "--lr", "1e6",
                 "--checkpoint-every", "1", "--dim", "32", "--depth", "1", "--heads", "2", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("artok: error: training diverged") and "--lr" in err[-1]
    assert all(line.startswith("artok: warning: step ") for line in err[:-1])
    state = load_checkpoint(out / "checkpoint.pt")
    assert f"step {state['step']}) is kept" in err[-1]
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values())
    assert not (out / "model.safetensors").exists()
