"""Write a sharded token cache (the format is described in `artok.data.token_shards`).

`encode_shards` encodes one process's shards, `write_manifest` gathers the records once every
process is done; ``artok encode-dataset`` (`artok.cli.encode`) runs both under torchrun.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from artok.data.errors import DatasetError
from artok.data.token_shards import (
    AUGMENTATIONS,
    FORMAT_VERSION,
    MANIFEST,
    TEN_CROP_RANGE,
    VALUE_DTYPES,
    ids_dtype,
    sha256_file,
    shard_names,
    shard_ranges,
)
from artok.hub import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from artok.tokens import TokenSpec


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# -- augmentation ------------------------------------------------------------------------------


def crop_size(image_size: int, augment: str) -> int:
    """The size images are center-cropped to before the views are taken."""
    return int(image_size * TEN_CROP_RANGE) if augment == "ten-crop" else image_size


def _five_crops(images: torch.Tensor, size: int) -> list[torch.Tensor]:
    """torchvision's ``five_crop``: the four corners, then the center (``round((H - size) / 2)``)."""
    height, width = images.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), (top, left)]
    return [images[..., y : y + size, x : x + size] for y, x in corners]


def augmented_views(images: torch.Tensor, augment: str, image_size: int) -> torch.Tensor:
    """``B x C x H x W`` -> ``B x A x C x S x S``: the views of every image (see the module docstring)."""
    if augment == "none":
        return images[:, None]
    if augment == "flip":
        return torch.stack([images, images.flip(-1)], dim=1)
    if augment == "ten-crop":
        return torch.stack(_five_crops(images, image_size) + _five_crops(images.flip(-1), image_size), dim=1)
    raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")


# -- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodeOptions:
    """What a cache's content depends on (shards whose record holds other options are rewritten)."""

    dataset: str
    split: str
    image_size: int
    augment: str = "none"
    shard_size: int = 1024
    values_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.values_dtype not in VALUE_DTYPES:
            raise ValueError(f"values dtype must be one of {', '.join(VALUE_DTYPES)}, got {self.values_dtype!r}")
        if self.shard_size < 1 or self.image_size < 1:
            raise ValueError(f"shard_size and image_size must be >= 1, got {self.shard_size} and {self.image_size}")


