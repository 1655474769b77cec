"""Residual VQ (error vs depth, quantize-dropout, gradient scale) and VAR's multi-scale VQ."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from artok.quantizers import (
    MultiScaleVectorQuantizer,
    MultiScaleVQConfig,
    ResidualVectorQuantizer,
    ResidualVQConfig,
)
from artok.quantizers.multiscale import phi_index_per_scale


def test_rvq_error_decreases_with_more_levels():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(ResidualVQConfig(dim=8, codebook_size=16, num_levels=4, kmeans_init=True))
    z = torch.randn(4, 8, 128, generator=torch.Generator().manual_seed(1))
    rvq.train()(z)  # each level's codebook is fitted (k-means) to its residual
    rvq.eval()
    ids = rvq(z).ids
    errors = [F.mse_loss(rvq.ids_to_codes(ids[..., :depth]), z).item() for depth in range(1, 5)]
    assert all(later < earlier for earlier, later in zip([z.pow(2).mean().item()] + errors, errors)), errors


def test_quantize_dropout_only_in_training():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(ResidualVQConfig(dim=4, codebook_size=8, num_levels=4, quantize_dropout=True))
    z = torch.randn(2, 4, 3, 3)
    rvq.train()
    active = []
    for _ in range(20):
        out = rvq(z)
        levels = int(out.metrics["active_levels"])
        active.append(levels)
        assert (out.ids[..., :levels] >= 0).all() and (out.ids[..., levels:] == -1).all()
        # Dropped levels contribute nothing, so the ids still decode to the output.
        torch.testing.assert_close(rvq.ids_to_codes(out.ids), out.quantized, atol=1e-6, rtol=1e-5)
    assert min(active) < 4 and len(set(active)) > 1
    rvq.eval()
    for _ in range(5):
        out = rvq(z)
        assert out.metrics["active_levels"] == 4 and (out.ids >= 0).all()


def test_rvq_gradient_matches_single_straight_through():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(ResidualVQConfig(dim=4, codebook_size=8, num_levels=3)).train()
    z = torch.randn(2, 4, 5, requires_grad=True)
    rvq(z).quantized.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def make_msvq(scales=(1, 2, 3, 4), **kwargs) -> MultiScaleVectorQuantizer:
    torch.manual_seed(0)
    return MultiScaleVectorQuantizer(MultiScaleVQConfig(dim=5, codebook_size=32, scales=scales, **kwargs))


def test_msvq_sequence_layout_and_reconstruction():
    msvq = make_msvq().eval()
    z = torch.randn(3, 5, 4, 4)
    out = msvq(z)
    assert msvq.seq_len == 1 + 4 + 9 + 16 and out.ids.shape == (3, 30)
    assert msvq.scale_lengths == [1, 4, 9, 16]
    torch.testing.assert_close(msvq.ids_to_codes(out.ids), out.quantized, atol=1e-6, rtol=1e-5)
    parts = msvq.split_ids(out.ids)
    assert [tuple(p.shape) for p in parts] == [(3, 1, 1), (3, 2, 2), (3, 3, 3), (3, 4, 4)]
    # Scale by scale, raster inside a scale.
    assert torch.equal(parts[2].reshape(3, -1), out.ids[:, 5:14])


def test_msvq_teacher_forcing_and_scale_features():
    msvq = make_msvq(scales=((1, 1), (2, 2), (4, 4)), num_phi=0).eval()
    z = torch.randn(2, 5, 4, 4)
    ids = msvq(z).ids
    inputs = msvq.teacher_forcing_inputs(ids)
    assert inputs.shape == (2, 4 + 16, 5)

    start = msvq.ids_to_scale_features(ids[:, :0])
    assert start.num_scales == 0 and start.f_hat.abs().sum() == 0 and start.next_input.shape == (2, 5, 1, 1)
    first = msvq.ids_to_scale_features(ids[:, :1])
    assert first.f_hat.shape == (2, 5, 4, 4) and first.next_input.shape == (2, 5, 2, 2)
    torch.testing.assert_close(inputs[:, :4], first.next_input.flatten(2).transpose(1, 2))
    second = msvq.ids_to_scale_features(ids[:, :5])
    torch.testing.assert_close(inputs[:, 4:], second.next_input.flatten(2).transpose(1, 2))
    torch.testing.assert_close(second.next_input, F.interpolate(second.f_hat, size=(4, 4), mode="area"))
    full = msvq.ids_to_scale_features(ids)
    assert full.next_input is None and full.num_scales == 3
    # The incremental (sampler) path agrees with the batch path.
    stepped = msvq.add_scale(first.f_hat, 1, ids[:, 1:5])
    torch.testing.assert_close(stepped.f_hat, second.f_hat)
    torch.testing.assert_close(stepped.next_input, second.next_input)


def test_msvq_gradients_and_loss():
    msvq = make_msvq().train()
    z = torch.randn(2, 5, 4, 4, requires_grad=True)
    out = msvq(z)
    (out.quantized.sum() + out.loss).backward()
    assert z.grad.abs().sum() > 0
    assert msvq.codebook.grad.abs().sum() > 0
    assert all(phi.conv.weight.grad is not None for phi in msvq.phi)


def test_phi_sharing_schemes():
    assert phi_index_per_scale(10, 1) == [0] * 10
    assert phi_index_per_scale(5, 5) == [0, 1, 2, 3, 4]
    assert set(phi_index_per_scale(10, 4)) == {0, 1, 2, 3}
    mapping = phi_index_per_scale(10, 4)
    assert mapping == sorted(mapping) and mapping[0] == 0 and mapping[-1] == 3
