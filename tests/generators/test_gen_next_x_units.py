"""xAR next-X with the transformer denoiser: every unit (token, cell, image, scale) trains, the
scale layout, teacher-forced training, save/load of the new options, and clear option errors."""

import pytest
import torch

from artok.generators import IncompatibleTokensError, NextXConfig, NextXGenerator
from artok.generators.next_x.model import normalized_scales, scale_pyramid
from artok.hub import from_pretrained, save_pretrained
from artok.sampling import NextXSamplerConfig
from artok.tokens import TokenSpec
from artok.zoo import sample

SPEC = TokenSpec("continuous", "grid", grid=(5, 5), channels=3)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


def make(token_spec=SPEC, **options):
    defaults = {"num_classes": 3, "dim": 32, "depth": 2, "num_heads": 2, "head_width": 32, "head_depth": 2,
                "denoiser": "transformer"}
    return NextXGenerator(NextXConfig(token_spec=token_spec.to_dict(), **{**defaults, **options}))


def randomize_zero_init(generator):
    """adaLN-Zero gates and the output layer start at zero (velocity 0): make every path non-trivial."""
    with torch.no_grad():
        for parameter in generator.parameters():
            if not parameter.any():
                parameter.normal_(std=0.2)


UNITS = {
    "token": {"unit": "token"},
    "cell": {"unit": "cell", "cell_size": 2},
    "image": {"unit": "image"},
    "scale": {"unit": "scale"},
    "scale-pairs": {"unit": "scale", "scales": [[1, 1], [2, 3], [5, 5]]},
    "cell-teacher-forced": {"unit": "cell", "cell_size": 2, "noisy_context": False},
    "cell-logit-normal": {"unit": "cell", "cell_size": 3, "time_sampling": "logit-normal"},
}


def test_default_is_the_transformer_denoiser():
    assert NextXConfig(token_spec=SPEC.to_dict()).denoiser == "transformer"
    generator = make()
    assert generator.config.denoiser == "transformer" and not hasattr(generator, "head")


@pytest.mark.parametrize("options", list(UNITS.values()), ids=list(UNITS))
def test_transformer_denoiser_trains(learnable_tokens, fit, options):
    generator = make(**options)
    losses = fit(generator, learnable_tokens(SPEC, LABELS), LABELS, steps=40)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_default_scales_halve_the_grid():
    assert normalized_scales(None, (7, 7)) == [[1, 1], [2, 2], [4, 4], [7, 7]]
    assert normalized_scales(None, (4, 6)) == [[1, 1], [1, 2], [2, 3], [4, 6]]
    assert normalized_scales([1, 3, 5], (5, 5)) == [[1, 1], [3, 3], [5, 5]]
    generator = make(unit="scale")
    assert generator.entity_sizes == [1, 4, 9, 25] and generator.sequence_length == 39


