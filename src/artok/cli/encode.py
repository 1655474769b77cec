"""``artok encode-dataset``: pre-tokenize a dataset into a sharded, memory-mapped token cache
(`artok.data.token_shards`), in one process or under ``torchrun --nproc-per-node N -m artok
encode-dataset ...`` (each rank writes the shards ``i % WORLD_SIZE == RANK``; rank 0 writes the
manifest once every rank is done). Rerunning the same command keeps the finished shards."""

from __future__ import annotations

import argparse
import os
import sys

from artok.cli.common import add_common, check_output_dir, nonnegative_int, positive_int

NAME = "encode-dataset"


def add_parser(subparsers) -> str:
    parser = subparsers.add_parser(
        NAME,
        help="pre-tokenize a dataset into a sharded token cache (resumable; runs under torchrun)",
        description="Encode every image of a dataset with a saved tokenizer into OUT/shard-NNNNN.npy (memory-mappable "
        "ids or values) + .items.npy (dataset index, label) + .json (range, count, SHA-256), and OUT/manifest.json. "
        "Under torchrun each rank writes every WORLD_SIZE-th shard; the cache is the same for any number of processes. "
        "Rerun the same command to finish an interrupted run: shards already complete are kept.",
    )
    parser.add_argument("--tokenizer", required=True, metavar="DIR", help="saved tokenizer folder")
    parser.add_argument("--dataset", required=True,
                        help="folder:PATH or imagenet:ROOT (streamed), or a built-in set: digits, mnist, fashion-mnist, photos")
    parser.add_argument("--split", default="train", help="train, test/val or all (default: train)")
    parser.add_argument("--out", required=True, help="cache folder (created if missing)")
    parser.add_argument("--image-size", type=positive_int, help="square side fed to the tokenizer (default: the tokenizer's)")
    parser.add_argument("--shard-size", type=positive_int, default=1024, help="images per shard (default: 1024)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per encode call (default: 64)")
    parser.add_argument("--augment", choices=("none", "flip", "ten-crop"), default="none",
                        help="also store each image's mirror (flip: 2 views) or LlamaGen's ten crops (default: none)")
    parser.add_argument("--values-dtype", choices=("float32", "float16"), default="float32",
                        help="storage of continuous tokens (default: float32)")
    parser.add_argument("--limit", type=positive_int, help="encode a class-balanced subset of this many images")
    parser.add_argument("--workers", type=nonnegative_int, default=2, help="DataLoader decoding processes (default: 2)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads per process (default: torch's)")
    add_common(parser)
    parser.set_defaults(run=run)
    return NAME


def _world() -> tuple[int, int]:
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError("RANK and WORLD_SIZE must be integers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in WORLD_SIZE={world}")
    return rank, world


def _rank_device(device: str) -> str:
    """``cuda`` under torchrun means this rank's GPU, ``cuda:LOCAL_RANK``."""
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if device == "cuda" and local_rank is not None else device


def _dataset(args, image_size: int, channels: int):
    from artok.data import load_dataset
    from artok.data.stream import MemoryItems, is_stream_name, open_stream

    if is_stream_name(args.dataset):
        return open_stream(args.dataset, args.split, image_size=image_size, limit=args.limit, seed=args.seed)
    return MemoryItems(load_dataset(args.dataset, args.split, image_size=image_size, channels=channels,
                                    limit=args.limit, seed=args.seed))


def _encode(args, rank: int, world: int, combine) -> int:
    import torch

    from artok.data.encode_shards import (
        EncodeOptions,
        crop_size,
        encode_shards,
        write_manifest,
    )
    from artok.zoo import from_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    out = check_output_dir(args.out)
    device = _rank_device(args.device)
    tokenizer = from_pretrained(args.tokenizer, device, role="tokenizer")
    image_size = args.image_size or tokenizer.config.image_size
    if image_size != tokenizer.config.image_size:
        raise ValueError(f"--image-size {image_size}: the tokenizer takes {tokenizer.config.image_size} x "
                         f"{tokenizer.config.image_size} images; leave --image-size out")
    options = EncodeOptions(dataset=args.dataset, split=args.split, image_size=image_size, augment=args.augment,
                            shard_size=args.shard_size, values_dtype=args.values_dtype)
    dataset = _dataset(args, crop_size(image_size, args.augment), tokenizer.config.in_channels)
    summary = encode_shards(tokenizer, dataset, out, options, batch_size=args.batch_size, workers=args.workers,
                            device=device, rank=rank, world_size=world, progress=not args.no_progress)
    written, kept = combine([summary.written, summary.kept])
    if rank == 0:
        manifest = write_manifest(out, tokenizer, options, len(dataset), dataset.class_names)
        print(f"wrote {written} shards, kept {kept} shards ({world} process{'es' if world > 1 else ''}); "
              f"{manifest['count']} images x {manifest['views']} views, {manifest['skipped']} files skipped -> {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    rank, world = _world()
    try:
        return _encode(args, rank, world, _sum_over_ranks if world > 1 else (lambda values: values))
    except Exception:
        if world > 1:  # say which rank failed (torchrun stops the others)
            print(f"artok: rank {rank} of {world} failed", file=sys.stderr)
        raise


def _sum_over_ranks(values: list[int]) -> list[int]:
    """Every rank's counts summed, which also waits until every rank has finished its shards.

    The process group is created only now: the ranks encode different numbers of batches, and the
    quantizers all-reduce their code statistics inside ``encode`` whenever a group exists.
    """
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")  # CPU tensors only: gloo serves CPU and CUDA runs alike
    try:
        total = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(total)
        return total.tolist()
    finally:
        dist.destroy_process_group()
