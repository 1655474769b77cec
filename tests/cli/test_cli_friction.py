"""What a newcomer hit: the generator's dataset defaults to the tokenizer's, model folders can be
moved, --version / --config / artok options, metrics that record how they were made, warnings as
one ``artok: warning:`` line, and a malicious checkpoint refused without unsafe advice."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from artok.cli.main import main

QUICK = ["--steps", "2", "--no-progress"]


def _run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes of 12x12 greyscale images (one class bright on the left, one on the right)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in range(2):
        (root / f"class{label}").mkdir()
        for index in range(12):
            pixels = rng.integers(0, 60, (12, 12), dtype=np.uint8)
            pixels[:, label * 6:(label + 1) * 6] += 180
            Image.fromarray(pixels).save(root / f"class{label}" / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def pair(tmp_path_factory, image_folder):
    root = tmp_path_factory.mktemp("pair")
    tokenizer, generator = root / "models" / "tok", root / "models" / "gen"
    assert main(["train-tokenizer", "--dataset", f"folder:{image_folder}", "--image-size", "8", "--out", str(tokenizer),
                 "--base-channels", "8", *QUICK]) == 0
    # no --dataset: the tokenizer's folder dataset (and its 8 px size) is used
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--out", str(generator), "--dim", "32", "--depth", "1",
                 "--heads", "2", *QUICK]) == 0
    return root, tokenizer, generator


def test_generator_trains_on_the_tokenizers_dataset_by_default(pair, image_folder):
    _, _, generator = pair
    extra = json.loads((generator / "config.json").read_text())["extra"]
    assert extra["dataset"] == f"folder:{image_folder}" and extra["class_names"] == ["class0", "class1"]


def test_moved_model_folders_still_sample(pair, tmp_path):
    root, _, generator = pair
    assert json.loads((generator / "config.json").read_text())["extra"]["tokenizer"] == "../tok"
    moved = tmp_path / "elsewhere"
    shutil.copytree(root / "models", moved)
    assert main(["sample", "--generator", str(moved / "gen"), "--out", str(tmp_path / "s.png"), "--per-label", "1",
                 "--no-progress"]) == 0
    # a folder of the older layout (absolute tokenizer path) still loads
    config = json.loads((moved / "gen" / "config.json").read_text())
    config["extra"]["tokenizer"] = str((moved / "tok").resolve())
    (moved / "gen" / "config.json").write_text(json.dumps(config))
    assert main(["sample", "--generator", str(moved / "gen"), "--out", str(tmp_path / "t.png"), "--per-label", "1",
                 "--no-progress"]) == 0


def test_version(capsys):
    from artok import __version__

    assert _run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"artok {__version__}"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_sets_options_and_the_command_line_wins(suffix, pair, tmp_path, capsys):
    _, _, generator = pair
    config = tmp_path / f"sample{suffix}"
    options = {"generator": str(generator), "per-label": 2, "cfg_scale": 1.5, "no-progress": True,
               "out": str(tmp_path / "from-file.png")}
    config.write_text(json.dumps(options) if suffix == ".json" else
                      "\n".join(f"{key}: {json.dumps(value)}" for key, value in options.items()))
    assert main(["sample", "--config", str(config)]) == 0
    assert "wrote 4 samples" in capsys.readouterr().out
    assert main(["sample", "--config", str(config), "--per-label", "1", "--out", str(tmp_path / "flag.png")]) == 0
    assert "wrote 2 samples" in capsys.readouterr().out and (tmp_path / "flag.png").exists()


def test_config_file_values_are_type_checked(pair, tmp_path, capsys):
    _, _, generator = pair
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"generator": str(generator), "cfg-scale": "nan"}))
    assert _run(["sample", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error: --config") and "finite" in err and "\n" not in err


def test_options_lists_fields_with_defaults_and_meaning(capsys):
    assert main(["options", "vq"]) == 0
    out = capsys.readouterr().out
    assert "codebook_size" in out and "(required)" in out and "cosine" in out
    assert main(["options", "mar", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "type", "default", "doc"} <= set(rows[0]) and "token_spec" not in {r["name"] for r in rows}
    assert _run(["options", "banana"]) == 2


def test_eval_metrics_record_seed_versions_threads_and_device(pair, tmp_path):
    _, tokenizer, _ = pair
    out = tmp_path / "m.json"
    assert main(["eval", "--tokenizer", str(tokenizer), "--out", str(out), "--seed", "7", "--no-progress"]) == 0
    run = json.loads(out.read_text())["run"]
    assert run["seed"] == 7 and run["device"] == "cpu" and run["threads"] >= 1
    assert {"artok", "torch", "numpy", "python"} <= set(run["versions"])


def test_warnings_are_one_artok_line(tmp_path, capsys, image_folder):
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    (folder / "class0" / "broken.png").write_bytes(b"not a png")
    assert main(["train-tokenizer", "--dataset", f"folder:{folder}", "--image-size", "8", "--out", str(tmp_path / "t"),
                 "--base-channels", "8", *QUICK]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "broken.png" in line]
    assert lines and all(line.startswith("artok: warning: ") for line in lines)
    assert "UserWarning" not in err and ".py:" not in err


def test_malicious_checkpoint_is_refused_without_unsafe_advice(pair, tmp_path, capsys):
    _, tokenizer, _ = pair
    out = tmp_path / "run"
    out.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    import pickle

    (out / "checkpoint.pt").write_bytes(pickle.dumps({"model": Evil()}))
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--out", str(out), "--resume", *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error: no readable checkpoint") and "\n" not in err
    assert "weights_only=False" not in err and "run code" in err
    assert not (tmp_path / "pwned").exists()


def test_out_of_memory_is_one_line_exit_2_and_other_bugs_exit_1(monkeypatch, capsys):
    import artok.cli.main as cli

    def out_of_memory(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 1 TB")

    def bug(args):
        raise KeyError("oops")

    monkeypatch.setitem(cli.COMMANDS, "options", out_of_memory)
    monkeypatch.setattr(cli, "build_parser", _parser_keeping(cli, "options", out_of_memory))
    assert cli.main(["options"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error: out of memory") and "\n" not in err
    monkeypatch.setattr(cli, "build_parser", _parser_keeping(cli, "options", bug))
    assert cli.main(["options"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error: internal error (KeyError") and "--debug" in err and "\n" not in err


def _parser_keeping(cli, name, command):
    """build_parser, with ``name`` dispatching to ``command`` (the real parser re-registers it)."""
    original = cli.build_parser

    def build():
        parser = original()
        cli.COMMANDS[name] = command
        return parser

    return build
