"""Load LlamaGen class-conditional GPT checkpoints (https://github.com/FoundationVision/LlamaGen,
``c2i_{B,L,XL,XXL,3B}_{256,384}.pt``) as artok `RasterGenerator`s.

LlamaGen's GPT is the LLaMA block that artok's raster generator already uses: fused QKV, RoPE on a 2D
grid, SwiGLU, RMSNorm, a class-token prefix with a learned "no class" row for guidance. Two details
differ from artok's defaults and are set in the converted config: the class position's rotary table
is zero (``rope_prefix="zero"``: LlamaGen's ``precompute_freqs_cis_2d`` pads with zeros, which zeroes
the class token's query and key) and RMSNorm's epsilon is 1e-5. Weights map one to one, except that
SwiGLU's ``w1`` (gate) and ``w3`` (up) are stacked into artok's fused ``gate_up``.

What the checkpoint does not store is asked for: the token grid (16 x 16 for 256 px images with
LlamaGen's VQ-16 tokenizer, 24 x 24 for 384 px). The head count follows LlamaGen's model table
(64-dimensional heads for every class-conditional size) unless given. Grouped-query attention
(``n_kv_head`` < ``n_head``) and text-conditional (t2i) checkpoints are refused with the reason.

Loading never executes code: ``torch.load(..., weights_only=True)`` or a safetensors file.
Equivalence with LlamaGen's own model is checked by ``benchmarks/llamagen_parity.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from artok.generators.raster.model import RasterConfig, RasterGenerator
from artok.hub import read_weights
from artok.tokens import TokenSpec

#: LlamaGen's class-conditional sizes: width -> (layers, heads)
LLAMAGEN_SIZES = {768: (12, 12), 1024: (24, 16), 1280: (36, 20), 1536: (48, 24), 2560: (48, 40)}
_LAYER = re.compile(r"layers\.(\d+)\.(.+)")
_PER_LAYER = {
    "attention.wqkv.weight": "attention.qkv.weight",
    "attention.wo.weight": "attention.proj.weight",
    "feed_forward.w2.weight": "ffn.down.weight",
    "attention_norm.weight": "attention_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
}
_TOP = {
    "tok_embeddings.weight": "token_embedding.weight",
    "cls_embedding.embedding_table.weight": "class_embedding.weight",
    "norm.weight": "norm.weight",
    "output.weight": "head.proj.weight",
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a LlamaGen checkpoint file (``.pt`` / ``.pth`` with the weights under
    ``model``, ``module``, ``state_dict`` or ``ema``, or at the top level; or ``.safetensors``),
    without executing code."""
    state = read_weights(path, "checkpoint", nested=("model", "module", "state_dict", "ema"))
    if "tok_embeddings.weight" not in state:
        raise ValueError(f"{path} does not hold a LlamaGen GPT state dict (no 'tok_embeddings.weight')")
    return state


def convert_state_dict(state: dict[str, torch.Tensor], grid: tuple[int, int] = (16, 16),
                       num_heads: int | None = None) -> RasterGenerator:
    """A `RasterGenerator` with LlamaGen's weights ``state`` (names as in LlamaGen's ``gpt.py``)."""
    state = {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}
    if "cls_embedding.cap_proj.fc1.weight" in state:
        raise ValueError("this is a text-conditional (t2i) LlamaGen checkpoint; only class-conditional (c2i) "
                         "ones convert to artok's raster generator")
    vocab, dim = state["tok_embeddings.weight"].shape
    depth = 1 + max(int(m.group(1)) for m in map(_LAYER.match, state) if m)
    hidden = state["layers.0.feed_forward.w1.weight"].shape[0]
    num_classes = state["cls_embedding.embedding_table.weight"].shape[0] - 1
    if state["layers.0.attention.wqkv.weight"].shape[0] != 3 * dim:
        raise ValueError("grouped-query attention (n_kv_head < n_head) is not supported by artok's raster generator")
    if num_heads is None:
        if dim not in LLAMAGEN_SIZES:
            raise ValueError(f"width {dim} is not one of LlamaGen's class-conditional sizes {sorted(LLAMAGEN_SIZES)}; "
                             "pass num_heads")
        num_heads = LLAMAGEN_SIZES[dim][1]
    spec = TokenSpec("discrete", "grid", grid=tuple(grid), vocab_size=vocab)
    config = RasterConfig(token_spec=spec.to_dict(), num_classes=num_classes, dim=dim, depth=depth,
                          num_heads=num_heads, hidden_dim=hidden, class_dropout=0.0, dropout=0.0,
                          rope_prefix="zero", norm_eps=1e-5)
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _TOP:
            converted[_TOP[key]] = value
            continue
        match = _LAYER.match(key)
        if match is None:
            continue  # rotary tables, masks: derived, not weights
        layer, name = match.groups()
        if name in _PER_LAYER:
            converted[f"blocks.{layer}.{_PER_LAYER[name]}"] = value
        elif name == "feed_forward.w1.weight":  # gate and up stacked as artok's fused gate_up
            converted[f"blocks.{layer}.ffn.gate_up.weight"] = torch.cat(
                [value, state[f"layers.{layer}.feed_forward.w3.weight"]])
        elif name != "feed_forward.w3.weight":
            raise ValueError(f"unexpected LlamaGen weight {key!r}")
    generator = RasterGenerator(config)
    missing, unexpected = generator.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(f"LlamaGen weights do not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return generator.eval()


def load_llamagen(path: str | Path, grid: tuple[int, int] = (16, 16), num_heads: int | None = None) -> RasterGenerator:
    """`convert_state_dict` of the checkpoint file at ``path``."""
    return convert_state_dict(read_state_dict(path), grid=grid, num_heads=num_heads)


def convert_file(path: str | Path, grid: int = 16, num_heads: int | None = None):
    """The ``artok convert llamagen`` row (`artok.convert.table`): the generator, its sampling defaults
    and a summary line."""
    from artok.convert.table import Converted

    generator = load_llamagen(path, grid=(grid, grid), num_heads=num_heads)
    config = generator.config
    summary = (f"{config.depth} layers, width {config.dim}, {config.num_heads} heads, vocab {config.vocab_size}, "
               f"{config.num_classes} classes, {config.grid[0]}x{config.grid[1]} tokens")
    return Converted(generator, summary, extra={"sampling": {"kind": "raster", "cfg_scale": 4.0, "top_k": 2000}})
