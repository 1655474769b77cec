"""``artok train-generator --generator KIND`` and ``artok sample`` over the zoo."""

import json

import pytest
import torch

from artok.cli.main import main
from artok.hub import load_config, save_pretrained
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTOK_CACHE", str(tmp_path / "cache"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(previous)


def saved_tokenizer(path, quantizer, options, latent_dim=4):
    torch.manual_seed(0)
    config = CNNTokenizerConfig(image_size=16, base_channels=8, channel_multipliers=(1, 2, 2), latent_dim=latent_dim,
                                quantizer=quantizer, quantizer_options=options)
    save_pretrained(CNNTokenizer(config).eval(), path, extra={"dataset": "digits"})
    return str(path)


TINY = ["--steps", "2", "--dim", "32", "--depth", "1", "--heads", "2", "--batch-size", "8", "--no-progress"]


@pytest.mark.parametrize("kind,quantizer,options,sample_args", [
    ("next-scale", "msvq", {"codebook_size": 16, "scales": [1, 2, 4]}, []),
    ("mar", "kl", {}, ["--iterations", "4", "--sampling-steps", "3"]),
])
def test_train_and_sample(tmp_path, cache, capsys, kind, quantizer, options, sample_args):
    tokenizer = saved_tokenizer(tmp_path / "tok", quantizer, options)
    out = tmp_path / "gen"
    assert main(["train-generator", "--tokenizer", tokenizer, "--dataset", "digits", "--out", str(out),
                 "--generator", kind, "--cfg-scale", "2", *TINY]) == 0
    extra = load_config(out)["extra"]
    assert extra["sampling"]["kind"] == kind and extra["sampling"]["cfg_scale"] == 2.0
    assert list(cache.glob("tokens/digits-train-*.npy"))  # tokens were cached
    assert main(["sample", "--generator", str(out), "--labels", "0,1", "--per-label", "2",
                 "--out", str(tmp_path / "s.png"), "--no-progress", *sample_args]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_incompatible_pairing_is_one_line(tmp_path, cache, capsys):
    tokenizer = saved_tokenizer(tmp_path / "tok", "kl", {})
    assert main(["train-generator", "--tokenizer", tokenizer, "--dataset", "digits", "--out", str(tmp_path / "g"),
                 "--generator", "maskgit", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error:") and "\n" not in err and "discrete" in err


def test_sampling_option_of_another_kind_is_refused(tmp_path, cache, capsys):
    tokenizer = saved_tokenizer(tmp_path / "tok", "vq", {"codebook_size": 16, "codebook_dim": 4})
    out = tmp_path / "gen"
    assert main(["train-generator", "--tokenizer", tokenizer, "--dataset", "digits", "--out", str(out),
                 "--generator", "maskgit", "--generator-options", json.dumps({"mask_schedule": "linear"}), *TINY]) == 0
    assert main(["sample", "--generator", str(out), "--labels", "1", "--per-label", "1", "--out",
                 str(tmp_path / "s.png"), "--no-progress", "--sampling-steps", "3"]) == 2
    assert "do not apply to maskgit" in capsys.readouterr().err


def test_speculative_sampling_from_the_command_line(tmp_path, cache, capsys):
    tokenizer = saved_tokenizer(tmp_path / "tok", "kl", {})
    out = tmp_path / "gen"
    assert main(["train-generator", "--tokenizer", tokenizer, "--dataset", "digits", "--out", str(out),
                 "--generator", "mar", "--final-noise", "0.1", *TINY]) == 0
    assert load_config(out)["extra"]["sampling"]["final_noise"] == 0.1
    capsys.readouterr()
    # the target as its own draft: every drafted iteration is accepted
    assert main(["sample", "--generator", str(out), "--draft", str(out), "--draft-length", "2", "--labels", "0,1",
                 "--per-label", "2", "--iterations", "4", "--sampling-steps", "3", "--out", str(tmp_path / "s.png"),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "speculative: 2.00 per target pass, acceptance 1.000" in text
    # without final noise the exact acceptance test has no density: a one-line error
    assert main(["sample", "--generator", str(out), "--draft", str(out), "--final-noise", "0", "--labels", "0",
                 "--out", str(tmp_path / "t.png"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error:") and "final_noise" in err and "\n" not in err


def test_assd_from_the_command_line(tmp_path, cache, capsys):
    """``--draft self`` samples an any-order generator with ASSD (the model drafts for itself); a
    separate draft folder is refused in one line."""
    tokenizer = saved_tokenizer(tmp_path / "tok", "vq", {"codebook_size": 16, "codebook_dim": 4})
    out = tmp_path / "gen"
    assert main(["train-generator", "--tokenizer", tokenizer, "--dataset", "digits", "--out", str(out),
                 "--generator", "any-order", *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", "--generator", str(out), "--draft", "self", "--draft-length", "3", "--labels", "0,1",
                 "--per-label", "2", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "s.png").is_file() and "speculative:" in text and "acceptance" in text
    per_pass = float(text.split("speculative: ")[1].split(" per target pass")[0])
    assert 0.5 <= per_pass <= 2.0  # 16 tokens: >= 1 token per (draft + verify) pair, <= k + 1 = 4 per pair
    assert main(["sample", "--generator", str(out), "--draft", str(out), "--labels", "0", "--out",
                 str(tmp_path / "t.png"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artok: error:") and "--draft self" in err and "\n" not in err
