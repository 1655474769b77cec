"""The MAR diffusion head: schedule, loss, and recovery of a 1D two-component Gaussian mixture."""

import pytest
import torch

from artok.heads import DiffusionHead, alphas_cumprod_schedule
from artok.sampling import respaced_timesteps, sample_diffusion


def test_cosine_schedule_is_decreasing_and_bounded():
    abar = alphas_cumprod_schedule(1000, "cosine")
    assert abar.shape == (1000,) and abar[0] > 0.999 and abar[-1] < 1e-3
    assert bool((abar[1:] < abar[:-1]).all())
    with pytest.raises(ValueError, match="noise schedule"):
        alphas_cumprod_schedule(10, "wild")


def test_respaced_timesteps():
    steps = respaced_timesteps(1000, 10)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 10 and bool((steps[1:] < steps[:-1]).all())
    assert torch.equal(respaced_timesteps(5, 5), torch.tensor([4, 3, 2, 1, 0]))


def test_recovers_gaussian_mixture_moments(fit_mixture, mixture):
    """Trained on draws of a 1D two-Gaussian mixture (constant condition), DDPM samples with 25
    respaced steps match its mean, variance and mode weights."""
    head = fit_mixture(DiffusionHead(1, 8, width=64, depth=2, num_timesteps=1000, prediction="v"), steps=250)
    z = torch.zeros(3000, 8)
    samples = sample_diffusion(head, z, steps=25, rng=torch.Generator().manual_seed(0)).squeeze(1)
    mean, variance = mixture
    assert abs(samples.mean().item() - mean) < 0.12
    assert abs(samples.var().item() - variance) / variance < 0.15
    # both modes are present in about the right proportion
    left = (samples < -0.25).float().mean().item()
    assert abs(left - 0.3) < 0.07


def test_epsilon_and_v_parameterisations_agree_on_x0():
    """Both parameterisations map their own regression target back to the true clean token."""
    x0, noise = torch.randn(5, 3), torch.randn(5, 3)
    t = torch.tensor([0, 10, 500, 900, 999])
    for prediction in ("epsilon", "v"):
        head = DiffusionHead(3, 4, width=8, depth=1, prediction=prediction)
        abar = head.alphas_cumprod[t].float().unsqueeze(-1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        target = noise if prediction == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
        torch.testing.assert_close(head.x0_from_output(x_t, t, target), x0, atol=2e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="prediction"):
        DiffusionHead(3, 4, prediction="x")


def test_loss_decreases():
    torch.manual_seed(0)
    head = DiffusionHead(2, 4, width=32, depth=2)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    z, x = torch.randn(256, 4), torch.randn(256, 2) * 0.1 + 1.0
    losses = []
    for _ in range(60):
        loss = head.loss(z, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])


def test_guidance_with_equal_conditions_is_a_no_op():
    head = DiffusionHead(2, 4, width=16, depth=1, num_timesteps=100).eval()
    z = torch.randn(3, 4)
    plain = sample_diffusion(head, z, steps=10, rng=torch.Generator().manual_seed(1))
    guided = sample_diffusion(head, torch.cat([z, z]), steps=10, guided=True, cfg_scale=4.0, rng=torch.Generator().manual_seed(1))
    torch.testing.assert_close(plain, guided)
