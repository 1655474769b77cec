"""LFQ / BSQ: bit packing, entropy regulariser (hand case, brute force), annealing, spherical codes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from artok.quantizers import (
    BinarySphericalQuantizer,
    BSQConfig,
    LFQConfig,
    LookupFreeQuantizer,
    bits_to_ids,
    exact_entropies,
    factorized_entropies,
    ids_to_bits,
)


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def brute_force(x: np.ndarray, scale: float, tau: float) -> tuple[float, float, float]:
    """(per-sample entropy, exact codebook entropy, factorised codebook entropy) by enumeration."""
    dim = x.shape[1]
    codes = np.array(list(itertools.product([-scale, scale], repeat=dim)))
    logits = -tau * ((x[:, None, :] - codes[None]) ** 2).sum(-1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    per_sample = np.mean([entropy(p) for p in probs])
    average = probs.mean(0)
    # Marginal probability of each channel being +scale, averaged over the batch.
    marginals = [(average * (codes[:, d] > 0)).sum() for d in range(dim)]
    factorized = sum(entropy(np.array([m, 1 - m])) for m in marginals)
    return per_sample, entropy(average), factorized


def test_bits_ids_round_trip():
    ids = torch.arange(2**10)
    bits = ids_to_bits(ids, 10)
    assert torch.equal(bits_to_ids(bits), ids)
    assert torch.equal(ids_to_bits(torch.tensor([5]), 4), torch.tensor([[1, 0, 1, 0]]))  # little-endian


def test_hand_computed_entropy_loss_two_samples_two_bits():
    x = np.array([[0.3, -0.2], [-0.1, 0.4]])
    tau, weights = 1.5, dict(entropy_weight=0.7, per_sample_weight=1.0, codebook_weight=0.5, commitment_weight=0.25)
    per_sample, exact_codebook, factorized_codebook = brute_force(x, 1.0, tau)
    commitment = float(((x - np.sign(x)) ** 2).mean())
    z = torch.tensor(x, dtype=torch.float32).t().unsqueeze(0)  # 1 x 2 x 2 (B x D x L)
    for group_size, codebook in ((1, factorized_codebook), (2, exact_codebook)):
        lfq = LookupFreeQuantizer(LFQConfig(dim=2, inverse_temperature=tau, entropy_group_size=group_size, **weights))
        out = lfq(z)
        expected = 0.7 * (per_sample - 0.5 * codebook) + 0.25 * commitment
        assert out.loss.item() == pytest.approx(expected, rel=1e-5)
        assert out.metrics["per_sample_entropy"].item() == pytest.approx(per_sample, rel=1e-5)
        assert out.metrics["codebook_entropy"].item() == pytest.approx(codebook, rel=1e-5)
    # ids: bit d set where channel d > 0: sample 0 -> 0b01 = 1, sample 1 -> 0b10 = 2.
    assert out.ids.tolist() == [[1, 2]]


@pytest.mark.parametrize("scale", [1.0, 1 / math.sqrt(6)])
def test_factorized_entropies_against_brute_force(scale):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=generator, dtype=torch.float64) * 0.5
    tau = 2.0
    per_sample_exact, codebook_exact = exact_entropies(x, scale, tau)
    reference = brute_force(x.numpy(), scale, tau)
    assert per_sample_exact.item() == pytest.approx(reference[0], rel=1e-9)
    assert codebook_exact.item() == pytest.approx(reference[1], rel=1e-9)
    results = {g: factorized_entropies(x, scale, tau, group_size=g) for g in (1, 2, 3, 6)}
    for per_sample, _ in results.values():  # per-sample entropy: exact for any grouping
        assert per_sample.item() == pytest.approx(per_sample_exact.item(), rel=1e-9)
    assert results[1][1].item() == pytest.approx(reference[2], rel=1e-9)
    assert results[6][1].item() == pytest.approx(codebook_exact.item(), rel=1e-9)  # one group: exact
    # Coarser groups give tighter upper bounds of the exact codebook entropy.
    assert results[1][1] >= results[2][1] >= codebook_exact - 1e-12
    assert results[1][1] >= results[3][1] >= codebook_exact - 1e-12
    assert results[1][1] > codebook_exact + 1e-3
    # A single sample's distribution factorises, so the per-bit approximation is exact there.
    single_exact = exact_entropies(x[:1], scale, tau)[1]
    assert factorized_entropies(x[:1], scale, tau)[1].item() == pytest.approx(single_exact.item(), rel=1e-9)


def test_bsq_codes_on_unit_sphere_and_entropy_uses_sphere_scale():
    bsq = BinarySphericalQuantizer(BSQConfig(dim=6, entropy_group_size=6, inverse_temperature=3.0))
    codes = bsq.ids_to_lookup_codes(torch.arange(64))
    torch.testing.assert_close(codes.norm(dim=-1), torch.ones(64))
    z = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(3))
    out = bsq(z)
    u = torch.nn.functional.normalize(z.movedim(1, -1).reshape(-1, 6), dim=-1)
    per_sample, codebook = exact_entropies(u, 1 / math.sqrt(6), 3.0)
    commitment = ((u - torch.sign(u) / math.sqrt(6)) ** 2).mean()
    expected = 0.1 * (per_sample - codebook) + 0.25 * commitment
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.quantized.movedim(1, -1).reshape(-1, 6), torch.sign(u) / math.sqrt(6))


def test_entropy_annealing_schedule_and_resume():
    lfq = LookupFreeQuantizer(LFQConfig(dim=4, entropy_anneal_steps=100, entropy_anneal_factor=3.0))
    assert lfq.entropy_scale() == 3.0
    lfq.set_step(50)
    assert lfq.entropy_scale() == pytest.approx(2.0)
    lfq.set_step(500)
    assert lfq.entropy_scale() == 1.0
    lfq.set_step(25)
    restored = LookupFreeQuantizer(LFQConfig(dim=4, entropy_anneal_steps=100, entropy_anneal_factor=3.0))
    restored.load_state_dict(lfq.state_dict())
    assert restored.entropy_scale() == pytest.approx(2.5)
    z = torch.randn(2, 4, 3)
    loss_at = {}
    for step in (0, 100):
        lfq.set_step(step)
        out = lfq(z)
        loss_at[step] = (out.loss - 0.25 * out.metrics["commitment"]).item()
    assert loss_at[0] == pytest.approx(3 * loss_at[100], rel=1e-5)


def test_large_implicit_codebook():
    lfq = LookupFreeQuantizer(LFQConfig(dim=32, codebook_dim=18, entropy_group_size=9))
    assert lfq.codebook_size == 2**18
    z = torch.randn(2, 32, 4, 4)
    out = lfq(z)
    assert out.ids.max() < 2**18 and torch.isfinite(out.loss)
    torch.testing.assert_close(lfq.ids_to_codes(out.ids), out.quantized)
