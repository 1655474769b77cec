"""Exact speculative sampling reproduces the target's law of whole sequences (enumerated on a tiny
model) and not the draft's; its statistics and errors."""

import pytest
import torch
from exact_law import (
    chi_square_pvalue,
    enumerable_generator,
    exact_law,
    one_thread,  # noqa: F401  (autouse fixture)
    perturbed_copy,
    total_variation,
)

from artok.generators.raster.engine import SamplingEngine
from artok.generators.raster.speculative import speculative_sample
from artok.sampling.configs import SamplerConfig
from artok.sampling.speculative import verify_drafts

# 12,000 sequences over 81 cells: the expected TV between the empirical and the true law is below
# 0.5 * sqrt(81) * sqrt(2 / (pi * 12000)) ~= 0.033 (Cauchy-Schwarz); we allow 0.06 and also require a
# chi-square p-value above 1e-3 (a correct sampler fails that with probability 1e-3 per seed; the
# seeds are fixed, so the test is deterministic). The draft's law is >= 0.15 away in TV.
NUM_SAMPLES = 12_000
TV_TOLERANCE = 0.06
CONFIGS = [
    SamplerConfig(),
    SamplerConfig(cfg_scale=2.0, top_k=2),
    SamplerConfig(temperature=0.8, top_p=0.8, cfg_scale=1.5, cfg_schedule="linear"),
]


@pytest.fixture(scope="module")
def pair():
    target = enumerable_generator(0, scale=0.2)
    return target, perturbed_copy(target, 1, noise=0.03)


@pytest.mark.parametrize("config", CONFIGS, ids=["plain", "cfg-topk", "linear-cfg-topp-temp"])
def test_speculative_matches_target_law(pair, config):
    target, draft = pair
    law, draft_law = exact_law(target, 1, config), exact_law(draft, 1, config)
    distance = 0.5 * float((law - draft_law).abs().sum())
    assert distance > 0.15  # the draft really differs
    labels = torch.ones(NUM_SAMPLES, dtype=torch.long)
    result = speculative_sample(target, draft, labels, config, torch.Generator().manual_seed(0), num_draft=2)
    samples = result.tokens.ids
    assert total_variation(samples, law) < TV_TOLERANCE
    assert chi_square_pvalue(samples, law) > 1e-3
    assert total_variation(samples, draft_law) > distance - TV_TOLERANCE
    assert 1.0 < result.stats.mean_accepted < 3.0
    assert 0.0 < result.stats.acceptance_rate < 1.0


def test_identical_draft_is_always_accepted(tiny_generator):
    labels = torch.arange(4)
    out = speculative_sample(tiny_generator, tiny_generator, labels, SamplerConfig(cfg_scale=2.0),
                             torch.Generator().manual_seed(0), num_draft=3)
    # p and q agree up to rounding, so (almost) every draft passes: 9 tokens in 1 + ceil(8 / 4) passes
    assert out.stats.acceptance_rate > 0.95
    assert out.stats.target_forwards == 3
    assert out.tokens.ids.shape == (4, 9) and int(out.tokens.ids.max()) < 17


def test_a_huge_draft_length_is_capped_at_the_sequence(tiny_generator):
    """No round can use more than seq_len - 1 drafts: a hostile --draft-length neither sizes the
    caches by it nor loops over it, and samples as the largest useful length does."""
    labels, config = torch.arange(3), SamplerConfig(cfg_scale=2.0)
    huge = speculative_sample(tiny_generator, tiny_generator, labels, config, torch.Generator().manual_seed(1),
                              num_draft=10**9)
    useful = speculative_sample(tiny_generator, tiny_generator, labels, config, torch.Generator().manual_seed(1),
                                num_draft=tiny_generator.config.seq_len - 1)
    assert torch.equal(huge.tokens.ids, useful.tokens.ids) and huge.stats.target_forwards == 2


def test_verify_drafts_hand_cases():
    p = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])  # k = 1: one draft position + bonus
    q = torch.tensor([[[0.0, 0.0, 1.0]]])
    # The draft (id 2) has p = 0: always rejected; the residual is p itself (q has no mass there).
    for seed in range(5):
        result = verify_drafts(p, q, torch.tensor([[2]]), torch.Generator().manual_seed(seed))
        assert result.num_accepted.item() == 0 and result.next_token.item() in (0, 1)
    # The draft is certain under both: accepted, then the bonus comes from p_{k+1} (id 2).
    q = torch.tensor([[[1.0, 0.0, 0.0]]])
    p = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    result = verify_drafts(p, q, torch.tensor([[0]]), torch.Generator().manual_seed(0))
    assert result.num_accepted.item() == 1 and result.next_token.item() == 2


def test_engines_are_reusable(tiny_generator):
    config = SamplerConfig(top_k=5)
    target_engine = SamplingEngine(tiny_generator, 4, guidance=False, extra_positions=3)
    draft_engine = SamplingEngine(tiny_generator, 4, guidance=False, extra_positions=3)
    labels = torch.tensor([0, 1, 2])
    first = speculative_sample(tiny_generator, tiny_generator, labels, config, torch.Generator().manual_seed(1),
                               num_draft=2, target_engine=target_engine, draft_engine=draft_engine)
    again = speculative_sample(tiny_generator, tiny_generator, labels, config, torch.Generator().manual_seed(1),
                               num_draft=2, target_engine=target_engine, draft_engine=draft_engine)
    assert torch.equal(first.tokens.ids, again.tokens.ids)
    with pytest.raises(ValueError, match="extra_positions"):
        speculative_sample(tiny_generator, tiny_generator, labels, config, num_draft=4, target_engine=target_engine)


def test_mismatched_draft_is_rejected(tiny_generator):
    other = enumerable_generator(0)
    with pytest.raises(ValueError, match="tokenizer"):
        speculative_sample(tiny_generator, other, torch.tensor([0]), SamplerConfig())
    with pytest.raises(ValueError, match="num_draft"):
        speculative_sample(tiny_generator, tiny_generator, torch.tensor([0]), SamplerConfig(), num_draft=0)
