"""Hi-MAR: pivots pool the grid, phase 1 is blind to the full tokens and phase 2 sees the pivots, the
iterations split between the phases, sampling is seeded and shaped, hostile configs, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from artok_test_helpers import TOKENIZERS, fast_sampler

from artok.cli.main import main
from artok.generators import IncompatibleTokensError
from artok.generators.hi_mar import HiMARConfig, HiMARGenerator
from artok.generators.hi_mar.sample import phase_iterations
from artok.tokens import TokenSpec
from artok.zoo import build_generator, sample

SMALL = {"dim": 32, "depth": 1, "num_heads": 2, "head_width": 16, "head_depth": 1}


def _generator(grid=(7, 7), **options) -> HiMARGenerator:
    torch.manual_seed(0)
    spec = TokenSpec("continuous", "grid", grid=grid, channels=4)
    return HiMARGenerator(HiMARConfig(token_spec=spec.to_dict(), num_classes=3, **{**SMALL, **options})).eval()


def test_pivots_are_the_pooled_grid():
    generator = _generator()
    assert generator.config.pivot_grid == (4, 4) and generator.config.num_pivots == 16
    values = torch.randn(2, 49, 4)
    pivots = generator.pivots(values)
    assert pivots.shape == (2, 16, 4)
    torch.testing.assert_close(generator.pivots(torch.ones(2, 49, 4) * 3), torch.full((2, 16, 4), 3.0))
    torch.testing.assert_close(pivots[:, 0], values.view(2, 7, 7, 4)[:, :2, :2].mean(dim=(1, 2)))


def test_phase_one_is_blind_to_full_tokens_and_phase_two_sees_the_pivots():
    generator, labels = _generator(), torch.tensor([0, 1])
    pivots, values = torch.randn(2, 16, 4), torch.randn(2, 49, 4)
    pivot_mask = torch.rand(2, 16) < 0.5
    hidden = torch.ones(2, 49, dtype=torch.bool)
    a = generator.condition_vectors(pivots, pivot_mask, values, hidden, labels)
    b = generator.condition_vectors(pivots, pivot_mask, values + 5, hidden, labels)
    torch.testing.assert_close(a, b)
    known = torch.zeros(2, 16, dtype=torch.bool)
    mask = torch.rand(2, 49) < 0.5
    c = generator.condition_vectors(pivots, known, values, mask, labels)[:, 16:]
    d = generator.condition_vectors(pivots + 1, known, values, mask, labels)[:, 16:]
    assert not torch.allclose(c, d)


def test_iterations_split_between_the_phases():
    assert phase_iterations(16, 16, 49) == (4, 12)
    assert phase_iterations(2, 16, 49) == (1, 1)
    assert phase_iterations(100, 4, 16) == (4, 16)


def test_samples_are_seeded_and_shaped():
    generator = _generator()
    config, labels = fast_sampler(generator, cfg_scale=2.0, iterations=4, steps=3), torch.tensor([0, 2])
    a = sample(generator, labels, config, torch.Generator().manual_seed(1))
    b = sample(generator, labels, config, torch.Generator().manual_seed(1))
    assert a.values.shape == (2, 49, 4) and torch.equal(a.values, b.values) and torch.isfinite(a.values).all()


def test_refuses_what_it_cannot_model():
    with pytest.raises(IncompatibleTokensError, match="continuous tokens"):
        build_generator("hi-mar", TOKENIZERS["vq"](), num_classes=3, **SMALL)
    with pytest.raises(ValueError, match="pivot_factor >= 2"):
        build_generator("hi-mar", TOKENIZERS["kl"](), num_classes=3, pivot_factor=1, **SMALL)
    with pytest.raises(ValueError, match="pivot_probability"):
        build_generator("hi-mar", TOKENIZERS["kl"](), num_classes=3, pivot_probability=1.0, **SMALL)


def test_command_line_trains_and_samples_hi_mar(tmp_path):
    tokenizer, generator = tmp_path / "tok", tmp_path / "gen"
    assert main(["train-tokenizer", "--dataset", "digits", "--quantizer", "kl", "--out", str(tokenizer),
                 "--base-channels", "8", "--steps", "2", "--no-progress"]) == 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "hi-mar", "--out", str(generator),
                 "--steps", "3", "--dim", "32", "--depth", "1", "--heads", "2",
                 "--generator-options", json.dumps({"head_width": 16, "head_depth": 1}), "--no-progress"]) == 0
    assert json.loads((generator / "config.json").read_text())["model_type"] == "hi_mar"
    assert main(["sample", "--generator", str(generator), "--labels", "0,1", "--per-label", "1",
                 "--out", str(tmp_path / "hi_mar.png"), "--no-progress"]) == 0
