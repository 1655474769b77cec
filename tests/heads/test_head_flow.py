"""The flow-matching head and its Euler / Euler-Maruyama samplers recover a 1D Gaussian mixture."""

import pytest
import torch

from artok.heads import FlowHead
from artok.sampling import sample_flow, sample_head


@pytest.fixture(scope="module")
def trained_flow_head(fit_mixture):
    """Trained once for both samplers."""
    return fit_mixture(FlowHead(1, 8, width=64, depth=2), steps=200, lr=5e-3)


@pytest.mark.parametrize("method", ["euler", "euler-maruyama"])
def test_recovers_gaussian_mixture_moments(trained_flow_head, mixture, method):
    samples = sample_flow(trained_flow_head, torch.zeros(3000, 8), steps=20, method=method,
                          rng=torch.Generator().manual_seed(0)).squeeze(1)
    mean, variance = mixture
    assert abs(samples.mean().item() - mean) < 0.12
    assert abs(samples.var().item() - variance) / variance < 0.15
    assert abs((samples < -0.25).float().mean().item() - 0.3) < 0.07


def test_one_euler_step_is_the_straight_path():
    """With the exact velocity of a point mass (v = x - eps), one Euler step lands on the data."""

    class PointMass(torch.nn.Module):
        token_dim = 2

        def velocity(self, x_t, t, z):
            return (torch.tensor([3.0, -1.0]) - x_t) / (1 - t[:, None])

    out = sample_flow(PointMass(), torch.zeros(4, 1), steps=1, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.tensor([[3.0, -1.0]]).expand(4, 2))


def test_method_errors():
    head = FlowHead(1, 2, width=8, depth=1)
    with pytest.raises(ValueError, match="euler"):
        sample_flow(head, torch.zeros(2, 2), method="rk4")
    with pytest.raises(ValueError, match="ddpm"):
        sample_head(head, torch.zeros(2, 2), steps=2, method="ddpm")
    with pytest.raises(ValueError, match="time_sampling"):
        FlowHead(1, 2, time_sampling="beta")
