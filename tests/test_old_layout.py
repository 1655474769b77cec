"""Model folders saved by the layout before the kind table (``tests/fixtures/old_layout``, built by
its ``make.py`` with commit dcefbe5) load and sample exactly the tokens that code sampled; their
tokenizers encode and decode identically."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from artok.pipeline import load_pair
from artok.zoo import default_sampler_config, kind_of, sample

FIXTURE = Path(__file__).parent / "fixtures" / "old_layout"
EXPECTED = load_file(str(FIXTURE / "expected.safetensors"))
KINDS = sorted(path.name for path in FIXTURE.iterdir() if path.is_dir())
#: kinds added after the fixture was recorded (they have no old layout)
NEWER_KINDS = {"rar", "nar", "token-shuffle", "any-order", "hi-mar", "d-ar"}


def _fast(generator):
    config = default_sampler_config(generator)
    for field, value in (("iterations", 3), ("steps", 3)):
        if hasattr(config, field):
            config = replace(config, **{field: value})
    return replace(config, cfg_scale=1.5)


@pytest.mark.parametrize("kind", KINDS)
def test_old_folder_samples_the_same_tokens(kind):
    torch.set_num_threads(1)
    generator, tokenizer = load_pair(FIXTURE / kind / "generator", FIXTURE / kind / "tokenizer")
    assert kind_of(generator).name == kind
    tokens = sample(generator, torch.tensor([0, 1, 2, 0]), _fast(generator), torch.Generator().manual_seed(11))
    assert torch.equal(tokens.data, EXPECTED[kind])
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    encoded = tokenizer.encode(images)
    assert torch.equal(encoded.data, EXPECTED[f"{kind}.encoded"])
    assert torch.equal(tokenizer.decode(encoded), EXPECTED[f"{kind}.decoded"])


def test_fixture_covers_every_built_in_kind():
    from artok.zoo import GENERATOR_KINDS

    assert set(KINDS) == set(GENERATOR_KINDS) - NEWER_KINDS
