"""What the taming/LDM autoencoder converters share: the configuration read from a state dict with
LDM's names (``encoder.down.{level}.block.{i}.conv1.weight`` ...) and a strict load into
`AutoencoderTokenizer` that names the first misfit in one line.

Read from the shapes: input channels and ``ch`` (``encoder.conv_in``), ``ch_mult`` (the first block's
output width per level), ``num_res_blocks``, the attention levels of each half (which levels have
``attn`` modules), the middle attention, ``z_channels`` and the quantizer width (``quant_conv`` /
``post_quant_conv``, or the encoder's output when there are none) and the quant-conv kernel. Not
stored, so given: the image size (for the token grid) and GroupNorm's group count (32 in every
published model).
"""

from __future__ import annotations

import re

import torch

from artok.convert.loading import load_exact
from artok.tokenizers.autoencoder import AutoencoderConfig, AutoencoderTokenizer

_LEVEL = re.compile(r"(encoder\.down|decoder\.up)\.(\d+)\.(block|attn)\.(\d+)\.")


def _levels(state: dict, prefix: str) -> dict[int, dict[str, int]]:
    """``{level: {"block": count, "attn": count}}`` of ``prefix`` (``encoder.down`` / ``decoder.up``)."""
    found: dict[int, dict[str, int]] = {}
    for key in state:
        match = _LEVEL.match(key)
        if match and match.group(1) == prefix:
            counts = found.setdefault(int(match.group(2)), {"block": 0, "attn": 0})
            counts[match.group(3)] = max(counts[match.group(3)], int(match.group(4)) + 1)
    return found


def _shape(state: dict, key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{source} lacks {key!r}: it is not a taming/LDM autoencoder checkpoint of the expected layout")
    return tuple(state[key].shape)


def infer_config(state: dict[str, torch.Tensor], source: str, image_size: int, quantizer: str,
                 quantizer_options: dict, **fields) -> AutoencoderConfig:
    """The `AutoencoderConfig` whose weights are ``state`` (LDM names). ``quantizer`` and its options
    are the caller's (VQ: the codebook, KL: nothing); ``fields`` override the rest (``latent_scale``)."""
    base, in_channels = _shape(state, "encoder.conv_in.weight", source)[:2]
    encoder, decoder = _levels(state, "encoder.down"), _levels(state, "decoder.up")
    if not encoder or sorted(encoder) != list(range(len(encoder))) or sorted(decoder) != sorted(encoder):
        raise ValueError(f"{source}: the encoder levels {sorted(encoder)} and decoder levels {sorted(decoder)} "
                         "are not the same consecutive levels")
    multipliers = []
    for level in sorted(encoder):
        width = _shape(state, f"encoder.down.{level}.block.0.conv1.weight", source)[0]
        decoder_width = _shape(state, f"decoder.up.{level}.block.0.conv1.weight", source)[0]
        if width % base or decoder_width != width:
            raise ValueError(f"{source}: level {level} is {width} channels wide in the encoder and {decoder_width} in "
                             f"the decoder, or not a multiple of ch={base}; artok's autoencoder mirrors one ch_mult")
        multipliers.append(width // base)
    blocks = {counts["block"] for counts in encoder.values()}
    num_res_blocks = min(blocks)
    if len(blocks) != 1 or {counts["block"] for counts in decoder.values()} != {num_res_blocks + 1}:
        raise ValueError(f"{source}: the ResNet blocks per level are not num_res_blocks per encoder level and one "
                         "more per decoder level, the layout artok's autoencoder has")
    has_post = "post_quant_conv.weight" in state
    z_channels = _shape(state, "decoder.conv_in.weight", source)[1]
    latent_dim = _shape(state, "post_quant_conv.weight", source)[1] if has_post else z_channels
    kernel = _shape(state, "post_quant_conv.weight", source)[-1] if has_post else 1
    config = dict(in_channels=in_channels, image_size=image_size, base_channels=base,
                  channel_multipliers=tuple(multipliers), num_res_blocks=num_res_blocks,
                  encoder_attention_levels=tuple(level for level, c in sorted(encoder.items()) if c["attn"]),
                  decoder_attention_levels=tuple(level for level, c in sorted(decoder.items()) if c["attn"]),
                  mid_attention="encoder.mid.attn_1.q.weight" in state, z_channels=z_channels, latent_dim=latent_dim,
                  quant_conv=has_post, quant_conv_kernel=kernel, quantizer=quantizer, quantizer_options=quantizer_options)
    return AutoencoderConfig(**{**config, **fields})


def load_tokenizer(config: AutoencoderConfig, state: dict[str, torch.Tensor], source: str,
                   derived: tuple[str, ...] = ("quantizer.usage",)) -> AutoencoderTokenizer:
    """`AutoencoderTokenizer(config)` holding ``state`` (artok names); every weight must be there with its
    shape, nothing else may be (``derived`` buffers keep their initial values when absent)."""
    return load_exact(AutoencoderTokenizer(config), state, source, derived, what="autoencoder")


def describe(config: AutoencoderConfig) -> str:
    """One line of what was found (for the ``artok convert`` summary)."""
    grid = config.grid
    attention = f"attention at levels {list(config.encoder_attention_levels)} / {list(config.decoder_attention_levels)}"
    return (f"ch {config.base_channels}, ch_mult {list(config.channel_multipliers)}, {config.num_res_blocks} res blocks, "
            f"{attention}, z {config.z_channels}, {grid[0]}x{grid[1]} tokens at {config.image_size} px")
