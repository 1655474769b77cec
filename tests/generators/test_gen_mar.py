"""MAR: masked autoregression with a per-token diffusion (or flow) head, with and without the MAE split."""

import pytest
import torch

from artok.generators import IncompatibleTokensError, MARConfig, MARGenerator
from artok.generators.mar.model import truncated_normal_ratio
from artok.tokens import TokenSpec

SPEC = TokenSpec("continuous", "grid", grid=(4, 4), channels=4)


def make(**options):
    defaults = {"num_classes": 3, "dim": 32, "encoder_depth": 2, "num_heads": 2, "head_width": 32, "head_depth": 2}
    return MARGenerator(MARConfig(token_spec=SPEC.to_dict(), **{**defaults, **options}))


@pytest.mark.parametrize("options", [{}, {"decoder_depth": 1}, {"head": "flow"}, {"prediction": "epsilon"}],
                         ids=["single-stack", "mae-split", "flow-head", "epsilon"])
def test_trains(learnable_tokens, fit, options):
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    losses = fit(make(**options), learnable_tokens(SPEC, labels), labels, steps=40)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_truncated_normal_ratio_range():
    torch.manual_seed(0)
    ratios = torch.tensor([truncated_normal_ratio(1.0, 0.25, 0.7, 1.0) for _ in range(2000)])
    assert ratios.min() >= 0.7 and ratios.max() <= 1.0
    assert 0.84 < ratios.mean() < 0.88  # mean of N(1, .25) truncated to [.7, 1] is ~0.862


def test_unknown_tokens_are_invisible_and_split_matches_count_rule():
    for options in ({}, {"decoder_depth": 1}):
        generator = make(**options).eval()
        values = torch.randn(2, 16, 4)
        mask = torch.zeros(2, 16, dtype=torch.bool)
        mask[:, :5] = True
        other = values.clone()
        other[:, :5] = torch.randn(2, 5, 4)
        labels = torch.tensor([0, 1])
        with torch.no_grad():
            torch.testing.assert_close(generator.condition_vectors(other, mask, labels),
                                       generator.condition_vectors(values, mask, labels))
    generator = make(decoder_depth=1)
    uneven = torch.zeros(2, 16, dtype=torch.bool)
    uneven[0, 0] = True
    with pytest.raises(ValueError, match="same number"):
        generator.condition_vectors(torch.zeros(2, 16, 4), uneven, torch.tensor([0, 1]))


def test_incompatible_pairings():
    with pytest.raises(IncompatibleTokensError, match="continuous"):
        MARGenerator.check_spec(TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=16))
    with pytest.raises(IncompatibleTokensError, match="KL"):
        MARGenerator.check_spec(TokenSpec("continuous", "scales", scales=((1, 1), (2, 2)), channels=4))
    with pytest.raises(ValueError, match="head"):
        make(head="categorical")
