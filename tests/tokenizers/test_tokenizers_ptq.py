"""A KL tokenizer turned into a dimension-wise PTQ tokenizer without retraining (TokenBridge)."""

import pytest
import torch

from artok.hub import from_pretrained, save_pretrained
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
from artok.tokenizers.ptq import post_training_quantized


def kl_tokenizer():
    torch.manual_seed(0)
    config = CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=3, quantizer="kl",
                                quantizer_options={})
    return CNNTokenizer(config).eval()


def test_shares_weights_and_approximates_the_continuous_latent(tmp_path):
    kl = kl_tokenizer()
    images = torch.rand(64, 1, 8, 8) * 2 - 1
    ptq = post_training_quantized(kl, images, bits=6)
    spec = ptq.spec
    assert spec.kind == "discrete" and spec.subtokens == 3 and spec.vocab_size == 64 and spec.grid == (4, 4)
    tokens = ptq.encode(images)
    assert tokens.ids.shape == (64, 16, 3)
    with torch.no_grad():
        mean = kl.quantizer.split(kl.encode_latents(images))[0]
        assert torch.allclose(ptq.encode_latents(images), mean, atol=1e-6)
        # 64 equal-mass bins: the dequantized latent is close to the continuous one
        dequantized = ptq.quantizer.ids_to_codes(tokens.ids.reshape(64, 4, 4, 3))
        relative = (dequantized - mean).pow(2).mean() / mean.var()
    assert relative < 0.01
    save_pretrained(ptq, tmp_path / "ptq")
    loaded = from_pretrained(tmp_path / "ptq")
    assert torch.equal(loaded.encode(images).ids, tokens.ids)


def test_needs_a_continuous_tokenizer():
    config = CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=4,
                                quantizer_options={"codebook_size": 16, "codebook_dim": 4})
    with pytest.raises(ValueError, match="continuous"):
        post_training_quantized(CNNTokenizer(config), torch.zeros(2, 1, 8, 8))
