"""TiTok tokenizer files and MaskGIT's VQGAN file -> artok `TiTokTokenizer` / `MaskGITVQGAN`.

The state dicts are made here with TiTok's parameter names and shapes (no TiTok code): a tiny artok
model's weights renamed the TiTok way (``quantize.embedding.weight``, ``pixel_quantize.embedding.weight``,
no usage buffer), saved as TiTok publishes them (``model.safetensors``, ``tokenizer_titok_*.bin``), must
convert back to the same model. Numerical parity with TiTok's own code is ``benchmarks/parity_titok.py``."""

import pytest
import torch
from safetensors.torch import save_file
from titok_reference import (
    images,
    randomize,
    reference_decoder,
    reference_encoder,
    reference_ids,
    tiny_config,
)

from artok.cli.main import main
from artok.convert.titok import convert_state_dict
from artok.hub import from_pretrained
from artok.tokenizers import MaskGITVQGAN, MaskGITVQGANConfig, TiTokTokenizer
from artok.tokens import Tokens


def titok_named(model: TiTokTokenizer) -> dict:
    """The inverse of the converter's renaming, written out independently."""
    names = {"quantizer.codebook": "quantize.embedding.weight", "pixel_codebook": "pixel_quantize.embedding.weight"}
    return {names.get(key, key): value.clone() for key, value in model.state_dict().items() if key != "quantizer.usage"}


@pytest.fixture(scope="module")
def model() -> TiTokTokenizer:
    torch.manual_seed(0)
    return randomize(TiTokTokenizer(tiny_config(encoder_width=64, encoder_heads=1, decoder_heads=1)))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[key], sb[key]) for key in sa)


def test_published_safetensors_converts_to_the_same_model(model, tmp_path, capsys):
    save_file(titok_named(model), str(tmp_path / "model.safetensors"))
    assert main(["convert", "titok", str(tmp_path / "model.safetensors"), str(tmp_path / "out")]) == 0
    assert "TiTok encoder 2 x 64 (1 heads), decoder 1 x 64 (1 heads), patch 2 at 16 px, 5 tokens" in capsys.readouterr().out
    converted = from_pretrained(tmp_path / "out", role="tokenizer")
    assert converted.config == model.config and _same_weights(converted, model)
    # encode -> ids -> decode of the converted folder is TiTok's computation on the file's weights
    x = images()
    latents = reference_encoder(model, (x + 1) / 2)
    ids = converted.encode(x).ids
    assert torch.equal(ids, reference_ids(model, latents)) and ids.unique().numel() > 3
    pixels = reference_decoder(model, ids)
    torch.testing.assert_close(converted.decode(Tokens(converted.spec, ids=ids)), (pixels * 2 - 1).clamp(-1, 1),
                               atol=1e-5, rtol=1e-5)


def test_heads_follow_titoks_table_or_the_option(model, tmp_path):
    state = titok_named(model)
    assert (convert_state_dict(state).config.encoder_heads, convert_state_dict(state).config.decoder_heads) == (1, 1)
    torch.save(state, tmp_path / "tokenizer_titok_tiny.bin")
    assert main(["convert", "titok", str(tmp_path / "tokenizer_titok_tiny.bin"), str(tmp_path / "out"),
                 "--num-heads", "4"]) == 0
    converted = from_pretrained(tmp_path / "out")
    assert (converted.config.encoder_heads, converted.config.decoder_heads) == (4, 4)
    assert _same_weights(converted, model)
    assert not torch.equal(converted.encode_latents(images()), model.encode_latents(images()))  # heads matter


def _maskgit_file(model: TiTokTokenizer, path) -> MaskGITVQGAN:
    """A MaskGIT VQGAN whose decoder and codebook are ``model``'s pixel decoder (its encoder drawn), saved
    as ``maskgit-vqgan-imagenet-f16-256.bin`` is (open-muse's names, a plain state dict)."""
    c = model.config
    torch.manual_seed(1)
    vqgan = randomize(MaskGITVQGAN(MaskGITVQGANConfig(
        image_size=c.image_size, base_channels=c.pixel_base_channels, channel_multipliers=c.pixel_channel_multipliers,
        num_res_blocks=c.pixel_res_blocks, z_channels=c.pixel_z_channels, codebook_size=c.pixel_codebook_size)))
    vqgan.decoder.load_state_dict(model.pixel_decoder.state_dict())
    vqgan.quantizer.codebook.data.copy_(model.pixel_codebook)
    state = {("quantize.embedding.weight" if k == "quantizer.codebook" else k): v
             for k, v in vqgan.state_dict().items() if k != "quantizer.usage"}
    torch.save(state, path)
    return vqgan


