import pytest
import torch

from artok.losses import reconstruction_loss


def test_weighted_l1_l2_match_manual():
    x = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    y = torch.zeros_like(x)
    out = reconstruction_loss(x, y, l2_weight=2.0, l1_weight=0.5)
    l2 = (0 + 1 + 1 + 0.25) / 4
    l1 = (0 + 1 + 1 + 0.5) / 4
    assert out.l2.item() == pytest.approx(l2) and out.l1.item() == pytest.approx(l1)
    assert out.total.item() == pytest.approx(2.0 * l2 + 0.5 * l1)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
