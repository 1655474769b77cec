"""CFG, temperature, top-k and top-p against hand-computed cases; the sampler's distribution."""

import math

import pytest
import torch

from artok.sampling import (
    cfg_combine,
    cfg_scale_at,
    logits_to_probs,
    sample_from_probs,
    top_k_filter,
    top_p_filter,
)


def test_cfg_combine_hand_computed():
    cond = torch.tensor([2.0, 0.0, -1.0])
    uncond = torch.tensor([1.0, 1.0, 1.0])
    # uncond + 3 * (cond - uncond) = [1 + 3, 1 - 3, 1 - 6]
    assert torch.allclose(cfg_combine(cond, uncond, 3.0), torch.tensor([4.0, -2.0, -5.0]))
    assert torch.allclose(cfg_combine(cond, uncond, 1.0), cond)
    assert torch.allclose(cfg_combine(cond, uncond, 0.0), uncond)


def test_cfg_schedules():
    assert cfg_scale_at(0, 10, 4.0, "constant") == 4.0
    assert cfg_scale_at(0, 10, 4.0, "linear") == 1.0
    assert cfg_scale_at(9, 10, 4.0, "linear") == 4.0
    assert cfg_scale_at(3, 10, 4.0, "linear") == pytest.approx(1.0 + 3.0 * 3 / 9)
    with pytest.raises(ValueError, match="unknown cfg schedule"):
        cfg_scale_at(0, 10, 4.0, "cosine-ish")


def test_top_k_keeps_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 2.0, 4.0]])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, False, True]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_top_p_hand_computed():
    # probabilities 0.5, 0.25, 0.125, 0.125 (log-probs as logits)
    probs = torch.tensor([[0.125, 0.5, 0.125, 0.25]])
    logits = probs.log()
    # top_p=0.6: 0.5 alone < 0.6, so 0.5 and 0.25 are kept (mass before 0.25 is 0.5 < 0.6)
    kept = torch.isfinite(top_p_filter(logits, 0.6))
    assert kept.tolist() == [[False, True, False, True]]
    # top_p=0.5: mass before the second token is exactly 0.5 -> only the top token stays
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [[False, True, False, False]]
    # renormalised probabilities after top-p 0.6: 2/3 and 1/3
    p = logits_to_probs(logits, top_p=0.6)
    assert torch.allclose(p, torch.tensor([[0.0, 2 / 3, 0.0, 1 / 3]]), atol=1e-6)


def test_temperature():
    logits = torch.tensor([0.0, math.log(3.0)])
    assert torch.allclose(logits_to_probs(logits, temperature=1.0), torch.tensor([0.25, 0.75]))
    # temperature 2 -> logits halved -> odds sqrt(3)
    odds = logits_to_probs(logits, temperature=2.0)
    assert odds[1] / odds[0] == pytest.approx(3**0.5, rel=1e-5)
    with pytest.raises(ValueError):
        logits_to_probs(logits, temperature=0.0)


def test_sample_from_probs_matches_distribution():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(40000, 4)
    rng = torch.Generator().manual_seed(0)
    draws = sample_from_probs(probs, rng)
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    # standard error ~ sqrt(0.25/40000) = 0.0025; allow 4 sigma
    assert torch.allclose(freq, probs[0], atol=0.01)


def test_sample_from_probs_is_seeded():
    probs = torch.softmax(torch.randn(8, 50), -1)
    a = sample_from_probs(probs, torch.Generator().manual_seed(3))
    b = sample_from_probs(probs, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
