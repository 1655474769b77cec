"""LDM / MAR KL autoencoder checkpoints -> artok autoencoder tokenizers.

The state dicts are made here with LDM's names and shapes (no MAR or LDM code): an artok KL
autoencoder's weights saved the way MAR (``{"model": ...}``) and LDM (``{"state_dict": ...}`` with
``loss.*`` weights, or inside a full LDM under ``first_stage_model.``) publish them must convert back
to the same model. Numerical parity with MAR's own ``models/vae.py`` is checked by
``benchmarks/parity_mar_vae.py`` (needs a clone of MAR)."""

import pytest
import torch

from artok.cli.main import main
from artok.convert.ldm_kl import MAR_LATENT_SCALE, convert_state_dict
from artok.hub import from_pretrained
from artok.tokenizers.autoencoder import AutoencoderTokenizer, mar_kl16_config

SMALL = dict(image_size=16, base_channels=32, channel_multipliers=(1, 1, 2), num_res_blocks=1,
             encoder_attention_levels=(2,), z_channels=4, latent_dim=4)


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    model = AutoencoderTokenizer(mar_kl16_config(**SMALL)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    return model


def ldm_state(model) -> dict:
    return {key: value.clone() for key, value in model.state_dict().items()}


def images():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_mar_checkpoint_round_trip(tokenizer, tmp_path, capsys):
    torch.save({"model": ldm_state(tokenizer)}, tmp_path / "kl16.ckpt")
    assert main(["convert", "mar-vae", str(tmp_path / "kl16.ckpt"), str(tmp_path / "vae"), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "KL 4 channels x 0.2325" in out and "attention at levels [2] / []" in out
    converted = from_pretrained(tmp_path / "vae", role="tokenizer")
    assert converted.config == tokenizer.config and converted.config.latent_scale == MAR_LATENT_SCALE
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    a, b = tokenizer.encode(images()), converted.encode(images())
    assert torch.equal(a.values, b.values) and torch.equal(tokenizer.decode(a), converted.decode(b))
    assert a.spec.kind == "continuous" and a.spec.channels == 4 and a.spec.grid == (4, 4)


def test_ldm_layouts_and_the_scale(tokenizer, tmp_path, capsys):
    state = ldm_state(tokenizer)
    with_loss = {**state, "loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.zeros(8, 3, 4, 4)}
    torch.save({"state_dict": with_loss, "global_step": 5}, tmp_path / "ldm.ckpt")
    assert main(["convert", "mar-vae", str(tmp_path / "ldm.ckpt"), str(tmp_path / "a"), "--image-size", "16",
                 "--latent-scale", "0.18215"]) == 0
    assert from_pretrained(tmp_path / "a").config.latent_scale == 0.18215
    full = {f"first_stage_model.{k}": v for k, v in state.items()} | {"model.diffusion_model.x.weight": torch.zeros(1)}
    converted = convert_state_dict(full, image_size=32)
    assert converted.config.grid == (8, 8)
    assert torch.equal(converted.state_dict()["encoder.conv_out.weight"], state["encoder.conv_out.weight"])
    attention_everywhere = convert_state_dict({**state, **{
        f"decoder.up.2.attn.{i}.{n}.{p}": torch.zeros((64, 64, 1, 1) if p == "weight" and n != "norm" else (64,))
        for i in range(2) for n in ("norm", "q", "k", "v", "proj_out") for p in ("weight", "bias")}}, image_size=16)
    assert attention_everywhere.config.decoder_attention_levels == (2,)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("artok: error: "), err
    return err


def test_misfits_are_refused_in_one_line(tokenizer, tmp_path, capsys):
    state = ldm_state(tokenizer)
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "decoder.mid.attn_1.v.bias"}, "missing"),
        "not variational": ({**state, "quant_conv.weight": torch.zeros(4, 8, 1, 1), "quant_conv.bias": torch.zeros(4)},
                            "quant_conv.weight has shape [4, 8, 1, 1]"),
        "vq": ({**state, "quantize.embedding.weight": torch.zeros(16, 4)}, "convert it with llamagen-vq"),
        "uneven blocks": ({**state, "encoder.down.1.block.1.conv1.weight": torch.zeros(32, 32, 3, 3)}, "ResNet blocks"),
        "gpt": ({"tok_embeddings.weight": torch.zeros(3, 3)}, "does not hold an LDM/MAR KL autoencoder"),
    }
    for name, (weights, message) in cases.items():
        torch.save({"model": weights}, tmp_path / "bad.ckpt")
        assert main(["convert", "mar-vae", str(tmp_path / "bad.ckpt"), str(tmp_path / "out"), "--image-size", "16"]) == 2
        assert message in _error(capsys), name
    torch.save({"model": state}, tmp_path / "good.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:1000])
    assert main(["convert", "mar-vae", str(tmp_path / "cut.ckpt"), str(tmp_path / "out")]) == 2
    assert "not a weights-only PyTorch file (it is truncated or corrupt" in _error(capsys)
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["convert", "mar-vae", str(tmp_path / "notes.txt"), str(tmp_path / "out")]) == 2
    assert "(it is not a PyTorch checkpoint at all)" in _error(capsys)
    assert main(["convert", "mar-vae", str(tmp_path / "good.ckpt"), str(tmp_path / "out"), "--image-size", "18"]) == 2
    assert "not divisible" in _error(capsys)
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check: exit 2 from the parser
        main(["convert", "mar-vae", str(tmp_path / "good.ckpt"), str(tmp_path / "out"), "--latent-scale", "0"])
    assert exit_info.value.code == 2
    assert "expected a finite number > 0" in _error(capsys)
