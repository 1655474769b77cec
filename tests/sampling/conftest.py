"""Fixtures for the sampler tests of the generator zoo (opt-in, so other sampling tests are unaffected)."""

from __future__ import annotations

import pytest
import torch

from artok.generators import (
    MARConfig,
    MARGenerator,
    MaskGITConfig,
    MaskGITGenerator,
    NextScaleGenerator,
    NextXConfig,
    NextXGenerator,
    RasterConfig,
    RasterGenerator,
)
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokens import TokenSpec


@pytest.fixture
def one_thread():
    """Tiny models run fastest single-threaded; use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SMALL = {"num_classes": 4, "dim": 32, "num_heads": 2}
CONTINUOUS = TokenSpec("continuous", "grid", grid=(3, 3), channels=2)


def _msvq_generator(**options):
    tokenizer = CNNTokenizer(CNNTokenizerConfig(
        image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=4, quantizer="msvq",
        quantizer_options={"codebook_size": 16, "scales": (1, 2, 3, 4)}))
    return NextScaleGenerator.from_tokenizer(tokenizer, depth=2, **{**SMALL, **options})


FACTORIES = {
    "next-scale": _msvq_generator,
    "maskgit": lambda **o: MaskGITGenerator(MaskGITConfig(
        token_spec=TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=17).to_dict(), depth=2, **{**SMALL, **o})),
    "mar": lambda **o: MARGenerator(MARConfig(token_spec=CONTINUOUS.to_dict(), encoder_depth=1, head_width=16,
                                              head_depth=1, **{**SMALL, **o})),
    "next-x": lambda **o: NextXGenerator(NextXConfig(token_spec=CONTINUOUS.to_dict(), depth=1, head_width=16,
                                                     head_depth=1, **{**SMALL, **o})),
    "bitwise": lambda **o: RasterGenerator(RasterConfig(
        token_spec=TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=2**12).to_dict(), depth=2, head="bitwise",
        **{**SMALL, **o})),
    "dimwise": lambda **o: RasterGenerator(RasterConfig(
        token_spec=TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=4, subtokens=3).to_dict(), depth=2,
        head="dimwise", head_width=16, head_depth=1, **{**SMALL, **o})),
}


@pytest.fixture
def zoo_generator():
    """``zoo_generator(kind, **config_options)``: a tiny untrained generator in eval mode."""

    def build(kind, **options):
        torch.manual_seed(0)
        return FACTORIES[kind](**options).eval()

    return build