def _record_matches(directory: Path, index: int, run: dict) -> bool:
    """Whether shard ``index`` was written by a run with the same key and its files are intact."""
    _, _, record_name = shard_names(index)
    try:
        record = json.loads((directory / record_name).read_text())
        return record.get("run") == run and all(
            sha256_file(directory / record[name]) == record[digest]
            for name, digest in (("data", "sha256"), ("items", "items_sha256"))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


class _ShardBatches:
    """The DataLoader ``batch_sampler`` of one process: the batches of every shard to write, in
    order, each batch inside one shard and starting from the shard's first item; one loader (and
    one set of workers) serves them all."""

    def __init__(self, spans: list[tuple[int, int]], batch_size: int) -> None:
        self.batches = [list(range(begin, min(begin + batch_size, stop)))
                        for start, stop in spans for begin in range(start, stop, batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _encode_batch(tokenizer, batch, options: EncodeOptions, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(tokens A views deep, (index, label) rows)`` of one collated batch; None when it is empty."""
    from artok.data.transforms import convert_channels

    if batch.images.shape[0] == 0:
        return None
    images = convert_channels(batch.images, tokenizer.config.in_channels)
    images = images.to(device=device, dtype=torch.float32).div_(127.5).sub_(1.0)
    views = augmented_views(images, options.augment, options.image_size)
    tokens = tokenizer.encode(views.flatten(0, 1)).data.to("cpu")
    return tokens.reshape(views.shape[0], views.shape[1], *tokens.shape[1:]), torch.stack([batch.indices, batch.labels], 1)


def _write_shard(directory: Path, index: int, span: tuple[int, int], arrays: tuple[np.ndarray, np.ndarray],
                 skipped: int, run: dict) -> None:
    data_name, items_name, record_name = shard_names(index)
    data, items = _npy_bytes(arrays[0]), _npy_bytes(arrays[1])
    atomic_write_bytes(directory / data_name, data)
    atomic_write_bytes(directory / items_name, items)
    record = {"index": index, "range": list(span), "count": int(arrays[1].shape[0]), "skipped": skipped,
              "data": data_name, "items": items_name, "sha256": hashlib.sha256(data).hexdigest(),
              "items_sha256": hashlib.sha256(items).hexdigest(), "run": run}
    atomic_write_text(directory / record_name, json.dumps(record, indent=1))


def _storage(chunks: list[torch.Tensor], spec: TokenSpec, options: EncodeOptions, views: int) -> np.ndarray:
    if not chunks:
        shape = (0, views, spec.seq_len) + ((spec.subtokens,) if spec.kind == "discrete" and spec.subtokens > 1 else ())
        shape += (spec.channels,) if spec.kind == "continuous" else ()
        chunks = [torch.empty(shape)]
    dtype = ids_dtype(spec) if spec.kind == "discrete" else np.dtype(options.values_dtype)
    return np.ascontiguousarray(torch.cat(chunks).numpy().astype(dtype))


@dataclass
class EncodeSummary:
    """What one process did: shards written, shards kept (already complete), files skipped."""

    written: int = 0
    kept: int = 0
    skipped: int = 0


def run_key(tokenizer, options: EncodeOptions) -> dict:
    from dataclasses import asdict

    from artok.data.token_cache import tokenizer_fingerprint

    return {"version": FORMAT_VERSION, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), **asdict(options)}


def encode_shards(tokenizer, dataset, out_dir, options: EncodeOptions, *, batch_size: int = 64, workers: int = 2,
                  device="cpu", rank: int = 0, world_size: int = 1, progress: bool = True) -> EncodeSummary:
    """Encode this process's shards of ``dataset`` into ``out_dir`` (see the module docstring).

    ``dataset[i]`` must return ``(uint8 C x H x W image or None, label, i)`` at ``crop_size(image_size,
    augment)``: a `StreamingImages`, or a `MemoryItems` of an in-memory dataset. The manifest is written
    afterwards by `write_manifest`, once every process is done.
    """
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from artok.data.stream import collate_samples

    if world_size > 1 and dist.is_available() and dist.is_initialized():
        raise RuntimeError("encode_shards: call it before init_process_group; each rank encodes a different number of "
                           "batches and the quantizers all-reduce their statistics inside encode whenever a group exists")
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    run = run_key(tokenizer, options)
    spec, views = tokenizer.spec, AUGMENTATIONS[options.augment]
    mine = [(i, span) for i, span in enumerate(shard_ranges(len(dataset), options.shard_size)) if i % world_size == rank]
    # What a killed run of this rank left half-written (other ranks may be writing theirs right now).
    remove_stale_temporaries(directory, tuple(name for i, _ in mine for name in shard_names(i)))
    bar = tqdm(total=sum(stop - start for _, (start, stop) in mine), desc="encode", unit="image",
               disable=not progress or rank != 0)
    summary = EncodeSummary()
    todo = []
    for index, (start, stop) in mine:
        if _record_matches(directory, index, run):
            summary.kept += 1
            bar.update(stop - start)
        else:
            todo.append((index, (start, stop)))
    tokenizer.to(device).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=_ShardBatches([span for _, span in todo], batch_size),
                                         num_workers=workers if todo else 0, collate_fn=collate_samples)
    batches = iter(loader)
    for index, (start, stop) in todo:
        chunks, rows, skipped = [], [], 0
        with torch.inference_mode():
            for _ in range(-(-(stop - start) // batch_size)):
                batch = next(batches)
                skipped += batch.skipped
                bar.update(batch.images.shape[0] + batch.skipped)
                encoded = _encode_batch(tokenizer, batch, options, device)
                if encoded is not None:
                    chunks.append(encoded[0])
                    rows.append(encoded[1])
        items = torch.cat(rows).numpy() if rows else np.zeros((0, 2), dtype=np.int64)
        _write_shard(directory, index, (start, stop), (_storage(chunks, spec, options, views), items), skipped, run)
        summary.written += 1
        summary.skipped += skipped
    bar.close()
    return summary


def write_manifest(out_dir, tokenizer, options: EncodeOptions, num_items: int, class_names: list[str]) -> dict:
    """Gather every shard's record into ``manifest.json`` (after all processes finished)."""
    directory = Path(out_dir)
    remove_stale_temporaries(directory, (MANIFEST,))
    run = run_key(tokenizer, options)
    records = []
    for index, _ in enumerate(shard_ranges(num_items, options.shard_size)):
        path = directory / shard_names(index)[2]
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"{path} is missing or unreadable ({error}); rerun encode-dataset to write it") from None
        if record.get("run") != run:
            raise DatasetError(f"{path} was written by another tokenizer or other options; rerun encode-dataset")
        records.append({key: value for key, value in record.items() if key != "run"})
    spec = tokenizer.spec
    count = sum(record["count"] for record in records)
    manifest = {**run, "spec": spec.to_dict(), "storage_dtype": str(ids_dtype(spec) if spec.is_discrete else options.values_dtype),
                "views": AUGMENTATIONS[options.augment], "class_names": list(class_names), "listed": num_items, "count": count,
                "skipped": sum(record["skipped"] for record in records), "shards": records}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1))
    return manifest
