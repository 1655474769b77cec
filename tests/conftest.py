"""Shared fixtures: tiny models for CPU tests, an isolated cache directory."""

from __future__ import annotations

import pytest
import torch

from artok.generators import RasterConfig, RasterGenerator
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokens import TokenSpec

# Test tensors are tiny: intra-op threads buy nothing, and on a loaded 2-core machine OpenMP
# oversubscription made multi-threaded runs 5-40x slower (measured). One thread keeps timings sane.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_spec() -> TokenSpec:
    return TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=17)


@pytest.fixture
def tiny_generator(tiny_spec) -> RasterGenerator:
    config = RasterConfig(token_spec=tiny_spec.to_dict(), num_classes=4, dim=32, depth=2, num_heads=2, dropout=0.0)
    return RasterGenerator(config).eval()


@pytest.fixture
def tiny_tokenizer() -> CNNTokenizer:
    config = CNNTokenizerConfig(in_channels=1, image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=8,
                                quantizer_options={"codebook_size": 16, "codebook_dim": 4})
    return CNNTokenizer(config)
