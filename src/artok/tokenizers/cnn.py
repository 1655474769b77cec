"""Convolutional image tokenizer in the VQGAN / LlamaGen style
(Taming Transformers, https://arxiv.org/abs/2012.09841; LlamaGen, https://arxiv.org/abs/2406.06525):
a ResNet encoder that downsamples by ``2 ** (len(channel_multipliers) - 1)``, any quantizer from
`artok.quantizers`, and a mirrored decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from artok.hub import register_model
from artok.quantizers import build_quantizer
from artok.tokenizers.base import Tokenizer, latent_token_spec
from artok.tokens import TokenSpec


@dataclass
class CNNTokenizerConfig:
    """Configuration of `CNNTokenizer`.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        image_size: square input size; must be divisible by the downsampling factor.
        base_channels: width of the first level.
        channel_multipliers: width multiplier per level; one 2x downsampling between levels.
        num_res_blocks: residual blocks per level.
        latent_dim: channel count of the features handed to the quantizer.
        quantizer: name in `artok.quantizers.QUANTIZERS` (``"vq"``, ``"fsq"``, ``"kl"``, ...).
        quantizer_options: keyword arguments of that quantizer's config (``dim`` is filled in).
    """

    in_channels: int = 1
    image_size: int = 16
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_dim: int = 32
    quantizer: str = "vq"
    quantizer_options: dict = field(default_factory=lambda: {"codebook_size": 256, "codebook_dim": 8})

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(self.channel_multipliers)
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if not self.channel_multipliers:
            raise ValueError("channel_multipliers must not be empty")
        if self.image_size % self.downsample_factor:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by the downsampling factor {self.downsample_factor}"
            )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample_factor
        return (side, side)


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            _group_norm(out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, config: CNNTokenizerConfig, out_channels: int) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, widths[0], 3, padding=1)]
        current = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(current, width))
                current = width
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
        layers += [ResBlock(current, current), _group_norm(current), nn.SiLU(), nn.Conv2d(current, out_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    def __init__(self, config: CNNTokenizerConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in reversed(config.channel_multipliers)]
        current = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(config.latent_dim, current, 3, padding=1), ResBlock(current, current)]
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(current, width))
                current = width
            if level < len(widths) - 1:
                layers.append(Upsample(current))
        layers += [_group_norm(current), nn.SiLU(), nn.Conv2d(current, config.in_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


@register_model("cnn_tokenizer")
class CNNTokenizer(Tokenizer):
    """Conv encoder -> quantizer -> conv decoder. Images ``B x C x S x S`` in [-1, 1]."""

    config_class = CNNTokenizerConfig

    def __init__(self, config: CNNTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.quantizer = build_quantizer(config.quantizer, dim=config.latent_dim, **config.quantizer_options)
        # Some quantizers (diagonal Gaussian) need more encoder channels than they output.
        encoder_channels = getattr(self.quantizer, "input_dim", config.latent_dim)
        self.encoder = Encoder(config, encoder_channels)
        self.decoder = Decoder(config)

    def latent_shape(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def spec(self) -> TokenSpec:
        return latent_token_spec(self.quantizer, self.config.grid)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)
