"""Hostile input to the command line: every malformed model folder and every bad invocation gets
one line on stderr (``artok: error: ...``), exit status 2, no traceback, and nothing written.

The cases are the ones a user test found (each printed a traceback or exited 0 with garbage
before the fix) plus their neighbours. ``python tests/cli/test_hostile_cli.py`` prints the tally
(used for the closing note's before/after figures).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from artok.cli.main import main

QUICK = ["--steps", "2", "--no-progress"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny tokenizer and raster generator trained for two steps on digits, by the CLI itself."""
    root = tmp_path_factory.mktemp("models")
    tokenizer, generator = root / "tok", root / "gen"
    assert main(["train-tokenizer", "--dataset", "digits", "--out", str(tokenizer), "--base-channels", "8", *QUICK]) == 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--out", str(generator), "--dim", "32",
                 "--depth", "1", "--heads", "2", *QUICK]) == 0
    return root, tokenizer, generator


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_config(folder: Path, edit) -> Path:
    path = folder / "config.json"
    payload = json.loads(path.read_text())
    payload = edit(payload)
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return folder


def _set(section: str, key: str, value):
    def edit(payload):
        payload[section][key] = value
        return payload
    return edit


def _delete(section: str, key: str):
    def edit(payload):
        del payload[section][key]
        return payload
    return edit


