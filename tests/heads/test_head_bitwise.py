"""Infinity's bitwise head: per-bit logits, exact log-probabilities, and sampling."""

import torch

from artok.heads import BitEmbedding, BitwiseHead
from artok.quantizers import ids_to_bits
from artok.sampling import draw_discrete


def test_log_prob_is_a_normalised_distribution():
    head = BitwiseHead(8, num_bits=4)
    logits = head(torch.randn(2, 3, 8))
    all_ids = torch.arange(16)
    total = torch.stack([BitwiseHead.log_prob(logits, torch.full((2, 3), i)) for i in all_ids]).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(2, 3))


def test_loss_equals_mean_bit_cross_entropy():
    head = BitwiseHead(8, num_bits=5)
    hidden, ids = torch.randn(2, 3, 8), torch.randint(0, 32, (2, 3))
    expected = -BitwiseHead.log_prob(head(hidden), ids).mean() / 5
    torch.testing.assert_close(head.loss(hidden, ids), expected)


def test_large_vocabulary_is_cheap():
    """2^20 ids with a dim x 20 matrix (a softmax head would need dim x 2^20)."""
    head, embedding = BitwiseHead(64, 20), BitEmbedding(20, 64)
    assert sum(p.numel() for p in head.parameters()) + sum(p.numel() for p in embedding.parameters()) < 3000
    ids = torch.randint(0, 2**20, (2, 5))
    assert embedding(ids).shape == (2, 5, 64)
    draw = draw_discrete(head, torch.randn(2, 5, 64), rng=torch.Generator().manual_seed(0))
    assert draw.ids.shape == (2, 5) and int(draw.ids.max()) < 2**20 and draw.log_prob.shape == (2, 5)


def test_sampling_follows_the_bit_probabilities():
    head = BitwiseHead(1, num_bits=3)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([2.0, -1.0, 0.0]))
    draw = draw_discrete(head, torch.zeros(1, 20000, 1), rng=torch.Generator().manual_seed(0))
    frequency = ids_to_bits(draw.ids, 3).float().mean(dim=(0, 1))
    torch.testing.assert_close(frequency, torch.sigmoid(torch.tensor([2.0, -1.0, 0.0])), atol=0.015, rtol=0)
