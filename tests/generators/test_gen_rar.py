"""RAR (randomized autoregressive): the annealed random-order ratio, per-row permutations, target-aware
positions, training == raster sampling after annealing, the trainer's step hook, the raster engine and
cached loop unchanged, and the command line."""

from __future__ import annotations

import json

import pytest
import torch
from artok_test_helpers import TOKENIZERS, fast_sampler, structured_tokens

from artok.cli.main import main
from artok.generators.rar import RARConfig, RARGenerator
from artok.generators.raster.sample import sample_raster_recompute
from artok.training import TrainConfig, train_generator
from artok.zoo import build_generator, kind_of, sample

SMALL = {"dim": 32, "depth": 2, "num_heads": 2, "class_dropout": 0.0}


def _generator(**options) -> RARGenerator:
    torch.manual_seed(0)
    return build_generator("rar", TOKENIZERS["vq"](), num_classes=3, **{**SMALL, **options})


def test_ratio_anneals_linearly_from_one_to_zero():
    config = _generator(anneal_start=10, anneal_end=30).config
    assert [config.random_order_ratio(step) for step in (0, 9, 10, 20, 25, 30, 99)] == [1, 1, 1, 0.5, 0.25, 0, 0]
    with pytest.raises(ValueError, match="anneal_start <= anneal_end"):
        _generator(anneal_start=5, anneal_end=2)
    with pytest.raises(ValueError, match="categorical head only"):
        RARConfig(token_spec=config.token_spec, head="bitwise")


def test_orders_are_per_row_permutations_then_raster():
    generator = _generator(anneal_start=10, anneal_end=20)
    orders = generator.sample_orders(64, "cpu")
    assert torch.equal(orders.sort(dim=1).values, torch.arange(16).expand(64, 16))
    assert (orders != torch.arange(16)).any(dim=1).float().mean() > 0.9
    generator.set_step(15)  # ratio 0.5: about half the rows permuted
    permuted = (generator.sample_orders(400, "cpu") != torch.arange(16)).any(dim=1).float().mean()
    assert 0.4 < permuted < 0.6
    generator.set_step(20)
    assert torch.equal(generator.sample_orders(8, "cpu"), torch.arange(16).expand(8, 16))


def test_after_annealing_training_sees_what_raster_sampling_sees():
    generator = _generator().eval()
    ids = torch.randint(0, 16, (3, 16))
    labels = torch.tensor([0, 1, 2])
    raster = torch.arange(16).expand(3, 16)
    trained = generator.head(generator.ordered_hidden(ids, labels, raster))
    sampled = generator(ids[:, :-1], labels)  # the recompute sampler's forward
    torch.testing.assert_close(trained, sampled, rtol=1e-5, atol=1e-5)


def test_target_aware_positions_tell_the_model_the_next_cell():
    generator = _generator().eval()
    ids, labels = torch.randint(0, 16, (1, 16)), torch.tensor([1])
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))[None]
    swapped = order.clone()
    swapped[0, [5, 6]] = order[0, [6, 5]]  # same inputs up to position 5, another target at 5
    a = generator.head(generator.ordered_hidden(ids, labels, order))
    b = generator.head(generator.ordered_hidden(ids, labels, swapped))
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5], b[:, 5])
    with torch.no_grad():
        generator.target_position.weight.zero_()
    a = generator.head(generator.ordered_hidden(ids, labels, order))
    b = generator.head(generator.ordered_hidden(ids, labels, swapped))
    torch.testing.assert_close(a[:, 5], b[:, 5])  # without them, position 5 cannot know its target


def test_the_trainer_sets_the_step_and_the_loss_reports_the_ratio():
    generator = _generator(anneal_start=2, anneal_end=6)
    labels = torch.arange(3).repeat(4)
    tokens = structured_tokens(generator.spec, labels)
    train_generator(generator, tokens, labels, TrainConfig(steps=8, batch_size=12, lr=3e-3, warmup_steps=1,
                                                           progress=False))
    assert generator.training_step == 7
    assert generator.loss(tokens, labels)["random_order_ratio"].item() == 0.0


def test_samples_with_the_raster_engine_and_cache_unchanged():
    generator = _generator().eval()
    assert kind_of(generator).name == "rar"
    config, labels = fast_sampler(generator, cfg_scale=2.0), torch.tensor([0, 2, 1])
    plain = sample(generator, labels, config, torch.Generator().manual_seed(4))
    engine = sample(generator, labels, config, torch.Generator().manual_seed(4), engine=True)
    uncached = sample_raster_recompute(generator, labels, config, torch.Generator().manual_seed(4))
    assert torch.equal(plain.ids, engine.ids) and torch.equal(plain.ids, uncached.ids)


def test_command_line_trains_samples_and_benchmarks_rar(tmp_path):
    tokenizer, generator = tmp_path / "tok", tmp_path / "gen"
    assert main(["train-tokenizer", "--dataset", "digits", "--out", str(tokenizer), "--base-channels", "8",
                 "--steps", "2", "--no-progress"]) == 0
    options = json.dumps({"anneal_start": 2, "anneal_end": 4})
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "rar", "--out", str(generator),
                 "--steps", "6", "--dim", "32", "--depth", "1", "--heads", "2", "--generator-options", options,
                 "--no-progress"]) == 0
    assert json.loads((generator / "config.json").read_text())["model_type"] == "rar"
    assert main(["sample", "--generator", str(generator), "--labels", "0,1", "--per-label", "1",
                 "--out", str(tmp_path / "rar.png"), "--no-progress"]) == 0
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(generator), "--batch-sizes", "1", "--out", str(bench),
                 "--no-progress"]) == 0
    assert json.loads(bench.read_text())["rows"][0]["images_per_s"] > 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "rar", "--out", str(tmp_path / "x"),
                 "--generator-options", '{"anneal_start": 5, "anneal_end": 1}', "--no-progress"]) == 2
