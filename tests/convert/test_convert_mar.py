"""MAR generator checkpoints -> artok MARGenerator (block="timm", learned-variance diffusion head).

The state dicts are made here with MAR's parameter names and shapes (no MAR code): an artok model's
weights renamed the MAR way (``encoder_blocks.N`` timm blocks, ``z_proj_ln``, ``fake_latent`` split off
the class embedding, ``1 x ... x D`` positions, ``diffloss.net.*``) must convert back to the same
model, and a forward written here from MAR's ``models/mar.py`` / ``models/diffloss.py`` formulas,
run on the MAR-named weights, must give the converted model's head conditions ``z`` and head
output. Parity with MAR's own code is ``benchmarks/parity_mar.py`` (needs a clone of MAR)."""

import argparse
import re

import pytest
import torch
import torch.nn.functional as F

from artok.cli.main import main
from artok.convert.mar import convert_state_dict, infer_config
from artok.generators.mar.model import MARConfig, MARGenerator
from artok.generators.mar.sample import sample_mar
from artok.hub import from_pretrained
from artok.sampling.configs import MARSamplerConfig
from artok.tokens import TokenSpec

SPEC = TokenSpec("continuous", "grid", grid=(4, 4), channels=4)
HEADS = 2


def tiny_mar(seed: int = 1) -> MARGenerator:
    torch.manual_seed(seed)
    config = MARConfig(token_spec=SPEC.to_dict(), num_classes=5, dim=32, num_heads=HEADS, encoder_depth=2,
                       decoder_depth=2, buffer_size=3, block="timm", learn_sigma=True, head_width=24, head_depth=2,
                       prediction="epsilon", dropout=0.0)
    generator = MARGenerator(config)
    with torch.no_grad():  # zero-initialised gates / output layers would hide misplaced weights
        for param in generator.parameters():
            param.normal_(0.0, 0.3)
    return generator.eval()


def mar_named(generator: MARGenerator) -> dict:
    """``generator``'s weights under MAR's names (the inverse of the converter, written out independently)."""
    out = {}
    for key, value in generator.state_dict().items():
        if key == "class_embedding.weight":
            out["class_emb.weight"], out["fake_latent"] = value[:-1], value[-1:]
        elif key in ("encoder_position", "decoder_position", "head_position"):
            name = {"encoder_position": "encoder_pos_embed_learned", "decoder_position": "decoder_pos_embed_learned",
                    "head_position": "diffusion_pos_embed_learned"}[key]
            out[name] = value[None]
        elif key == "mask_token":
            out[key] = value.reshape(1, 1, -1)
        elif m := re.fullmatch(r"(encoder|decoder)\.(\d+)\.(.+)", key):
            out[f"{m.group(1)}_blocks.{m.group(2)}.{m.group(3)}"] = value
        elif m := re.fullmatch(r"head\.net\.blocks\.(\d+)\.(norm|mlp\.0|mlp\.2|modulation)\.(weight|bias)", key):
            part = {"norm": "in_ln", "modulation": "adaLN_modulation.1"}.get(m.group(2), m.group(2))
            out[f"diffloss.net.res_blocks.{m.group(1)}.{part}.{m.group(3)}"] = value
        else:
            renames = {"token_proj": "z_proj", "input_norm": "z_proj_ln", "decoder_proj": "decoder_embed",
                       "head.net.time_embedding.mlp": "diffloss.net.time_embed.mlp", "head.net.cond_proj": "diffloss.net.cond_embed",
                       "head.net.in_proj": "diffloss.net.input_proj",
                       "head.net.out_norm.modulation": "diffloss.net.final_layer.adaLN_modulation.1",
                       "head.net.out_proj": "diffloss.net.final_layer.linear"}
            for ours, theirs in renames.items():
                if key.startswith(ours + "."):
                    key = theirs + key[len(ours):]
            out[key] = value
    return out


# --- MAR's formulas, written from models/mar.py and models/diffloss.py -----------------------------------
def _ln(s, name, x, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], s.get(name + ".weight"), s.get(name + ".bias"), eps)


def _lin(s, name, x):
    return F.linear(x, s[name + ".weight"], s[name + ".bias"])


