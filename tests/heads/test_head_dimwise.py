"""TokenBridge's dimension-wise head: a causal transformer over the channels of one position."""

import torch

from artok.heads import ChannelEmbedding, DimwiseHead
from artok.sampling import draw_discrete


def test_teacher_forced_logits_equal_stepwise_logits():
    torch.manual_seed(0)
    head = DimwiseHead(16, num_channels=4, num_bins=8, width=32, depth=2, num_heads=2).eval()
    hidden, ids = torch.randn(2, 3, 16), torch.randint(0, 8, (2, 3, 4))
    full = head(hidden, ids)
    assert full.shape == (2, 3, 4, 8)
    flat_hidden, flat_ids = hidden.reshape(6, 16), ids.reshape(6, 4)
    for channel in range(4):
        step = head.next_logits(flat_hidden, flat_ids[:, :channel])
        torch.testing.assert_close(step, full.reshape(6, 4, 8)[:, channel], atol=1e-5, rtol=1e-5)


def test_channel_is_causal():
    """Changing channel c's id changes only the logits of channels after c."""
    head = DimwiseHead(8, num_channels=3, num_bins=4, width=16, depth=1, num_heads=1).eval()
    hidden = torch.randn(1, 1, 8)
    a = torch.tensor([[[0, 1, 2]]])
    b = torch.tensor([[[0, 3, 2]]])
    la, lb = head(hidden, a), head(hidden, b)
    torch.testing.assert_close(la[..., :2, :], lb[..., :2, :])
    assert not torch.allclose(la[..., 2, :], lb[..., 2, :])


def test_learns_correlated_channels():
    """Channel 1 always equals channel 0: the head learns it (independent softmaxes could not)."""
    torch.manual_seed(0)
    head = DimwiseHead(4, num_channels=2, num_bins=4, width=32, depth=1, num_heads=1)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(80):
        first = torch.randint(0, 4, (256, 1, 1))
        ids = torch.cat([first, first], dim=-1)
        loss = head.loss(torch.zeros(256, 1, 4), ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    draw = draw_discrete(head, torch.zeros(500, 1, 4), rng=torch.Generator().manual_seed(0))
    assert draw.ids.shape == (500, 1, 2)
    assert (draw.ids[..., 0] == draw.ids[..., 1]).float().mean() > 0.95
    assert len(torch.unique(draw.ids[..., 0])) == 4


def test_channel_embedding_sums_channels():
    embedding = ChannelEmbedding(num_channels=3, num_bins=5, dim=4)
    ids = torch.tensor([[1, 0, 4]])
    expected = embedding.table.weight[1] + embedding.table.weight[5] + embedding.table.weight[14]
    torch.testing.assert_close(embedding(ids)[0], expected)
