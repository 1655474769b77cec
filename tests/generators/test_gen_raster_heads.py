"""The raster generator with swappable heads: bitwise (LFQ/BSQ) and dimwise (PTQ)."""

import pytest
import torch

from artok.generators import IncompatibleTokensError, RasterConfig, RasterGenerator
from artok.heads import BitwiseHead, DimwiseHead
from artok.tokens import TokenSpec

LFQ = TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=2**16)
PTQ = TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=4, subtokens=5)


def make(spec, head, **options):
    return RasterGenerator(RasterConfig(token_spec=spec.to_dict(), num_classes=3, dim=32, depth=2, num_heads=2,
                                        head=head, head_width=32, head_depth=1, **options))


@pytest.mark.parametrize("spec,head,head_class", [(LFQ, "bitwise", BitwiseHead), (PTQ, "dimwise", DimwiseHead)])
def test_trains(learnable_tokens, fit, spec, head, head_class):
    generator = make(spec, head)
    assert isinstance(generator.head, head_class)
    # a 2^16-way categorical head and embedding would hold 2 * 32 * 65536 weights
    assert sum(p.numel() for p in generator.parameters()) < 150_000
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    losses = fit(generator, learnable_tokens(spec, labels), labels, steps=30)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_heads_check_their_tokens():
    vq = TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=12)
    with pytest.raises(IncompatibleTokensError, match="bitwise"):
        make(TokenSpec("discrete", "grid", grid=(3, 3), vocab_size=2**20), "categorical")
    with pytest.raises(IncompatibleTokensError, match="power-of-two"):
        make(vq, "bitwise")
    with pytest.raises(IncompatibleTokensError, match="dimwise"):
        make(PTQ, "categorical")
    with pytest.raises(IncompatibleTokensError, match="PTQ"):
        make(vq, "dimwise")
    # the class method accepts a spec some raster head fits; an instance checks its own head
    RasterGenerator.check_spec(PTQ)
    generator = make(LFQ, "bitwise")
    with pytest.raises(IncompatibleTokensError):
        generator.check_spec(PTQ)
    with pytest.raises(ValueError, match="head"):
        make(vq, "softmax")


def test_dimwise_forward_explains_itself():
    generator = make(PTQ, "dimwise")
    with pytest.raises(ValueError, match="hidden_states"):
        generator(torch.zeros(1, 2, 5, dtype=torch.long), torch.tensor([0]))
