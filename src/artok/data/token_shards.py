"""Sharded, memory-mapped token caches: written by `encode_shards` (any number of processes), read
by `TokenShards`.

Layout of a cache folder ``OUT``::

    shard-00000.npy          tokens of items [0, S): ``count x A x L`` ids (int16 when the vocabulary
                             fits, else int32) or ``count x A x L x D`` values (float32 or float16)
    shard-00000.items.npy    ``count x 2`` int64: the dataset item index and its class label
    shard-00000.json         the shard's record: item range, count, skipped files, SHA-256 of both files
    ...
    manifest.json            the TokenSpec, tokenizer fingerprint, dataset, counts, and every record

Shard ``i`` always holds dataset items ``[i * S, (i + 1) * S)`` (``S = shard_size``), whatever the
number of processes, and process ``r`` of ``W`` writes the shards with ``i % W == r``, batch by
batch from the shard's start. So a cache written by 2 processes is byte-for-byte the one 1 process
writes (with the same per-process thread count). Files unreadable as images are left out of their
shard (``count`` < range length) and counted as ``skipped``.

``A`` is the number of augmented views per image (LlamaGen's ``extract_codes_c2i.py``): 1 for
``augment="none"``; 2 for ``"flip"`` (the image, then its mirror); 10 for ``"ten-crop"`` (the image
center-cropped to ``int(1.1 * size)``, then torchvision's ten crops of ``size``: top-left, top-right,
bottom-left, bottom-right, center of the image and the same of its mirror). Where LlamaGen picks
one view at random each time an image is read, `TokenShards` makes every view an item of its own
(``len = images x A``, ``item = image * A + view``), so one epoch sees each view once.

Every file is written with `artok.hub.atomic_write`, the record after its files and the manifest
last (by rank 0, after all ranks finished), so a killed run leaves only whole shards. Rerunning with
the same tokenizer, dataset and options keeps every shard whose record matches and whose files
still hash to it ("kept N shards") and writes the others.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from artok.data.errors import DatasetError
from artok.distributed.sharding import Shard
from artok.tokens import Tokens, TokenSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
AUGMENTATIONS = {"none": 1, "flip": 2, "ten-crop": 10}
TEN_CROP_RANGE = 1.1  # LlamaGen's --crop-range
VALUE_DTYPES = ("float32", "float16")


def shard_names(index: int) -> tuple[str, str, str]:
    """(tokens, items, record) file names of shard ``index``."""
    stem = f"shard-{index:05d}"
    return f"{stem}.npy", f"{stem}.items.npy", f"{stem}.json"


def shard_ranges(num_items: int, shard_size: int) -> list[tuple[int, int]]:
    """The fixed item range of every shard."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [(start, min(start + shard_size, num_items)) for start in range(0, num_items, shard_size)]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def ids_dtype(spec: TokenSpec) -> np.dtype:
    return np.dtype(np.int16) if spec.vocab_size <= 2**15 else np.dtype(np.int32)




# -- reading -----------------------------------------------------------------------------------


