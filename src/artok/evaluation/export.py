"""Sample export for outside evaluators: class-balanced, sharded, resumable, distributed.

``export_samples`` writes, under ``out``:
- ``shards/shard-00000.npz`` ... : ``arr_0`` uint8 ``n x H x W x 3`` and ``arr_1`` labels of one
  shard, each written atomically (`artok.hub.atomic_write`); a shard file that exists is done,
  so a rerun (after a kill, or a crash on one rank) samples only the missing shards;
- ``png/<label:04d>/<index:06d>.png`` (``format`` png or both): one PNG per image, in class
  folders (readable back as ``folder:out/png``), written before their shard is marked done;
- ``samples_<N>x<H>x<W>x3.npz`` (``format`` npz or both): the ADM evaluator's sample batch
  layout (Dhariwal & Nichol, arXiv:2105.05233): ``arr_0`` uint8 ``N x H x W x 3`` (one-channel
  images repeated to three) and ``arr_1`` the labels, in index order;
- ``export.json``: the plan (count, labels, shard size, seed, batch size); a rerun with another
  plan into the same folder is refused.

Determinism: image ``i`` belongs to shard ``i // shard_size``; shard ``s`` is sampled in
batches of ``batch_size`` from its own seed, ``SeedSequence([seed, s])``, so the export is the
same whatever the number of processes (under torchrun, rank ``r`` of ``W`` takes shards
``r, r + W, ...``). Labels cycle through the classes (``0, 1, ..., C - 1, 0, ...``): every
shard, and the whole export, is class-balanced to within one image per class.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from artok.data.base import to_uint8
from artok.distributed.env import SINGLE, DistributedEnv, all_reduce_sum_int, barrier
from artok.hub import atomic_write, atomic_write_text, remove_stale_temporaries


def balanced_labels(num_images: int, classes: list[int]) -> list[int]:
    """``num_images`` labels cycling through ``classes``."""
    if num_images < 1 or not classes:
        raise ValueError(f"need at least one image and one class, got {num_images} images and {len(classes)} classes")
    return [classes[index % len(classes)] for index in range(num_images)]


def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``: independent streams per shard, from one user seed."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class ExportPlan:
    """What to sample: ``labels[i]`` for image ``i``, grouped in shards of ``shard_size``."""

    labels: tuple[int, ...]
    shard_size: int = 1000
    seed: int = 0
    batch_size: int = 250

    def __post_init__(self) -> None:
        for name in ("shard_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.labels:
            raise ValueError("nothing to export: no labels")

    @property
    def num_images(self) -> int:
        return len(self.labels)

    @property
    def num_shards(self) -> int:
        return -(-self.num_images // self.shard_size)

    def shard_labels(self, shard: int) -> list[int]:
        return list(self.labels[shard * self.shard_size : (shard + 1) * self.shard_size])

    def record(self) -> dict:
        record = asdict(self)
        record["labels"] = list(self.labels)
        return {"num_images": self.num_images, **record}


def _shard_path(out: Path, shard: int) -> Path:
    return out / "shards" / f"shard-{shard:05d}.npz"


def _save_npz(path: Path, **arrays) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write)


def _save_png(path: Path, image: np.ndarray) -> None:
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(path, lambda temporary: picture.save(temporary, format="PNG"))


def to_hwc3(images: torch.Tensor) -> np.ndarray:
    """Float ``N x C x H x W`` in [-1, 1] (or uint8) -> uint8 ``N x H x W x 3`` numpy."""
    pixels = images if images.dtype == torch.uint8 else to_uint8(images)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _check_plan(out: Path, plan: ExportPlan, env: DistributedEnv) -> None:
    """Refuse another plan in ``out``; rank 0 then clears a killed run's temporaries and writes the
    manifest, and every rank waits for that before sampling (so no rank's temporary is removed)."""
    manifest = out / "export.json"
    if manifest.is_file():
        previous = json.loads(manifest.read_text())
        if previous != plan.record():
            changed = sorted(k for k in set(previous) | set(plan.record()) if previous.get(k) != plan.record().get(k))
            raise ValueError(f"{out} holds an export with other settings ({', '.join(changed)} differ); "
                             "rerun with the same options to resume, or choose another --out")
    if env.is_main:
        for folder in [out / "shards", *((out / "png").iterdir() if (out / "png").is_dir() else [])]:
            remove_stale_temporaries(folder)
        atomic_write_text(manifest, json.dumps(plan.record()))
    barrier()


def _sample_shard(sample, plan: ExportPlan, shard: int, out: Path, png: bool) -> int:
    labels = plan.shard_labels(shard)
    images = sample(torch.tensor(labels), shard_seed(plan.seed, shard), plan.batch_size)
    if images.shape[0] != len(labels):
        raise RuntimeError(f"the sampler returned {images.shape[0]} images for {len(labels)} labels")
    channels = images.shape[1]
    pixels = to_hwc3(images)
    if png:
        native = pixels[..., :1] if channels == 1 else pixels
        for offset, (image, label) in enumerate(zip(native, labels)):
            _save_png(out / "png" / f"{label:04d}" / f"{shard * plan.shard_size + offset:06d}.png", image)
    _save_npz(_shard_path(out, shard), arr_0=pixels, arr_1=np.asarray(labels, dtype=np.int64))
    return len(labels)


def merged_name(num_images: int, height: int, width: int) -> str:
    return f"samples_{num_images}x{height}x{width}x3.npz"


def _write_npy(archive: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype, chunks) -> None:
    """One ``.npy`` member of an ``.npz``, streamed chunk by chunk (what ``np.load`` reads back)."""
    with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)
        for chunk in chunks:
            handle.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())


