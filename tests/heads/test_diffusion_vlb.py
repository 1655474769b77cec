"""The learned-variance training term of `DiffusionHead` (improved DDPM's hybrid loss, as MAR trains)."""

import math

import torch

from artok.heads.diffusion import DiffusionHead
from artok.heads.diffusion_vlb import discretized_gaussian_log_likelihood, normal_kl, posterior_terms, vlb_bits


def _schedule(steps: int = 50) -> torch.Tensor:
    return DiffusionHead(2, 4, width=8, depth=1, num_timesteps=steps).alphas_cumprod


def test_kl_is_zero_for_the_true_posterior_and_matches_the_closed_form():
    abar = _schedule()
    generator = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    t = torch.arange(1, 7)
    # v = -1 -> f = 0: the model's log variance is the posterior's; x0 known: the model mean is the true mean
    assert vlb_bits(abar, x0, x_t, t, x0, -torch.ones(6, 3)).abs().max() < 1e-6
    # a shifted mean costs (shift^2 / 2 var) / ln 2 bits per channel
    terms = posterior_terms(abar, t)
    shifted = vlb_bits(abar, x0, x_t, t, x0 + 0.01, -torch.ones(6, 3))
    expected = (terms["c_x0"] * 0.01) ** 2 / (2 * terms["log_variance"].exp()) / math.log(2)
    torch.testing.assert_close(shifted.double(), expected, rtol=1e-3, atol=1e-7)
    # and normal_kl is the textbook formula
    kl = normal_kl(torch.tensor(0.3), torch.tensor(-1.0), torch.tensor(-0.2), torch.tensor(0.5))
    reference = 0.5 * (0.5 - (-1.0)) + (math.exp(-1.0) + 0.25) / (2 * math.exp(0.5)) - 0.5
    assert abs(float(kl) - reference) < 1e-6


def test_decoder_likelihood_is_the_gaussian_mass_of_the_bin():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0])
    mean, log_scale = torch.tensor([-0.9, -0.48, 0.01, 0.25, 0.95]), torch.full((5,), math.log(0.05))
    got = discretized_gaussian_log_likelihood(x, mean, log_scale).exp()
    scale = log_scale.exp()
    upper = torch.special.ndtr((x + 1 / 255 - mean) / scale)
    lower = torch.special.ndtr((x - 1 / 255 - mean) / scale)
    expected = torch.where(x <= -0.999, upper, torch.where(x >= 0.999, 1 - lower, upper - lower))
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-6)  # the tanh approximation of the CDF


def test_learned_variance_trains_and_the_mean_only_sees_the_mse():
    torch.manual_seed(0)
    head = DiffusionHead(3, 8, width=16, depth=2, num_timesteps=100, learn_sigma=True)
    z, target = torch.randn(32, 8), torch.randn(32, 3).clamp(-1, 1)
    t, noise = torch.randint(0, 100, (32,)), torch.randn(32, 3)
    t[:4] = 0
    per_row = head.loss_at(z, target, t, noise)
    per_row.mean().backward()
    assert per_row.shape == (32,) and torch.isfinite(per_row).all()
    output_layer = [p for p in head.parameters() if p.dim() == 2 and p.shape[0] == 6][-1]  # 2 x 3 channels out
    hybrid = output_layer.grad.clone()
    assert hybrid[3:].abs().sum() > 0  # the variance channels get a gradient (before this term: none)
    # the prediction rows get exactly the MSE's gradient: the VLB sees the mean through a stop-gradient
    head.zero_grad()
    x_t, goal = head._noised(target, t, noise)
    (head(x_t, t, z) - goal).pow(2).mean(-1).mean().backward()
    torch.testing.assert_close(hybrid[:3], output_layer.grad[:3])


def test_learned_variance_loss_decreases():
    torch.manual_seed(0)
    head = DiffusionHead(2, 4, width=32, depth=2, num_timesteps=100, learn_sigma=True)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    z = torch.randn(256, 4)
    target = torch.tanh(z[:, :2])
    generator = torch.Generator().manual_seed(1)
    t, noise = torch.randint(0, 100, (256,), generator=generator), torch.randn(256, 2, generator=generator)
    with torch.no_grad():
        first = float(head.loss_at(z, target, t, noise).mean())
    for _ in range(150):
        optimizer.zero_grad()
        head.loss(z, target).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(head.loss_at(z, target, t, noise).mean()) < 0.7 * first
