"""VectorQuantizer: backwards compatibility, dead-code restart, EMA, k-means init, rotation trick."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from artok.quantizers import VectorQuantizer, VQConfig
from artok.quantizers.vq import rotate_to


def euclidean_vq(**kwargs) -> VectorQuantizer:
    config = dict(codebook_dim=None, l2_normalize=False)
    config.update(kwargs)
    return VectorQuantizer(VQConfig(**config))


def as_input(points: torch.Tensor) -> torch.Tensor:
    """``N x D`` points -> ``1 x D x N`` channel-first input."""
    return points.t().unsqueeze(0).contiguous()


def test_plain_config_keeps_its_state_dict_keys():
    # What the CNN tokenizer builds; checkpoints of it must keep loading strictly.
    config = VQConfig(16, 64, codebook_dim=8, l2_normalize=True, commitment_weight=0.25, dead_code_threshold=1.0)
    vq = VectorQuantizer(config)
    expected = {"in_proj.weight", "in_proj.bias", "out_proj.weight", "out_proj.bias", "codebook", "usage"}
    assert set(vq.state_dict()) == expected
    assert vq.codebook_size == 64 and vq.dim == 16
    codes = vq.ids_to_codes(torch.zeros(2, 3, 3, dtype=torch.long))
    assert codes.shape == (2, 16, 3, 3)


def test_dead_code_restart_moves_unused_codes_onto_data():
    torch.manual_seed(0)
    vq = euclidean_vq(dim=2, codebook_size=4, dead_code_threshold=0.5, usage_decay=0.5).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [100.0, 101.0], [101.0, 100.0]]))
    data = torch.randn(32, 2) * 0.1
    vq(as_input(data))  # usage of codes 1-3: 0.5 * 1 = 0.5, not yet dead
    assert torch.equal(vq.codebook[1:], torch.tensor([[100.0, 100.0], [100.0, 101.0], [101.0, 100.0]]))
    vq(as_input(data))  # usage 0.25 < 0.5: restarted
    for code in vq.codebook[1:].detach():
        assert (data - code).norm(dim=-1).min() < 1e-6, "a restarted code must sit on an encoder output"
    assert (vq.usage[1:] >= 0.5).all(), "restarted codes get a grace period"


def test_ema_update_matches_hand_computation():
    decay, eps = 0.5, 1e-5
    vq = euclidean_vq(dim=2, codebook_size=2, ema_decay=decay, ema_epsilon=eps).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        vq.ema_embed_sum.copy_(vq.codebook)
    assert not vq.codebook.requires_grad
    data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    out = vq(as_input(data))
    # cluster sizes: 0.5 * 1 + 0.5 * [2, 1]; sums: 0.5 * code + 0.5 * assigned sum.
    cluster = torch.tensor([1.5, 1.0])
    embed_sum = torch.tensor([[0.5, 0.5], [9.5, 9.5]])
    total = cluster.sum()
    smoothed = (cluster + eps) / (total + 2 * eps) * total
    expected = embed_sum / smoothed[:, None]
    torch.testing.assert_close(vq.codebook.detach(), expected)
    torch.testing.assert_close(vq.ema_cluster_size, cluster)
    torch.testing.assert_close(vq.ema_embed_sum, embed_sum)
    # Both codes moved towards the mean of what was assigned to them.
    assert (vq.codebook[0] - torch.tensor([0.5, 0.5])).norm() < 0.5
    assert (vq.codebook[1] - torch.tensor([9.0, 9.0])).norm() < 1.0
    # No codebook term in the loss: only the commitment.
    commitment = F.mse_loss(data, torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))
    torch.testing.assert_close(out.loss, 0.25 * commitment)


def test_ema_restart_resets_statistics():
    vq = euclidean_vq(dim=2, codebook_size=3, ema_decay=0.9, dead_code_threshold=0.5, usage_decay=0.0).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0]]))
        vq.ema_embed_sum.copy_(vq.codebook)
    data = torch.randn(16, 2) * 0.1
    vq(as_input(data))
    for index in (1, 2):
        assert (data - vq.codebook[index]).norm(dim=-1).min() < 1e-6
        torch.testing.assert_close(vq.ema_embed_sum[index], vq.codebook[index])
        assert vq.ema_cluster_size[index] == 1.0


def clustered_data(num_clusters=8, per_cluster=64, dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_clusters, dim, generator=generator) * 5
    noise = 0.1 * torch.randn(num_clusters * per_cluster, dim, generator=generator)
    points = centers.repeat_interleave(per_cluster, 0) + noise
    return points[torch.randperm(points.shape[0], generator=generator)]


def quantization_error(vq: VectorQuantizer, data: torch.Tensor) -> float:
    vq.eval()
    with torch.no_grad():
        out = vq(as_input(data))
    return F.mse_loss(out.quantized, as_input(data)).item()


def test_kmeans_init_beats_random_init_and_runs_once():
    data = clustered_data()
    torch.manual_seed(0)
    random_init = euclidean_vq(dim=4, codebook_size=8)
    torch.manual_seed(0)
    kmeans_init = euclidean_vq(dim=4, codebook_size=8, kmeans_init=True, kmeans_iters=10)
    random_init.train()(as_input(data))
    kmeans_init.train()(as_input(data))
    assert bool(kmeans_init.kmeans_initialized)
    assert quantization_error(kmeans_init, data) < 0.5 * quantization_error(random_init, data)

    # The flag survives save/load, so a resumed run does not re-initialise.
    torch.manual_seed(1)
    restored = euclidean_vq(dim=4, codebook_size=8, kmeans_init=True)
    restored.load_state_dict(kmeans_init.state_dict())
    before = restored.codebook.detach().clone()
    restored.train()(as_input(torch.randn(64, 4)))
    torch.testing.assert_close(restored.codebook.detach(), before)


def test_kmeans_init_on_the_sphere_with_ema():
    data = clustered_data(dim=6)
    directions = F.normalize(data, dim=-1)
    torch.manual_seed(0)
    vq = VectorQuantizer(VQConfig(6, 8, codebook_dim=None, l2_normalize=True, kmeans_init=True, ema_decay=0.99)).train()
    vq(as_input(data))
    # Every sample has a code within a small angle (spherical k-means found the clusters).
    cosine = directions @ vq.normalized_codebook().t()
    assert cosine.max(dim=-1).values.mean() > 0.95
    # EMA statistics continue from the k-means solution: code = sum / (Laplace-smoothed) size.
    ema_codes = vq.ema_embed_sum / vq.ema_cluster_size[:, None]
    torch.testing.assert_close(ema_codes, vq.codebook.detach(), atol=1e-3, rtol=1e-3)


def test_rotation_trick_same_forward_different_gradient():
    z = torch.randn(2, 5, 3, 3)
    outputs, grads = [], []
    for rotation_trick in (False, True):
        torch.manual_seed(0)
        vq = euclidean_vq(dim=5, codebook_size=12, rotation_trick=rotation_trick).train()
        z_in = z.clone().requires_grad_(True)
        out = vq(z_in)
        (out.quantized * torch.linspace(-1, 1, out.quantized.numel()).reshape(out.quantized.shape)).sum().backward()
        outputs.append(out)
        grads.append(z_in.grad)
    assert torch.equal(outputs[0].quantized, outputs[1].quantized)
    assert torch.equal(outputs[0].ids, outputs[1].ids)
    torch.testing.assert_close(outputs[0].loss, outputs[1].loss)
    assert not torch.allclose(grads[0], grads[1])


def test_rotate_to_gradient_is_scaled_rotation():
    torch.manual_seed(0)
    e = torch.randn(7, requires_grad=True)
    q = torch.randn(7)
    g = torch.randn(7)
    out = rotate_to(e.unsqueeze(0), q.unsqueeze(0)).squeeze(0)
    assert torch.equal(out, q)
    (out * g).sum().backward()
    e_hat, q_hat = e.detach() / e.detach().norm(), q / q.norm()
    w = F.normalize(e_hat + q_hat, dim=0)
    rotation = torch.eye(7) - 2 * torch.outer(w, w) + 2 * torch.outer(q_hat, e_hat)
    torch.testing.assert_close(rotation @ e_hat, q_hat)
    torch.testing.assert_close(rotation @ rotation.t(), torch.eye(7), atol=1e-5, rtol=1e-5)
    scale = q.norm() / e.detach().norm()
    torch.testing.assert_close(e.grad, scale * rotation.t() @ g)
