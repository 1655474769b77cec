"""Load TiTok's tokenizers (https://github.com/bytedance/1d-tokenizer: ``tokenizer_titok_l32.bin`` /
``_b64`` / ``_s128`` or the Hugging Face ``model.safetensors`` that ``PyTorchModelHubMixin`` writes) as
artok `TiTokTokenizer`s, and MaskGIT's VQGAN (``maskgit-vqgan-imagenet-f16-256.bin``) as a
`MaskGITVQGAN`.

A published (stage-2) TiTok file holds the whole model, its fine-tuned MaskGIT-VQGAN decoder and
codebook included (``pixel_decoder.*``, ``pixel_quantize.embedding.weight``). A stage-1 checkpoint
holds only the ViT halves and the VQ; TiTok then takes the pixel decoder from the MaskGIT-VQGAN file
(``utils/train_utils.py``: its keys prefixed ``pixel_``, the encoder dropped), which is what
``--pixel-decoder FILE`` does here.

Names: TiTok's, but for ``quantize.embedding.weight`` -> ``quantizer.codebook`` and
``pixel_quantize.embedding.weight`` -> ``pixel_codebook``. Read from the shapes: patch size, widths,
depths, latent count, token size, codebook sizes, image size (``sqrt(N) x patch``), the pixel decoder's
channels, levels and blocks. Not stored, so given: the heads (TiTok's table is one head per 64
channels, small / base / large = 512 / 768 / 1024 wide with 8 / 12 / 16 heads; ``--num-heads``
overrides both halves) and ``use_l2_norm`` (True in every published VQ TiTok of this layout).
Refused with one line: the "non-legacy" TiTok variants (a decoder predicting pixels: the VAE and
vq8k configs), files of other models, truncated files. Loading never executes code; equivalence with
TiTok's own code is checked by ``benchmarks/parity_titok.py``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from artok.convert.loading import load_exact
from artok.hub import read_weights
from artok.tokenizers.titok import TiTokConfig, TiTokTokenizer
from artok.tokenizers.titok_vqgan import MaskGITVQGAN, MaskGITVQGANConfig

#: TiTok's heads by width (``modeling/modules/blocks.py``: small 512 -> 8, base 768 -> 12, large 1024 -> 16)
HEAD_WIDTH = 64
_BLOCK = re.compile(r"(encoder|decoder)\.transformer\.(\d+)\.ln_1\.weight")
_FOREIGN = (("class_emb.weight", "a VAR transformer (artok convert var)"),
            ("tok_embeddings.weight", "a LlamaGen GPT (artok convert llamagen)"),
            ("encoder.conv_blocks.0.res.0.conv1.weight", "a LlamaGen VQ tokenizer (artok convert llamagen-vq)"),
            ("quantize.quant_resi.qresi_ls.0.weight", "a VAR VQVAE (artok convert var-vae)"),
            ("z_proj.weight", "a MAR generator (artok convert mar)"),
            ("decoder.up.0.block.0.conv1.weight", "a MaskGIT VQGAN (artok convert maskgit-vqgan, or --pixel-decoder)"))
_RENAMES = {"quantize.embedding.weight": "quantizer.codebook", "pixel_quantize.embedding.weight": "pixel_codebook"}


def _clean(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a TiTok tokenizer file (safetensors or weights-only ``.bin``), without executing code."""
    state = _clean(read_weights(path, "TiTok checkpoint", nested=("model", "state_dict")))
    if "latent_tokens" not in state or "encoder.patch_embed.weight" not in state:
        found = next((what for key, what in _FOREIGN if key in state), None)
        raise ValueError(f"{path} does not hold a TiTok tokenizer state dict (no 'latent_tokens' / "
                         f"'encoder.patch_embed.weight')" + (f"; it is {found}" if found else ""))
    if "decoder.conv_out.weight" in state:
        raise ValueError(f"{path} is a non-legacy TiTok (its decoder predicts pixels: the VAE / vq8k configs), "
                         "which artok does not convert; only the published VQ TiTok-L-32 / B-64 / S-128 layout")
    if "quantize.embedding.weight" not in state:
        raise ValueError(f"{path} is a TiTok without a VQ codebook (quantize_mode 'vae'), which artok does not convert")
    return state


