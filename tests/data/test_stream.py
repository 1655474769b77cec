"""Streaming image folders: listing, ADM crop, deterministic flips, skipped files, step-keyed batches."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artok.data import DatasetError, load_dataset
from artok.data.folder import list_image_files
from artok.data.scan import scan_folder
from artok.data.step_batches import InMemoryBatches, StreamingBatches, sum_across_ranks
from artok.data.stream import center_crop_arr, flips, open_stream, read_sample
from artok.distributed.sharding import Shard

SIZE = 8


def _solid(path, value, size=(12, 10)):
    """A PNG whose every pixel is ``value`` (so the index survives any crop and flip)."""
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


def _indexed_folder(root: Path, count: int, classes: int = 3) -> Path:
    """``count`` solid PNGs, image ``k`` of value ``k`` (in sorted listing order), in class folders."""
    for k in range(count):
        folder = root / f"c{k % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        _solid(folder / f"img{k:03d}.png", k)
    return root


def _read_values(images: torch.Tensor) -> list[int]:
    """The solid value of each streamed image (float in [-1, 1] back to 0..255)."""
    pixels = ((images + 1) * 127.5).round().to(torch.int64)
    assert (pixels == pixels[:, :1, :1, :1]).all()
    return pixels[:, 0, 0, 0].tolist()


def _value_of_index(dataset) -> dict[int, int]:
    return {i: int(Path(dataset.files.name(i)).stem[3:]) for i in range(len(dataset))}


# -- listing -------------------------------------------------------------------------------------


def test_scan_matches_in_memory_listing_on_links_hard_links_fifos_and_hidden_names(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b", "b/deep"):
        (root / name).mkdir(parents=True)
    for name in ("a/1.png", "a/2.png", "b/x.png", "b/deep/y.png", "a/.hidden.png", "top.png"):
        _solid(root / name, 7)
    os.link(root / "a/1.png", root / "b/hard.png")  # a second name of a/1.png
    os.symlink(root / "a", root / "b/link_to_a")  # another class's folder: not walked again
    os.symlink(root, root / "a/loop")  # the root itself: no loop
    os.symlink(root / "b/x.png", root / "a/link.png")  # a file link into another class
    os.symlink(tmp_path / "missing.png", root / "a/broken.png")
    os.mkfifo(root / "a/fifo.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    _solid(outside / "o.png", 1)
    os.symlink(outside, root / "a/ext")  # a folder outside: walked once
    os.symlink(outside, root / "b/ext_again")
    os.symlink(outside, root / "b/deep/ext_deeper")  # met after b/link_to_a and b/ext_again by os.walk
    os.symlink(outside, root / "b/a_link")  # sorted before "deep": os.walk still meets it first
    files, labels, names = scan_folder(root)
    expected_files, expected_labels, expected_names = list_image_files(root)
    assert [files.path(i) for i in range(len(files))] == [str(p) for p in expected_files]
    assert labels.tolist() == expected_labels.tolist() and names == expected_names
    assert files.name(0).startswith("a/") and len(files) == len(expected_files) >= 5


def test_scan_flat_folder_is_one_class(tmp_path):
    for name in ("b.png", "a.png", ".h.png"):
        _solid(tmp_path / name, 1)
    files, labels, names = scan_folder(tmp_path)
    assert [files.name(i) for i in range(len(files))] == ["a.png", "b.png"]
    assert labels.tolist() == [0, 0] and names == [tmp_path.name]


def test_folder_splits_are_the_in_memory_splits(tmp_path):
    root = _indexed_folder(tmp_path / "d", 30)
    for split in ("train", "test", "all"):
        stream = open_stream(f"folder:{root}", split, image_size=SIZE)
        memory = load_dataset(f"folder:{root}", split, image_size=SIZE)
        values = [_value_of_index(stream)[i] for i in range(len(stream))]
        assert values == memory.images[:, 0, 0, 0].tolist()
        assert stream.labels.tolist() == memory.labels.tolist()


def test_missing_or_empty_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_stream(f"folder:{tmp_path / 'nope'}", image_size=SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no files"):
        open_stream(f"folder:{tmp_path / 'empty'}", image_size=SIZE)
    with pytest.raises(DatasetError, match="cannot be streamed"):
        open_stream("digits", image_size=SIZE)


# -- pixels --------------------------------------------------------------------------------------


def test_center_crop_follows_the_adm_recipe_step_by_step():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (700, 1030, 3), dtype=np.uint8))
    # By hand for a 128 target: 1030x700 -> BOX 515x350 -> BOX 257x175 (175 < 256 stops),
    # BICUBIC to (round(257 * 128 / 175), 128) = (188, 128), then the center 128 columns from (188 - 128) // 2 = 30.
    reference = image.resize((515, 350), Image.BOX).resize((257, 175), Image.BOX).resize((188, 128), Image.BICUBIC)
    expected = np.asarray(reference)[:, 30:158]
    assert np.array_equal(np.asarray(center_crop_arr(image, 128)), expected)
    tall = Image.fromarray(rng.integers(0, 256, (90, 40, 3), dtype=np.uint8))  # upscaled: no BOX step
    expected = np.asarray(tall.resize((64, 144), Image.BICUBIC))[(144 - 64) // 2 :][:64]
    assert np.array_equal(np.asarray(center_crop_arr(tall, 64)), expected)


def test_read_sample_is_rgb_uint8_at_the_target_size(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60), dtype=np.uint8), "L").save(tmp_path / "g.png")
    sample = read_sample(str(tmp_path / "g.png"), 16)
    assert sample.shape == (3, 16, 16) and sample.dtype == torch.uint8
    assert torch.equal(sample[0], sample[1])  # grey replicated


def test_flips_are_a_fair_pure_function_of_seed_epoch_and_index():
    draws = [flips(3, 1, i) for i in range(4000)]
    assert draws == [flips(3, 1, i) for i in range(4000)]
    assert 0.45 < sum(draws) / len(draws) < 0.55
    assert draws != [flips(3, 2, i) for i in range(4000)] and draws != [flips(4, 1, i) for i in range(4000)]


# -- step-keyed batches --------------------------------------------------------------------------


def test_two_ranks_read_every_image_once_per_epoch_and_never_the_same(tmp_path):
    count, per_rank = 23, 2  # global batch 4: 5 steps per epoch, 3 images left out (drop-last)
    dataset = open_stream(f"folder:{_indexed_folder(tmp_path / 'd', count)}", "all", image_size=SIZE)
    value_of = _value_of_index(dataset)
    ranks = [StreamingBatches(dataset, per_rank, Shard(rank, 2), seed=5, workers=1) for rank in range(2)]
    for epoch in range(2):
        seen = []
        for step in range(epoch * 5, epoch * 5 + 5):
            parts = [_read_values(source.batch(step)[0]) for source in ranks]
            assert not set(parts[0]) & set(parts[1])
            seen += parts[0] + parts[1]
        assert len(seen) == len(set(seen)) == count - count % 4
        assert set(seen) <= set(value_of.values())
    for source in ranks:
        source.close()


def test_flips_are_deterministic_and_resume_reads_the_same_batches(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    for k in range(12):  # left half k, right half 255 - k: a flip is visible
        array = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        array[:, : SIZE // 2], array[:, SIZE // 2 :] = k, 255 - k
        Image.fromarray(array).save(root / f"img{k:03d}.png")
    dataset = open_stream(f"folder:{root}", "all", image_size=SIZE, flip=True)
    with StreamingBatches(dataset, 2, Shard(0, 1, accumulation=2), seed=1, workers=2) as through:
        run = [through.micro_batches(step) for step in range(6)]
    with StreamingBatches(dataset, 2, Shard(0, 1, accumulation=2), seed=1, workers=2, start_step=3) as resumed:
        again = [resumed.micro_batches(step) for step in (3, 4, 5)]
        back = resumed.micro_batches(1)  # out of order: restarts at step 1
    for ours, theirs in zip(run[3:] + [run[1]], again + [back]):
        for (images, labels), (images2, labels2) in zip(ours, theirs):
            assert torch.equal(images, images2) and torch.equal(labels, labels2)
    images = torch.cat([images for micro in run for images, _ in micro])
    mirrored = images[:, 0, 0, 0] > images[:, 0, 0, -1]
    assert 0 < mirrored.sum() < len(mirrored)  # both orientations occur
    memory = load_dataset(f"folder:{root}", "all", image_size=SIZE)
    in_memory = InMemoryBatches(memory, 2, Shard(0, 1, accumulation=2), seed=1, flip=True)
    for step in range(6):
        for (images, labels), (images2, labels2) in zip(run[step], in_memory.micro_batches(step)):
            assert torch.equal(images, images2) and torch.equal(labels, labels2)


def test_corrupt_truncated_empty_and_text_files_are_skipped_and_counted_by_workers(tmp_path):
    root = _indexed_folder(tmp_path / "d", 12, classes=2)
    good = (root / "c0" / "img000.png").read_bytes()
    (root / "c0" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "c0" / "zero.jpg").write_bytes(b"")
    (root / "c1" / "text.jpg").write_text("not an image")
    (root / "c1" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    dataset = open_stream(f"folder:{root}", "all", image_size=SIZE)
    assert len(dataset) == 16
    with StreamingBatches(dataset, 4, Shard(0, 1), seed=0, workers=2) as source:
        kept = sum(source.batch(step)[0].shape[0] for step in range(4))  # one epoch
    assert source.skipped == 4 and kept == 12
    assert sum_across_ranks(source.skipped) == 4  # no process group: identity


def test_every_micro_batch_unreadable_gives_an_empty_batch(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"x")
    with StreamingBatches(open_stream(f"folder:{tmp_path}", "all", image_size=SIZE), 2, workers=0) as source:
        images, labels = source.batch(0)
    assert images.shape[0] == 0 and labels.shape == (0,) and source.skipped == 2


def test_bad_batch_arguments_are_refused():
    with pytest.raises(ValueError, match="per_rank_batch"):
        StreamingBatches([], 0)
    with pytest.raises(ValueError, match="workers"):
        StreamingBatches([], 2, workers=-1)


# -- ImageNet layouts ----------------------------------------------------------------------------


def _imagenet(root: Path, wnids=("n01", "n02")) -> Path:
    for label, wnid in enumerate(wnids):
        (root / "train" / wnid).mkdir(parents=True)
        for k in range(2):
            _solid(root / "train" / wnid / f"{wnid}_{k}.JPEG", label)
    (root / "val").mkdir()
    for k in range(4):
        _solid(root / "val" / f"ILSVRC2012_val_{k:08d}.JPEG", k)
    return root


def test_imagenet_train_and_flat_val_with_either_labels_file(tmp_path):
    root = _imagenet(tmp_path / "in")
    train = open_stream(f"imagenet:{root}", "train", image_size=SIZE)
    assert len(train) == 4 and train.labels.tolist() == [0, 0, 1, 1] and train.class_names == ["n01", "n02"]
    with pytest.raises(DatasetError, match="no labels file"):
        open_stream(f"imagenet:{root}", "val", image_size=SIZE)
    (root / "val_labels.txt").write_text("".join(f"ILSVRC2012_val_{k:08d}.JPEG {k % 2}\n" for k in range(4)))
    assert open_stream(f"imagenet:{root}", "val", image_size=SIZE).labels.tolist() == [0, 1, 0, 1]
    (root / "val_labels.txt").unlink()
    rows = "".join(f"ILSVRC2012_val_{k:08d},{'n02' if k < 2 else 'n01'} 1 2 3 4\n" for k in range(4))
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows)
    val = open_stream(f"imagenet:{root}", "val", image_size=SIZE)
    assert val.labels.tolist() == [1, 1, 0, 0] and val[0][0].shape == (3, SIZE, SIZE)
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows.splitlines()[0])
    with pytest.raises(DatasetError, match="has no label for val/ILSVRC2012_val_00000001.JPEG"):
        open_stream(f"imagenet:{root}", "val", image_size=SIZE)


def test_imagenet_val_class_folders_are_numbered_by_train(tmp_path):
    root = _imagenet(tmp_path / "in", wnids=("n01", "n02", "n03"))
    for path in (root / "val").iterdir():
        path.unlink()
    (root / "val" / "n03").mkdir()
    _solid(root / "val" / "n03" / "v.JPEG", 1)
    val = open_stream(f"imagenet:{root}", "val", image_size=SIZE)
    assert val.labels.tolist() == [2] and val.class_names == ["n01", "n02", "n03"]
    with pytest.raises(DatasetError, match="splits 'train' and 'val'"):
        open_stream(f"imagenet:{root}", "all", image_size=SIZE)
