"""Load VAR transformers (https://github.com/FoundationVision/VAR, ``var_d16.pth`` .. ``var_d30.pth``)
as artok `NextScaleGenerator`s with ``block="var"`` (`artok.generators.next_scale.var_blocks`).

The published files are plain state dicts of VAR's ``models/var.py::VAR``. Everything is read from
the shapes: depth (``blocks.N``), width (``class_emb``: ``num_classes + 1`` rows), heads (the learned
per-head attention scale ``scale_mul_1H11``; VAR's rule of 64-wide heads without it), the MLP width,
shared (``shared_ada_lin``) or per-block (``ada_lin``) adaLN, the VAE's channel count
(``word_embed``), the vocabulary (``head``) and the scales (the ``lvl_1L`` buffer: tokens per level).
Weights map one to one except the final adaLN, whose two halves VAR stores as ``scale, shift`` and
artok's `AdaLNOutput` as ``shift, scale``.

VAR computes each next scale's input from its VQVAE (codebook, phi convolutions), so the generator
needs that VAE's quantizer: ``vae`` is the folder ``artok convert var-vae`` wrote or VAR's VAE file
itself (default: ``vae_ch160v4096z32.pth`` next to the transformer file, where VAR's download puts it).

Guidance: VAR's ``cfg`` ramps as ``1 + cfg * k / (K - 1)`` over the ``K`` scales, which is artok's
``cfg_schedule="linear"`` with ``cfg_scale = 1 + cfg``; the saved sampling defaults are VAR's demo
(cfg 4, top-k 900, top-p 0.95). Loading never executes code (weights-only ``torch.load`` or
safetensors). Equivalence with VAR's own code is checked by ``benchmarks/parity_var.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from pathlib import Path

import torch

from artok.generators.next_scale.model import NextScaleConfig, NextScaleGenerator
from artok.hub import read_weights

#: VAR's demo sampling (``cfg=4, top_k=900, top_p=0.95``) in artok's terms
VAR_SAMPLING = {"kind": "next-scale", "cfg_scale": 5.0, "cfg_schedule": "linear", "top_k": 900, "top_p": 0.95}
VAR_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
DEFAULT_VAE_FILE = "vae_ch160v4096z32.pth"
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_PER_BLOCK = {
    "attn.mat_qkv.weight": "attention.qkv.weight",
    "attn.q_bias": "attention.q_bias",
    "attn.v_bias": "attention.v_bias",
    "attn.scale_mul_1H11": "attention.log_scale",
    "attn.proj.weight": "attention.proj.weight",
    "attn.proj.bias": "attention.proj.bias",
    "ffn.fc1.weight": "ffn.fc1.weight",
    "ffn.fc1.bias": "ffn.fc1.bias",
    "ffn.fc2.weight": "ffn.fc2.weight",
    "ffn.fc2.bias": "ffn.fc2.bias",
    "ada_lin.1.weight": "modulation.weight",
    "ada_lin.1.bias": "modulation.bias",
}
_TOP = {
    "word_embed.weight": "word_embedding.weight",
    "word_embed.bias": "word_embedding.bias",
    "class_emb.weight": "class_embedding.weight",
    "lvl_embed.weight": "level_embedding.weight",
    "shared_ada_lin.1.weight": "shared_modulation.weight",
    "shared_ada_lin.1.bias": "shared_modulation.bias",
    "head.weight": "head.proj.weight",
    "head.bias": "head.proj.bias",
}
#: buffers VAR saves that artok derives (level per position, the block-causal mask, the zero key bias)
_DERIVED = ("lvl_1L", "attn_bias_for_masking")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a VAR transformer file, without executing code."""
    state = read_weights(path, "VAR checkpoint", nested=("model", "module", "state_dict"))
    state = {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}
    if "quantize.embedding.weight" in state:
        raise ValueError(f"{path} is VAR's VQVAE, not its transformer; convert it with artok convert var-vae")
    if "class_emb.weight" not in state or "blocks.0.attn.mat_qkv.weight" not in state:
        raise ValueError(f"{path} does not hold a VAR transformer state dict (no 'class_emb.weight' / "
                         "'blocks.0.attn.mat_qkv.weight')")
    return state