def read_pixel_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of MaskGIT's VQGAN file (``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``)."""
    state = _clean(read_weights(path, "MaskGIT VQGAN checkpoint", nested=("model", "state_dict")))
    if "decoder.conv_in.weight" not in state or "quantize.embedding.weight" not in state or "latent_tokens" in state:
        found = next((what for key, what in _FOREIGN[:-1] if key in state), None)
        found = found or ("a TiTok tokenizer (artok convert titok)" if "latent_tokens" in state else None)
        raise ValueError(f"{path} does not hold a MaskGIT VQGAN state dict (no 'decoder.conv_in.weight' / "
                         "'quantize.embedding.weight')" + (f"; it is {found}" if found else ""))
    return state


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{source} has no {key!r}: it is not a complete checkpoint of this model")
    return tuple(state[key].shape)


def pixel_codec_sizes(state: dict[str, torch.Tensor], prefix: str, source: str) -> dict:
    """The MaskGIT VQGAN decoder's sizes from the weights under ``prefix`` (``decoder.`` / ``pixel_decoder.``)."""
    levels = sorted({int(m.group(1)) for m in (re.match(re.escape(prefix) + r"up\.(\d+)\.", key) for key in state) if m})
    if not levels or levels != list(range(len(levels))):
        raise ValueError(f"{source}: no {prefix}up.0 .. up.N levels, so no MaskGIT VQGAN decoder")
    base = _shape(state, f"{prefix}conv_out.weight", source)[1]
    multipliers = tuple(_shape(state, f"{prefix}up.{level}.block.0.conv2.weight", source)[0] // base for level in levels)
    blocks = len({m.group(1) for m in (re.match(re.escape(prefix) + r"up\.0\.block\.(\d+)\.", k) for k in state) if m})
    z_channels = _shape(state, f"{prefix}conv_in.weight", source)[1]
    return {"base_channels": base, "channel_multipliers": multipliers, "num_res_blocks": blocks, "z_channels": z_channels}


def _depth(state: dict[str, torch.Tensor], half: str) -> int:
    indices = sorted(int(m.group(2)) for m in map(_BLOCK.fullmatch, state) if m and m.group(1) == half)
    return len(indices) if indices == list(range(len(indices))) else -1


def _heads(width: int, num_heads: int | None, source: str) -> int:
    if num_heads is not None:
        return num_heads
    if width % HEAD_WIDTH:
        raise ValueError(f"{source}: width {width} is not a multiple of 64, TiTok's channels per head; pass --num-heads")
    return width // HEAD_WIDTH


def infer_config(state: dict[str, torch.Tensor], source: str, num_heads: int | None = None) -> TiTokConfig:
    """The `TiTokConfig` the shapes of ``state`` (TiTok's names, pixel decoder under ``pixel_``) describe."""
    encoder_width, _, patch, _ = _shape(state, "encoder.patch_embed.weight", source)
    positions = _shape(state, "encoder.positional_embedding", source)[0] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise ValueError(f"{source}: {positions} patch positions are not a square grid")
    num_latent_tokens = _shape(state, "latent_tokens", source)[0]
    codebook_size, token_size = _shape(state, "quantize.embedding.weight", source)
    decoder_width = _shape(state, "decoder.decoder_embed.weight", source)[0]
    depths = {half: _depth(state, half) for half in ("encoder", "decoder")}
    if min(depths.values()) < 1:
        raise ValueError(f"{source}: the transformer blocks are not numbered 0..N-1 in both halves: {depths}")
    pixel = pixel_codec_sizes(state, "pixel_decoder.", source)
    predicted = _shape(state, "decoder.ffn.2.weight", source)[0]
    pixel_codes = _shape(state, "pixel_quantize.embedding.weight", source)
    if pixel_codes != (predicted, pixel["z_channels"]):
        raise ValueError(f"{source}: the decoder predicts {predicted} MaskGIT-VQGAN codes for a {pixel['z_channels']}-channel "
                         f"pixel decoder, but the pixel codebook is {list(pixel_codes)}")
    values = {"image_size": grid * patch, "patch_size": patch, "encoder_width": encoder_width, "encoder_depth": depths["encoder"],
                  "encoder_heads": _heads(encoder_width, num_heads, source), "decoder_width": decoder_width,
                  "decoder_depth": depths["decoder"], "decoder_heads": _heads(decoder_width, num_heads, source),
                  "num_latent_tokens": num_latent_tokens, "token_size": token_size, "codebook_size": codebook_size,
                  "pixel_codebook_size": _shape(state, "decoder.ffn.2.weight", source)[0],
                  "pixel_base_channels": pixel["base_channels"], "pixel_channel_multipliers": pixel["channel_multipliers"],
                  "pixel_res_blocks": pixel["num_res_blocks"], "pixel_z_channels": pixel["z_channels"]}
    try:
        return TiTokConfig(**values)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def with_pixel_decoder(state: dict[str, torch.Tensor], pixel_state: dict[str, torch.Tensor] | None,
                       source: str) -> dict[str, torch.Tensor]:
    """``state`` completed with the MaskGIT VQGAN's decoder and codebook as TiTok's training script adds
    them (``pixel_`` + key, the VQGAN's encoder dropped); a file that has its own is refused a second one."""
    has_own = any(key.startswith("pixel_decoder.") for key in state)
    if pixel_state is None:
        if not has_own:
            raise ValueError(f"{source} is a stage-1 TiTok checkpoint without its pixel decoder; pass "
                             "--pixel-decoder maskgit-vqgan-imagenet-f16-256.bin")
        return state
    if has_own:
        raise ValueError(f"{source} already holds its (fine-tuned) pixel decoder; drop --pixel-decoder")
    return {**state, **{"pixel_" + key: value for key, value in pixel_state.items() if not key.startswith("encoder.")}}


def convert_state_dict(state: dict[str, torch.Tensor], num_heads: int | None = None, source: str = "TiTok",
                       pixel_state: dict[str, torch.Tensor] | None = None) -> TiTokTokenizer:
    """A `TiTokTokenizer` with TiTok's weights ``state`` (names as in TiTok's ``titok.py``)."""
    state = with_pixel_decoder(_clean(state), pixel_state, source)
    config = infer_config(state, source, num_heads)
    renamed = {_RENAMES.get(key, key): value for key, value in state.items()}
    return load_exact(TiTokTokenizer(config), renamed, source)



def convert_vqgan_state_dict(state: dict[str, torch.Tensor], image_size: int = 256,
                             source: str = "MaskGIT VQGAN") -> MaskGITVQGAN:
    """A `MaskGITVQGAN` with the weights of ``maskgit-vqgan-imagenet-f16-256.bin`` (open-muse's names)."""
    state = _clean(state)
    sizes = pixel_codec_sizes(state, "decoder.", source)
    codebook_size, dim = _shape(state, "quantize.embedding.weight", source)
    if dim != sizes["z_channels"]:
        raise ValueError(f"{source}: the codes are {dim}-dimensional but the decoder reads {sizes['z_channels']} channels")
    try:
        config = MaskGITVQGANConfig(image_size=image_size, codebook_size=codebook_size, **sizes)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    renamed = {("quantizer.codebook" if key == "quantize.embedding.weight" else key): value for key, value in state.items()}
    return load_exact(MaskGITVQGAN(config), renamed, source)


def convert_file(path: str | Path, num_heads: int | None = None, pixel_decoder: str | Path | None = None):
    """The ``artok convert titok`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    pixel_state = read_pixel_state_dict(pixel_decoder) if pixel_decoder is not None else None
    tokenizer = convert_state_dict(read_state_dict(path), num_heads, str(path), pixel_state)
    c = tokenizer.config
    summary = (f"TiTok encoder {c.encoder_depth} x {c.encoder_width} ({c.encoder_heads} heads), decoder {c.decoder_depth} "
               f"x {c.decoder_width} ({c.decoder_heads} heads), patch {c.patch_size} at {c.image_size} px, "
               f"{c.num_latent_tokens} tokens, VQ {c.codebook_size} x {c.token_size} (l2-normalised), MaskGIT-VQGAN "
               f"decoder {c.pixel_codebook_size} x {c.pixel_z_channels}, ch {c.pixel_base_channels} x "
               f"{list(c.pixel_channel_multipliers)}" + (f" (from {pixel_decoder})" if pixel_decoder else ""))
    return Converted(tokenizer, summary, extra={"image_size": [c.image_size, c.image_size]})


def convert_vqgan_file(path: str | Path, image_size: int = 256):
    """The ``artok convert maskgit-vqgan`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    tokenizer = convert_vqgan_state_dict(read_pixel_state_dict(path), image_size, str(path))
    c = tokenizer.config
    summary = (f"MaskGIT VQGAN ch {c.base_channels} x {list(c.channel_multipliers)}, {c.num_res_blocks} res blocks, "
               f"VQ {c.codebook_size} x {c.z_channels}, {c.grid[0]}x{c.grid[1]} tokens at {c.image_size} px")
    return Converted(tokenizer, summary, extra={"image_size": [image_size, image_size]})
