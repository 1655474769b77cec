"""One contract, every row of the kind table x every tokenizer kind it accepts (the
``ModelTesterMixin`` idea with pytest parametrize): save/load round trip with identical samples,
determinism for a seed, cached == uncached where the kind has a cache, engine == plain loop on
CPU where it has an engine, and the loss falls on a tiny batch. A new row gets all of it."""

from __future__ import annotations

import pytest
import torch
from artok_test_helpers import TOKENIZERS, fast_sampler, options_for, structured_tokens

from artok.generators import IncompatibleTokensError
from artok.hub import from_pretrained, save_pretrained
from artok.training import TrainConfig, train_generator
from artok.zoo import KINDS, build_generator, default_sampler_config, kind_of, sample


def _tokenizer(name: str):
    return TOKENIZERS[name]()


def _options(kind: str) -> dict:
    return options_for(kind)


def _pairs() -> list[tuple[str, str]]:
    pairs = []
    for kind in KINDS:
        for tokenizer in TOKENIZERS:
            try:
                build_generator(kind, _tokenizer(tokenizer), num_classes=3, **_options(kind))
            except IncompatibleTokensError:
                continue
            pairs.append((kind, tokenizer))
    return pairs


PAIRS = _pairs()


def _fast(generator):
    return fast_sampler(generator, cfg_scale=1.5 if hasattr(default_sampler_config(generator), "cfg_scale") else None,
                        iterations=3)


@pytest.fixture(params=PAIRS, ids=[f"{k}-{t}" for k, t in PAIRS])
def pair(request):
    kind, tokenizer_kind = request.param
    torch.manual_seed(0)
    tokenizer = _tokenizer(tokenizer_kind)
    return kind, tokenizer, build_generator(kind, tokenizer, num_classes=3, **_options(kind)).eval()


def test_every_kind_pairs_with_a_tokenizer():
    assert {kind for kind, _ in PAIRS} == set(KINDS)


def test_save_load_round_trip_samples_identically(pair, tmp_path):
    kind, tokenizer, generator = pair
    save_pretrained(generator, tmp_path / "g")
    loaded = from_pretrained(tmp_path / "g", role="generator")
    assert kind_of(loaded).name == kind and loaded.config == generator.config
    config, labels = _fast(generator), torch.tensor([0, 2])
    a = sample(generator, labels, config, torch.Generator().manual_seed(3))
    b = sample(loaded, labels, config, torch.Generator().manual_seed(3))
    assert torch.equal(a.data, b.data) and a.spec == tokenizer.spec
    assert tokenizer.decode(b).shape == (2, 1, 8, 8)


def test_deterministic_for_a_seed_and_seed_sensitive(pair):
    _, _, generator = pair
    config, labels = _fast(generator), torch.tensor([0, 1, 2, 1])
    a = sample(generator, labels, config, torch.Generator().manual_seed(5))
    b = sample(generator, labels, config, torch.Generator().manual_seed(5))
    c = sample(generator, labels, config, torch.Generator().manual_seed(6))
    assert torch.equal(a.data, b.data) and not torch.equal(a.data, c.data)


def test_cached_equals_uncached(pair):
    kind, _, generator = pair
    row = KINDS[kind]
    if row.uncached is None or not _uses_row_head(row, generator):
        pytest.skip(f"{kind} has no KV cache to compare")
    config, labels = _fast(generator), torch.tensor([0, 2, 1])
    cached = row.sample(generator, labels, config, torch.Generator().manual_seed(7))
    uncached = row.uncached(generator, labels, config, torch.Generator().manual_seed(7))
    assert torch.equal(cached.data, uncached.data)


def test_engine_equals_plain_loop_on_cpu(pair):
    kind, _, generator = pair
    if KINDS[kind].engine is None:
        pytest.skip(f"{kind} has no fast engine")
    config, labels = _fast(generator), torch.tensor([0, 2, 1])
    plain = sample(generator, labels, config, torch.Generator().manual_seed(9), engine=False)
    fast = sample(generator, labels, config, torch.Generator().manual_seed(9), engine=True)
    assert torch.equal(plain.data, fast.data)


def test_loss_falls_on_a_tiny_batch(pair):
    kind, tokenizer, generator = pair
    generator.train()
    labels = torch.arange(3).repeat(4)
    tokens = structured_tokens(tokenizer.spec, labels)
    before = generator.loss(tokens, labels)["loss"].item()
    config = TrainConfig(steps=25, batch_size=12, lr=3e-3, warmup_steps=1, progress=False)
    train_generator(generator, tokens, labels, config)
    generator.train()
    torch.manual_seed(0)
    after = generator.loss(tokens, labels)["loss"].item()
    assert after < before, f"{kind}: loss {before:.4f} -> {after:.4f}"


def _uses_row_head(row, generator) -> bool:
    return row.head is None or generator.config.head == row.head
