"""Load MAR generators (https://github.com/LTH14/mar, ``mar_base`` / ``mar_large`` / ``mar_huge``
``checkpoint-last.pth``) as artok `MARGenerator`s with ``block="timm"`` and a ``learn_sigma``
diffusion head.

MAR's checkpoint keeps the trained weights under ``model`` and their EMA under ``model_ema`` (MAR
evaluates with the EMA: ``weights="ema"``, the default). Everything is read from the shapes: width
(``z_proj``), classes (``class_emb``), encoder / decoder depths (``encoder_blocks.N`` /
``decoder_blocks.N``), the MLP width (``mlp.fc1``), the sequence (``diffusion_pos_embed_learned``, a
square grid) and the class buffer (``encoder_pos_embed_learned`` minus the sequence), the head's
width and depth (``diffloss.net``) and its learned variance (output ``2 x`` the token channels).
The head count is not in the weights: MAR's table (768 -> 12, 1024 / 1280 -> 16), else 64-wide
heads, or ``num_heads``.

Weights map one to one, except: the null-class ``fake_latent`` becomes the last row of artok's class
embedding (label ``num_classes``), and the ``1 x ... x D`` position / mask parameters lose their batch
axes. Tokens are MAR's VAE latents already times 0.2325 (``artok convert mar-vae`` bakes the scale
into the tokenizer), so ``token_scale`` is 1. Loading never executes code. Equivalence with MAR's own
code is checked by ``benchmarks/parity_mar.py``.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch

from artok.generators.mar.model import MARConfig, MARGenerator
from artok.hub import read_weights
from artok.tokens import TokenSpec

#: MAR's README evaluation sampling (256 iterations, linear CFG schedule, 100 diffusion steps, temperature 1);
#: its guidance scale per width (MAR-B 2.9, MAR-L 3.0, MAR-H 3.2) is `MAR_CFG`
MAR_SAMPLING = {"kind": "mar", "iterations": 256, "cfg_scale": 3.0, "cfg_schedule": "linear", "temperature": 1.0,
                "steps": 100, "method": "ddpm"}
MAR_CFG = {768: 2.9, 1024: 3.0, 1280: 3.2}
MAR_HEADS = {768: 12, 1024: 16, 1280: 16}
WEIGHTS = ("ema", "model")
_BLOCK = re.compile(r"(encoder|decoder)_blocks\.(\d+)\.(.+)")
_HEAD_BLOCK = re.compile(r"diffloss\.net\.res_blocks\.(\d+)\.(.+)")
_BLOCK_PARTS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                "mlp.fc2.bias")
_HEAD_BLOCK_PARTS = {"in_ln": "norm", "mlp.0": "mlp.0", "mlp.2": "mlp.2", "adaLN_modulation.1": "modulation"}
_TOP = {
    "z_proj": "token_proj",
    "z_proj_ln": "input_norm",
    "encoder_norm": "encoder_norm",
    "decoder_embed": "decoder_proj",
    "decoder_norm": "decoder_norm",
    "diffloss.net.time_embed.mlp.0": "head.net.time_embedding.mlp.0",
    "diffloss.net.time_embed.mlp.2": "head.net.time_embedding.mlp.2",
    "diffloss.net.cond_embed": "head.net.cond_proj",
    "diffloss.net.input_proj": "head.net.in_proj",
    "diffloss.net.final_layer.adaLN_modulation.1": "head.net.out_norm.modulation",  # shift, scale in both
    "diffloss.net.final_layer.linear": "head.net.out_proj",
}
_UNBATCHED = {"encoder_pos_embed_learned": "encoder_position", "decoder_pos_embed_learned": "decoder_position",
              "diffusion_pos_embed_learned": "head_position", "mask_token": "mask_token"}


def read_state_dict(path: str | Path, weights: str = "ema") -> dict[str, torch.Tensor]:
    """MAR's ``model_ema`` (``weights="ema"``) or ``model`` weights from ``checkpoint-last.pth``."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    # MAR's training checkpoints also pickle their argparse Namespace ('args'): allow that one plain
    # attribute container in the weights-only unpickler (it runs no code), nothing else
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = read_weights(path, "MAR checkpoint", nested=())
    key = "model_ema" if weights == "ema" else "model"
    if isinstance(checkpoint.get(key), dict):
        state = checkpoint[key]
    elif "model" in checkpoint or "model_ema" in checkpoint:
        other = checkpoint.get("model" if weights == "ema" else "model_ema")
        mar_weights(other if isinstance(other, dict) else {}, str(path))  # not a MAR generator: say so first
        raise ValueError(f"{path} has no {key!r} weights (it has {sorted(k for k in checkpoint if k.startswith('model'))}); "
                         f"pass --weights {'model' if weights == 'ema' else 'ema'}")
    else:
        state = checkpoint  # a bare state dict
    return mar_weights(state, str(path))


def mar_weights(state: dict[str, torch.Tensor], source: str = "the state dict") -> dict[str, torch.Tensor]:
    """``state`` without wrapper prefixes; refuses files that are not a MAR generator."""
    state = {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}
    if "encoder.conv_in.weight" in state:
        raise ValueError(f"{source} is MAR's KL autoencoder, not its generator; convert it with artok convert mar-vae")
    needed = ("z_proj.weight", "class_emb.weight", "fake_latent", "diffusion_pos_embed_learned", "decoder_embed.weight")
    absent = [key for key in needed if key not in state]
    if absent:
        raise ValueError(f"{source} does not hold a MAR generator state dict (no {absent[0]!r})")
    return state