def _timm_block(s, p, x):
    b, n, d = x.shape
    q, k, v = _lin(s, p + "attn.qkv", _ln(s, p + "norm1", x)).reshape(b, n, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
    attention = ((q @ k.transpose(-2, -1)) * (d // HEADS) ** -0.5).softmax(-1) @ v
    x = x + _lin(s, p + "attn.proj", attention.transpose(1, 2).reshape(b, n, d))
    return x + _lin(s, p + "mlp.fc2", F.gelu(_lin(s, p + "mlp.fc1", _ln(s, p + "norm2", x))))


def mar_z(s, tokens, mask, labels, buffer):
    """MAR's forward_mae_encoder + forward_mae_decoder (eval), null label = len(class_emb)."""
    table = torch.cat([s["class_emb.weight"], s["fake_latent"]])
    x = _lin(s, "z_proj", tokens)
    b, _, d = x.shape
    x = torch.cat([torch.zeros(b, buffer, d), x], dim=1)
    keep = torch.cat([torch.zeros(b, buffer), mask.float()], dim=1)
    x[:, :buffer] = table[labels].unsqueeze(1)
    x = _ln(s, "z_proj_ln", x + s["encoder_pos_embed_learned"])
    x = x[(1 - keep).nonzero(as_tuple=True)].reshape(b, -1, d)
    for i in range(2):
        x = _timm_block(s, f"encoder_blocks.{i}.", x)
    x = _lin(s, "decoder_embed", _ln(s, "encoder_norm", x))
    padded = s["mask_token"].repeat(b, keep.shape[1], 1).clone()
    padded[(1 - keep).nonzero(as_tuple=True)] = x.reshape(-1, d)
    x = padded + s["decoder_pos_embed_learned"]
    for i in range(2):
        x = _timm_block(s, f"decoder_blocks.{i}.", x)
    return _ln(s, "decoder_norm", x)[:, buffer:] + s["diffusion_pos_embed_learned"]


def mar_head(s, x, t, c):
    """SimpleMLPAdaLN.forward."""
    p = "diffloss.net."
    half = 128
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    t_emb = _lin(s, p + "time_embed.mlp.2", F.silu(_lin(s, p + "time_embed.mlp.0", torch.cat([args.cos(), args.sin()], -1))))
    y = t_emb + _lin(s, p + "cond_embed", c)
    x = _lin(s, p + "input_proj", x)
    for i in range(2):
        q = f"{p}res_blocks.{i}."
        shift, scale, gate = _lin(s, q + "adaLN_modulation.1", F.silu(y)).chunk(3, -1)
        x = x + gate * _lin(s, q + "mlp.2", F.silu(_lin(s, q + "mlp.0", _ln(s, q + "in_ln", x) * (1 + scale) + shift)))
    shift, scale = _lin(s, p + "final_layer.adaLN_modulation.1", F.silu(y)).chunk(2, -1)
    return _lin(s, p + "final_layer.linear", F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale) + shift)


@pytest.fixture(scope="module")
def generator():
    return tiny_mar()


def test_round_trip_through_mar_names(generator):
    state = mar_named(generator)
    config = infer_config(state, num_heads=HEADS)
    assert (config.dim, config.encoder_depth, config.decoder_depth, config.buffer_size, config.num_classes) == (32, 2, 2, 3, 5)
    assert (config.head_width, config.head_depth, config.learn_sigma, config.hidden_dim) == (24, 2, True, 128)
    assert config.spec == SPEC and config.block == "timm" and config.prediction == "epsilon"
    converted = convert_state_dict(state, num_heads=HEADS)
    for key, value in generator.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


def test_converted_model_computes_mars_formulas(generator):
    state = mar_named(generator)
    converted = convert_state_dict(state, num_heads=HEADS)
    torch.manual_seed(3)
    tokens = torch.randn(3, 16, 4)
    ranks = torch.rand(3, 16).argsort(1).argsort(1)
    mask = ranks < 10  # every row hides 10, in its own order
    labels = torch.tensor([0, 4, 5])  # 5 = the null class (MAR's fake_latent)
    with torch.no_grad():
        z = converted.condition_vectors(tokens, mask, labels)
        expected = mar_z(state, tokens, mask, labels, buffer=3)
        torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-5)
        rows, x_t, t = z.reshape(-1, 32), torch.randn(48, 4), torch.randint(0, 1000, (48,))
        output = mar_head(state, x_t, t, rows)
        eps, variance = converted.head.forward_with_variance(x_t, t, rows)
        torch.testing.assert_close(torch.cat([eps, variance], 1), output, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(converted.head(x_t, t, rows), output[:, :4])
    assert converted.head.loss(rows, torch.randn(48, 4)).isfinite()


def test_cli_reads_ema_or_model_weights_and_samples(generator, tmp_path, capsys):
    ema = mar_named(generator)
    raw = mar_named(tiny_mar(seed=2))
    checkpoint = {"model": raw, "model_ema": ema, "epoch": 7, "args": argparse.Namespace(model="mar_tiny", cfg=3.0),
                  "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}
    torch.save(checkpoint, tmp_path / "checkpoint-last.pth")
    assert main(["convert", "mar", str(tmp_path / "checkpoint-last.pth"), str(tmp_path / "ema"), "--num-heads", "2"]) == 0
    assert main(["convert", "mar", str(tmp_path / "checkpoint-last.pth"), str(tmp_path / "raw"), "--num-heads", "2",
                 "--weights", "model"]) == 0
    out = capsys.readouterr().out
    assert "MAR (ema weights): 2+2 timm blocks, width 32, 2 heads, buffer 3, 4x4 tokens of 4 channels" in out
    assert "MAR (model weights)" in out and "learned variance" in out
    loaded, loaded_raw = from_pretrained(tmp_path / "ema"), from_pretrained(tmp_path / "raw")
    assert torch.equal(loaded.class_embedding.weight, generator.class_embedding.weight)
    assert not torch.equal(loaded_raw.class_embedding.weight, generator.class_embedding.weight)
    assert loaded.extra["sampling"]["iterations"] == 256 and loaded.extra["sampling"]["steps"] == 100
    labels, config = torch.tensor([1, 2]), MARSamplerConfig(iterations=4, steps=5, cfg_scale=2.0)
    plain = sample_mar(loaded, labels, config, torch.Generator().manual_seed(0))
    assert torch.equal(plain.values, sample_mar(generator, labels, config, torch.Generator().manual_seed(0)).values)
    assert plain.values.shape == (2, 16, 4) and plain.values.isfinite().all()


def _exit_status(arguments: list[str]) -> int:
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def test_misfits_are_refused_in_one_line(generator, tmp_path, capsys):
    state = mar_named(generator)
    torch.save({"model": state}, tmp_path / "no_ema.pth")
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(1)}}, tmp_path / "kl16.ckpt")
    torch.save({"tok_embeddings.weight": torch.zeros(4, 4)}, tmp_path / "llamagen.pt")
    torch.save(dict(state, **{"encoder_blocks.0.attn.extra": torch.zeros(1)}), tmp_path / "extra.pth")
    torch.save(state, tmp_path / "bare.pth")
    out = str(tmp_path / "out")
    cases = [
        (["mar", str(tmp_path / "no_ema.pth"), out], "has no 'model_ema' weights"),
        (["mar", str(tmp_path / "kl16.ckpt"), out], "convert it with artok convert mar-vae"),
        (["mar", str(tmp_path / "llamagen.pt"), out], "does not hold a MAR generator state dict"),
        (["mar", str(tmp_path / "extra.pth"), out, "--num-heads", "2"], "unexpected MAR weight"),
        (["mar", str(tmp_path / "bare.pth"), out, "--num-heads", "5"], "not divisible by 5 heads"),
        (["mar", str(tmp_path / "bare.pth"), out, "--weights", "best"], "invalid choice"),
        (["mar-vae", str(tmp_path / "bare.pth"), out, "--weights", "ema"], "does not apply to mar-vae"),
    ]
    for arguments, message in cases:
        assert _exit_status(["convert", *arguments]) == 2, arguments
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (arguments, lines)