def test_scale_layout_round_trips_and_downsamples_by_area():
    generator = make(unit="scale", scales=[1, 3, 5])
    values = torch.randn(2, 25, 3)
    sequence = generator.to_sequence(values)
    assert sequence.shape == (2, 1 + 9 + 25, 3)
    assert torch.equal(generator.from_sequence(sequence), values)  # the last scale is the input, exactly
    assert torch.equal(sequence[:, -25:], values)
    torch.testing.assert_close(sequence[:, 0], values.mean(1))  # 1 x 1 = the mean of the grid
    grid = values.transpose(1, 2).reshape(2, 3, 5, 5)
    expected = torch.nn.functional.adaptive_avg_pool2d(grid, (3, 3)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(sequence[:, 1:10], expected)
    assert torch.equal(scale_pyramid(values, (5, 5), [[5, 5]]), values)


def test_block_causal_mask_over_scales():
    generator = make(unit="scale", scales=[1, 2, 5])
    mask = generator.attention_mask
    assert mask.shape == (30, 30)
    assert mask[0].sum() == 1 and mask[1:5, :5].all() and not mask[1:5, 5:].any() and mask[5:].all()


def test_teacher_forcing_mask():
    generator = make(unit="cell", cell_size=3)  # 2 x 2 cells of 9 slots
    mask = generator.teacher_forcing_mask()
    size = generator.sequence_length
    entity = generator.entity_of_position
    clean, noisy = slice(0, size), slice(size, 2 * size)
    assert torch.equal(mask[clean, clean], entity[:, None] >= entity[None, :]) and not mask[clean, noisy].any()
    assert torch.equal(mask[noisy, clean], entity[:, None] > entity[None, :])
    assert torch.equal(mask[noisy, noisy], entity[:, None] == entity[None, :])


def test_padding_slots_carry_no_loss_and_no_input():
    generator = make(unit="cell", cell_size=2).eval()  # 5 x 5 in 2 x 2 cells: padding in the last row/column
    randomize_zero_init(generator)
    padding = ~generator.sequence_valid
    assert padding.any()
    x = torch.randn(2, generator.sequence_length, 3)
    t = torch.rand(2, generator.sequence_length)
    labels = torch.tensor([0, 1])
    y = x.clone()
    y[:, padding] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(generator.velocity(x, t, labels), generator.velocity(y, t, labels))


@pytest.mark.parametrize("name", ["scale-pairs", "cell-teacher-forced"])
def test_save_load_round_trip(tmp_path, name):
    generator = make(**UNITS[name], token_scale=0.5).eval()
    randomize_zero_init(generator)
    save_pretrained(generator, tmp_path / name)
    loaded = from_pretrained(tmp_path / name)
    assert isinstance(loaded, NextXGenerator) and type(loaded) is type(generator) and loaded.config == generator.config
    assert loaded.config.denoiser == "transformer" and loaded.config.scales == generator.config.scales
    for key, value in generator.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    config = NextXSamplerConfig(steps=3, cfg_scale=2.0)
    a = sample(generator, torch.tensor([0, 2]), config, torch.Generator().manual_seed(0)).values
    b = sample(loaded, torch.tensor([0, 2]), config, torch.Generator().manual_seed(0)).values
    assert torch.equal(a, b)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="denoiser"):
        make(denoiser="mlp")
    with pytest.raises(IncompatibleTokensError, match="2D grid"):
        make(token_spec=TokenSpec("continuous", "sequence", length=8, channels=3), unit="scale")
    with pytest.raises(ValueError, match="last scale"):
        make(unit="scale", scales=[1, 2, 4])
    with pytest.raises(ValueError, match="coarse to fine"):
        make(unit="scale", scales=[3, 2, 5])
    with pytest.raises(ValueError, match="pairs"):
        make(token_spec=TokenSpec("continuous", "grid", grid=(4, 6), channels=3), unit="scale", scales=[1, 2])
    with pytest.raises(ValueError, match="only used with unit='scale'"):
        make(unit="cell", scales=[1, 5])
    with pytest.raises(ValueError, match="needs denoiser='head'"):
        make(head="diffusion")
    with pytest.raises(ValueError, match="needs denoiser='transformer'"):
        make(unit="image", denoiser="head")
    with pytest.raises(ValueError, match="needs denoiser='transformer'"):
        make(unit="scale", denoiser="head")


def test_sequence_tokens_support_token_and_image_units():
    spec = TokenSpec("continuous", "sequence", length=6, channels=2)
    for unit in ("token", "image"):
        generator = make(token_spec=spec, unit=unit).eval()
        tokens = sample(generator, torch.tensor([1]), NextXSamplerConfig(steps=2), torch.Generator().manual_seed(0))
        assert tokens.spec == spec and tokens.values.shape == (1, 6, 2)


def test_each_denoiser_is_its_own_design():
    """``NextXGenerator(config)`` builds the design ``config.denoiser`` names; each holds only its
    own layers; a design class refuses the other design's config; both are the next-x kind."""
    from artok.generators.next_x.model import HeadDenoiserGenerator, XARDenoiserGenerator
    from artok.zoo import generator_kind

    xar, head = make(unit="cell"), make(unit="cell", denoiser="head")
    assert type(xar) is XARDenoiserGenerator and type(head) is HeadDenoiserGenerator
    assert hasattr(xar, "input_proj") and not hasattr(xar, "head") and not hasattr(xar, "context_proj")
    assert hasattr(head, "head") and not hasattr(head, "input_proj") and not hasattr(head, "output")
    assert generator_kind(xar) == generator_kind(head) == "next-x"
    with pytest.raises(ValueError, match="not the denoiser='head' design"):
        XARDenoiserGenerator(head.config)
    assert type(XARDenoiserGenerator(xar.config)) is XARDenoiserGenerator
