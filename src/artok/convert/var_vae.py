"""Load VAR's multi-scale VQVAE (https://github.com/FoundationVision/VAR, ``vae_ch160v4096z32.pth``) as
an artok `AutoencoderTokenizer` with the ``msvq`` quantizer.

VAR's VQVAE is the taming/LDM convolutional autoencoder (``models/basic_vae.py``: ``ch`` 160,
``ch_mult`` (1, 1, 2, 2, 4), two ResNet blocks per level, self-attention after every block of the
16x16 level and in the middle, z 32) with 3x3 ``quant_conv`` / ``post_quant_conv`` around VAR's
multi-scale residual quantizer (``models/quant.py``: 4096 codes of dimension 32, scales
1, 2, 3, 4, 5, 6, 8, 10, 13, 16, residual phi convolutions blended 0.5 / 0.5, four partially
shared). Both are artok pieces: `artok.tokenizers.autoencoder` and
`artok.quantizers.MultiScaleVectorQuantizer` (whose phi bank, its tick rule and VAR's area / bicubic
resampling reproduce ``VectorQuantizer2``). Two renamings: VAR's attention keeps query, key and value
in one 1x1 convolution (``attn.qkv``), split into artok's ``q``, ``k``, ``v``; the phi convolutions
(``quantize.quant_resi.qresi_ls.{j}`` partially shared, ``quant_resi.qresi`` shared,
``quant_resi.{j}`` one per scale) become ``quantizer.phi.{j}.conv``. VAR's hit counts
(``ema_vocab_hit_SV``) become the quantizer's usage buffer.

Read from the shapes: everything of the autoencoder (`artok.convert.ldm_autoencoder.infer_config`),
the codebook, the phi count. Not stored, so given: the scales (default VAR's for 256 px; their number is checked against
the hit-count buffer) and the image size (default: the last scale times the downsampling factor). VAR's published
``quant_resi`` ratio is 0.5 (not stored either). Loading never executes code.
Equivalence with VAR's own code is checked by ``benchmarks/parity_var.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from artok.convert.ldm_autoencoder import describe, infer_config, load_tokenizer
from artok.hub import read_weights
from artok.tokenizers.autoencoder import AutoencoderTokenizer

VAR_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
#: VAR's ``quant_resi``: phi(h) = 0.5 h + 0.5 conv(h)
VAR_PHI_RATIO = 0.5
_PHI = re.compile(r"quantize\.quant_resi\.(?:qresi_ls\.(\d+)\.|(\d+)\.|qresi\.)(weight|bias)")
_LEVEL = re.compile(r"encoder\.down\.(\d+)\.")
_ATTENTION = re.compile(r"((?:encoder|decoder)\.(?:down|up|mid)\.[\w.]*attn[\w.]*)\.qkv\.(weight|bias)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a VAR VQVAE file, without executing code."""
    state = read_weights(path, "VAR VAE checkpoint", nested=("model", "vae", "state_dict"))
    state = {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}
    if "class_emb.weight" in state:
        raise ValueError(f"{path} is a VAR transformer, not its VQVAE; convert it with artok convert var")
    if "quantize.embedding.weight" not in state or "encoder.conv_in.weight" not in state:
        raise ValueError(f"{path} does not hold a VAR VQVAE state dict (no 'quantize.embedding.weight' / "
                         "'encoder.conv_in.weight')")
    return state


