"""VAR checkpoints (VQVAE and transformer) -> artok msvq autoencoder + next-scale generator (block="var").

The state dicts are made here with VAR's parameter names and shapes (no VAR code): artok models'
weights renamed the VAR way (``attn.qkv`` fused, ``quantize.quant_resi.qresi_ls.{j}``,
``blocks.{i}.attn.mat_qkv``, ``ada_lin.1``, ``head_nm`` in VAR's scale/shift order, the saved
``lvl_1L`` / ``attn_bias_for_masking`` / ``zero_k_bias`` buffers) must convert back to the same
models. Numerical parity with VAR's own code is checked by ``benchmarks/parity_var.py`` (needs a
clone of VAR: logits within ~2e-6, greedy CFG sampling token-identical)."""

import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from artok.cli.main import main
from artok.convert.var import convert_state_dict as convert_var
from artok.convert.var_vae import convert_state_dict as convert_vae
from artok.generators.next_scale.engine import NextScaleEngine
from artok.generators.next_scale.model import NextScaleConfig, NextScaleGenerator
from artok.generators.next_scale.sample import sample_next_scale
from artok.hub import from_pretrained
from artok.sampling.configs import NextScaleSamplerConfig
from artok.tokenizers.autoencoder import AutoencoderConfig, AutoencoderTokenizer

SCALES = (1, 2, 4)


def tiny_vae(num_phi: int = 4) -> AutoencoderTokenizer:
    """VAR's VQVAE layout, shrunk: attention after every block of the last level and in the middle,
    3x3 quant convs, msvq with VAR's loss weights and phi ratio."""
    torch.manual_seed(0)
    config = AutoencoderConfig(
        image_size=16, base_channels=32, channel_multipliers=(1, 2, 2), num_res_blocks=1,
        encoder_attention_levels=(2,), decoder_attention_levels=(2,), z_channels=8, latent_dim=8, quant_conv_kernel=3,
        quantizer="msvq", quantizer_options={"codebook_size": 32, "scales": SCALES, "num_phi": num_phi, "phi_ratio": 0.5})
    model = AutoencoderTokenizer(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):  # GroupNorm's (1, 0) would hide a misplaced norm
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
        model.quantizer.usage.uniform_()
    return model


def var_vae_named(model: AutoencoderTokenizer, phi_layout: str = "qresi_ls") -> dict:
    """The inverse of the converter's renaming, written out independently."""
    state, out = model.state_dict(), {}
    for key, value in state.items():
        if match := re.fullmatch(r"(.+attn[^.]*(?:\.\d+)?)\.(q|k|v)\.(weight|bias)", key):
            if match.group(2) == "q":
                prefix, kind = match.group(1), match.group(3)
                out[f"{prefix}.qkv.{kind}"] = torch.cat([state[f"{prefix}.{n}.{kind}"] for n in "qkv"])
        elif match := re.fullmatch(r"quantizer\.phi\.(\d+)\.conv\.(weight|bias)", key):
            middle = {"qresi_ls": f"qresi_ls.{match.group(1)}.", "shared": "qresi.", "per_scale": f"{match.group(1)}."}
            out[f"quantize.quant_resi.{middle[phi_layout]}{match.group(2)}"] = value
        elif key == "quantizer.codebook":
            out["quantize.embedding.weight"] = value
        elif key == "quantizer.usage":
            out["quantize.ema_vocab_hit_SV"] = value
        else:
            out[key] = value
    return out


def tiny_var(vae: AutoencoderTokenizer, shared: bool = False) -> NextScaleGenerator:
    torch.manual_seed(1)
    generator = NextScaleGenerator.from_tokenizer(vae, num_classes=5, dim=32, depth=2, num_heads=2, hidden_dim=128, block="var",
                                                  shared_adaln=shared, class_dropout=0.1)
    with torch.no_grad():  # VAR's init makes blocks near-identity (gates x 1e-5): re-draw for a real check
        for name, param in generator.named_parameters():
            if not name.startswith("scale_quantizer."):  # the VAE's copy stays the VAE's
                param.normal_(0.0, 0.2)
    return generator.eval()


