"""Sharded token caches: views, writing, resuming after a crash, reading, tamper detection."""

import json

import numpy as np
import pytest
import torch
from artok_test_helpers import TOKENIZERS

from artok.data import DatasetError, load_dataset
from artok.data.encode_shards import (
    EncodeOptions,
    augmented_views,
    encode_shards,
    write_manifest,
)
from artok.data.stream import MemoryItems
from artok.data.token_shards import TokenBatches, TokenShards, shard_names
from artok.distributed.sharding import Shard


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test", image_size=8, channels=1, limit=21)


def _encode(tokenizer, dataset, out, augment="none", **kwargs):
    options = EncodeOptions(dataset="digits", split="test", image_size=8, augment=augment, shard_size=5,
                            values_dtype=kwargs.pop("values_dtype", "float32"))
    summary = encode_shards(tokenizer, MemoryItems(dataset), out, options, batch_size=3, workers=0, progress=False, **kwargs)
    return summary, options


def _finish(tokenizer, dataset, out, options):
    return write_manifest(out, tokenizer, options, len(dataset), dataset.class_names)


def _images(dataset, index):
    return dataset.images[index].float().div(127.5).sub(1.0)


def test_flip_and_ten_crop_views_are_the_llamagen_views():
    images = torch.arange(2 * 3 * 10 * 11, dtype=torch.float32).reshape(2, 3, 10, 11)
    flip = augmented_views(images, "flip", 8)
    assert flip.shape == (2, 2, 3, 10, 11) and torch.equal(flip[:, 1], images.flip(-1))
    ten = augmented_views(images, "ten-crop", 8)
    assert ten.shape == (2, 10, 3, 8, 8)
    corners = [(0, 0), (0, 3), (2, 0), (2, 3), (1, 2)]  # center: round((10 - 8) / 2), round((11 - 8) / 2)
    for view, (y, x) in enumerate(corners):
        assert torch.equal(ten[:, view], images[..., y : y + 8, x : x + 8])
        assert torch.equal(ten[:, 5 + view], images.flip(-1)[..., y : y + 8, x : x + 8])


def test_cache_holds_the_tokenizers_ids_for_every_view_across_shards(digits, tmp_path):
    tokenizer = TOKENIZERS["vq"]()
    summary, options = _encode(tokenizer, digits, tmp_path, augment="flip")
    manifest = _finish(tokenizer, digits, tmp_path, options)
    assert (summary.written, summary.kept, manifest["count"], manifest["storage_dtype"]) == (5, 0, 21, "int16")
    cache = TokenShards(tmp_path)
    assert len(cache) == 42 and cache.num_classes == 10 and cache.spec == tokenizer.spec
    index = torch.tensor([41, 0, 13, 9, 10, 27])  # several shards, both views, out of order
    image, view = index // 2, index % 2
    views = augmented_views(_images(digits, image), "flip", 8)[torch.arange(len(index)), view]
    assert torch.equal(cache[index].ids, tokenizer.encode(views).ids)
    assert torch.equal(cache.labels[index], digits.labels[image]) and torch.equal(cache.source_indices[index], image)
    tokens, labels = cache.tokens_and_labels()
    assert tokens.ids.dtype == torch.int64 and tokens.batch_size == 42 and torch.equal(labels, cache.labels)


def test_continuous_tokens_are_stored_as_float16_when_asked(digits, tmp_path):
    tokenizer = TOKENIZERS["kl"]()
    _, options = _encode(tokenizer, digits, tmp_path, values_dtype="float16")
    _finish(tokenizer, digits, tmp_path, options)
    cache = TokenShards(tmp_path)
    assert np.load(tmp_path / shard_names(0)[0]).dtype == np.float16
    expected = tokenizer.encode(_images(digits, torch.arange(4))).values
    assert cache[torch.arange(4)].values.dtype == torch.float32
    torch.testing.assert_close(cache[torch.arange(4)].values, expected.half().float())


