"""The taming/LDM autoencoder tokenizer: shapes, laws of its layers, the KL scaling, save/load, training."""

import pytest
import torch
import torch.nn.functional as F

from artok.hub import from_pretrained, save_pretrained
from artok.tokenizers.autoencoder import (
    AutoencoderConfig,
    AutoencoderTokenizer,
    Downsample,
    llamagen_vq16_config,
    mar_kl16_config,
)
from artok.tokens import Tokens

SMALL = dict(image_size=16, base_channels=8, channel_multipliers=(1, 2, 2), num_res_blocks=1, norm_groups=4,
             encoder_attention_levels=(2,), decoder_attention_levels=(2,), z_channels=8)


def small_vq(**changes) -> AutoencoderTokenizer:
    torch.manual_seed(0)
    options = {"codebook_size": 32, "codebook_dim": None, "l2_normalize": True}
    return AutoencoderTokenizer(AutoencoderConfig(**{**SMALL, "latent_dim": 4, "quantizer_options": options, **changes})).eval()


def small_kl(**changes) -> AutoencoderTokenizer:
    torch.manual_seed(0)
    config = AutoencoderConfig(**{**SMALL, "latent_dim": 4, "quantizer": "kl", "quantizer_options": {},
                                  "decoder_attention_levels": (), "latent_scale": 0.25, **changes})
    return AutoencoderTokenizer(config).eval()


def images(batch=2, size=16):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_vq_shapes_spec_and_decode_of_encode():
    tokenizer = small_vq()
    tokens = tokenizer.encode(images())
    assert tokens.spec.grid == (4, 4) and tokens.spec.vocab_size == 32 and tokens.ids.shape == (2, 16)
    with torch.no_grad():
        direct = tokenizer(images()).reconstruction.clamp(-1, 1)
    assert torch.allclose(tokenizer.decode(tokens), direct, atol=1e-5)
    # the code is the l2-normalised codebook row: the quantizer sees unit vectors after quant_conv
    latents = tokenizer.quantizer.ids_to_codes(tokens.ids.reshape(2, 4, 4))
    assert torch.allclose(latents.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)


def test_published_configurations_have_the_published_sizes():
    vq16, kl16 = llamagen_vq16_config(), mar_kl16_config()
    assert vq16.grid == (16, 16) and vq16.widths() == [128, 128, 256, 256, 512] and vq16.latent_dim == 8
    assert kl16.grid == (16, 16) and kl16.latent_dim == 16 and kl16.latent_scale == 0.2325
    assert kl16.encoder_attention_levels == (4,) and kl16.decoder_attention_levels == ()


def test_module_names_and_attention_placement_follow_ldm():
    tokenizer = small_vq()
    names = set(tokenizer.state_dict())
    for name in ("encoder.down.0.block.0.norm1.weight", "encoder.down.1.block.0.nin_shortcut.weight",
                 "encoder.down.0.downsample.conv.weight", "encoder.mid.attn_1.q.weight", "encoder.mid.block_2.conv2.bias",
                 "decoder.up.2.attn.1.proj_out.weight", "decoder.up.1.upsample.conv.weight", "quant_conv.weight",
                 "post_quant_conv.weight", "quantizer.codebook"):
        assert name in names, name
    assert "encoder.down.2.downsample.conv.weight" not in names and "decoder.up.0.upsample.conv.weight" not in names
    assert [len(level.attn) for level in tokenizer.encoder.down] == [0, 0, 1]
    assert [len(level.attn) for level in tokenizer.decoder.up] == [0, 0, 2]  # num_res_blocks + 1 in the decoder
    assert isinstance(small_vq(mid_attention=False).encoder.mid.attn_1, torch.nn.Identity)


def test_downsample_pads_bottom_right_only():
    """taming's (0, 1, 0, 1) padding: a centre-tap kernel picks x[2i + 1, 2j + 1] (symmetric padding
    would pick x[2i, 2j])."""
    down = Downsample(1)
    with torch.no_grad():
        down.conv.weight.zero_()
        down.conv.weight[0, 0, 1, 1] = 1.0
        down.conv.bias.zero_()
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert torch.equal(down(x), x[:, :, 1::2, 1::2])
    assert down(torch.zeros(1, 1, 8, 8)).shape[-1] == 4


