"""A 1D two-component Gaussian mixture for the continuous-head tests."""

from __future__ import annotations

import pytest
import torch

WEIGHTS = (0.3, 0.7)
MEANS = (-1.5, 1.0)
STDS = (0.3, 0.5)


def mixture_samples(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count x 1`` draws of the mixture."""
    component = (torch.rand(count, generator=generator) < WEIGHTS[0]).long()
    means = torch.tensor([MEANS[1], MEANS[0]])[component]
    stds = torch.tensor([STDS[1], STDS[0]])[component]
    return (means + stds * torch.randn(count, generator=generator)).unsqueeze(1)


def mixture_moments() -> tuple[float, float]:
    mean = sum(w * m for w, m in zip(WEIGHTS, MEANS))
    second = sum(w * (s**2 + m**2) for w, m, s in zip(WEIGHTS, MEANS, STDS))
    return mean, second - mean**2


def train_head(head: torch.nn.Module, steps: int = 400, batch: int = 512, lr: float = 3e-3) -> torch.nn.Module:
    """Fit ``head`` to the mixture with a constant (zero) condition vector."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    cond_dim = head.net.cond_proj.in_features
    for _ in range(steps):
        x = mixture_samples(batch)
        loss = head.loss(torch.zeros(batch, cond_dim), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return head.eval()


@pytest.fixture(scope="session")
def mixture() -> tuple[float, float]:
    """(mean, variance) of the mixture."""
    return mixture_moments()


@pytest.fixture(scope="session")
def fit_mixture():
    """``fit_mixture(head, steps=...)`` trains a continuous head on the mixture (single-threaded)."""

    def fit(head, **kwargs):
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return train_head(head, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return fit


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded (and do not oversubscribe a shared CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