def var_named(generator: NextScaleGenerator) -> dict:
    """``generator``'s weights under VAR's names, with the buffers VAR saves."""
    state, out = generator.state_dict(), {}
    dim = generator.config.dim
    top = {"word_embedding": "word_embed", "class_embedding": "class_emb", "level_embedding": "lvl_embed",
           "shared_modulation": "shared_ada_lin.1", "head.proj": "head"}
    block = {"attention.qkv.weight": "attn.mat_qkv.weight", "attention.q_bias": "attn.q_bias",
             "attention.v_bias": "attn.v_bias", "attention.log_scale": "attn.scale_mul_1H11",
             "modulation.weight": "ada_lin.1.weight", "modulation.bias": "ada_lin.1.bias"}
    for key, value in state.items():
        if key.startswith("scale_quantizer."):
            continue
        if key == "start_position" or key == "position":
            out["pos_start" if key == "start_position" else "pos_1LC"] = value[None]
        elif key.startswith("out_norm.modulation."):
            shift, scale = value.chunk(2)
            out[key.replace("out_norm.modulation", "head_nm.ada_lin.1")] = torch.cat([scale, shift])
        elif match := re.fullmatch(r"blocks\.(\d+)\.(.+)", key):
            name = match.group(2)
            if name == "modulation_offset":
                out[f"blocks.{match.group(1)}.ada_gss"] = value.reshape(1, 1, 6, dim)
            else:
                out[f"blocks.{match.group(1)}.{block.get(name, name.replace('attention.', 'attn.'))}"] = value
        else:
            module, _, leaf = key.rpartition(".")
            out[f"{top[module]}.{leaf}"] = value
    for i in range(generator.config.depth):
        out[f"blocks.{i}.attn.zero_k_bias"] = torch.zeros(dim)
    levels = torch.repeat_interleave(torch.arange(len(SCALES)), torch.tensor([s * s for s in SCALES]))[None]
    out["lvl_1L"] = levels
    out["attn_bias_for_masking"] = torch.where(levels[0][:, None] >= levels[0][None], 0.0, -torch.inf)[None, None]
    return out


def images() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1


@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


@pytest.mark.parametrize("layout,num_phi", [("qresi_ls", 4), ("shared", 1), ("per_scale", 3)])
def test_vae_round_trip_through_var_names(layout, num_phi):
    model = tiny_vae(num_phi)
    converted = convert_vae(var_vae_named(model, layout), image_size=16, patch_nums=SCALES)
    assert replace(converted.config, quantizer_options={}) == replace(model.config, quantizer_options={})
    assert converted.quantizer.config == model.quantizer.config
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    tokens = model.encode(images())
    assert torch.equal(converted.encode(images()).ids, tokens.ids)
    assert torch.equal(converted.decode(tokens), model.decode(tokens))


def test_vae_attention_split_is_query_key_value_in_order(vae):
    """Swapping VAR's fused q and k thirds must change the model (the split order matters)."""
    state = var_vae_named(vae)
    q, k, v = state["encoder.mid.attn_1.qkv.weight"].chunk(3)
    swapped = dict(state, **{"encoder.mid.attn_1.qkv.weight": torch.cat([k, q, v])})
    assert not torch.allclose(convert_vae(swapped, 16, SCALES).encode_latents(images()), vae.encode_latents(images()))


@pytest.mark.parametrize("shared", [False, True])
def test_transformer_round_trip_through_var_names(vae, shared):
    generator = tiny_var(vae, shared)
    converted = convert_var(var_named(generator), vae)
    assert converted.config == generator.config
    assert converted.config.shared_adaln is shared and converted.config.hidden_dim == 4 * 32
    for key, value in generator.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    labels, config = torch.tensor([0, 4]), NextScaleSamplerConfig(cfg_scale=3.0, top_k=4)
    a = sample_next_scale(generator, labels, config, torch.Generator().manual_seed(0)).ids
    assert torch.equal(sample_next_scale(converted, labels, config, torch.Generator().manual_seed(0)).ids, a)


