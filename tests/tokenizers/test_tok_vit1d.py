"""ViT1DTokenizer: shapes, prefix (nested-dropout) decoding, round trip, hub save/load."""

import pytest
import torch

from artok.hub import from_pretrained, save_pretrained
from artok.tokenizers import ViT1DTokenizer, ViT1DTokenizerConfig
from artok.tokens import Tokens

K = 8


def tiny_config(**overrides) -> ViT1DTokenizerConfig:
    options = dict(in_channels=1, image_size=8, patch_size=4, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2,
                   num_latent_tokens=K, latent_dim=4, quantizer="vq", quantizer_options={"codebook_size": 32, "codebook_dim": 4})
    options.update(overrides)
    return ViT1DTokenizerConfig(**options)


@pytest.fixture
def tokenizer() -> ViT1DTokenizer:
    return ViT1DTokenizer(tiny_config()).eval()


def images(batch: int = 3) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8) * 2 - 1


def test_shapes_and_spec(tokenizer):
    x = images()
    tokenizer.train()
    out = tokenizer(x)
    assert out.reconstruction.shape == x.shape
    tokenizer.eval()
    spec = tokenizer.spec
    assert spec.layout == "sequence" and spec.length == K and spec.vocab_size == 32 and spec.kind == "discrete"
    tokens = tokenizer.encode(x)
    assert isinstance(tokens, Tokens) and tokens.ids.shape == (3, K) and tokens.ids.dtype == torch.long
    decoded = tokenizer.decode(tokens)
    assert decoded.shape == x.shape and decoded.abs().max() <= 1


def test_prefix_decoding_for_every_k(tokenizer):
    x = images()
    tokens = tokenizer.encode(x)
    full = tokenizer.decode(tokens)
    outputs = []
    for k in range(1, K + 1):
        from_full = tokenizer.decode(tokens, num_tokens=k)
        assert from_full.shape == x.shape
        # A Tokens object holding only the prefix (as a generator would emit) decodes the same.
        prefix_spec = tokens.spec.__class__(**{**tokens.spec.to_dict(), "length": k})
        from_prefix = tokenizer.decode(Tokens(prefix_spec, ids=tokens.ids[:, :k]))
        assert torch.allclose(from_full, from_prefix, atol=1e-6)
        outputs.append(from_full)
    assert torch.allclose(outputs[-1], full, atol=1e-6)
    assert not torch.allclose(outputs[0], full)  # a 1-token decode really drops information
    for bad in (0, K + 1):
        with pytest.raises(ValueError, match="num_tokens"):
            tokenizer.decode(tokens, num_tokens=bad)


def test_dropped_tokens_do_not_matter(tokenizer):
    latents = torch.randn(2, 4, K)
    changed = latents.clone()
    changed[:, :, 3:] = torch.randn(2, 4, K - 3)
    with torch.no_grad():
        a = tokenizer.decode_latents(latents, num_tokens=3)
        b = tokenizer.decode_latents(changed, num_tokens=3)
        c = tokenizer.decode_latents(changed, num_tokens=torch.tensor([3, K]))
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(c[0], a[0], atol=1e-6) and not torch.allclose(c[1], a[1])


def test_nested_dropout_lengths():
    tokenizer = ViT1DTokenizer(tiny_config(nested_dropout=1.0, min_tokens=2))
    lengths = tokenizer.sample_prefix_lengths(4000, "cpu")
    assert lengths.min() == 2 and lengths.max() == K
    assert set(lengths.tolist()) == set(range(2, K + 1))
    off = ViT1DTokenizer(tiny_config(nested_dropout=0.0))
    assert (off.sample_prefix_lengths(100, "cpu") == K).all()


def test_round_trip_equals_forward_in_eval(tokenizer):
    x = images(2)
    with torch.no_grad():
        direct = tokenizer(x).reconstruction.clamp(-1, 1)
    assert torch.allclose(tokenizer.decode(tokenizer.encode(x)), direct, atol=1e-5)


def test_gradients_reach_encoder_and_null_token():
    tokenizer = ViT1DTokenizer(tiny_config(nested_dropout=1.0)).train()
    x = images(8)
    out = tokenizer(x)
    ((out.reconstruction - x).pow(2).mean() + out.quantizer.loss).backward()
    assert tokenizer.patch_embedding.weight.grad.abs().sum() > 0
    assert tokenizer.null_token.grad is not None and tokenizer.null_token.grad.abs().sum() > 0


@pytest.mark.parametrize("quantizer,options,subtokens", [("kl", {}, 1), ("rvq", {"codebook_size": 8, "num_levels": 2}, 2),
                                                         ("fsq", {"levels": [5, 5, 5]}, 1)])
def test_other_quantizers(quantizer, options, subtokens):
    tokenizer = ViT1DTokenizer(tiny_config(quantizer=quantizer, quantizer_options=options)).eval()
    tokens = tokenizer.encode(images(2))
    assert tokens.spec.seq_len == K and tokens.spec.subtokens == subtokens
    for k in (1, 4, K):
        assert tokenizer.decode(tokens, num_tokens=k).shape == (2, 1, 8, 8)


def test_save_load_via_hub(tokenizer, tmp_path):
    save_pretrained(tokenizer, tmp_path / "vit", extra={"dataset": "digits"})
    loaded = from_pretrained(tmp_path / "vit")
    assert isinstance(loaded, ViT1DTokenizer) and loaded.model_type == "vit1d_tokenizer"
    assert loaded.config == tokenizer.config and loaded.extra == {"dataset": "digits"}
    x = images(2)
    tokens = tokenizer.encode(x)
    assert torch.equal(loaded.encode(x).ids, tokens.ids)
    assert torch.allclose(loaded.decode(tokens, num_tokens=3), tokenizer.decode(tokens, num_tokens=3))


def test_config_validation():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        tiny_config(image_size=10)
    with pytest.raises(ValueError, match="nested_dropout"):
        tiny_config(nested_dropout=1.5)
    with pytest.raises(ValueError, match="min_tokens"):
        tiny_config(min_tokens=K + 1)
    with pytest.raises(ValueError, match="unknown quantizer"):
        tiny_config(quantizer="nope")


def test_rejects_tokens_of_another_spec(tokenizer):
    other = ViT1DTokenizer(tiny_config(quantizer_options={"codebook_size": 16, "codebook_dim": 4})).eval()
    with pytest.raises(ValueError, match="cannot be decoded"):
        tokenizer.decode(other.encode(images(1)))
