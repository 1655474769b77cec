"""CLI smoke tests: help texts, one-line user errors, and a tiny end-to-end demo."""

import json

import pytest

from artok.cli.main import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: artok" in capsys.readouterr().out


def test_user_errors_are_one_line(capsys, tmp_path):
    assert main(["sample", "--generator", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error:") and "\n" not in err
    assert main(["train-tokenizer", "--dataset", "nonsense", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown dataset" in err.lower() and "\n" not in err and "Traceback" not in err


def test_tiny_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--steps", "8", "--tokenizer-steps", "8", "--samples-per-class", "3",
                 "--limit", "200", "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("tokenizer.psnr", "tokenizer.codebook_usage", "generator.class_accuracy", "generator.fd",
                "generator.fd_reference", "seconds_total"):
        assert key in metrics
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # reconstructions, samples, two curves
    # The saved pair samples and evaluates through the other commands.
    assert main(["sample", "--generator", str(out / "generator"), "--labels", "0,3", "--per-label", "2",
                 "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["eval", "--tokenizer", str(out / "tokenizer"), "--out", str(tmp_path / "m.json")]) == 0
    assert "tokenizer.psnr" in json.loads((tmp_path / "m.json").read_text())
