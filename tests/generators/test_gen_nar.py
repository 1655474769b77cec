"""NAR (next-neighbour): fronts of equal Manhattan distance, the block-causal dependency structure,
h + w - 1 forward passes per image, cached == uncached, greedy samples are the training forward's
argmax, CFG / temperature / top-k through the shared draw, hostile specs and the command line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from artok_test_helpers import TOKENIZERS, fast_sampler

from artok.cli.main import main
from artok.generators import IncompatibleTokensError
from artok.generators.nar import NARGenerator
from artok.generators.nar.model import front_cells
from artok.generators.nar.sample import sample_nar, sample_nar_recompute
from artok.tokens import TokenSpec
from artok.zoo import build_generator, sample

SMALL = {"dim": 32, "depth": 1, "num_heads": 2}


def _generator(grid=(3, 4), vocab=16, **options) -> NARGenerator:
    torch.manual_seed(0)
    spec = TokenSpec("discrete", "grid", grid=grid, vocab_size=vocab)
    from artok.generators.nar import NARConfig

    return NARGenerator(NARConfig(token_spec=spec.to_dict(), num_classes=3, **{**SMALL, **options})).eval()


def test_fronts_cover_the_grid_by_manhattan_distance():
    fronts = front_cells((3, 4))
    assert len(fronts) == 3 + 4 - 1 and sorted(sum(fronts, [])) == list(range(12))
    assert all(divmod(cell, 4)[0] + divmod(cell, 4)[1] == d for d, cells in enumerate(fronts) for cell in cells)
    assert _generator().config.num_fronts == 6


def test_a_cell_depends_only_on_earlier_fronts():
    generator = _generator()
    ids, labels = torch.randint(0, 16, (1, 12)), torch.tensor([1])
    logits = generator(ids, labels)
    for cell in range(12):
        front = sum(divmod(cell, 4))
        later = torch.tensor([k for k in range(12) if sum(divmod(k, 4)) >= front])
        changed = ids.clone()
        changed[0, later] = (changed[0, later] + 1) % 16
        torch.testing.assert_close(generator(changed, labels)[0, cell], logits[0, cell])
    earlier = ids.clone()
    earlier[0, 1] = (earlier[0, 1] + 1) % 16  # cell (0, 1), front 1
    assert not torch.allclose(generator(earlier, labels)[0, 2], logits[0, 2])  # its right neighbour (0, 2)


def test_one_forward_pass_per_front(monkeypatch):
    generator = _generator()
    calls = []
    original = generator.head_logits
    monkeypatch.setattr(generator, "head_logits", lambda *a, **k: calls.append(1) or original(*a, **k))
    tokens = sample_nar(generator, torch.tensor([0, 1]), fast_sampler(generator, cfg_scale=2.0),
                        torch.Generator().manual_seed(0))
    assert len(calls) == 3 + 4 - 1 and tokens.ids.shape == (2, 12)


@pytest.mark.parametrize("options", [{"cfg_scale": 2.0}, {"cfg_scale": 1.0, "temperature": 0.7, "top_k": 4},
                                     {"cfg_scale": 3.0, "cfg_schedule": "linear", "top_p": 0.8}])
def test_cached_equals_uncached(options):
    generator = _generator(vertical_depth=2)
    config = replace(fast_sampler(generator), **options)
    labels = torch.tensor([0, 2, 1])
    cached = sample_nar(generator, labels, config, torch.Generator().manual_seed(3))
    uncached = sample_nar_recompute(generator, labels, config, torch.Generator().manual_seed(3))
    assert torch.equal(cached.ids, uncached.ids)


def test_greedy_samples_are_the_training_forwards_argmax():
    generator = _generator()
    labels = torch.tensor([0, 1, 2])
    config = replace(fast_sampler(generator), top_k=1)
    tokens = sample(generator, labels, config, torch.Generator().manual_seed(0))
    assert torch.equal(generator(tokens.ids, labels).argmax(-1), tokens.ids)


def test_guidance_changes_samples_and_seeds_reproduce():
    generator = _generator()
    labels = torch.tensor([0, 1, 2, 0])
    plain = sample(generator, labels, fast_sampler(generator), torch.Generator().manual_seed(1))
    guided = sample(generator, labels, fast_sampler(generator, cfg_scale=4.0), torch.Generator().manual_seed(1))
    again = sample(generator, labels, fast_sampler(generator, cfg_scale=4.0), torch.Generator().manual_seed(1))
    assert torch.equal(guided.ids, again.ids) and not torch.equal(plain.ids, guided.ids)


def test_refuses_tokens_it_cannot_model():
    with pytest.raises(IncompatibleTokensError, match="nar generator models discrete tokens on a grid"):
        build_generator("nar", TOKENIZERS["kl"](), num_classes=3, **SMALL)
    with pytest.raises(IncompatibleTokensError, match="one id per cell"):
        build_generator("nar", TOKENIZERS["ptq"](), num_classes=3, **SMALL)
    with pytest.raises(ValueError, match="vertical_depth"):
        build_generator("nar", TOKENIZERS["vq"](), num_classes=3, vertical_depth=0, **SMALL)


def test_command_line_trains_samples_and_benchmarks_nar(tmp_path):
    tokenizer, generator = tmp_path / "tok", tmp_path / "gen"
    assert main(["train-tokenizer", "--dataset", "digits", "--out", str(tokenizer), "--base-channels", "8",
                 "--steps", "2", "--no-progress"]) == 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "nar", "--out", str(generator),
                 "--steps", "4", "--dim", "32", "--depth", "1", "--heads", "2", "--no-progress"]) == 0
    assert json.loads((generator / "config.json").read_text())["model_type"] == "nar"
    assert main(["sample", "--generator", str(generator), "--labels", "0,1", "--per-label", "1", "--cfg-scale", "2",
                 "--out", str(tmp_path / "nar.png"), "--no-progress"]) == 0
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(generator), "--batch-sizes", "1", "--out", str(bench),
                 "--no-progress"]) == 0
    assert json.loads(bench.read_text())["rows"][0]["images_per_s"] > 0
