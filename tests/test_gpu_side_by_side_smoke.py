"""CPU smoke test of ``benchmarks/gpu_side_by_side.py`` (issue 15) and ``benchmarks/prepare_peers.py``,
without any peer code: the peer sides skip with a recorded reason, artok's sides run on tiny shapes,
results.json / report.html are written after every part, a part that raises is recorded in one line
and the next part still runs, the budget skips parts, and without ``--smoke`` a CPU machine is refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    """A benchmark script as a module (benchmarks/ is not a package)."""
    key = f"{name}_script"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture(scope="module")
def script():
    return load("gpu_side_by_side")


def read(out: Path) -> dict:
    assert (out / "report.html").is_file()
    return json.loads((out / "results.json").read_text())


def test_smoke_without_peers_runs_artok_sides_and_skips_peers(script, tmp_path):
    out = tmp_path / "run"
    code = script.main(["--smoke", "--out", str(out), "--peers", str(tmp_path / "no_peers"), "--repeats", "1",
                        "--parts", "ceilings,gpt-b-1,gpt-b-64,var-d16-64,mar-b-64,speculative"])
    assert code == 0
    parts = read(out)["parts"]
    assert [name for name in parts] == ["ceilings", "gpt-b-1", "gpt-b-64", "var-d16-64", "mar-b-64", "speculative"]
    assert all(part["status"] == "ok" for part in parts.values()), parts
    assert parts["ceilings"]["copy_bandwidth_gbs"] > 0 and parts["ceilings"]["matmul_tflops"] > 0
    for name in ("gpt-b-1", "gpt-b-64", "var-d16-64", "mar-b-64"):
        part = parts[name]
        assert "prepare_peers.py" in part["peer"]["skipped"]
        assert part["artok"]["median_s"] > 0 and part["artok"]["images_per_s"] > 0
        assert part["artok"]["peak_memory_mb"] >= 0
        assert 0 < part["artok"]["roofline_fraction"] < 1  # against the ceilings measured in the first part
        assert "ratio" not in part  # no peer, no ratio
        profile = part["artok"]["profile"]  # one profiled call per row: ops per step, busy fraction, top ops
        assert profile["kernels"] > 0 and profile["kernels_per_step"] > 0 and 0 < profile["busy_fraction"] <= 1.5
        assert profile["top"] and profile["top"][0]["count"] >= 1
    assert parts["gpt-b-64"]["batch"] == 2 and parts["gpt-b-1"]["batch"] == 1
    assert parts["mar-b-64"]["roofline"]["counted"].startswith("batch-1 sample_mar")
    jacobi = parts["speculative"]["batches"]["1"]
    assert jacobi["jacobi_stats"]["mean_accepted"] >= 1.0 and jacobi["speedup"] > 0
    html = (out / "report.html").read_text()
    assert "gpt-b-64" in html and "ceilings" in html


def test_a_part_that_raises_is_recorded_and_the_next_part_runs(script, tmp_path, monkeypatch):
    real = script.part_functions

    def with_a_failure(run):
        functions = real(run)

        def broken():
            raise RuntimeError("planted failure\nsecond line")

        functions["gpt-b-1"] = broken
        return functions

    monkeypatch.setattr(script, "part_functions", with_a_failure)
    out = tmp_path / "run"
    assert script.main(["--smoke", "--out", str(out), "--parts", "gpt-b-1,ceilings", "--repeats", "1"]) == 0
    parts = read(out)["parts"]
    assert parts["gpt-b-1"] == {"status": "error", "error": "RuntimeError: planted failure",
                                "seconds": parts["gpt-b-1"]["seconds"]}
    assert parts["ceilings"]["status"] == "ok"


def test_results_are_saved_after_every_part(script, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = script.part_functions

    def crash_after_first(run):
        functions = real(run)

        def crash():
            saved = json.loads((out / "results.json").read_text())  # what a time-out here would leave
            assert saved["parts"]["ceilings"]["status"] == "ok"
            raise KeyboardInterrupt  # not an Exception: the run dies here, as on a kill

        functions["gpt-b-1"] = crash
        return functions

    monkeypatch.setattr(script, "part_functions", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        script.main(["--smoke", "--out", str(out), "--parts", "ceilings,gpt-b-1"])
    assert set(read(out)["parts"]) == {"ceilings"}


def test_budget_skips_the_remaining_parts(script, tmp_path):
    out = tmp_path / "run"
    assert script.main(["--smoke", "--out", str(out), "--parts", "ceilings,gpt-b-1", "--budget-s", "0"]) == 0
    parts = read(out)["parts"]
    assert {part["status"] for part in parts.values()} == {"skipped"}
    assert "budget" in parts["gpt-b-1"]["skipped"]


def test_cpu_without_smoke_is_refused_in_one_line(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert script.main(["--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert "needs CUDA" in error and "\n" not in error
    assert not (tmp_path / "run").exists()


def test_unknown_part_is_a_one_line_error(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--smoke", "--out", str(tmp_path), "--parts", "gpt-b-1,gpt-zz"])
    assert exit_info.value.code == 2
    assert "unknown parts ['gpt-zz']" in capsys.readouterr().err


def test_peer_code_is_importable_only_inside_and_purged_after(script, tmp_path):
    package = tmp_path / "peer" / "models"
    package.mkdir(parents=True)
    (package / "thing.py").write_text("VALUE = 41\n")
    with script.peer_code(tmp_path / "peer"):
        from models import thing

        assert thing.VALUE == 41
    assert "models.thing" not in sys.modules and "models" not in sys.modules
    assert str((tmp_path / "peer").resolve()) not in sys.path


def test_cuda_test_files_are_the_ones_with_cuda_marks(script):
    files = script.cuda_test_files()
    assert files and all(f.startswith("tests/") for f in files)
    assert "tests/sampling/test_engine.py" in files
    assert "tests/test_gpu_side_by_side_smoke.py" not in files


def test_prepare_peers_copies_only_sources(tmp_path):
    prepare = load("prepare_peers")
    clones = {}
    for name, (entries, marker) in prepare.PEERS.items():
        clone = tmp_path / "clones" / name
        for entry in entries:
            path = clone / entry
            if "." in path.name or path.name == "LICENSE":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("# source\n")
            else:  # a folder: sources and a non-source file that must stay behind
                path.mkdir(parents=True, exist_ok=True)
                (path / "a.py").write_text("# source\n")
                (path / "weights.pth").write_bytes(b"\0" * 10)
        (clone / marker).parent.mkdir(parents=True, exist_ok=True)
        (clone / marker).write_text("# marker\n")
        (clone / "assets").mkdir()
        (clone / "assets" / "big.png").write_bytes(b"\0" * 1000)
        clones[name] = clone
    out = tmp_path / "peers"
    assert prepare.main(["--llamagen", str(clones["LlamaGen"]), "--var", str(clones["VAR"]), "--mar", str(clones["mar"]),
                         "--out", str(out), "--no-wheel"]) == 0
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "VAR/models/a.py" in copied and "VAR/models/var.py" in copied and "mar/diffusion/a.py" in copied
    assert "LlamaGen/autoregressive/models/gpt.py" in copied and "LlamaGen/LICENSE" in copied
    assert not any(p.endswith((".pth", ".png")) for p in copied)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["total_bytes"] > 0 and set(manifest["peers"]) == {"LlamaGen", "VAR", "mar"}
    with pytest.raises(SystemExit, match="is not a VAR clone"):
        prepare.main(["--var", str(tmp_path / "clones" / "mar"), "--out", str(out), "--no-wheel"])


def test_a_peer_that_fails_to_build_leaves_artoks_side(script, tmp_path):
    broken = tmp_path / "peers" / "VAR" / "models"
    broken.mkdir(parents=True)
    (broken / "var.py").write_text("raise ImportError('planted')\n")  # a clone that does not import
    out = tmp_path / "run"
    assert script.main(["--smoke", "--out", str(out), "--peers", str(tmp_path / "peers"), "--parts", "var-d16-64",
                        "--repeats", "1", "--no-profile"]) == 0
    part = read(out)["parts"]["var-d16-64"]
    assert part["status"] == "ok" and part["peer"]["skipped"].startswith("building the peer's model failed")
    assert part["artok"]["images_per_s"] > 0 and "profile" not in part["artok"]
    assert part["roofline"]["note"] == "no ceilings"  # the ceilings part did not run (CPU: no fallback figures)