def _pickle(path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    path.write_bytes(pickle.dumps({"weight": Evil()}))


# Each folder case: (name, how to break a copy of the generator or tokenizer folder, which flag gets it).
FOLDER_CASES = {
    "empty folder": lambda g, t: _clear(g),
    "config.json not JSON": lambda g, t: _write(g / "config.json", "{not json"),
    "config.json a list": lambda g, t: _write(g / "config.json", "[1, 2, 3]"),
    "config.json empty": lambda g, t: _write(g / "config.json", ""),
    "no config section": lambda g, t: _edit_config(g, lambda p: {k: v for k, v in p.items() if k != "config"}),
    "config section a string": lambda g, t: _edit_config(g, lambda p: {**p, "config": "dim=32"}),
    "unknown config field": lambda g, t: _edit_config(g, _set("config", "dimm", 32)),
    "missing config field": lambda g, t: _edit_config(g, _delete("config", "token_spec")),
    "wrong-typed field": lambda g, t: _edit_config(g, _set("config", "dim", "thirty-two")),
    "invalid field value": lambda g, t: _edit_config(g, _set("config", "depth", -1)),
    "unknown model_type": lambda g, t: _edit_config(g, lambda p: {**p, "model_type": "gpt-9"}),
    "extra a list": lambda g, t: _edit_config(g, lambda p: {**p, "extra": [1]}),
    "no model.safetensors": lambda g, t: (g / "model.safetensors").unlink(),
    "empty model.safetensors": lambda g, t: _write(g / "model.safetensors", ""),
    "truncated model.safetensors": lambda g, t: _truncate(g / "model.safetensors"),
    "pickle as model.safetensors": lambda g, t: _pickle(g / "model.safetensors"),
    "shape mismatch": lambda g, t: _edit_config(g, _set("config", "dim", 64)),
    "weights of another dtype": lambda g, t: _retype(g / "model.safetensors"),
    "recorded tokenizer missing": lambda g, t: _edit_config(g, _set("extra", "tokenizer", "/nonexistent/tokenizer")),
}


def _clear(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink() if child.is_file() else shutil.rmtree(child)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _retype(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    save_file({name: tensor.to(torch.int32) if tensor.is_floating_point() else tensor for name, tensor in state.items()},
              str(path))


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_malformed_generator_folder_is_one_line(case, models, tmp_path, capsys):
    _, tokenizer, generator = models
    broken = _copy(generator, tmp_path / "gen")
    FOLDER_CASES[case](broken, tokenizer)
    _assert_one_line_error(["sample", "--generator", str(broken), "--out", str(tmp_path / "s.png"), "--no-progress"],
                           capsys)
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("case", ["empty folder", "config.json a list", "unknown config field", "truncated model.safetensors",
                                  "pickle as model.safetensors", "shape mismatch"])
def test_malformed_tokenizer_folder_is_one_line(case, models, tmp_path, capsys):
    _, tokenizer, _ = models
    broken = _copy(tokenizer, tmp_path / "tok")
    FOLDER_CASES[case](broken, tokenizer)
    _assert_one_line_error(["eval", "--tokenizer", str(broken), "--no-progress"], capsys)


def _run(argv) -> int:
    """``main(argv)``'s exit status, also when argparse exits (SystemExit) as ``artok`` would."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def _assert_one_line_error(argv, capsys) -> str:
    code = _run(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if not line.startswith("artok: warning:")]
    assert code == 2, f"exit {code} for {argv}: {captured.err[-600:]}"
    assert len(lines) == 1 and lines[0].startswith("artok: error: "), captured.err
    assert "Traceback" not in captured.err and "weights_only=False" not in captured.err
    return lines[0]


def invocations(root: Path, tokenizer: Path, generator: Path) -> dict[str, list[str]]:
    """Bad command lines, each of which must be refused before any work is done."""
    out = str(root / "new-out")
    existing_file = root / "a-file.txt"
    existing_file.write_text("not a folder")
    sample = ["sample", "--generator", str(generator), "--out", str(root / "s.png"), "--no-progress"]
    train_gen = ["train-generator", "--tokenizer", str(tokenizer), "--out", out, *QUICK]
    train_tok = ["train-tokenizer", "--out", out, *QUICK]
    return {
        "device cuda without CUDA": [*sample, "--device", "cuda"] if not torch.cuda.is_available() else [*sample, "--device", "cuda:99"],
        "device banana": [*sample, "--device", "banana"],
        "generator options a list": [*train_gen, "--generator-options", "[1, 2]"],
        "generator options not JSON": [*train_gen, "--generator-options", "{dim: 3"],
        "generator option wrong type": [*train_gen, "--generator-options", '{"dim": "big"}'],
        "generator option invalid": [*train_gen, "--generator-options", '{"depth": 0}'],
        "generator option unknown": [*train_gen, "--generator-options", '{"dimm": 32}'],
        "quantizer options a string": [*train_tok, "--quantizer-options", '"big"'],
        "quantizer option typo": [*train_tok, "--quantizer-options", '{"codebok_size": 64}'],
        "quantizer option wrong type": [*train_tok, "--quantizer-options", '{"codebook_size": "many"}'],
        "quantizer unknown": [*train_tok, "--quantizer", "banana"],
        "per-label -1": [*sample, "--per-label", "-1"],
        "per-label 0": [*sample, "--per-label", "0"],
        "samples-per-class 0": ["eval", "--generator", str(generator), "--samples-per-class", "0", "--no-progress"],
        "cfg-scale nan": [*sample, "--cfg-scale", "nan"],
        "cfg-scale inf": [*sample, "--cfg-scale", "inf"],
        "cfg-scale negative": [*sample, "--cfg-scale", "-1"],
        "temperature nan": [*sample, "--temperature", "nan"],
        "temperature 0": [*sample, "--temperature", "0"],
        "top-p 2": [*sample, "--top-p", "2"],
        "top-p nan": [*sample, "--top-p", "nan"],
        "top-k -1": [*sample, "--top-k", "-1"],
        "labels out of range": [*sample, "--labels", "99"],
        "labels not numbers": [*sample, "--labels", "a,b"],
        "sample out is a folder": ["sample", "--generator", str(generator), "--out", str(root), "--no-progress"],
        "draft is a tokenizer": [*sample, "--draft", str(tokenizer)],
        "draft-length 0": [*sample, "--draft", str(generator), "--draft-length", "0"],
        "demo steps 0": ["demo", "--out", out, "--steps", "0", "--no-progress"],
        "demo steps negative": ["demo", "--out", out, "--steps", "-5", "--no-progress"],
        "lr nan": [*train_tok, "--lr", "nan"],
        "lr negative": [*train_tok, "--lr", "-1"],
        "batch-size 0": [*train_tok, "--batch-size", "0"],
        "gan-weight nan": [*train_tok, "--gan-weight", "nan"],
        "out is an existing file (tokenizer)": ["train-tokenizer", "--out", str(existing_file), *QUICK],
        "out is an existing file (generator)": ["train-generator", "--tokenizer", str(tokenizer), "--out",
                                                str(existing_file), *QUICK],
        "out is an existing file (demo)": ["demo", "--out", str(existing_file), "--steps", "2", "--no-progress"],
        "tokenizer is a generator folder": ["train-generator", "--tokenizer", str(generator), "--out", out, *QUICK],
        "generator is a tokenizer folder": ["sample", "--generator", str(tokenizer), "--out", str(root / "s.png")],
        "resume with another dim": ["train-generator", "--tokenizer", str(tokenizer), "--out", str(generator), "--dim",
                                    "48", "--depth", "1", "--heads", "2", "--resume", *QUICK],
        "incompatible generator kind": [*train_gen, "--generator", "mar"],
        "unknown dataset": [*train_tok, "--dataset", "nonsense"],
        "missing folder dataset": [*train_tok, "--dataset", "folder:/nonexistent/images"],
        "image-size 0": [*train_tok, "--image-size", "0"],
        "image-size too large for memory": [*train_tok, "--image-size", "999999"],
        "checkpoint-every negative": [*train_tok, "--checkpoint-every", "-1"],
        "keep 0": [*train_tok, "--keep", "0"],
        "eval without a model": ["eval"],
        "config file missing": [*train_tok, "--config", str(root / "missing.json")],
        "config file with unknown option": [*train_tok, "--config", str(_write_json(root / "bad.json", {"stepz": 3}))],
        "config file not an object": [*train_tok, "--config", str(_write_json(root / "list.json", [1]))],
        "perceptual weights missing": [*train_tok, "--perceptual-weight", "1", "--perceptual-weights",
                                       str(root / "vgg.pth")],
        "bench batch size 0": ["bench", "--preset", "tiny", "--batch-sizes", "0"],
    }


def _write_json(path: Path, payload) -> Path:
    path.write_text(json.dumps(payload))
    return path


_NAMES = sorted(invocations(Path("/tmp"), Path("/tmp"), Path("/tmp")))


@pytest.mark.parametrize("case", _NAMES)
def test_bad_invocation_is_one_line(case, models, tmp_path, capsys):
    root, tokenizer, generator = models
    work = tmp_path / "work"
    work.mkdir()
    argv = invocations(work, tokenizer, generator)[case]
    before = _snapshot(generator)
    _assert_one_line_error(argv, capsys)
    assert not (work / "new-out").exists() or not any((work / "new-out").iterdir()), "an output was written"
    assert not (work / "s.png").exists()
    assert _snapshot(generator) == before, "the existing generator folder was modified"


def _snapshot(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


if __name__ == "__main__":  # the tally for the closing note: python tests/cli/test_hostile_cli.py
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "--tb=no", "-rN"]))
