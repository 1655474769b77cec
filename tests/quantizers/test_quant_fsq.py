"""FiniteScalarQuantizer: implicit codebook size, reachability, ids <-> codes bijection."""

from __future__ import annotations

import math

import torch

from artok.quantizers import FiniteScalarQuantizer, FSQConfig

LEVELS = (8, 5, 5, 5)


def test_codebook_size_is_product_of_levels():
    assert FiniteScalarQuantizer(FSQConfig(levels=LEVELS)).codebook_size == 1000
    assert FiniteScalarQuantizer(FSQConfig(levels=(7, 5, 5, 5, 5), dim=16)).codebook_size == 4375


def test_ids_codes_bijection_over_full_codebook():
    fsq = FiniteScalarQuantizer(FSQConfig(levels=LEVELS))
    ids = torch.arange(fsq.codebook_size)
    codes = fsq.ids_to_lookup_codes(ids)
    assert codes.shape == (1000, 4)
    assert torch.unique(codes, dim=0).shape[0] == 1000
    assert torch.equal(fsq.codes_to_ids(codes), ids)
    assert codes.min() >= -1 and codes.max() <= 1
    # Each channel takes exactly L values.
    for channel, level in enumerate(LEVELS):
        assert torch.unique(codes[:, channel]).numel() == level


def test_every_code_is_reachable_from_the_encoder():
    fsq = FiniteScalarQuantizer(FSQConfig(levels=LEVELS))
    ids = torch.arange(fsq.codebook_size)
    codes = fsq.ids_to_lookup_codes(ids)
    # Invert the bound: the pre-activation whose bounded value is exactly the code's integer.
    levels = torch.tensor(LEVELS, dtype=torch.float32)
    half = (levels - 1) * (1 + 1e-3) / 2
    offset = torch.tensor([0.5 if level % 2 == 0 else 0.0 for level in LEVELS])
    target = codes * torch.tensor([level // 2 for level in LEVELS], dtype=torch.float32)
    pre = torch.atanh((target + offset) / half) - torch.atanh(offset / half)
    out = fsq(pre.t().unsqueeze(0))  # 1 x 4 x 1000
    assert torch.equal(out.ids[0], ids)
    torch.testing.assert_close(out.quantized[0].t(), codes)


def test_random_inputs_cover_the_codebook_and_round_trip():
    fsq = FiniteScalarQuantizer(FSQConfig(levels=(4, 3, 2)))
    z = torch.randn(1, 3, 5000, generator=torch.Generator().manual_seed(0)) * 2
    out = fsq(z)
    assert torch.unique(out.ids).numel() == math.prod((4, 3, 2))
    torch.testing.assert_close(fsq.ids_to_codes(out.ids), out.quantized, atol=0, rtol=0)
    # Codes of even levels are asymmetric: L=4 -> {-1, -0.5, 0, 0.5}.
    assert torch.equal(torch.unique(out.quantized[0, 0]), torch.tensor([-1.0, -0.5, 0.0, 0.5]))


def test_straight_through_gradient_is_bound_derivative():
    fsq = FiniteScalarQuantizer(FSQConfig(levels=(5,)))
    z = torch.tensor([[[0.0, 0.3, -2.0]]], requires_grad=True)
    fsq(z).quantized.sum().backward()
    half = 4 * (1 + 1e-3) / 2
    expected = (1 - torch.tanh(z.detach()) ** 2) * half / 2  # d/dz tanh(z) * half / (L // 2)
    torch.testing.assert_close(z.grad, expected)
