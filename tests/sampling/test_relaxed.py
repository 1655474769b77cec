"""Relaxed acceptance (LANTERN, grouped speculative decoding): off = exact, token for token; on =
more acceptance with the per-token law the docstrings state."""

import pytest
import torch
from exact_law import (
    enumerable_generator,
    one_thread,  # noqa: F401  (autouse fixture)
    perturbed_copy,
)

from artok.generators.raster.jacobi import jacobi_sample
from artok.generators.raster.speculative import speculative_sample
from artok.sampling.configs import SamplerConfig
from artok.sampling.relaxed import (
    GroupedAcceptance,
    LanternAcceptance,
    lantern_acceptance,
    latent_neighbours,
    tokenizer_codebook,
)
from artok.sampling.speculative import EXACT, accepted_mass, per_token_tv, verify_drafts


@pytest.fixture(scope="module")
def pair():
    target = enumerable_generator(0, scale=0.2)
    return target, perturbed_copy(target, 1, noise=0.03)


def neighbours_of_line(vocab: int, k: int) -> torch.Tensor:
    return latent_neighbours(torch.arange(vocab, dtype=torch.float32)[:, None] ** 1.5, k)


def test_latent_neighbours_nearest_first():
    codebook = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert latent_neighbours(codebook, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert latent_neighbours(codebook, 0).shape == (4, 0)
    with pytest.raises(ValueError):
        latent_neighbours(codebook, 4)


def test_tokenizer_codebook(tiny_tokenizer):
    codebook = tokenizer_codebook(tiny_tokenizer)
    assert codebook.shape[0] == tiny_tokenizer.spec.vocab_size and codebook.dim() == 2
    assert lantern_acceptance(tiny_tokenizer, k=3, delta=0.1).neighbours.shape == (16, 3)


OFF = [
    LanternAcceptance(torch.zeros(3, 0, dtype=torch.long), delta=0.5),  # no neighbours
    LanternAcceptance(neighbours_of_line(3, 2), delta=0.0),  # no budget
    GroupedAcceptance(rank_window=0),  # groups of one token
]


@pytest.mark.parametrize("acceptance", OFF, ids=["lantern-k0", "lantern-delta0", "grouped-w0"])
def test_relaxations_switched_off_are_exact_token_for_token(pair, acceptance):
    target, draft = pair
    config = SamplerConfig(cfg_scale=1.5, top_k=2)
    labels = torch.ones(300, dtype=torch.long)

    def run(rule):
        spec = speculative_sample(target, draft, labels, config, torch.Generator().manual_seed(3), num_draft=2,
                                  acceptance=rule).tokens.ids
        jacobi = jacobi_sample(target, labels, config, torch.Generator().manual_seed(4), window=2,
                               acceptance=rule).tokens.ids
        return spec, jacobi

    for exact, relaxed in zip(run(None), run(acceptance)):
        assert torch.equal(exact, relaxed)
    assert acceptance.exact


def _one_step_law(acceptance, p, q, draws=200_000, seed=0):
    """Empirical law of the token emitted at one position (k = 1) when drafts come from q."""
    rng = torch.Generator().manual_seed(seed)
    rows = draws
    drafts = torch.multinomial(q, rows, replacement=True, generator=rng)[:, None]
    result = verify_drafts(p.expand(rows, 2, -1), q.expand(rows, 1, -1), drafts, rng, acceptance)
    emitted = torch.where(result.num_accepted > 0, drafts[:, 0], result.next_token)
    return torch.bincount(emitted, minlength=p.shape[-1]).double() / rows, result.num_accepted.double().mean().item()


RELAXED = [
    LanternAcceptance(neighbours_of_line(6, 2), delta=0.2),
    GroupedAcceptance(rank_window=2, prob_gap=0.2),
    GroupedAcceptance(rank_window=2, prob_gap=0.2, codebook=torch.arange(6.0)[:, None], max_distance=2.0),
]


@pytest.mark.parametrize("acceptance", RELAXED, ids=["lantern", "grouped", "grouped-latent"])
def test_relaxed_one_step_law_matches_its_formula(acceptance):
    p = torch.tensor([0.30, 0.25, 0.20, 0.15, 0.10, 0.00])
    q = torch.tensor([0.05, 0.10, 0.15, 0.20, 0.25, 0.25])
    law, accept_rate = _one_step_law(acceptance, p[None], q)
    alpha = accepted_mass(acceptance, p, q)
    residual = (p - alpha).clamp(min=0)
    expected = alpha + (1 - alpha.sum()) * residual / residual.sum()
    # 200,000 draws: standard error per cell <= 0.0012; 5 sigma.
    assert torch.allclose(law, expected.double(), atol=0.006)
    tv = per_token_tv(acceptance, p, q).item()
    assert abs(0.5 * (law - p.double()).abs().sum().item() - tv) < 0.01
    exact_law, exact_rate = _one_step_law(EXACT, p[None], q)
    assert torch.allclose(exact_law, p.double(), atol=0.006)  # the exact rule reproduces p
    assert accept_rate > exact_rate + 0.02  # the point of relaxing
    assert 0 < tv <= 0.5 * (p - q).abs().sum().item() + 1e-6


def test_relaxed_samplers_report_their_tv(pair):
    target, draft = pair
    labels = torch.ones(500, dtype=torch.long)
    config = SamplerConfig()
    rule = LanternAcceptance(neighbours_of_line(3, 2), delta=0.3)
    exact = speculative_sample(target, draft, labels, config, torch.Generator().manual_seed(0), num_draft=2,
                               measure_tv=True)
    relaxed = speculative_sample(target, draft, labels, config, torch.Generator().manual_seed(0), num_draft=2,
                                 acceptance=rule, measure_tv=True)
    assert exact.stats.per_token_tv == 0.0
    assert 0.0 < relaxed.stats.per_token_tv < 0.3
    assert relaxed.stats.acceptance_rate > exact.stats.acceptance_rate
    grouped = jacobi_sample(target, labels, config, torch.Generator().manual_seed(0), window=2,
                            acceptance=GroupedAcceptance(rank_window=1, prob_gap=0.3), measure_tv=True)
    assert grouped.stats.per_token_tv > 0.0


def test_bad_knobs():
    with pytest.raises(ValueError, match="delta"):
        LanternAcceptance(neighbours_of_line(3, 1), delta=-0.1)
    with pytest.raises(ValueError, match="rank_window"):
        GroupedAcceptance(rank_window=-1)
    with pytest.raises(ValueError, match="codebook"):
        GroupedAcceptance(rank_window=1, max_distance=1.0)
