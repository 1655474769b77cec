"""Rotary position embeddings (RoFormer, https://arxiv.org/abs/2104.09864), 1D and 2D.

2D RoPE for token grids (as in LlamaGen): half of each head's rotary pairs rotate with the row
index, the other half with the column index, so attention sees relative 2D offsets.

Tables are ``L x head_dim/2 x 2`` (cos, sin) in fp32; prefix positions (class tokens) get the
identity rotation, or with ``prefix="zero"`` a zero table (cos = sin = 0: the prefix's queries and
keys become zero, as in LlamaGen's ``precompute_freqs_cis_2d``; needed to reproduce its checkpoints).
"""

from __future__ import annotations

import torch


def _frequencies(num_pairs: int, base: float) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(num_pairs, dtype=torch.float64) / num_pairs))


PREFIX_ROTATIONS = ("identity", "zero")


def rope_1d_table(length: int, head_dim: int, base: float = 10000.0, num_prefix: int = 0,
                  prefix: str = "identity") -> torch.Tensor:
    """Table for positions ``0..length-1`` after ``num_prefix`` unrotated prefix positions."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
    angles = torch.outer(torch.arange(length, dtype=torch.float64), _frequencies(head_dim // 2, base))
    return _with_prefix(angles, num_prefix, prefix)


def rope_2d_table(grid: tuple[int, int], head_dim: int, base: float = 10000.0, num_prefix: int = 0,
                  prefix: str = "identity") -> torch.Tensor:
    """Table for a raster-ordered ``h x w`` grid after ``num_prefix`` unrotated prefix positions."""
    if head_dim % 4:
        raise ValueError(f"2D rotary embeddings need head_dim divisible by 4, got {head_dim}")
    height, width = grid
    freqs = _frequencies(head_dim // 4, base)
    rows = torch.arange(height, dtype=torch.float64).repeat_interleave(width)
    cols = torch.arange(width, dtype=torch.float64).repeat(height)
    angles = torch.cat([torch.outer(rows, freqs), torch.outer(cols, freqs)], dim=-1)
    return _with_prefix(angles, num_prefix, prefix)


def _with_prefix(angles: torch.Tensor, num_prefix: int, prefix: str = "identity") -> torch.Tensor:
    if prefix not in PREFIX_ROTATIONS:
        raise ValueError(f"prefix rotation must be one of {PREFIX_ROTATIONS}, got {prefix!r}")
    table = torch.stack([angles.cos(), angles.sin()], dim=-1).float()
    if num_prefix:
        rows = torch.zeros(num_prefix, table.shape[1], 2)
        if prefix == "identity":
            rows[..., 0] = 1.0
        table = torch.cat([rows, table], dim=0)
    return table


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (``B x H x T x head_dim``) by ``table`` (``T x head_dim/2 x 2``), computed in fp32."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = table[..., 0], table[..., 1]
    rotated = torch.stack(
        [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1
    )
    return rotated.flatten(-2).type_as(x)
