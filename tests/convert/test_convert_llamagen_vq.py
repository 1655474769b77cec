"""LlamaGen VQ checkpoints -> artok autoencoder tokenizers.

The state dicts are made here with LlamaGen's parameter names and shapes (no LlamaGen code): an
artok autoencoder's weights renamed the LlamaGen way (``conv_blocks.{i}.res.{j}``, decoder levels
lowest resolution first, ``mid.0/1/2``, ``quantize.embedding.weight`` + ``quantize.codebook_used``)
must convert back to the same model. Numerical parity with LlamaGen's own ``vq_model.py`` is checked by
``benchmarks/parity_llamagen_vq.py`` (needs a clone of LlamaGen)."""

import re

import pytest
import torch

from artok.cli.main import main
from artok.convert.llamagen_vq import convert_state_dict
from artok.hub import from_pretrained
from artok.tokenizers.autoencoder import AutoencoderConfig, AutoencoderTokenizer

CONFIG = dict(image_size=16, base_channels=32, channel_multipliers=(1, 2), num_res_blocks=1,
              encoder_attention_levels=(1,), decoder_attention_levels=(1,), z_channels=32, latent_dim=4,
              quantizer_options={"codebook_size": 64, "codebook_dim": None, "l2_normalize": True})


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    model = AutoencoderTokenizer(AutoencoderConfig(**CONFIG)).eval()
    with torch.no_grad():  # GroupNorm's affine defaults (1, 0) would hide a misplaced norm
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    return model


def llamagen_named(model: AutoencoderTokenizer) -> dict:
    """The inverse of the converter's renaming, written out independently."""
    last = len(model.config.channel_multipliers) - 1
    middle = {"block_1": "0", "attn_1": "1", "block_2": "2"}
    out = {}
    for key, value in model.state_dict().items():
        if key == "quantizer.usage":
            continue
        if key == "quantizer.codebook":
            key = "quantize.embedding.weight"
        elif match := re.match(r"encoder\.down\.(\d+)\.(block|attn|downsample)\.(.+)", key):
            kind = "res" if match.group(2) == "block" else match.group(2)
            key = f"encoder.conv_blocks.{match.group(1)}.{kind}.{match.group(3)}"
        elif match := re.match(r"decoder\.up\.(\d+)\.(block|attn|upsample)\.(.+)", key):
            kind = "res" if match.group(2) == "block" else match.group(2)
            key = f"decoder.conv_blocks.{last - int(match.group(1))}.{kind}.{match.group(3)}"
        elif match := re.match(r"(encoder|decoder)\.mid\.(block_1|attn_1|block_2)\.(.+)", key):
            key = f"{match.group(1)}.mid.{middle[match.group(2)]}.{match.group(3)}"
        out[key] = value.clone()
    out["quantize.codebook_used"] = torch.zeros(65536)
    return out


def images():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1


