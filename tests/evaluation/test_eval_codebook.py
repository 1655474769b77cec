import math

import numpy as np
import pytest
import torch

from artok.evaluation import CodebookStats
from artok.evaluation.codebook import DENSE_LIMIT


def test_hand_computed_histogram():
    stats = CodebookStats(8)
    stats.update(torch.tensor([[0, 0], [1, 2]]))  # any shape
    stats.update(torch.tensor([0, 1, 3, 0]))
    # counts: 0 -> 4, 1 -> 2, 2 -> 1, 3 -> 1; total 8; probabilities 1/2, 1/4, 1/8, 1/8.
    assert stats.total == 8
    assert stats.num_used == 4
    assert stats.usage == pytest.approx(0.5)
    assert stats.entropy_bits == pytest.approx(1.75)
    assert stats.perplexity == pytest.approx(2**1.75)
    assert stats.counts().tolist() == [4, 2, 1, 1, 0, 0, 0, 0]
    assert stats.used_counts().tolist() == [4, 2, 1, 1]
    summary = stats.summary()
    assert summary["codes_used"] == 4 and summary["usage"] == pytest.approx(0.5)


def test_uniform_ids_give_perplexity_near_codebook_size():
    stats = CodebookStats(512)
    stats.update(torch.randint(0, 512, (400_000,), generator=torch.Generator().manual_seed(0)))
    assert stats.usage == 1.0
    assert stats.perplexity == pytest.approx(512, rel=0.01)
    assert abs(stats.rank_frequency_slope) < 0.05


@pytest.mark.parametrize("exponent", [0.8, 1.2])
def test_zipf_sample_slope_matches_exponent(exponent):
    size = 256
    ranks = np.arange(1, size + 1)
    probabilities = ranks**-exponent / (ranks**-exponent).sum()
    rng = np.random.default_rng(0)
    ids = rng.choice(size, size=2_000_000, p=probabilities)
    # Shuffle which id gets which rank: the slope must not depend on id order.
    ids = rng.permutation(size)[ids]
    stats = CodebookStats(size)
    stats.update(torch.from_numpy(ids))
    assert stats.rank_frequency_slope == pytest.approx(-exponent, abs=0.03)


def test_sparse_mode_for_huge_codebooks_matches_dense():
    ids = torch.randint(0, 1000, (5000,), generator=torch.Generator().manual_seed(0))
    dense, sparse = CodebookStats(1000), CodebookStats(2**20)
    assert dense.dense and not sparse.dense and sparse.codebook_size > DENSE_LIMIT
    for chunk in ids.split(700):
        dense.update(chunk)
        sparse.update(chunk + 2**19)  # large ids, same histogram shape
    assert sparse.num_used == dense.num_used
    assert sparse.entropy_bits == pytest.approx(dense.entropy_bits)
    assert sparse.rank_frequency_slope == pytest.approx(dense.rank_frequency_slope)
    assert sparse.usage == pytest.approx(dense.num_used / 2**20)
    with pytest.raises(ValueError, match="sparse"):
        sparse.counts()


def test_errors_and_edge_cases():
    stats = CodebookStats(4)
    with pytest.raises(ValueError, match="no ids"):
        stats.perplexity
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        stats.update(torch.tensor([4]))
    with pytest.raises(ValueError, match="integer"):
        stats.update(torch.tensor([0.5]))
    stats.update(torch.tensor([2, 2, 2]))
    assert stats.perplexity == pytest.approx(1.0)
    assert math.isnan(stats.rank_frequency_slope)
    stats.reset()
    assert stats.total == 0 and stats.num_used == 0
