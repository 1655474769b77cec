"""Codebook statistics of discrete tokens: usage, perplexity, entropy and the Zipf slope.

Usage and perplexity are the usual health checks of a VQ codebook (a collapsed codebook uses few
codes and has low perplexity). The rank-frequency slope follows Chan et al., "Analyzing The
Language of Visual Tokens" (arXiv:2411.05001): sort codes by frequency and fit
``log(frequency) = a + slope * log(rank)`` by least squares; natural language sits near
Zipf's ``slope = -1``, and the paper reports that visual tokens are flatter (closer to 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Codebooks up to this size keep a dense histogram (``torch.bincount``); larger (implicit)
#: codebooks, such as LFQ/BSQ with many bits, keep counts of the ids actually seen.
DENSE_LIMIT = 2**18


class CodebookStats:
    """Accumulates a histogram of token ids and reports statistics of its empirical distribution.

    Args:
        codebook_size: number of possible ids, ``ids`` must lie in ``[0, codebook_size)``.

    Example::

        stats = CodebookStats(1024)
        for batch in loader:
            stats.update(tokenizer.encode(batch).ids)
        print(stats.usage, stats.perplexity, stats.rank_frequency_slope)
    """

    def __init__(self, codebook_size: int) -> None:
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        self.codebook_size = int(codebook_size)
        self.dense = self.codebook_size <= DENSE_LIMIT
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        if self.dense:
            self._counts = torch.zeros(self.codebook_size, dtype=torch.int64)
        else:
            # Sorted unique ids seen so far and their counts.
            self._seen_ids = torch.zeros(0, dtype=torch.int64)
            self._seen_counts = torch.zeros(0, dtype=torch.int64)
        self.total = 0

    def update(self, ids: torch.Tensor) -> None:
        """Count ``ids`` (an integer tensor of any shape, on any device)."""
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor, got {ids.dtype}")
        flat = ids.detach().reshape(-1).to(torch.int64)
        if flat.numel() == 0:
            return
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(f"ids must lie in [0, {self.codebook_size}), got values in [{low}, {high}]")
        if self.dense:
            self._counts += torch.bincount(flat, minlength=self.codebook_size).cpu()
        else:
            unique, counts = torch.unique(flat, return_counts=True)
            merged_ids, inverse = torch.unique(torch.cat([self._seen_ids, unique.cpu()]), return_inverse=True)
            merged_counts = torch.zeros(merged_ids.numel(), dtype=torch.int64)
            merged_counts.scatter_add_(0, inverse, torch.cat([self._seen_counts, counts.cpu()]))
            self._seen_ids, self._seen_counts = merged_ids, merged_counts
        self.total += flat.numel()

    def counts(self) -> torch.Tensor:
        """Dense ``codebook_size`` int64 histogram (only for dense codebooks)."""
        if not self.dense:
            raise ValueError(
                f"a codebook of {self.codebook_size} ids keeps sparse counts; use used_counts() instead"
            )
        return self._counts.clone()

    def used_counts(self) -> torch.Tensor:
        """Counts of the ids seen at least once, sorted from most to least frequent."""
        counts = self._counts[self._counts > 0] if self.dense else self._seen_counts
        return torch.sort(counts, descending=True).values

    @property
    def num_used(self) -> int:
        """Number of distinct ids seen at least once."""
        return int((self._counts > 0).sum()) if self.dense else int(self._seen_ids.numel())

    @property
    def usage(self) -> float:
        """Fraction of the codebook seen at least once, in [0, 1]."""
        return self.num_used / self.codebook_size

    def _probabilities(self) -> np.ndarray:
        if self.total == 0:
            raise ValueError("no ids counted yet: call update() first")
        counts = self.used_counts().numpy().astype(np.float64)
        return counts / counts.sum()

    @property
    def entropy_bits(self) -> float:
        """Shannon entropy of the empirical id distribution, in bits (at most ``log2(codebook_size)``)."""
        p = self._probabilities()
        return float(-(p * np.log2(p)).sum())

    @property
    def perplexity(self) -> float:
        """``2 ** entropy_bits``: the effective number of equally used codes (``codebook_size`` if uniform)."""
        return float(2.0**self.entropy_bits)

    @property
    def rank_frequency_slope(self) -> float:
        """Least-squares slope of ``log(count)`` against ``log(rank)`` over the used codes.

        About ``-s`` for a Zipf distribution ``p(rank) ~ rank ** -s``; 0 for a uniform one.
        ``nan`` when fewer than two codes were used (no line to fit).
        """
        counts = self.used_counts().numpy().astype(np.float64)
        if counts.size < 2:
            return math.nan
        log_rank = np.log(np.arange(1, counts.size + 1, dtype=np.float64))
        slope, _ = np.polyfit(log_rank, np.log(counts), deg=1)
        return float(slope)

    def summary(self) -> dict[str, int | float]:
        """All statistics as a flat dict of numbers (for logs and report tables)."""
        return {
            "codebook_size": self.codebook_size,
            "tokens_counted": self.total,
            "codes_used": self.num_used,
            "usage": self.usage,
            "perplexity": self.perplexity,
            "entropy_bits": self.entropy_bits,
            "rank_frequency_slope": self.rank_frequency_slope,
        }
