"""Helpers for exactness tests: a generator small enough that the law of whole sequences can be
enumerated (vocab 3, 4 positions: 81 sequences), and a chi-square goodness-of-fit test."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy import stats

from artok.generators import RasterConfig, RasterGenerator
from artok.generators.raster.engine import guidance_scales, guided_probs
from artok.tokens import TokenSpec

VOCAB, LENGTH = 3, 4


def enumerable_generator(seed: int, scale: float = 0.3) -> RasterGenerator:
    """A 1-layer raster generator over 4 positions x 3 ids whose weights are scaled up from the
    default init so that its conditionals are far from uniform (and differ between seeds)."""
    torch.manual_seed(seed)
    spec = TokenSpec("discrete", "sequence", length=LENGTH, vocab_size=VOCAB)
    generator = RasterGenerator(RasterConfig(token_spec=spec.to_dict(), num_classes=2, dim=16, depth=1, num_heads=2,
                                             dropout=0.0)).eval()
    with torch.no_grad():
        for parameter in generator.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, scale)
    return generator


def all_sequences() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(VOCAB), repeat=LENGTH)))


def sequence_index(ids: torch.Tensor) -> torch.Tensor:
    """Row of `all_sequences` for each sequence in ``ids`` (``N x LENGTH``)."""
    weights = VOCAB ** torch.arange(LENGTH - 1, -1, -1)
    return (ids * weights).sum(-1)


@torch.no_grad()
def exact_law(generator, label: int, config) -> torch.Tensor:
    """p(sequence) for every sequence, as the product of the sampler's conditionals (guided and
    filtered exactly as the samplers do), from a full causal forward without cache."""
    sequences = all_sequences()
    rows = torch.full((len(sequences),), label)
    ids = sequences
    if config.uses_cfg:
        rows = torch.cat([rows, torch.full_like(rows, generator.null_class)])
        ids = torch.cat([sequences, sequences])
    logits = generator(ids[:, :-1], rows)  # N x LENGTH x V
    scale = guidance_scales(config, LENGTH, "cpu")[None, :, None] if config.uses_cfg else 1.0
    probs = guided_probs(logits, config, scale)
    return probs.double().gather(-1, sequences[..., None]).squeeze(-1).prod(-1)


def chi_square_pvalue(samples: torch.Tensor, law: torch.Tensor) -> float:
    """Goodness of fit of sampled sequences to ``law``; cells expected < 5 times are pooled."""
    counts = torch.bincount(sequence_index(samples), minlength=len(law)).double()
    expected = law * counts.sum()
    small = expected < 5
    observed = torch.cat([counts[~small], counts[small].sum()[None]]) if small.any() else counts
    expected = torch.cat([expected[~small], expected[small].sum()[None]]) if small.any() else expected
    keep = expected > 0
    if (observed[~keep] > 0).any():
        return 0.0  # a sequence of probability 0 was sampled
    return float(stats.chisquare(observed[keep].numpy(), expected[keep].numpy()).pvalue)


def total_variation(samples: torch.Tensor, law: torch.Tensor) -> float:
    counts = torch.bincount(sequence_index(samples), minlength=len(law)).double()
    return 0.5 * float((counts / counts.sum() - law).abs().sum())


def perturbed_copy(generator, seed: int, noise: float) -> RasterGenerator:
    """A draft: ``generator`` with Gaussian noise of std ``noise`` added to its matrices."""
    torch.manual_seed(seed)
    draft = RasterGenerator(generator.config).eval()
    draft.load_state_dict(generator.state_dict())
    with torch.no_grad():
        for parameter in draft.parameters():
            if parameter.dim() > 1:
                parameter.add_(torch.randn_like(parameter) * noise)
    return draft


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread (and much faster on a shared, oversubscribed CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