def patch_nums_of(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The token-map sides, from the per-position level buffer ``lvl_1L`` (VAR saves it), else VAR's
    default scales when the sequence length fits them."""
    length = state["pos_1LC"].shape[1]
    if "lvl_1L" in state:
        counts = torch.bincount(state["lvl_1L"].reshape(-1).long()).tolist()
        sides = tuple(math.isqrt(count) for count in counts)
        if any(side * side != count for side, count in zip(sides, counts)) or sum(counts) != length:
            raise ValueError(f"the VAR level buffer lvl_1L does not describe square token maps ({counts} tokens per level)")
        return sides
    if length == sum(p * p for p in VAR_PATCH_NUMS):
        return VAR_PATCH_NUMS
    raise ValueError(f"the checkpoint has no lvl_1L buffer and {length} positions, not VAR's default scales "
                     f"{VAR_PATCH_NUMS}; it cannot say its scales")


def infer_config(state: dict[str, torch.Tensor], tokenizer) -> NextScaleConfig:
    """The `NextScaleConfig` of VAR weights ``state`` for ``tokenizer``'s tokens (its msvq quantizer)."""
    rows, dim = state["class_emb.weight"].shape
    depth = 1 + max(int(m.group(1)) for m in map(_BLOCK.match, state) if m)
    l2_norm = "blocks.0.attn.scale_mul_1H11" in state
    heads = state["blocks.0.attn.scale_mul_1H11"].shape[1] if l2_norm else max(dim // 64, 1)
    vocab, cvae = state["head.weight"].shape[0], state["word_embed.weight"].shape[1]
    patch_nums = patch_nums_of(state)
    quantizer = tokenizer.quantizer
    expected = (tuple((p, p) for p in patch_nums), vocab, cvae)
    found = (tuple(quantizer.config.scales), quantizer.codebook_size, quantizer.dim)
    if found != expected:
        raise ValueError(f"the VAE does not fit this VAR model: the VAE has scales {found[0]}, {found[1]} codes of "
                         f"dim {found[2]}; the transformer wants scales {expected[0]}, {vocab} codes of dim {cvae}")
    if state["pos_start"].shape[1] != patch_nums[0] ** 2 or state["lvl_embed.weight"].shape[0] != len(patch_nums):
        raise ValueError("VAR's pos_start / lvl_embed do not match its scales")
    return NextScaleConfig(token_spec=tokenizer.spec.to_dict(), quantizer=asdict(quantizer.config),
                           num_classes=rows - 1, dim=dim, depth=depth, num_heads=heads,
                           hidden_dim=state["blocks.0.ffn.fc1.weight"].shape[0], class_dropout=0.1, dropout=0.0,
                           head="categorical", block="var", shared_adaln="shared_ada_lin.1.weight" in state,
                           attention_l2_norm=l2_norm)


def _rename(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """One VAR weight under its artok name (None for derived buffers)."""
    if key in _TOP:
        return _TOP[key], value
    if key == "pos_start":
        return "start_position", value[0]
    if key == "pos_1LC":
        return "position", value[0]
    if key == "head_nm.ada_lin.1.weight" or key == "head_nm.ada_lin.1.bias":  # VAR: scale, shift; artok: shift, scale
        scale, shift = value.chunk(2)
        return f"out_norm.modulation.{key.rsplit('.', 1)[1]}", torch.cat([shift, scale])
    if key in _DERIVED:
        return None
    match = _BLOCK.match(key)
    if match is not None:
        block, name = match.groups()
        if name in _PER_BLOCK:
            return f"blocks.{block}.{_PER_BLOCK[name]}", value
        if name == "ada_gss":
            return f"blocks.{block}.modulation_offset", value.reshape(6, -1)
        if name == "attn.zero_k_bias":
            if value.abs().max() != 0:
                raise ValueError(f"VAR's {key} is not zero; artok's VAR attention has no key bias")
            return None
    raise ValueError(f"unexpected VAR weight {key!r}: not a VAR transformer this converter knows")


def convert_state_dict(state: dict[str, torch.Tensor], tokenizer) -> NextScaleGenerator:
    """A ``block="var"`` `NextScaleGenerator` with VAR's weights ``state`` and ``tokenizer``'s quantizer."""
    generator = NextScaleGenerator(infer_config(state, tokenizer))
    converted = dict(filter(None, (_rename(key, value) for key, value in state.items())))
    own = generator.state_dict()
    wrong = [key for key, value in converted.items() if key in own and own[key].shape != value.shape]
    missing = [key for key in own if key not in converted and not key.startswith("scale_quantizer.")]
    unexpected = [key for key in converted if key not in own]
    if wrong or missing or unexpected:
        raise ValueError(f"VAR weights do not fit: wrong shapes {wrong[:3]}, missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    generator.load_state_dict(converted, strict=False)
    generator.load_quantizer(tokenizer.quantizer)
    return generator.eval()


def _tokenizer_for(path: Path, vae: str | Path | None, patch_nums: tuple[int, ...]):
    """The VAE: an artok folder, a VAR VAE file (read with the transformer's scales ``patch_nums``), or
    ``vae_ch160v4096z32.pth`` next to ``path``."""
    if vae is None:
        sibling = path.parent / DEFAULT_VAE_FILE
        if not sibling.is_file():
            raise ValueError(f"the VAR transformer needs its VAE (next-scale inputs come from its codebook and phi "
                             f"convolutions): pass --vae (VAR's {DEFAULT_VAE_FILE} or the folder artok convert var-vae "
                             f"wrote); none found next to {path}")
        vae = sibling
    vae = Path(vae)
    if vae.is_dir():
        from artok.zoo import from_pretrained

        return from_pretrained(vae, role="tokenizer")
    from artok.convert.var_vae import load_var_vae

    return load_var_vae(vae, patch_nums=patch_nums)


def load_var(path: str | Path, vae: str | Path | None = None) -> NextScaleGenerator:
    """`convert_state_dict` of the VAR transformer file at ``path`` with the VAE ``vae``."""
    state = read_state_dict(path)
    return convert_state_dict(state, _tokenizer_for(Path(path), vae, patch_nums_of(state)))


def convert_file(path: str | Path, vae: str | None = None):
    """The ``artok convert var`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    generator = load_var(path, vae)
    config = generator.config
    summary = (f"VAR-d{config.depth}: {config.depth} blocks, width {config.dim}, {config.num_heads} heads, "
               f"{'shared' if config.shared_adaln else 'per-block'} adaLN, vocab {config.spec.vocab_size}, "
               f"{config.num_classes} classes, scales {[h for h, _ in config.spec.scales]}")
    return Converted(generator, summary, extra={"sampling": dict(VAR_SAMPLING)})