def _refuse(directory: Path, problem: str) -> DatasetError:
    return DatasetError(f"token cache {directory}: {problem}; rerun artok encode-dataset with the same arguments "
                        "(finished shards are kept, the others are rewritten)")


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise _refuse(directory, f"no {MANIFEST} (not a token cache, or its encode-dataset run did not finish)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise _refuse(directory, f"{MANIFEST} is unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != FORMAT_VERSION:
        raise _refuse(directory, f"{MANIFEST} is not version {FORMAT_VERSION} of the format")
    return manifest


class TokenShards:
    """A sharded token cache, memory-mapped (see the module docstring).

    ``len(cache)`` is images x views; ``cache[index]`` (an integer tensor, list or array) gives the
    `Tokens` of those items (ids as int64, values as float32), ``cache.labels[index]`` their labels.
    Opening checks every shard against the manifest (its SHA-256 with ``verify=True``, else its
    size and shape): a missing or changed shard is a one-line `DatasetError` naming it.

    Attributes:
        spec: the `TokenSpec` of the tokens.
        labels: ``len`` int64 class labels, in memory.
        source_indices: ``len`` int64: the dataset item each token sequence was encoded from.
        num_classes: classes of the dataset encoded.
        manifest: the manifest as read.
    """

    def __init__(self, directory, *, verify: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        try:
            self.spec = TokenSpec.from_dict(self.manifest["spec"])
            self.views, records = int(self.manifest["views"]), self.manifest["shards"]
        except (KeyError, TypeError, ValueError) as error:
            raise _refuse(self.directory, f"{MANIFEST} lacks a valid {error}") from None
        self.num_classes = len(self.manifest.get("class_names") or []) or None
        self._arrays, label_parts, source_parts = [], [], []
        for record in records:
            data, items = self._open_shard(record, verify)
            self._arrays.append(data.reshape(data.shape[0] * self.views, *data.shape[2:]))
            label_parts.append(np.repeat(items[:, 1], self.views))
            source_parts.append(np.repeat(items[:, 0], self.views))
        counts = [array.shape[0] for array in self._arrays]
        self._offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.labels = torch.from_numpy(np.concatenate(label_parts or [np.zeros(0, np.int64)]).astype(np.int64))
        self.source_indices = torch.from_numpy(np.concatenate(source_parts or [np.zeros(0, np.int64)]).astype(np.int64))
        if self.num_classes is None:
            self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        if len(self) == 0:
            raise _refuse(self.directory, "it holds no tokens (every image was skipped)")

    def _open_shard(self, record: dict, verify: bool) -> tuple[np.ndarray, np.ndarray]:
        try:
            names, digests, count = (record["data"], record["items"]), (record["sha256"], record["items_sha256"]), record["count"]
        except (KeyError, TypeError):
            raise _refuse(self.directory, f"a shard record in {MANIFEST} is malformed") from None
        for name, digest in zip(names, digests):
            path = self.directory / name
            if not path.is_file():
                raise _refuse(self.directory, f"shard file {name} is missing")
            if verify and sha256_file(path) != digest:
                raise _refuse(self.directory, f"shard file {name} does not match its SHA-256 in {MANIFEST} (changed or torn)")
        try:
            data = np.load(self.directory / names[0], mmap_mode="r")
            items = np.load(self.directory / names[1])
        except (OSError, ValueError) as error:
            raise _refuse(self.directory, f"shard file {names[0]} is unreadable ({error})") from None
        expected = self._item_shape()
        if data.shape[0] != count or items.shape != (count, 2) or tuple(data.shape[1:]) != (self.views, *expected):
            raise _refuse(self.directory, f"shard file {names[0]} has shape {data.shape}, not ({count}, {self.views}, "
                          f"{', '.join(map(str, expected))})")
        return data, items

    def _item_shape(self) -> tuple[int, ...]:
        if self.spec.kind == "continuous":
            return (self.spec.seq_len, self.spec.channels)
        return (self.spec.seq_len,) + ((self.spec.subtokens,) if self.spec.subtokens > 1 else ())

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index) -> Tokens:
        flat = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"token cache index out of range 0..{len(self) - 1}")
        shard = np.searchsorted(self._offsets, flat, side="right") - 1
        out = np.empty((flat.size, *self._item_shape()), dtype=self._arrays[0].dtype)
        for which in np.unique(shard):
            chosen = shard == which
            out[chosen] = self._arrays[which][flat[chosen] - self._offsets[which]]
        tensor = torch.from_numpy(out)
        if self.spec.kind == "discrete":
            return Tokens(self.spec, ids=tensor.to(torch.int64))
        return Tokens(self.spec, values=tensor.to(torch.float32))

    def tokens_and_labels(self) -> tuple[Tokens, torch.Tensor]:
        """Every item in memory (ids int64 / values float32) with its labels: for caches that fit."""
        return self[np.arange(len(self))], self.labels.clone()


def concatenate_tokens(parts: list[Tokens]) -> Tokens:
    if len(parts) == 1:
        return parts[0]
    data = torch.cat([part.data for part in parts])
    return Tokens(parts[0].spec, ids=data) if parts[0].spec.kind == "discrete" else Tokens(parts[0].spec, values=data)


class TokenBatches:
    """Step-keyed batches of a `TokenShards` with the contract of `artok.data.step_batches`: at step
    ``s`` this rank reads ``shard.indices(len(cache), per_rank_batch, s, seed)``."""

    def __init__(self, cache: TokenShards, per_rank_batch: int, shard: Shard = Shard(), *, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        if isinstance(per_rank_batch, bool) or not isinstance(per_rank_batch, int) or per_rank_batch < 1:
            raise ValueError(f"per_rank_batch must be a positive integer, got {per_rank_batch!r}")
        self.cache, self.per_rank_batch, self.shard, self.seed = cache, per_rank_batch, shard, seed
        self.device, self.skipped = torch.device(device), 0

    def micro_batches(self, step: int) -> list[tuple[Tokens, torch.Tensor]]:
        micro = []
        for index in self.shard.indices(len(self.cache), self.per_rank_batch, step, self.seed):
            micro.append((self.cache[index].to(self.device), self.cache.labels[index].to(self.device)))
        return micro

    def batch(self, step: int) -> tuple[Tokens, torch.Tensor]:
        micro = self.micro_batches(step)
        return concatenate_tokens([tokens for tokens, _ in micro]), torch.cat([labels for _, labels in micro])

    def close(self) -> None:
        pass