def test_attention_matches_the_written_out_softmax():
    tokenizer = small_vq()
    block = tokenizer.encoder.mid.attn_1
    x = torch.randn(2, 16, 4, 4)
    h = block.norm(x)
    q, k, v = (conv(h).flatten(2) for conv in (block.q, block.k, block.v))  # B x C x N
    weights = torch.softmax(q.transpose(1, 2) @ k / 16**0.5, dim=-1)  # B x N(query) x N(key)
    expected = x + block.proj_out((v @ weights.transpose(1, 2)).reshape(2, 16, 4, 4))
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_kl_tokens_are_the_scaled_posterior_mean():
    tokenizer = small_kl()
    assert tokenizer.encoder.conv_out.out_channels == 16 and tokenizer.quant_conv.out_channels == 8  # double_z
    tokens = tokenizer.encode(images())
    with torch.no_grad():
        mean = tokenizer.encode_latents(images())[:, :4]
        assert torch.allclose(tokens.values, 0.25 * mean.flatten(2).transpose(1, 2), atol=1e-6)
        assert torch.allclose(tokenizer.decode(tokens), tokenizer.decode_latents(mean).clamp(-1, 1), atol=1e-5)
    assert tokens.spec.kind == "continuous" and tokens.spec.channels == 4


def test_save_and_load_round_trip(tmp_path):
    for tokenizer in (small_vq(), small_kl()):
        save_pretrained(tokenizer, tmp_path / tokenizer.config.quantizer)
        loaded = from_pretrained(tmp_path / tokenizer.config.quantizer, role="tokenizer")
        assert type(loaded) is AutoencoderTokenizer and loaded.config == tokenizer.config
        a, b = tokenizer.encode(images()), loaded.encode(images())
        assert torch.equal(a.ids, b.ids) if a.ids is not None else torch.equal(a.values, b.values)
        assert torch.equal(tokenizer.decode(a), loaded.decode(b))


def test_training_step_reaches_every_half():
    tokenizer = small_kl(dropout=0.1).train()
    out = tokenizer(images())
    (F.mse_loss(out.reconstruction, images()) + out.quantizer.loss).backward()
    for module in (tokenizer.encoder.conv_in, tokenizer.quant_conv, tokenizer.post_quant_conv, tokenizer.decoder.conv_out):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    assert tokenizer.last_layer is tokenizer.decoder.conv_out.weight


def test_bad_configurations_and_inputs_are_refused():
    with pytest.raises(ValueError, match="levels in 0..2"):
        AutoencoderConfig(**{**SMALL, "encoder_attention_levels": (3,)})
    with pytest.raises(ValueError, match="norm_groups"):
        AutoencoderConfig(**{**SMALL, "norm_groups": 32})
    with pytest.raises(ValueError, match="not divisible"):
        AutoencoderConfig(**{**SMALL, "image_size": 18})
    with pytest.raises(ValueError, match="must equal latent_dim"):
        AutoencoderConfig(**{**SMALL, "quant_conv": False, "latent_dim": 4})
    with pytest.raises(ValueError, match="continuous tokens"):
        small_vq(latent_scale=0.5)
    with pytest.raises(ValueError, match="images must be"):
        small_vq().encode(torch.zeros(1, 3, 8, 8))
    other = Tokens(small_kl(latent_dim=2).spec, values=torch.zeros(1, 16, 2))
    with pytest.raises(ValueError, match="cannot be decoded"):
        small_kl().decode(other)


def test_without_quant_conv_the_quantizer_reads_the_encoder():
    tokenizer = small_vq(quant_conv=False, latent_dim=8)
    assert isinstance(tokenizer.quant_conv, torch.nn.Identity) and tokenizer.encoder.conv_out.out_channels == 8
    assert tokenizer.decode(tokenizer.encode(images())).shape == (2, 3, 16, 16)


def test_the_tokenizer_trainer_fits_it():
    from artok.data.base import ImageDataset
    from artok.training import TrainConfig, train_tokenizer

    grey = (torch.arange(16)[:, None, None, None] * 15 + torch.zeros(16, 3, 16, 16)).to(torch.uint8)  # 16 flat colours
    data = ImageDataset(grey, torch.zeros(16, dtype=torch.long), ["x"], "flat", "train")
    config = TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1, progress=False)
    history = train_tokenizer(small_kl().train(), data, config).history
    first, last = (sum(entry["mse"] for entry in part) / 5 for part in (history[:5], history[-5:]))
    assert last < 0.85 * first, (first, last)


def test_cli_trains_an_autoencoder(tmp_path, capsys):
    from artok.cli.main import main

    assert main(["train-tokenizer", "--arch", "autoencoder", "--dataset", "digits", "--steps", "2", "--batch-size", "4",
                 "--out", str(tmp_path / "ae"), "--no-progress"]) == 0
    loaded = from_pretrained(tmp_path / "ae", role="tokenizer")
    assert type(loaded) is AutoencoderTokenizer and loaded.config.encoder_attention_levels == (2,)
    assert '"psnr"' in capsys.readouterr().out
