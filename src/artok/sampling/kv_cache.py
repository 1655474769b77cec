"""Static KV cache management for samplers: allocate once per sampling call, free after."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def static_kv_cache(model, batch_size: int, dtype: torch.dtype | None = None):
    """Allocate ``model``'s static KV caches for ``batch_size`` rows for the duration of a block."""
    model.setup_cache(batch_size, dtype)
    try:
        yield model
    finally:
        model.clear_cache()
