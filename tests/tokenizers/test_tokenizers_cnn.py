import pytest
import torch

from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokens import Tokens


def test_shapes_and_spec(tiny_tokenizer):
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    out = tiny_tokenizer(images)
    assert out.reconstruction.shape == images.shape
    tokens = tiny_tokenizer.encode(images)
    assert isinstance(tokens, Tokens)
    assert tokens.spec.grid == (4, 4) and tokens.spec.vocab_size == 16
    assert tokens.ids.shape == (3, 16) and tokens.ids.dtype == torch.long
    decoded = tiny_tokenizer.decode(tokens)
    assert decoded.shape == images.shape and decoded.abs().max() <= 1


def test_decode_of_encode_equals_forward_in_eval(tiny_tokenizer):
    tiny_tokenizer.eval()
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        direct = tiny_tokenizer(images).reconstruction.clamp(-1, 1)
    assert torch.allclose(tiny_tokenizer.decode(tiny_tokenizer.encode(images)), direct, atol=1e-5)


def test_gradients_reach_encoder(tiny_tokenizer):
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    out = tiny_tokenizer(images)
    ((out.reconstruction - images).pow(2).mean() + out.quantizer.loss).backward()
    first_conv = tiny_tokenizer.encoder.layers[0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_rejects_wrong_shapes(tiny_tokenizer):
    with pytest.raises(ValueError, match="images must be"):
        tiny_tokenizer.encode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="not divisible"):
        CNNTokenizerConfig(image_size=10, channel_multipliers=(1, 2, 2))


@pytest.mark.parametrize("quantizer,options", [
    ("fsq", {"levels": [5, 5, 5]}),
    ("kl", {}),
    ("lfq", {"codebook_dim": 6}),
])
def test_any_quantizer_plugs_in(quantizer, options):
    config = CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=8,
                                quantizer=quantizer, quantizer_options=options)
    tokenizer = CNNTokenizer(config).eval()
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    tokens = tokenizer.encode(images)
    assert tokens.batch_size == 2
    assert tokenizer.decode(tokens).shape == images.shape
