"""ReCAP: reused context-aware prediction for masked generators (Liu et al., "Plug-and-Play Context
Feature Reuse for Efficient Masked Generation", https://arxiv.org/abs/2505.19089), on top of
MaskGIT decoding (`artok.sampling.sample_maskgit`, `sample_maskgit_recap`) and MAR decoding
(`artok.sampling.sample_mar`, `sample_mar_recap`).

MaskGIT reveals a few tokens per iteration, and every iteration re-runs the bidirectional
transformer over all ``L`` positions. ReCAP groups ``group_size`` iterations: the first is a
*full* evaluation that also caches every layer's keys and values; it samples all masked positions,
ranks them by MaskGIT's (Gumbel-perturbed) confidence and fixes which positions the whole group
reveals, most confident first, split into the group's iterations by the mask schedule. The first
chunk is revealed with the full step's draws. Each later iteration is a *local* evaluation: only
the positions revealed since the full step (their cached features still show the mask token) and
the positions to reveal now are recomputed, attending to the cached keys/values of every other
position; the chunk is re-drawn from these context-aware predictions. A local step costs
``O(n L)`` attention and ``O(n)`` MLP work for ``n`` active positions instead of ``O(L^2)`` and
``O(L)``.

Guarantees: lossy. Cached features of positions outside the active set are those of the last full
step (stale by the tokens revealed since), and the positions a group reveals are chosen by the full
step's confidences. With ``group_size=1`` every iteration is full and the sampler returns exactly
`sample_maskgit`'s tokens for the same seed (tested).

MAR (`sample_mar_recap`, single bidirectional stack, ``decoder_depth=0``): the reveal order is
MAR's random order, fixed in advance, so a group needs no plan: its first iteration is a full
backbone pass (caching keys/values of the buffer and every position), each later iteration
recomputes only the positions revealed since the full pass and the ones it reveals now, against the
cached context, and the per-token head samples the new tokens from those states. The head's
denoising loop, often MAR's dominant cost, is unchanged; ReCAP removes backbone work only. Same
guarantees: lossy for ``group_size > 1``, exactly `sample_mar` for ``group_size=1`` (tested).
"""

from __future__ import annotations

from artok.nn.kv_cache import attach_caches
from artok.sampling.engine_support import RowKVCache


class FeatureCache:
    """Per-layer key/value caches over all ``length`` positions of ``blocks`` (default: a MaskGIT
    generator's blocks over its ``L + 1`` positions, class token first), attached to the attention
    layers for the duration of a sampling call."""

    def __init__(self, generator, rows: int, blocks=None, length: int | None = None) -> None:
        param = next(generator.parameters())
        self.blocks = list(generator.blocks if blocks is None else blocks)
        length = generator.spec.seq_len + 1 if length is None else length
        self.caches = [RowKVCache(rows, b.attention.num_heads, length, b.attention.head_dim, param.dtype, param.device)
                       for b in self.blocks]

    def __enter__(self):
        self.previous = attach_caches(self.blocks, self.caches)
        return self

    def __exit__(self, *exc):
        attach_caches(self.blocks, self.previous)
