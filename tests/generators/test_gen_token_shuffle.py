"""Token-Shuffle: windows merge and split back (with padding of partial windows), h w / s^2 transformer
steps, cached == uncached, greedy samples are the teacher-forced forward's argmax, pad slots stay out
of the loss, hostile configs and the command line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from artok_test_helpers import TOKENIZERS, fast_sampler

from artok.cli.main import main
from artok.generators import IncompatibleTokensError
from artok.generators.token_shuffle import TokenShuffleConfig, TokenShuffleGenerator
from artok.generators.token_shuffle.sample import sample_token_shuffle, sample_token_shuffle_recompute
from artok.tokens import Tokens, TokenSpec
from artok.zoo import build_generator, sample

SMALL = {"dim": 32, "depth": 1, "num_heads": 2}


def _generator(grid=(3, 5), window=2, **options) -> TokenShuffleGenerator:
    torch.manual_seed(0)
    spec = TokenSpec("discrete", "grid", grid=grid, vocab_size=16)
    return TokenShuffleGenerator(TokenShuffleConfig(token_spec=spec.to_dict(), num_classes=3, window=window,
                                                    **{**SMALL, **options})).eval()


def test_windows_merge_and_split_back_with_padding():
    generator = _generator()
    assert generator.config.merged_grid == (2, 3) and generator.config.seq_len == 6
    ids = torch.arange(15)[None]
    groups = generator.group_ids(ids, pad=-1)
    assert groups.shape == (1, 6, 4)
    assert groups[0, 0].tolist() == [0, 1, 5, 6] and groups[0, 2].tolist() == [4, -1, 9, -1]
    assert groups[0, 5].tolist() == [14, -1, -1, -1]  # bottom-right window: one cell, three pads
    assert torch.equal(generator.ungroup_ids(groups), ids)
    assert int(generator.padding.sum()) == 6 * 4 - 15


def test_one_transformer_step_per_window(monkeypatch):
    generator = _generator(grid=(4, 4))
    calls = []
    original = generator.transformer
    monkeypatch.setattr(generator, "transformer", lambda *a, **k: calls.append(1) or original(*a, **k))
    tokens = sample_token_shuffle(generator, torch.tensor([0, 1]), fast_sampler(generator, cfg_scale=2.0),
                                  torch.Generator().manual_seed(0))
    assert len(calls) == 16 // 4 and tokens.ids.shape == (2, 16)


@pytest.mark.parametrize("options", [{"cfg_scale": 2.0}, {"cfg_scale": 1.0, "temperature": 0.7, "top_k": 4},
                                     {"cfg_scale": 3.0, "cfg_schedule": "linear", "top_p": 0.8}])
def test_cached_equals_uncached(options):
    generator = _generator(unshuffle_depth=2)
    config = replace(fast_sampler(generator), **options)
    labels = torch.tensor([0, 2, 1])
    cached = sample_token_shuffle(generator, labels, config, torch.Generator().manual_seed(3))
    uncached = sample_token_shuffle_recompute(generator, labels, config, torch.Generator().manual_seed(3))
    assert torch.equal(cached.ids, uncached.ids) and cached.ids.max() < 16


def test_greedy_samples_are_the_teacher_forced_argmax():
    generator = _generator()
    labels = torch.tensor([0, 1, 2])
    tokens = sample(generator, labels, replace(fast_sampler(generator), top_k=1), torch.Generator().manual_seed(0))
    groups = generator.group_ids(tokens.ids, pad=generator.pad_id)
    predicted = generator(groups[:, :-1], labels).argmax(-1)
    assert torch.equal(generator.ungroup_ids(predicted), tokens.ids)


def test_pad_slots_are_left_out_of_the_loss():
    generator = _generator()
    generator.config.class_dropout = 0.0
    ids, labels = torch.randint(0, 16, (2, 15)), torch.tensor([0, 1])
    loss = generator.loss(Tokens(generator.spec, ids=ids), labels)["loss"]
    groups = generator.group_ids(ids, pad=generator.pad_id)
    logits = generator(groups[:, :-1], labels)
    keep = ~generator.padding.expand(2, -1, -1)
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], groups[keep]))


def test_window_one_is_one_token_per_step():
    generator = _generator(window=1)
    assert generator.config.seq_len == 15 and not generator.padding.any()


def test_refuses_what_it_cannot_model():
    with pytest.raises(IncompatibleTokensError, match="token-shuffle generator models discrete tokens on a grid"):
        build_generator("token-shuffle", TOKENIZERS["kl"](), num_classes=3, **SMALL)
    with pytest.raises(ValueError, match="window >= 1"):
        build_generator("token-shuffle", TOKENIZERS["vq"](), num_classes=3, window=0, **SMALL)


def test_command_line_trains_samples_and_benchmarks_token_shuffle(tmp_path):
    tokenizer, generator = tmp_path / "tok", tmp_path / "gen"
    assert main(["train-tokenizer", "--dataset", "digits", "--out", str(tokenizer), "--base-channels", "8",
                 "--steps", "2", "--no-progress"]) == 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "token-shuffle", "--out",
                 str(generator), "--steps", "4", "--dim", "32", "--depth", "1", "--heads", "2",
                 "--generator-options", '{"window": 2}', "--no-progress"]) == 0
    assert json.loads((generator / "config.json").read_text())["model_type"] == "token_shuffle"
    assert main(["sample", "--generator", str(generator), "--labels", "0,1", "--per-label", "1", "--cfg-scale", "2",
                 "--out", str(tmp_path / "ts.png"), "--no-progress"]) == 0
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(generator), "--batch-sizes", "1", "--out", str(bench),
                 "--no-progress"]) == 0
    assert json.loads(bench.read_text())["rows"][0]["images_per_s"] > 0