def test_a_crash_keeps_the_finished_shards_and_the_rerun_equals_a_clean_run(digits, tmp_path):
    clean = TOKENIZERS["vq"]()
    _, options = _encode(clean, digits, tmp_path / "clean")
    _finish(clean, digits, tmp_path / "clean", options)
    crashing, calls = clean, [0]
    encode = crashing.encode

    def fail_on_the_fifth_batch(images):
        calls[0] += 1
        if calls[0] == 5:  # batches of 3 in shards of 5: shards 0 and 1 are done
            raise RuntimeError("killed")
        return encode(images)

    crashing.encode = fail_on_the_fifth_batch
    with pytest.raises(RuntimeError, match="killed"):
        _encode(crashing, digits, tmp_path / "resumed")
    crashing.encode = encode
    assert not (tmp_path / "resumed" / shard_names(2)[0]).exists()
    summary, _ = _encode(crashing, digits, tmp_path / "resumed")
    _finish(crashing, digits, tmp_path / "resumed", options)
    assert (summary.kept, summary.written) == (2, 3)
    for name in sorted(p.name for p in (tmp_path / "clean").iterdir()):
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


def test_a_damaged_shard_is_rewritten_and_other_options_rewrite_everything(digits, tmp_path):
    tokenizer = TOKENIZERS["vq"]()
    _encode(tokenizer, digits, tmp_path)
    data = tmp_path / shard_names(3)[0]
    data.write_bytes(data.read_bytes()[:-4])
    summary, _ = _encode(tokenizer, digits, tmp_path)
    assert (summary.kept, summary.written) == (4, 1)
    assert _encode(tokenizer, digits, tmp_path, augment="flip")[0].written == 5
    assert _encode(TOKENIZERS["vq"](), digits, tmp_path, augment="flip")[0].written == 5  # other weights


def test_tampered_missing_or_absent_manifest_is_a_one_line_error_naming_the_file(digits, tmp_path):
    with pytest.raises(DatasetError, match="no manifest.json"):
        TokenShards(tmp_path)
    tokenizer = TOKENIZERS["vq"]()
    _, options = _encode(tokenizer, digits, tmp_path)
    _finish(tokenizer, digits, tmp_path, options)
    data = tmp_path / shard_names(1)[0]
    original = data.read_bytes()
    data.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(DatasetError, match=r"shard file shard-00001.npy does not match its SHA-256") as error:
        TokenShards(tmp_path)
    assert "\n" not in str(error.value)
    TokenShards(tmp_path, verify=False)  # same size and shape: only the checksum tells
    data.unlink()
    with pytest.raises(DatasetError, match="shard file shard-00001.npy is missing"):
        TokenShards(tmp_path, verify=False)
    (tmp_path / shard_names(1)[2]).unlink()
    with pytest.raises(DatasetError, match="shard-00001.json is missing"):
        _finish(tokenizer, digits, tmp_path, options)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(DatasetError, match="not version 1"):
        TokenShards(tmp_path)


def test_token_batches_read_the_sharded_order_of_each_rank(digits, tmp_path):
    tokenizer = TOKENIZERS["vq"]()
    _, options = _encode(tokenizer, digits, tmp_path)
    _finish(tokenizer, digits, tmp_path, options)
    cache = TokenShards(tmp_path)
    whole = TokenBatches(cache, 4, Shard(0, 1), seed=3)
    ranks = [TokenBatches(cache, 2, Shard(rank, 2), seed=3) for rank in range(2)]
    for step in range(7):  # past one epoch (21 items, global batch 4)
        tokens, labels = whole.batch(step)
        parts = [source.batch(step) for source in ranks]
        assert torch.equal(tokens.ids, torch.cat([part[0].ids for part in parts]))
        assert torch.equal(labels, torch.cat([part[1] for part in parts]))
        index = Shard(0, 1).indices(21, 4, step, 3)[0]
        assert torch.equal(tokens.ids, cache[index].ids)
    with pytest.raises(IndexError):
        cache[torch.tensor([21])]
