"""xAR next-X generator: unit layouts (with padding), noisy-context training, block-causal cache."""

import pytest
import torch

from artok.generators import IncompatibleTokensError, NextXConfig, NextXGenerator
from artok.generators.next_x.model import unit_layout
from artok.tokens import TokenSpec

SPEC = TokenSpec("continuous", "grid", grid=(5, 5), channels=3)


def make(token_spec=SPEC, **options):
    defaults = {"num_classes": 3, "dim": 32, "depth": 2, "num_heads": 2, "head_width": 32, "head_depth": 2}
    return NextXGenerator(NextXConfig(token_spec=token_spec.to_dict(), **{**defaults, **options}))


def test_unit_layout_pads_and_orders_cells():
    index, valid = unit_layout((3, 3), 2)
    assert index.shape == (4, 4)
    assert index[0].tolist() == [0, 1, 3, 4] and valid[0].all()
    assert valid[1].tolist() == [True, False, True, False] and index[1, [0, 2]].tolist() == [2, 5]
    assert valid[3].tolist() == [True, False, False, False] and index[3, 0] == 8
    assert sorted(index[valid].tolist()) == list(range(9))


@pytest.mark.parametrize("unit,size", [("token", 1), ("cell", 2), ("cell", 5), ("image", 1)])
def test_units_round_trip(unit, size):
    generator = make(unit=unit, cell_size=size)
    values = torch.randn(2, 25, 3)
    assert torch.equal(generator.from_units(generator.to_units(values)), values)
    assert torch.equal(generator.from_sequence(generator.to_sequence(values)), values)
    assert generator.num_units * generator.unit_size >= 25


@pytest.mark.parametrize("options", [{"unit": "token"}, {"unit": "cell", "cell_size": 2},
                                     {"unit": "cell", "cell_size": 2, "noisy_context": False, "head": "diffusion"}],
                         ids=["token", "cell", "cell-teacher-forced-diffusion"])
def test_head_denoiser_trains(learnable_tokens, fit, options):
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    losses = fit(make(denoiser="head", **options), learnable_tokens(SPEC, labels), labels, steps=40)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_head_design_cached_blocks_equal_full_pass():
    generator = make(unit="cell", cell_size=2, denoiser="head").eval()
    units = generator.to_units(torch.randn(2, 25, 3))
    labels = torch.tensor([0, 2])
    ones = torch.ones(2, generator.num_units - 1)
    with torch.no_grad():
        full = generator.transformer(generator.block_inputs(labels, units[:, :-1], ones))
        generator.setup_cache(2)
        steps = []
        for unit in range(generator.num_units):
            start, end = generator.unit_span(unit)
            context = None if unit == 0 else units[:, unit - 1]
            x = generator.block_input(labels, unit, context, None if unit == 0 else torch.ones(2))
            steps.append(generator.transformer(x, torch.arange(start, end)))
        generator.clear_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_incompatible_pairings():
    with pytest.raises(IncompatibleTokensError, match="continuous"):
        NextXGenerator.check_spec(TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=16))
    with pytest.raises(IncompatibleTokensError, match="2D grid"):
        make(token_spec=TokenSpec("continuous", "sequence", length=8, channels=3), unit="cell")
    with pytest.raises(ValueError, match="unit"):
        make(unit="pixel")