def test_round_trip_through_llamagen_names(tokenizer, tmp_path, capsys):
    state = llamagen_named(tokenizer)
    assert "decoder.conv_blocks.0.attn.1.q.weight" in state and "encoder.mid.1.proj_out.weight" in state
    path = tmp_path / "vq_ds16_c2i.pt"
    torch.save({"model": state}, path)  # LlamaGen keeps the weights under "model"
    assert main(["convert", "llamagen-vq", str(path), str(tmp_path / "vq"), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "VQ 64 codes of dimension 4" in out and "ch_mult [1, 2]" in out and "8x8 tokens" in out
    converted = from_pretrained(tmp_path / "vq", role="tokenizer")
    assert converted.config == tokenizer.config
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    a, b = tokenizer.encode(images()), converted.encode(images())
    assert torch.equal(a.ids, b.ids) and torch.equal(tokenizer.decode(a), converted.decode(b))


def test_shapes_give_the_configuration(tokenizer):
    state = llamagen_named(tokenizer)
    converted = convert_state_dict(state, image_size=32)
    assert converted.config.grid == (16, 16) and converted.config.encoder_attention_levels == (1,)
    no_attention = {k: v for k, v in state.items() if ".conv_blocks.0.attn." not in k or not k.startswith("decoder")}
    assert convert_state_dict(no_attention, image_size=16).config.decoder_attention_levels == ()


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("artok: error: "), err
    return err


@pytest.mark.parametrize("change,message", [
    (lambda s: s.pop("encoder.conv_blocks.0.res.0.conv2.weight"), "missing \\['encoder.down.0.block.0.conv2.weight'\\]"),
    (lambda s: s.update({"decoder.extra.weight": torch.zeros(1)}), "unexpected \\['decoder.extra.weight'\\]"),
    (lambda s: s.update({"decoder.conv_blocks.1.res.0.conv1.weight": torch.zeros(32, 32, 1, 1)}), "has shape"),
    (lambda s: s.update({"quantize.embedding.weight": torch.zeros(64, 5)}), "post_quant_conv reads 4 channels"),
    (lambda s: s.update({"decoder.conv_blocks.0.res.0.conv1.weight": torch.zeros(48, 64, 3, 3)}), "mirrors one ch_mult"),
])
def test_misfits_are_refused_in_one_line(tokenizer, tmp_path, capsys, change, message):
    state = llamagen_named(tokenizer)
    change(state)
    torch.save({"model": state}, tmp_path / "vq.pt")
    assert main(["convert", "llamagen-vq", str(tmp_path / "vq.pt"), str(tmp_path / "out"), "--image-size", "16"]) == 2
    assert re.search(message, _error(capsys))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_wrong_truncated_and_foreign_files_are_refused(tokenizer, tmp_path, capsys):
    path = tmp_path / "vq.pt"
    torch.save({"model": llamagen_named(tokenizer)}, path)
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    torch.save({"model": {"tok_embeddings.weight": torch.zeros(4, 4)}}, tmp_path / "gpt.pt")
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3),
                          "encoder.down.0.block.0.conv1.weight": torch.zeros(4, 4, 3, 3)}}, tmp_path / "kl.pt")
    (tmp_path / "code.pt").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    torch.save({"model": {"quantize.embedding.weight": torch.zeros(4, 4),
                          "encoder.down.0.block.0.conv1.weight": torch.zeros(4, 4, 3, 3)}}, tmp_path / "taming.pt")
    for name, message in (("cut.pt", "not a weights-only PyTorch file"), ("gpt.pt", "does not hold a LlamaGen VQ"),
                          ("kl.pt", "convert it with mar-vae"), ("code.pt", "not a weights-only PyTorch file"),
                          ("missing.pt", "does not exist"), ("taming.pt", "not in LlamaGen's layout")):
        assert main(["convert", "llamagen-vq", str(tmp_path / name), str(tmp_path / "out")]) == 2
        assert message in _error(capsys), name


def test_options_and_list(tmp_path, capsys):
    assert main(["convert", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("llamagen ", "llamagen-vq", "mar-vae"))
    assert main(["convert", "llamagen-vq", "x.pt", str(tmp_path / "o"), "--grid", "16"]) == 2
    assert "--grid does not apply to llamagen-vq" in _error(capsys)
    assert main(["convert", "llamagen-vq"]) == 2
    assert "give FORMAT CHECKPOINT OUT" in _error(capsys)


def test_converted_gpt_and_vq_sample_images_end_to_end(tokenizer, tmp_path):
    """artok convert llamagen + llamagen-vq, then artok sample on the two folders: a PNG grid."""
    from PIL import Image
    from test_convert_llamagen import _llamagen_named

    from artok.generators import RasterConfig, RasterGenerator
    from artok.tokens import TokenSpec

    torch.manual_seed(1)
    spec = TokenSpec("discrete", "grid", grid=(8, 8), vocab_size=64)
    gpt = RasterGenerator(RasterConfig(token_spec=spec.to_dict(), num_classes=3, dim=32, depth=1, num_heads=2,
                                       hidden_dim=64, rope_prefix="zero", norm_eps=1e-5, class_dropout=0.0))
    torch.save({"model": _llamagen_named(gpt)}, tmp_path / "c2i.pt")
    torch.save({"model": llamagen_named(tokenizer)}, tmp_path / "vq.pt")
    assert main(["convert", "llamagen", str(tmp_path / "c2i.pt"), str(tmp_path / "gpt"), "--grid", "8", "--num-heads", "2"]) == 0
    assert main(["convert", "llamagen-vq", str(tmp_path / "vq.pt"), str(tmp_path / "vq"), "--image-size", "16"]) == 0
    assert main(["sample", "--generator", str(tmp_path / "gpt"), "--tokenizer", str(tmp_path / "vq"), "--labels", "0,2",
                 "--per-label", "2", "--out", str(tmp_path / "grid.png"), "--no-progress"]) == 0
    assert Image.open(tmp_path / "grid.png").size[0] >= 2 * 16