def test_block_options_are_checked():
    with pytest.raises(ValueError, match="block must be 'swiglu' or 'timm'"):
        MARConfig(token_spec=SPEC.to_dict(), block="vit")
    with pytest.raises(ValueError, match="learn_sigma needs head='diffusion'"):
        MARConfig(token_spec=SPEC.to_dict(), head="flow", learn_sigma=True)
    with pytest.raises(ValueError, match="fixed variance"):
        MARGenerator(MARConfig(token_spec=SPEC.to_dict(), dim=32, num_heads=2)).head.forward_with_variance(
            torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), torch.zeros(1, 32))


def test_learned_variance_ddpm_step_is_adms(generator):
    """Two respaced steps by hand (ADM's LEARNED_RANGE p_sample, MAR's CFG on eps with the conditional
    rows' variance) vs `final_mean` fed the same noise."""
    from artok.sampling.continuous import final_mean, respaced_timesteps

    head = generator.head
    torch.manual_seed(5)
    z, noise = torch.randn(6, 32), torch.randn(2, 3, 4)
    t0, t1 = respaced_timesteps(1000, 2).tolist()
    abar = head.alphas_cumprod.double()
    a0, a1 = float(abar[t0]), float(abar[t1])
    with torch.no_grad():
        for guided in (False, True):
            rows, scale = (z, 2.5) if guided else (z[:3], 1.0)
            x = noise[0].double()
            eps, values = head.forward_with_variance(torch.cat([noise[0]] * (2 if guided else 1)),
                                                     torch.full((rows.shape[0],), t0), rows)
            if guided:
                cond, uncond = eps.chunk(2)
                eps, values = uncond + scale * (cond - uncond), values[:3]
            beta = 1 - a0 / a1
            x0 = (x - (1 - a0) ** 0.5 * eps.double()) / a0**0.5
            mean = a1**0.5 * beta / (1 - a0) * x0 + (1 - beta) ** 0.5 * (1 - a1) / (1 - a0) * x
            posterior = beta * (1 - a1) / (1 - a0)
            frac = (values.double() + 1) / 2
            std = torch.exp(0.5 * (frac * torch.log(torch.tensor(beta)) + (1 - frac) * torch.log(torch.tensor(posterior))))
            x = mean + 0.9 * std * noise[1].double()
            eps = head(torch.cat([x.float()] * (2 if guided else 1)), torch.full((rows.shape[0],), t1), rows).double()
            if guided:
                cond, uncond = eps.chunk(2)
                eps = uncond + scale * (cond - uncond)
            x0 = (x - (1 - a1) ** 0.5 * eps) / a1**0.5  # last step: abar_prev = 1, the mean is x0
            ours = final_mean(head, rows, steps=2, method="ddpm", temperature=0.9, guided=guided, cfg_scale=scale,
                              noise=noise)
            torch.testing.assert_close(ours.double(), x0, atol=1e-4, rtol=1e-4)
