"""Token caches: encoded once per (dataset, split, tokenizer weights), memory-mapped, invalidated by
any change of weights or data."""

import numpy as np
import torch

from artok.data import ImageDataset
from artok.data.token_cache import cache_paths, cached_tokens, tokenizer_fingerprint
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig


def tiny(quantizer="vq", options=None):
    torch.manual_seed(0)
    config = CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=4,
                                quantizer=quantizer,
                                quantizer_options={"codebook_size": 16, "codebook_dim": 4} if options is None else options)
    return CNNTokenizer(config).eval()


def dataset(count=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return ImageDataset(images, torch.arange(count) % 3, ["a", "b", "c"], name="toy", split="train")


def test_encodes_once_and_reuses(tmp_path, monkeypatch):
    tokenizer, data = tiny(), dataset()
    first = cached_tokens(tokenizer, data, cache_dir=tmp_path, progress=False)
    data_path, meta_path = cache_paths(tokenizer, data, tmp_path)
    assert data_path.is_file() and meta_path.is_file()
    assert isinstance(np.load(data_path, mmap_mode="r"), np.memmap)

    def fail(*args, **kwargs):
        raise AssertionError("re-encoded a cached dataset")

    monkeypatch.setattr("artok.training.generator_trainer.encode_dataset", fail)
    second = cached_tokens(tokenizer, data, cache_dir=tmp_path, progress=False)
    assert second.spec == first.spec == tokenizer.spec
    assert torch.equal(second.ids, tokenizer.encode(data.batch(torch.arange(10))[0]).ids)
    assert torch.equal(second[torch.tensor([3, 1])].ids, second.ids[[3, 1]])


def test_key_changes_with_weights_and_data(tmp_path):
    tokenizer, data = tiny(), dataset()
    base = cache_paths(tokenizer, data, tmp_path)[0]
    changed = tiny()
    with torch.no_grad():
        changed.decoder.layers[0].weight.add_(1e-3)
    assert tokenizer_fingerprint(changed) != tokenizer_fingerprint(tokenizer)
    assert cache_paths(changed, data, tmp_path)[0] != base
    assert cache_paths(tokenizer, dataset(seed=1), tmp_path)[0] != base
    assert cache_paths(tokenizer, dataset(), tmp_path)[0] == base


def test_continuous_tokens_and_default_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTOK_CACHE", str(tmp_path))
    tokenizer = tiny("kl", {})
    tokens = cached_tokens(tokenizer, dataset(), progress=False)
    assert tokens.values.shape == (10, 16, 4) and tokens.spec.kind == "continuous"
    assert list((tmp_path / "tokens").glob("toy-train-10-*.npy"))
