"""The one KV-cache helper (gpt-fast's ``setup_caches`` idea): allocate static caches for a stack
of attention blocks, attach and detach them, and install a set of caches for the duration of a
call (restoring whatever was attached before). Models, plain loops and engines all use these
instead of writing ``block.attention.kv_cache = ...`` themselves."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from artok.nn.attention import KVCache


def allocate_caches(blocks, batch_size: int, max_len: int, dtype: torch.dtype, device, cache_class=KVCache) -> list:
    """One ``cache_class`` per block, ``batch_size x heads x max_len x head_dim``."""
    return [cache_class(batch_size, block.attention.num_heads, max_len, block.attention.head_dim, dtype, device)
            for block in blocks]


def attach_caches(blocks, caches) -> list:
    """Attach ``caches`` (one per block, or None) to the blocks' attention; returns what was there."""
    previous = [block.attention.kv_cache for block in blocks]
    for block, cache in zip(blocks, caches):
        block.attention.kv_cache = cache
    return previous


def detach_caches(blocks) -> None:
    attach_caches(blocks, [None] * len(blocks))


@contextmanager
def installed_caches(blocks, caches):
    """``caches`` attached for the duration of the block; the previous ones restored after."""
    previous = attach_caches(blocks, caches)
    try:
        yield caches
    finally:
        attach_caches(blocks, previous)


@contextmanager
def static_kv_cache(model, batch_size: int, dtype: torch.dtype | None = None):
    """``model``'s own static KV caches (``model.setup_cache``) for ``batch_size`` rows for the
    duration of a block, freed after."""
    model.setup_cache(batch_size, dtype)
    try:
        yield model
    finally:
        model.clear_cache()