def test_stage1_checkpoint_takes_the_maskgit_vqgan_decoder(model, tmp_path):
    stage1 = {k: v for k, v in titok_named(model).items() if not k.startswith("pixel_")}
    torch.save(stage1, tmp_path / "stage1.bin")
    vqgan = _maskgit_file(model, tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")
    assert main(["convert", "titok", str(tmp_path / "stage1.bin"), str(tmp_path / "out"),
                 "--pixel-decoder", str(tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")]) == 0
    assert _same_weights(from_pretrained(tmp_path / "out"), model)
    # the same file as a tokenizer of its own
    assert main(["convert", "maskgit-vqgan", str(tmp_path / "maskgit-vqgan-imagenet-f16-256.bin"), str(tmp_path / "vq"),
                 "--image-size", "16"]) == 0
    converted = from_pretrained(tmp_path / "vq", role="tokenizer")
    assert isinstance(converted, MaskGITVQGAN) and _same_weights(converted, vqgan)
    assert torch.equal(converted.encode(images()).ids, vqgan.encode(images()).ids)


def _exit_status(arguments: list[str]) -> int:
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_misfits_are_refused_in_one_line(model, tmp_path, capsys):
    state = titok_named(model)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "truncated.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes()[:5000])
    torch.save(state, tmp_path / "titok.bin")
    (tmp_path / "truncated.bin").write_bytes((tmp_path / "titok.bin").read_bytes()[:5000])
    (tmp_path / "notes.bin").write_text("not a checkpoint")
    torch.save({"model": {"tok_embeddings.weight": torch.zeros(4, 4)}}, tmp_path / "c2i_B_256.pt")
    torch.save({"class_emb.weight": torch.zeros(4, 4)}, tmp_path / "var_d16.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("pixel_")}, tmp_path / "stage1.bin")
    torch.save({**state, "decoder.conv_out.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "vq8k.bin")
    torch.save({k: v for k, v in state.items() if not k.startswith("encoder.transformer.0.")}, tmp_path / "holes.bin")
    torch.save({k: v for k, v in state.items() if k != "decoder.ln_post.bias"}, tmp_path / "short.bin")
    wide = {**state, "decoder.ffn.2.weight": torch.zeros(7, 128, 1, 1)}
    torch.save(wide, tmp_path / "wide.bin")
    out = str(tmp_path / "out")
    cases = [
        (["titok", str(tmp_path / "truncated.safetensors"), out], "truncated.safetensors"),
        (["titok", str(tmp_path / "truncated.bin"), out], "not a weights-only PyTorch file"),
        (["titok", str(tmp_path / "notes.bin"), out], "not a weights-only PyTorch file"),
        (["titok", str(tmp_path / "missing.bin"), out], "does not exist"),
        (["titok", str(tmp_path / "c2i_B_256.pt"), out], "it is a LlamaGen GPT"),
        (["titok", str(tmp_path / "var_d16.pth"), out], "it is a VAR transformer"),
        (["titok", str(tmp_path / "stage1.bin"), out], "pass --pixel-decoder"),
        (["titok", str(tmp_path / "titok.bin"), out, "--pixel-decoder", str(tmp_path / "titok.bin")],
         "does not hold a MaskGIT VQGAN state dict"),
        (["titok", str(tmp_path / "vq8k.bin"), out], "non-legacy TiTok"),
        (["titok", str(tmp_path / "holes.bin"), out], "not numbered 0..N-1"),
        (["titok", str(tmp_path / "short.bin"), out], "missing ['decoder.ln_post.bias']"),
        (["titok", str(tmp_path / "wide.bin"), out], "decoder predicts 7 MaskGIT-VQGAN codes for a 8-channel pixel decoder, but the pixel codebook is [24, 8]"),
        (["titok", str(tmp_path / "titok.bin"), out, "--num-heads", "3"], "multiple of encoder_heads 3"),
        (["titok", str(tmp_path / "titok.bin"), out, "--image-size", "16"], "does not apply to titok"),
        (["maskgit-vqgan", str(tmp_path / "titok.bin"), out], "it is a TiTok tokenizer"),
    ]
    for arguments, message in cases:
        assert _exit_status(["convert", *arguments]) == 2, arguments
        assert message in _error(capsys), arguments


def test_converted_titok_decodes_artok_samples_to_a_png_grid(model, tmp_path):
    """The path from a converted TiTok folder to pixels: an artok MaskGIT generator over its 1D tokens
    (random weights; TiTok's own generator is not converted) sampled by ``artok sample``."""
    from artok.hub import save_pretrained
    from artok.zoo import build_generator

    save_file(titok_named(model), str(tmp_path / "model.safetensors"))
    assert main(["convert", "titok", str(tmp_path / "model.safetensors"), str(tmp_path / "titok")]) == 0
    tokenizer = from_pretrained(tmp_path / "titok", role="tokenizer")
    torch.manual_seed(0)
    generator = build_generator("maskgit", tokenizer, num_classes=3, dim=32, depth=1, num_heads=2)
    save_pretrained(generator, tmp_path / "maskgit")
    grid = tmp_path / "grid.png"
    assert main(["sample", "--generator", str(tmp_path / "maskgit"), "--tokenizer", str(tmp_path / "titok"),
                 "--labels", "0,2", "--per-label", "2", "--iterations", "3", "--out", str(grid), "--no-progress"]) == 0
    from PIL import Image

    assert Image.open(grid).size[0] >= 2 * 16
