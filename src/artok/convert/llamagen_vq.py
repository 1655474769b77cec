"""Load LlamaGen's VQ tokenizers (https://github.com/FoundationVision/LlamaGen,
``tokenizer/tokenizer_image/vq_model.py``; ``vq_ds16_c2i.pt`` = ``VQ_16``, ``vq_ds8_c2i.pt`` = ``VQ_8``,
weights under ``model``) as artok `AutoencoderTokenizer`s with the ``vq`` quantizer.

LlamaGen's VQ model is the taming autoencoder with its own module names; they are renamed to LDM's,
which artok's autoencoder uses: ``conv_blocks.{i}.res.{j}`` -> ``down.{i}.block.{j}`` (encoder) and
``up.{L-1-i}.block.{j}`` (decoder: LlamaGen lists the decoder's levels lowest resolution first),
``mid.0/1/2`` -> ``mid.block_1/attn_1/block_2``, ``quantize.embedding.weight`` -> ``quantizer.codebook``.
``quantize.codebook_used`` (a training-usage window) is dropped. LlamaGen's quantizer l2-normalises
features and codes before the nearest-code search, which is artok's ``vq`` with ``l2_normalize=True``
and no projection (``codebook_dim=None``); ``quant_conv`` maps ``z_channels`` to the code dimension.

Loading never executes code: ``torch.load(..., weights_only=True)`` or a safetensors file. Parity with
LlamaGen's own model is checked by ``benchmarks/parity_llamagen_vq.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from artok.convert.ldm_autoencoder import describe, infer_config, load_tokenizer
from artok.hub import read_weights
from artok.tokenizers.autoencoder import AutoencoderTokenizer

_BLOCKS = re.compile(r"(encoder|decoder)\.conv_blocks\.(\d+)\.(res|attn|downsample|upsample)\.(.+)")
_MIDDLE = {"0": "block_1", "1": "attn_1", "2": "block_2"}
_MID = re.compile(r"(encoder|decoder)\.mid\.(\d)\.(.+)")
_DROPPED = ("quantize.codebook_used",)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a LlamaGen VQ checkpoint (``model``, ``ema`` or ``state_dict`` key, or top level)."""
    return read_weights(path, "checkpoint", nested=("model", "ema", "state_dict"))


def ldm_names(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """LlamaGen's VQ weights under LDM's (artok's autoencoder's) names."""
    state = {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}
    if "quantize.embedding.weight" not in state:
        hint = " (it is a KL autoencoder: convert it with mar-vae)" if "encoder.down.0.block.0.conv1.weight" in state else ""
        raise ValueError(f"{source} does not hold a LlamaGen VQ state dict (no 'quantize.embedding.weight'){hint}")
    if not any(key.startswith("encoder.conv_blocks.") for key in state):
        raise ValueError(f"{source} is not in LlamaGen's layout (no encoder.conv_blocks.*); a taming VQGAN (encoder.down.*) "
                         "searches unnormalised codes, which llamagen-vq does not convert")
    decoder_levels = {int(m.group(2)) for m in map(_BLOCKS.match, state) if m and m.group(1) == "decoder"}
    last = max(decoder_levels, default=0)
    renamed = {}
    for key, value in state.items():
        if key in _DROPPED:
            continue
        renamed[_rename(key, last)] = value
    return renamed


def _rename(key: str, last_decoder_level: int) -> str:
    if key == "quantize.embedding.weight":
        return "quantizer.codebook"
    match = _BLOCKS.match(key)
    if match:
        half, index, kind, rest = match.groups()
        level = int(index) if half == "encoder" else last_decoder_level - int(index)
        kind = "block" if kind == "res" else kind
        return f"{half}.{'down' if half == 'encoder' else 'up'}.{level}.{kind}.{rest}"
    match = _MID.match(key)
    if match and match.group(2) in _MIDDLE:
        return f"{match.group(1)}.mid.{_MIDDLE[match.group(2)]}.{match.group(3)}"
    return key  # conv_in, norm_out, conv_out, quant_conv, post_quant_conv: the same names; others refused later


def convert_state_dict(state: dict[str, torch.Tensor], image_size: int = 256,
                       source: str = "the state dict") -> AutoencoderTokenizer:
    """An `AutoencoderTokenizer` with LlamaGen's VQ weights ``state`` (names as in LlamaGen's ``vq_model.py``)."""
    state = ldm_names(state, source)
    codebook_size, codebook_dim = state["quantizer.codebook"].shape
    options = {"codebook_size": codebook_size, "codebook_dim": None, "l2_normalize": True}
    config = infer_config(state, source, image_size, "vq", options)
    if config.latent_dim != codebook_dim:
        raise ValueError(f"{source}: post_quant_conv reads {config.latent_dim} channels but the codes have {codebook_dim}")
    return load_tokenizer(config, state, source)


def convert_file(path: str | Path, image_size: int = 256):
    """The ``artok convert llamagen-vq`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    tokenizer = convert_state_dict(read_state_dict(path), image_size, source=str(path))
    quantizer = tokenizer.quantizer
    return Converted(tokenizer, f"VQ {quantizer.codebook_size} codes of dimension {quantizer.lookup_dim} (l2-normalised), "
                     f"{describe(tokenizer.config)}", extra={"image_size": [image_size, image_size]})
