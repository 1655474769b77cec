"""Pre-computed token caches: a dataset split is encoded once per tokenizer and reused.

Generator training (and every generator trained on the same tokenizer) reads tokens instead of
re-encoding images. An entry is keyed by **(dataset name, split, dataset content, tokenizer weights)**:

- the dataset part is its name, split, size and a hash of its images and labels (so a ``limit``
  subset or a changed folder never reuses a stale entry);
- the tokenizer part is a SHA-256 over its config and every tensor of its ``state_dict``.

Entries live under ``$ARTOK_CACHE/tokens/`` (default ``~/.cache/artok/tokens/``) as
``<dataset>-<split>-<n>-<key>.npy`` (ids or values, memory-mapped on load) and a ``.json`` beside it
holding the `TokenSpec` and the fingerprints. Both files are written atomically (temporary file +
rename), so a crash never leaves a torn entry and concurrent writers do not corrupt each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch

from artok.data.base import ImageDataset
from artok.hub import atomic_write
from artok.tokens import Tokens, TokenSpec

CACHE_VERSION = 1


def token_cache_dir() -> Path:
    """``$ARTOK_CACHE/tokens`` if ``ARTOK_CACHE`` is set, else ``~/.cache/artok/tokens``."""
    root = os.environ.get("ARTOK_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "artok"
    return base / "tokens"


def tokenizer_fingerprint(tokenizer: torch.nn.Module) -> str:
    """SHA-256 (hex) of a tokenizer's type, config and every tensor of its state dict."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    config = getattr(tokenizer, "config", None)
    if config is not None and is_dataclass(config):
        digest.update(json.dumps(asdict(config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """BLAKE2 (hex) of a dataset's images and labels."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(dataset.images.contiguous().numpy().tobytes())
    digest.update(dataset.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_paths(tokenizer: torch.nn.Module, dataset: ImageDataset, cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``(data.npy, meta.json)`` paths of the cache entry for ``tokenizer`` x ``dataset``."""
    key = hashlib.sha256(
        f"{CACHE_VERSION}:{tokenizer_fingerprint(tokenizer)}:{dataset_fingerprint(dataset)}".encode()
    ).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name).strip("_")[:40] or "dataset"
    stem = f"{slug}-{dataset.split}-{len(dataset)}-{key}"
    directory = Path(cache_dir) if cache_dir is not None else token_cache_dir()
    return directory / f"{stem}.npy", directory / f"{stem}.json"


def load_cached_tokens(data_path: Path, meta_path: Path) -> Tokens:
    """Open a cache entry; the tensor is a copy-on-write memory map of the ``.npy`` file."""
    meta = json.loads(meta_path.read_text())
    spec = TokenSpec.from_dict(meta["spec"])
    array = np.load(data_path, mmap_mode="c")
    tensor = torch.from_numpy(array)
    return Tokens(spec, ids=tensor) if spec.kind == "discrete" else Tokens(spec, values=tensor)


def cached_tokens(
    tokenizer: torch.nn.Module,
    dataset: ImageDataset,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = True,
    refresh: bool = False,
) -> Tokens:
    """``dataset`` encoded by ``tokenizer``: read from the cache, or encoded once and cached.

    Args:
        tokenizer: any `artok.tokenizers.Tokenizer` (in eval mode for encoding).
        dataset: the images to encode (its ``name`` and ``split`` name the entry).
        cache_dir: folder of the cache (default `token_cache_dir`).
        batch_size, device, progress: passed to `artok.training.encode_dataset`.
        refresh: re-encode and overwrite an existing entry.

    Returns:
        `Tokens` whose tensor is memory-mapped from the cache file (rows are read on indexing).
    """
    from artok.training.generator_trainer import (
        encode_dataset,  # training imports data: defer
    )

    data_path, meta_path = cache_paths(tokenizer, dataset, cache_dir)
    if not refresh and data_path.is_file() and meta_path.is_file():
        return load_cached_tokens(data_path, meta_path)
    tokens = encode_dataset(tokenizer, dataset, batch_size=batch_size, device=device, progress=progress)
    array = tokens.data.cpu().numpy()

    def write_array(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    atomic_write(data_path, write_array)
    meta = {
        "version": CACHE_VERSION,
        "spec": tokens.spec.to_dict(),
        "dataset": dataset.name,
        "split": dataset.split,
        "count": len(dataset),
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
    return load_cached_tokens(data_path, meta_path)