def _depth(state: dict, part: str) -> int:
    return 1 + max((int(m.group(2)) for m in map(_BLOCK.match, state) if m and m.group(1) == part), default=-1)


def infer_config(state: dict[str, torch.Tensor], num_heads: int | None = None, source: str = "the state dict") -> MARConfig:
    """The `MARConfig` of MAR weights ``state`` (see the module docstring)."""
    dim, token_dim = state["z_proj.weight"].shape
    seq_len = state["diffusion_pos_embed_learned"].shape[1]
    side = math.isqrt(seq_len)
    if side * side != seq_len:
        raise ValueError(f"{source}: {seq_len} token positions are not a square grid")
    if state["decoder_embed.weight"].shape != (dim, dim):
        raise ValueError(f"{source}: encoder and decoder widths differ {tuple(state['decoder_embed.weight'].shape)}; "
                         "artok's MAR uses one width")
    heads = num_heads or MAR_HEADS.get(dim, max(dim // 64, 1))
    if dim % heads:
        raise ValueError(f"{source}: width {dim} is not divisible by {heads} heads; pass --num-heads")
    out_channels = state["diffloss.net.final_layer.linear.weight"].shape[0]
    if out_channels not in (token_dim, 2 * token_dim):
        raise ValueError(f"{source}: the diffusion head outputs {out_channels} channels for {token_dim}-channel tokens")
    head_depth = 1 + max(int(m.group(1)) for m in map(_HEAD_BLOCK.match, state) if m)
    spec = TokenSpec("continuous", "grid", grid=(side, side), channels=token_dim)
    return MARConfig(token_spec=spec.to_dict(), num_classes=state["class_emb.weight"].shape[0], dim=dim, num_heads=heads,
                     hidden_dim=state["encoder_blocks.0.mlp.fc1.weight"].shape[0], encoder_depth=_depth(state, "encoder"),
                     decoder_depth=_depth(state, "decoder"),
                     buffer_size=state["encoder_pos_embed_learned"].shape[1] - seq_len, class_dropout=0.1, dropout=0.1,
                     mask_ratio_min=0.7, mask_ratio_std=0.25, head="diffusion", block="timm",
                     learn_sigma=out_channels == 2 * token_dim, head_width=state["diffloss.net.input_proj.weight"].shape[0],
                     head_depth=head_depth, head_batch_mul=4, num_timesteps=1000, noise_schedule="cosine",
                     prediction="epsilon", token_scale=1.0)


def _rename(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """One MAR weight under its artok name (None for ``fake_latent``, merged into the class embedding)."""
    module, _, leaf = key.rpartition(".")
    if module in _TOP and leaf in ("weight", "bias"):
        return f"{_TOP[module]}.{leaf}", value
    if key in _UNBATCHED:
        return _UNBATCHED[key], value.reshape(-1, value.shape[-1]).squeeze(0) if key == "mask_token" else value[0]
    if key in ("class_emb.weight", "fake_latent"):
        return None
    if (match := _BLOCK.match(key)) and match.group(3) in _BLOCK_PARTS:
        return f"{match.group(1)}.{match.group(2)}.{match.group(3)}", value
    if (match := _HEAD_BLOCK.match(key)) and (part := match.group(2).rpartition(".")[0]) in _HEAD_BLOCK_PARTS:
        return f"head.net.blocks.{match.group(1)}.{_HEAD_BLOCK_PARTS[part]}.{match.group(2).rpartition('.')[2]}", value
    raise ValueError(f"unexpected MAR weight {key!r}: not a MAR generator this converter knows")


def convert_state_dict(state: dict[str, torch.Tensor], num_heads: int | None = None,
                       source: str = "the state dict") -> MARGenerator:
    """A ``block="timm"`` `MARGenerator` with MAR's weights ``state`` (MAR's names)."""
    state = mar_weights(state, source)
    generator = MARGenerator(infer_config(state, num_heads, source))
    converted = dict(filter(None, (_rename(key, value) for key, value in state.items())))
    converted["class_embedding.weight"] = torch.cat([state["class_emb.weight"], state["fake_latent"].reshape(1, -1)])
    own = generator.state_dict()
    wrong = [key for key, value in converted.items() if key in own and own[key].shape != value.shape]
    missing = [key for key in own if key not in converted]
    unexpected = [key for key in converted if key not in own]
    if wrong or missing or unexpected:
        raise ValueError(f"{source}: MAR weights do not fit: wrong shapes {wrong[:3]}, missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    generator.load_state_dict(converted)
    return generator.eval()


def convert_file(path: str | Path, num_heads: int | None = None, weights: str | None = None):
    """The ``artok convert mar`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    weights = weights or "ema"
    generator = convert_state_dict(read_state_dict(path, weights), num_heads, source=str(path))
    config = generator.config
    side = config.spec.grid[0]
    summary = (f"MAR ({weights} weights): {config.encoder_depth}+{config.decoder_depth} timm blocks, width {config.dim}, "
               f"{config.num_heads} heads, buffer {config.buffer_size}, {side}x{side} tokens of {config.spec.channels} "
               f"channels, {config.num_classes} classes, head {config.head_depth}x{config.head_width}"
               f"{' + learned variance' if config.learn_sigma else ''}")
    sampling = dict(MAR_SAMPLING, cfg_scale=MAR_CFG.get(config.dim, MAR_SAMPLING["cfg_scale"]))
    return Converted(generator, summary, extra={"sampling": sampling})