def _reference_block(block, x, cond):
    """VAR's ``AdaLNSelfAttn.forward`` (``basic_var.py``) written out for one block, no cache or mask."""
    b, t, c = x.shape
    heads, attention = block.attention.num_heads, block.attention
    gamma1, gamma2, scale1, scale2, shift1, shift2 = block.modulation(F.silu(cond)).view(-1, 1, 6, c).unbind(2)
    h = F.layer_norm(x, (c,), eps=1e-6) * (scale1 + 1) + shift1
    bias = torch.cat([attention.q_bias, torch.zeros(c), attention.v_bias])
    q, k, v = F.linear(h, attention.qkv.weight, bias).view(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q = F.normalize(q, dim=-1) * attention.log_scale.clamp_max(torch.log(torch.tensor(100.0))).exp()
    k = F.normalize(k, dim=-1)
    out = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(b, t, c)
    x = x + attention.proj(out) * gamma1
    h = F.layer_norm(x, (c,), eps=1e-6) * (scale2 + 1) + shift2
    return x + block.ffn.fc2(F.gelu(block.ffn.fc1(h), approximate="tanh")) * gamma2


def test_var_block_is_vars_formula(vae):
    generator = tiny_var(vae)
    x, cond = torch.randn(2, 5, 32), torch.randn(2, 32)
    block = generator.blocks[0]
    torch.testing.assert_close(block(x, cond), _reference_block(block, x, cond), atol=1e-5, rtol=1e-5)


def test_converted_folders_sample_end_to_end(vae, tmp_path, capsys):
    generator = tiny_var(vae)
    torch.save(var_vae_named(vae), tmp_path / "vae_ch160v4096z32.pth")
    torch.save(var_named(generator), tmp_path / "var_d2.pth")
    assert main(["convert", "var-vae", str(tmp_path / "vae_ch160v4096z32.pth"), str(tmp_path / "vae"),
                 "--image-size", "16", "--patch-nums", "1,2,4"]) == 0
    # no --vae: VAR's VAE file next to the transformer file is found
    assert main(["convert", "var", str(tmp_path / "var_d2.pth"), str(tmp_path / "var")]) == 0
    assert main(["convert", "var", str(tmp_path / "var_d2.pth"), str(tmp_path / "var2"), "--vae", str(tmp_path / "vae")]) == 0
    out = capsys.readouterr().out
    assert "VAR-d2: 2 blocks, width 32, 2 heads, per-block adaLN" in out and "msvq 32 codes of dim 8" in out
    tokenizer, loaded = from_pretrained(tmp_path / "vae"), from_pretrained(tmp_path / "var")
    assert loaded.extra["sampling"]["cfg_schedule"] == "linear" and loaded.extra["sampling"]["cfg_scale"] == 5.0
    labels, config = torch.tensor([1, 2]), NextScaleSamplerConfig(cfg_scale=2.0, top_k=1)
    plain = sample_next_scale(loaded, labels, config, torch.Generator().manual_seed(0))
    assert torch.equal(plain.ids, sample_next_scale(generator, labels, config, torch.Generator().manual_seed(0)).ids)
    assert torch.equal(NextScaleEngine(loaded, 2).sample(labels, config, torch.Generator().manual_seed(0)).ids, plain.ids)
    assert tokenizer.decode(plain).shape == (2, 3, 16, 16)
    grid = tmp_path / "grid.png"
    assert main(["sample", "--generator", str(tmp_path / "var"), "--tokenizer", str(tmp_path / "vae"),
                 "--labels", "0,3", "--per-label", "1", "--out", str(grid), "--top-k", "4"]) == 0
    assert grid.is_file()


def _exit_status(arguments: list[str]) -> int:
    """``artok`` 's exit status (argparse's own refusals exit instead of returning)."""
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_misfits_are_refused_in_one_line(vae, tmp_path, capsys):
    generator = tiny_var(vae)
    torch.save(var_vae_named(vae), tmp_path / "vae.pth")
    torch.save(var_named(generator), tmp_path / "var.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "var.pth").read_bytes()[:2000])
    torch.save({"tok_embeddings.weight": torch.zeros(4, 4)}, tmp_path / "llamagen.pt")
    out = str(tmp_path / "out")
    cases = [
        (["var", str(tmp_path / "vae.pth"), out, "--vae", str(tmp_path / "vae.pth")], "is VAR's VQVAE, not its transformer"),
        (["var-vae", str(tmp_path / "var.pth"), out, "--image-size", "16", "--patch-nums", "1,2,4"], "is a VAR transformer"),
        (["var", str(tmp_path / "truncated.pth"), out, "--vae", str(tmp_path / "vae.pth")], "not a weights-only PyTorch file"),
        (["var", str(tmp_path / "llamagen.pt"), out], "does not hold a VAR transformer state dict"),
        (["var-vae", str(tmp_path / "llamagen.pt"), out], "does not hold a VAR VQVAE state dict"),
        (["var", str(tmp_path / "var.pth"), out], "pass --vae"),
        (["var-vae", str(tmp_path / "vae.pth"), out, "--image-size", "16"], "pass --patch-nums"),
        (["var-vae", str(tmp_path / "vae.pth"), out, "--image-size", "16", "--patch-nums", "1,2,3,4"], "scales"),
        (["var-vae", str(tmp_path / "vae.pth"), out, "--patch-nums", "2,1"], "increasing"),
        (["var-vae", str(tmp_path / "vae.pth"), out, "--vae", "x"], "does not apply to var-vae"),
    ]
    for arguments, message in cases:
        assert _exit_status(["convert", *arguments]) == 2, arguments
        assert message in _error(capsys), arguments


def test_transformer_that_does_not_fit_its_vae_is_refused(vae):
    state = var_named(tiny_var(vae))
    wrong_vocab = dict(state, **{"head.weight": torch.zeros(64, 32), "head.bias": torch.zeros(64)})
    with pytest.raises(ValueError, match="does not fit this VAR model"):
        convert_var(wrong_vocab, vae)
    with pytest.raises(ValueError, match="unexpected VAR weight"):
        convert_var(dict(state, **{"blocks.0.attn.extra": torch.zeros(1)}), vae)
    with pytest.raises(ValueError, match="do not fit"):
        convert_var({k: v for k, v in state.items() if k != "blocks.1.ffn.fc2.bias"}, vae)
    with pytest.raises(ValueError, match="key bias"):
        convert_var(dict(state, **{"blocks.0.attn.zero_k_bias": torch.ones(32)}), vae)


def test_var_block_options_are_checked():
    spec = tiny_vae().spec.to_dict()
    quantizer = {"dim": 8, "codebook_size": 32, "scales": SCALES}
    with pytest.raises(ValueError, match="categorical head"):
        NextScaleConfig(token_spec=spec, quantizer=quantizer, block="var", head="bitwise")
    with pytest.raises(ValueError, match="options of block='var'"):
        NextScaleConfig(token_spec=spec, quantizer=quantizer, shared_adaln=True)
    with pytest.raises(ValueError, match="block must be one of"):
        NextScaleConfig(token_spec=spec, quantizer=quantizer, block="llama")
