"""Fixtures for the generator-zoo tests: tiny tokenizers, learnable synthetic tokens, a training helper."""

from __future__ import annotations

import pytest
import torch
from artok_test_helpers import TOKENIZERS, structured_tokens

from artok.tokens import Tokens


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded (and do not oversubscribe a shared CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def make_tokenizer():
    """``make_tokenizer(name)`` with name in vq, lfq, msvq, kl, ptq."""
    return lambda name: TOKENIZERS[name]()


@pytest.fixture
def learnable_tokens():
    return structured_tokens


def train_losses(model: torch.nn.Module, tokens: Tokens, labels: torch.Tensor, steps: int = 30, lr: float = 3e-3) -> list[float]:
    """Losses of ``steps`` AdamW steps on one fixed batch."""
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.loss(tokens, labels)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.fixture
def fit():
    """``fit(model, tokens, labels, steps)`` -> list of losses."""
    return train_losses


def fell(losses: list[float], factor: float = 0.8) -> bool:
    """The mean of the last five losses is below ``factor`` times the mean of the first five."""
    return sum(losses[-5:]) < factor * sum(losses[:5])
