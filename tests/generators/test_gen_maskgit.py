"""MaskGIT: training masks follow the schedule, loss on masked positions only, training works."""

import pytest
import torch

from artok.generators import IncompatibleTokensError, MaskGITConfig, MaskGITGenerator
from artok.tokens import TokenSpec

SPEC = TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=16)


def make(token_spec=SPEC, **options):
    return MaskGITGenerator(MaskGITConfig(token_spec=token_spec.to_dict(), **{"num_classes": 3, "dim": 32, "depth": 2,
                                                                        "num_heads": 2, **options}))


def test_trains(learnable_tokens, fit):
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    losses = fit(make(), learnable_tokens(SPEC, labels), labels, steps=40)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_random_mask_counts_follow_cosine_schedule():
    generator = make()
    torch.manual_seed(0)
    mask = generator.random_mask(4000, "cpu")
    counts = mask.sum(1).float()
    assert counts.min() >= 1 and counts.max() <= 16
    # E[ceil(16 cos(pi/2 u))] for u ~ U(0, 1): 16 * 2/pi + ~0.5
    assert abs(counts.mean().item() - (16 * 2 / torch.pi + 0.5)) < 0.3


def test_bidirectional_and_masked_positions_are_hidden():
    generator = make().eval()
    ids = torch.randint(0, 16, (1, 16))
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, 5] = True
    other = ids.clone()
    other[0, 5] = (ids[0, 5] + 1) % 16
    changed = ids.clone()
    changed[0, 12] = (ids[0, 12] + 1) % 16
    labels = torch.tensor([1])
    with torch.no_grad():
        base = generator(ids, mask, labels)
        # the id under the mask is invisible
        torch.testing.assert_close(generator(other, mask, labels), base)
        # a later position influences an earlier one (bidirectional)
        assert not torch.allclose(generator(changed, mask, labels)[0, 0], base[0, 0])


def test_incompatible_pairings():
    with pytest.raises(IncompatibleTokensError, match="discrete"):
        make(token_spec=TokenSpec("continuous", "grid", grid=(4, 4), channels=4))
    with pytest.raises(IncompatibleTokensError, match="bitwise"):
        MaskGITGenerator.check_spec(TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=2**20))
    with pytest.raises(IncompatibleTokensError, match="power-of-two"):
        make(head="bitwise", token_spec=TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=12))
    with pytest.raises(ValueError, match="mask_schedule"):
        make(mask_schedule="exp")