def _shard_arrays(out: Path, plan: ExportPlan, key: str):
    for shard in range(plan.num_shards):
        with np.load(_shard_path(out, shard), allow_pickle=False) as file:
            yield file[key]


def merge_shards(out: Path, plan: ExportPlan) -> Path:
    """The ADM-layout ``.npz`` of all shards, in index order, streamed one shard at a time (memory
    stays one shard, also at 50,000 x 256 x 256 x 3) and written atomically."""
    with np.load(_shard_path(out, 0), allow_pickle=False) as file:
        height, width = file["arr_0"].shape[1:3]
    path = out / merged_name(plan.num_images, height, width)

    def write(temporary: str) -> None:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            _write_npy(archive, "arr_0", (plan.num_images, height, width, 3), np.dtype(np.uint8),
                       _shard_arrays(out, plan, "arr_0"))
            _write_npy(archive, "arr_1", (plan.num_images,), np.dtype(np.int64), _shard_arrays(out, plan, "arr_1"))

    return atomic_write(path, write)


def export_digest(out: Path, plan: ExportPlan) -> str:
    """sha256 over every shard's images and labels, in index order (equal exports, equal digests)."""
    digest = hashlib.sha256()
    for shard in range(plan.num_shards):
        with np.load(_shard_path(out, shard), allow_pickle=False) as file:
            digest.update(np.ascontiguousarray(file["arr_0"]).tobytes())
            digest.update(np.ascontiguousarray(file["arr_1"]).tobytes())
    return digest.hexdigest()


def export_samples(sample, plan: ExportPlan, out: str | Path, formats: tuple[str, ...] = ("png", "npz"),
                   env: DistributedEnv = SINGLE, progress: bool = True) -> dict:
    """Sample the shards of ``plan`` this rank owns (skipping finished ones) and, on rank 0 after
    every rank is done, write the merged ``.npz``.

    ``sample(labels, seed, batch_size) -> images`` (``N x C x H x W`` in [-1, 1]); the CLI passes a
    `Pipeline` call. Returns counts, the rate (images/s of this rank's sampling) and paths."""
    unknown = set(formats) - {"png", "npz"}
    if unknown or not formats:
        raise ValueError(f"formats must be png and/or npz, got {', '.join(formats) or 'none'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_plan(out, plan, env)
    mine = list(range(env.rank, plan.num_shards, env.world_size))
    todo = [shard for shard in mine if not _shard_path(out, shard).is_file()]
    share = sum(len(plan.shard_labels(shard)) for shard in todo)
    bar = tqdm(total=share, unit="img", desc=f"sampling (rank 0 of {env.world_size})" if env.distributed else "sampling",
               disable=not (progress and env.is_main), dynamic_ncols=True)
    started = time.perf_counter()
    sampled = 0
    for shard in todo:
        sampled += _sample_shard(sample, plan, shard, out, "png" in formats)
        bar.update(len(plan.shard_labels(shard)))
    bar.close()
    seconds = time.perf_counter() - started
    total_sampled = all_reduce_sum_int(sampled)
    skipped = all_reduce_sum_int(len(mine) - len(todo))
    barrier()
    result = {"num_images": plan.num_images, "num_shards": plan.num_shards, "sampled_images": total_sampled,
              "skipped_shards": skipped, "seconds": seconds,
              "images_per_second": sampled / seconds if sampled and seconds > 0 else 0.0, "out": str(out)}
    if env.is_main:
        result["digest"] = export_digest(out, plan)
        if "npz" in formats:
            result["npz"] = str(merge_shards(out, plan))
        if "png" in formats:
            result["png"] = str(out / "png")
    barrier()
    return result
