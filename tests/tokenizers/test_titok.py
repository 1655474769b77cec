"""TiTok's tokenizer (ViT over patches + latent tokens, l2 VQ, ViT to MaskGIT-VQGAN code logits, soft
code map, MaskGIT-VQGAN decoder) and MaskGIT's VQGAN, at tiny sizes.

The reference forward (tests/titok_reference.py) is TiTok's computation written out with torch's own pieces where TiTok
uses them (``nn.MultiheadAttention`` in TiTok's sequence-first layout, ``F.layer_norm`` / ``F.group_norm``
with their eps, the legacy reshape head, the MaskGIT block whose shortcut reads the output), reading the
artok model's weights by name: artok's SDPA attention, its modules and its decode path must agree.
Parity with TiTok's own code is ``benchmarks/parity_titok.py``."""

import pytest
import torch
from titok_reference import (
    images,
    randomize,
    reference_decoder,
    reference_encoder,
    reference_ids,
    reference_pixel_decoder,
    reference_pixel_encoder,
    tiny_config,
)

from artok.hub import from_pretrained, save_pretrained
from artok.tokenizers import MaskGITVQGAN, MaskGITVQGANConfig, TiTokTokenizer
from artok.tokens import Tokens


@pytest.fixture(scope="module")
def tokenizer() -> TiTokTokenizer:
    torch.manual_seed(0)
    return randomize(TiTokTokenizer(tiny_config()))


# -- tests ---------------------------------------------------------------------------------------


def test_spec_and_shapes(tokenizer):
    x = images()
    tokens = tokenizer.encode(x)
    assert tokenizer.spec.layout == "sequence" and tokenizer.spec.seq_len == 5 and tokenizer.spec.vocab_size == 16
    assert tokens.ids.shape == (3, 5) and tokens.ids.dtype == torch.long
    assert tokenizer.encode_latents(x).shape == (3, 4, 5)
    assert tokenizer.code_logits(tokenizer.quantizer.ids_to_codes(tokens.ids)).shape == (3, 24, 8, 8)
    decoded = tokenizer.decode(tokens)
    assert decoded.shape == x.shape and decoded.abs().max() <= 1


@torch.no_grad()
def test_encode_ids_decode_equal_titoks_computation(tokenizer):
    x = images()
    latents = reference_encoder(tokenizer, (x + 1) / 2)
    torch.testing.assert_close(tokenizer.encode_latents(x), latents.flatten(2), atol=1e-5, rtol=1e-5)
    ids = tokenizer.encode(x).ids
    assert torch.equal(ids, reference_ids(tokenizer, latents))
    assert ids.unique().numel() > 3  # the check above compared more than one code
    pixels = reference_decoder(tokenizer, ids)
    torch.testing.assert_close(tokenizer.decode_latents(tokenizer.quantizer.ids_to_codes(ids)), pixels * 2 - 1,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokenizer.decode(Tokens(tokenizer.spec, ids=ids)), (pixels * 2 - 1).clamp(-1, 1),
                               atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(tokenizer, tmp_path):
    save_pretrained(tokenizer, tmp_path / "titok")
    loaded = from_pretrained(tmp_path / "titok", role="tokenizer")
    assert isinstance(loaded, TiTokTokenizer) and loaded.config == tokenizer.config
    x = images()
    tokens = tokenizer.encode(x)
    assert torch.equal(loaded.encode(x).ids, tokens.ids)
    assert torch.equal(loaded.decode(tokens), tokenizer.decode(tokens))


def test_training_decreases_the_loss():
    from artok.data.base import ImageDataset
    from artok.training import TrainConfig, train_tokenizer

    torch.manual_seed(0)
    model = TiTokTokenizer(tiny_config(encoder_depth=1)).train()
    flat = (torch.arange(16)[:, None, None, None] * 15 + torch.zeros(16, 3, 16, 16)).to(torch.uint8)  # 16 flat colours
    data = ImageDataset(flat, torch.zeros(16, dtype=torch.long), ["x"], "flat", "train")
    history = train_tokenizer(model, data, TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1,
                                                       progress=False)).history
    first, last = (sum(entry["mse"] for entry in part) / 5 for part in (history[:5], history[-5:]))
    assert last < 0.85 * first, (first, last)


def test_gradients_reach_every_part():
    torch.manual_seed(0)
    model = TiTokTokenizer(tiny_config()).train()
    out = model(images())
    ((out.reconstruction - images()).pow(2).mean() + out.quantizer.loss).backward()
    for name in ("latent_tokens", "encoder.patch_embed.weight", "encoder.transformer.0.attn.in_proj_weight",
                 "quantizer.codebook", "decoder.mask_token", "decoder.ffn.2.weight", "pixel_codebook",
                 "pixel_decoder.conv_out.weight"):
        gradient = dict(model.named_parameters())[name].grad
        assert gradient is not None and gradient.abs().sum() > 0, name


def test_config_errors_are_one_line():
    cases = [({"image_size": 15}, "not divisible by patch_size"),
             ({"encoder_heads": 3}, "multiple of encoder_heads"),
             ({"pixel_base_channels": 48}, "divisible by 32"),
             ({"patch_size": 4}, "pixel decoder turns the 4x4 code map into 8 px")]
    for changes, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            tiny_config(**changes)
        assert "\n" not in str(error.value)


@torch.no_grad()
def test_maskgit_vqgan_equals_its_computation(tmp_path):
    torch.manual_seed(0)
    config = MaskGITVQGANConfig(image_size=16, base_channels=32, channel_multipliers=(1, 2), num_res_blocks=1, z_channels=8,
                                codebook_size=12)
    model = randomize(MaskGITVQGAN(config))
    w, x = model.state_dict(), images()
    features = reference_pixel_encoder(w, (x + 1) / 2, 2, 1)
    torch.testing.assert_close(model.encode_latents(x), features, atol=1e-5, rtol=1e-5)
    flat = features.permute(0, 2, 3, 1).reshape(-1, 8)
    ids = torch.cdist(flat, w["quantizer.codebook"]).argmin(1).reshape(3, -1)
    tokens = model.encode(x)
    assert model.spec.layout == "grid" and torch.equal(tokens.ids, ids)
    code_map = w["quantizer.codebook"][ids].reshape(3, 8, 8, 8).permute(0, 3, 1, 2)
    pixels = reference_pixel_decoder(w, "decoder", code_map, 2, 1)
    torch.testing.assert_close(model.decode(tokens), (pixels * 2 - 1).clamp(-1, 1), atol=1e-5, rtol=1e-5)
    save_pretrained(model, tmp_path / "vqgan")
    assert torch.equal(from_pretrained(tmp_path / "vqgan").encode(x).ids, ids)


def test_options_lists_the_fields(capsys):
    from artok.cli.main import main

    assert main(["options", "titok"]) == 0 and "num_latent_tokens" in capsys.readouterr().out
    assert main(["options", "maskgit-vqgan"]) == 0 and "codebook_size" in capsys.readouterr().out
