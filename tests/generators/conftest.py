"""Fixtures for the generator-zoo tests: tiny tokenizers, learnable synthetic tokens, a training helper."""

from __future__ import annotations

import pytest
import torch

from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokens import Tokens, TokenSpec


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded (and do not oversubscribe a shared CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_tokenizer(quantizer: str, options: dict, latent_dim: int = 8) -> CNNTokenizer:
    """An untrained 8x8 -> 4x4 CNN tokenizer with any quantizer."""
    config = CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=latent_dim,
                                quantizer=quantizer, quantizer_options=options)
    return CNNTokenizer(config).eval()


TOKENIZERS = {
    "vq": lambda: tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4}),
    "lfq": lambda: tiny_tokenizer("lfq", {"codebook_dim": 6}),
    "msvq": lambda: tiny_tokenizer("msvq", {"codebook_size": 16, "scales": (1, 2, 4)}),
    "kl": lambda: tiny_tokenizer("kl", {}, latent_dim=4),
    "ptq": lambda: tiny_tokenizer("ptq", {"bits": 2}, latent_dim=3),
}


@pytest.fixture
def make_tokenizer():
    """``make_tokenizer(name)`` with name in vq, lfq, msvq, kl, ptq."""
    return lambda name: TOKENIZERS[name]()


def structured_tokens(spec: TokenSpec, labels: torch.Tensor) -> Tokens:
    """Tokens that depend on the label and position only (plus a little noise for continuous ones),
    so a model can fit them and its loss must fall."""
    positions = torch.arange(spec.seq_len)
    if spec.kind == "continuous":
        base = torch.sin(positions[None, :, None] * 0.7 + labels[:, None, None].float() * 1.3 + torch.arange(spec.channels))
        return Tokens(spec, values=base + 0.05 * torch.randn(labels.shape[0], spec.seq_len, spec.channels))
    ids = (labels[:, None] * 3 + positions[None] * 5) % spec.vocab_size
    if spec.subtokens > 1:
        ids = (ids[..., None] + torch.arange(spec.subtokens)) % spec.vocab_size
    return Tokens(spec, ids=ids)


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