def _rename(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """One VAR VAE weight under its artok name(s)."""
    attention = _ATTENTION.fullmatch(key)
    if attention is not None:
        prefix, kind = attention.groups()
        return {f"{prefix}.{name}.{kind}": part for name, part in zip("qkv", value.chunk(3))}
    phi = _PHI.fullmatch(key)
    if phi is not None:
        index = phi.group(1) or phi.group(2) or "0"
        return {f"quantizer.phi.{index}.conv.{phi.group(3)}": value}
    if key == "quantize.embedding.weight":
        return {"quantizer.codebook": value}
    if key == "quantize.ema_vocab_hit_SV":
        return {"quantizer.usage": value}
    if key.startswith("quantize."):
        raise ValueError(f"unexpected VAR quantizer weight {key!r}")
    return {key: value}


def convert_state_dict(state: dict[str, torch.Tensor], image_size: int | None = None,
                       patch_nums: tuple[int, ...] | None = None, source: str = "VAR VAE") -> AutoencoderTokenizer:
    """An msvq `AutoencoderTokenizer` with VAR's VQVAE weights ``state`` (names as in VAR's ``vqvae.py``).
    ``image_size`` None: the last scale times the downsampling factor (256 for VAR's default scales)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        renamed.update(_rename(key, value))
    patch_nums = tuple(patch_nums) if patch_nums is not None else _default_patch_nums(image_size or 256)
    if image_size is None:
        levels = {int(m.group(1)) for m in map(_LEVEL.match, state) if m}
        image_size = patch_nums[-1] * 2 ** max(len(levels) - 1, 0)
    if "quantize.ema_vocab_hit_SV" in state and state["quantize.ema_vocab_hit_SV"].shape[0] != len(patch_nums):
        raise ValueError(f"{source} was trained with {state['quantize.ema_vocab_hit_SV'].shape[0]} scales, not the "
                         f"{len(patch_nums)} of {list(patch_nums)}; pass its --patch-nums")
    codebook_size, dim = state["quantize.embedding.weight"].shape
    phi = sorted({int(m.group(1) or m.group(2) or 0) for m in map(_PHI.fullmatch, state) if m})
    options = {"codebook_size": codebook_size, "scales": patch_nums, "l2_normalize": False, "commitment_weight": 0.25,
               "codebook_weight": 1.0, "phi_ratio": VAR_PHI_RATIO if phi else 0.0, "num_phi": len(phi) or 1,
               "phi_kernel_size": _phi_kernel(state)}
    config = infer_config(renamed, source, image_size, "msvq", options)
    if config.latent_dim != dim or config.grid != (patch_nums[-1], patch_nums[-1]):
        raise ValueError(f"{source}: the codes are {dim}-dimensional on a {config.grid[0]}x{config.grid[1]} latent at "
                         f"{image_size} px, which does not fit the {config.latent_dim} channels / last scale "
                         f"{patch_nums[-1]}; pass the --image-size and --patch-nums it was trained with")
    return load_tokenizer(config, renamed, source)


def _default_patch_nums(image_size: int) -> tuple[int, ...]:
    if image_size == 256:
        return VAR_PATCH_NUMS
    raise ValueError(f"VAR's scales {list(VAR_PATCH_NUMS)} are for 256 px images; pass --patch-nums for {image_size} px")


def _phi_kernel(state: dict[str, torch.Tensor]) -> int:
    kernels = {value.shape[-1] for key, value in state.items() if key.endswith("weight") and _PHI.fullmatch(key)}
    return kernels.pop() if len(kernels) == 1 else 3


def load_var_vae(path: str | Path, image_size: int | None = None, patch_nums: tuple[int, ...] | None = None) -> AutoencoderTokenizer:
    """`convert_state_dict` of the VAR VQVAE file at ``path``."""
    return convert_state_dict(read_state_dict(path), image_size, patch_nums, source=str(path))


def convert_file(path: str | Path, image_size: int | None = None, patch_nums: tuple[int, ...] | None = None):
    """The ``artok convert var-vae`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    tokenizer = load_var_vae(path, image_size, patch_nums)
    quantizer = tokenizer.quantizer
    summary = (f"{describe(tokenizer.config)}; msvq {quantizer.codebook_size} codes of dim {quantizer.dim}, scales "
               f"{[h for h, _ in quantizer.scales]}, {len(quantizer.phi)} phi convolutions")
    return Converted(tokenizer, summary)
