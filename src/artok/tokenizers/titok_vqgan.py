"""MaskGIT's VQGAN (Chang et al., "MaskGIT: Masked Generative Image Transformer",
https://arxiv.org/abs/2202.04200), as TiTok uses it (https://github.com/bytedance/1d-tokenizer,
``modeling/modules/maskgit_vqgan.py``, after open-muse's port of the JAX original): a convolutional
VQGAN without attention layers, 1024 codes of dimension 256 on a 16 x 16 grid at 256 px, images in
[0, 1].

Encoder: ``conv_in`` (3x3, no bias); per level ``num_res_blocks`` ResNet blocks (GroupNorm(32, eps
1e-6), swish, 3x3 conv without bias, twice) and a 2x2 average pooling between levels; ``num_res_blocks``
middle blocks; GroupNorm, swish, 1x1 ``conv_out`` to ``z_channels``. Decoder: 3x3 ``conv_in``,
``num_res_blocks`` middle blocks, per level (lowest resolution first) ``num_res_blocks`` ResNet blocks
and, above level 0, nearest 2x upsampling and a 3x3 ``upsample_conv``; GroupNorm, swish, 3x3 ``conv_out``.

One quirk is kept because the published weights were trained with it: when a ResNet block changes
width, its 1x1 ``nin_shortcut`` is applied to the block's *output* and replaces the skip
(``out = h + nin_shortcut(h)``), so the block input is not added back at all.

The module names are those of ``maskgit_vqgan.py`` (``decoder.up.{level}.block.{j}.conv1.weight``,
``decoder.mid.{j}``, ``encoder.down.{level}.block.{j}``), so its state dicts load by name.
`MaskGITVQGAN` is the whole VQGAN as an artok tokenizer (``maskgit-vqgan-imagenet-f16-256.bin``);
`artok.tokenizers.titok` uses its `MaskGITDecoder` as TiTok's pixel decoder.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artok.hub import register_model
from artok.quantizers import build_quantizer
from artok.tokenizers.base import Tokenizer, latent_token_spec
from artok.tokens import TokenSpec


@dataclass
class MaskGITVQGANConfig:
    """Configuration of `MaskGITVQGAN` (the defaults are the published ImageNet 256 px model).

    Args:
        image_size: square input side, divisible by ``2 ** (len(channel_multipliers) - 1)``.
        base_channels: width of level 0 (``hidden_channels``).
        channel_multipliers: width multiplier per level (``channel_mult``).
        num_res_blocks: ResNet blocks per level and in the middle, in both halves.
        z_channels: the code dimension.
        codebook_size: number of codes (nearest code by Euclidean distance, not normalised).
        commitment_weight: weight of the commitment term of the VQ loss.
        dropout: dropout inside the ResNet blocks during training.
    """

    image_size: int = 256
    base_channels: int = 128
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 1024
    commitment_weight: float = 0.25
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(self.channel_multipliers)
        check_pixel_codec(self.base_channels, self.channel_multipliers, self.num_res_blocks, self.z_channels)
        if self.image_size < 1 or self.image_size % self.downsample_factor:
            raise ValueError(f"image_size {self.image_size} is not divisible by the downsampling factor "
                             f"{self.downsample_factor}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2, got {self.codebook_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample_factor
        return (side, side)


def check_pixel_codec(base_channels: int, channel_multipliers: tuple[int, ...], num_res_blocks: int,
                      z_channels: int) -> None:
    """One-line errors for sizes the MaskGIT VQGAN cannot have (GroupNorm takes 32 groups)."""
    if not channel_multipliers or min(channel_multipliers) < 1:
        raise ValueError(f"channel_multipliers must be positive integers, got {channel_multipliers}")
    if min(base_channels, num_res_blocks, z_channels) < 1:
        raise ValueError("base_channels, num_res_blocks and z_channels must be positive")
    if any(base_channels * m % 32 for m in channel_multipliers):
        raise ValueError(f"every level width base_channels x channel_multipliers must be divisible by 32 "
                         f"(GroupNorm groups), got {base_channels} x {channel_multipliers}")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GroupNorm, swish, 3x3 conv (no bias), twice, plus the skip; see the module docstring for the
    width-changing block's ``nin_shortcut``."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.changes_width = in_channels != out_channels
        if self.changes_width:
            self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        # MaskGIT's (open-muse's) block: the shortcut reads the output, not the input.
        return h + (self.nin_shortcut(h) if self.changes_width else x)


class _Level(nn.Module):
    """One resolution level: ``block`` (ResNet blocks) and, for the decoder, an ``upsample_conv``."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, dropout: float, upsample: bool) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.block = nn.ModuleList(ResnetBlock(a, b, dropout) for a, b in itertools.pairwise(widths))
        self.upsample = upsample
        if upsample:
            self.upsample_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class MaskGITEncoder(nn.Module):
    """Images ``B x 3 x S x S`` in [0, 1] -> features ``B x z_channels x S/f x S/f``."""

    def __init__(self, base_channels: int, channel_multipliers: tuple[int, ...], num_res_blocks: int,
                 z_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        self.conv_in = nn.Conv2d(3, base_channels, 3, padding=1, bias=False)
        inputs = [base_channels] + widths[:-1]
        self.down = nn.ModuleList(_Level(a, b, num_res_blocks, dropout, upsample=False) for a, b in zip(inputs, widths))
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1], dropout) for _ in range(num_res_blocks))
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for index, level in enumerate(self.down):
            x = level(x)
            if index < len(self.down) - 1:
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class MaskGITDecoder(nn.Module):
    """Features ``B x z_channels x h x w`` -> images ``B x 3 x fh x fw`` (TiTok's pixel range [0, 1]).
    ``up[level]`` is indexed by resolution level (0 = full resolution) and run from the last level down."""

    def __init__(self, base_channels: int, channel_multipliers: tuple[int, ...], num_res_blocks: int,
                 z_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        self.conv_in = nn.Conv2d(z_channels, widths[-1], 3, padding=1)
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1], dropout) for _ in range(num_res_blocks))
        inputs = widths[1:] + widths[-1:]
        self.up = nn.ModuleList(_Level(inputs[level], widths[level], num_res_blocks, dropout, upsample=level != 0)
                                for level in range(len(widths)))
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.mid:
            x = block(x)
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


@register_model("maskgit_vqgan")
class MaskGITVQGAN(Tokenizer):
    """The whole MaskGIT VQGAN as an artok tokenizer: images ``B x 3 x S x S`` in [-1, 1] (mapped to
    MaskGIT's [0, 1] inside) <-> ids on the ``S/16 x S/16`` grid. State: ``encoder``, ``quantizer``
    (artok ``vq``: Euclidean nearest code, no projection), ``decoder``."""

    config_class = MaskGITVQGANConfig

    def __init__(self, config: MaskGITVQGANConfig) -> None:
        super().__init__()
        self.config = c = config
        sizes = (c.base_channels, c.channel_multipliers, c.num_res_blocks, c.z_channels, c.dropout)
        self.encoder = MaskGITEncoder(*sizes)
        self.quantizer = build_quantizer("vq", dim=c.z_channels, codebook_size=c.codebook_size, codebook_dim=None,
                                         l2_normalize=False, commitment_weight=c.commitment_weight, codebook_weight=1.0)
        self.decoder = MaskGITDecoder(*sizes)

    @property
    def spec(self) -> TokenSpec:
        return latent_token_spec(self.quantizer, self.config.grid)

    def latent_shape(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder((images + 1) / 2)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents) * 2 - 1
