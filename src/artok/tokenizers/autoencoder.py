"""The taming / latent-diffusion convolutional autoencoder (Esser et al., Taming Transformers,
https://arxiv.org/abs/2012.09841; Rombach et al., latent diffusion, https://arxiv.org/abs/2112.10752)
with any artok quantizer between its halves.

Encoder: ``conv_in``; per level ``num_res_blocks`` ResNet blocks (GroupNorm, swish, 3x3 conv, twice),
each followed by self-attention at the attention levels, then a stride-2 conv with the asymmetric
(0, 1, 0, 1) zero padding between levels; a middle block (ResNet, attention, ResNet); GroupNorm,
swish, ``conv_out`` to ``z_channels`` (twice that for a diagonal Gaussian, LDM's ``double_z``); an
optional ``quant_conv`` to the quantizer's width. The decoder mirrors it with ``num_res_blocks + 1``
blocks per level and nearest-neighbour 2x upsampling followed by a 3x3 conv.

The module names are those of the published checkpoints (``encoder.down.0.block.0.norm1.weight``,
``encoder.mid.attn_1.q.weight``, ``decoder.up.4.block.2.conv2.weight``, ``quant_conv``,
``post_quant_conv``; ``decoder.up[level]`` is indexed by resolution level, highest first), so LDM
files load by name and other layouts (LlamaGen's) by a renaming in `artok.convert`.

Two published configurations (`llamagen_vq16_config`, `mar_kl16_config`): LlamaGen's VQ-16
(https://arxiv.org/abs/2406.06525: 16384 l2-normalised codes of dimension 8) and MAR's KL-16
(https://arxiv.org/abs/2406.11838: 16 Gaussian channels, tokens scaled by 0.2325).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from artok.hub import register_model
from artok.quantizers import build_quantizer
from artok.tokenizers.base import Tokenizer, latent_token_spec
from artok.tokenizers.cnn import (
    Upsample,  # the same nearest x2 + 3x3 conv (LDM names: upsample.conv)
)
from artok.tokens import Tokens, TokenSpec


@dataclass
class AutoencoderConfig:
    """Configuration of `AutoencoderTokenizer` (the defaults are LlamaGen's VQ-16 at 256 px).

    Args:
        in_channels: image channels.
        image_size: square input side; divisible by ``2 ** (len(channel_multipliers) - 1)``.
        base_channels: width of the first level (LDM's ``ch``).
        channel_multipliers: width multiplier per level (``ch_mult``); one 2x resampling between levels.
        num_res_blocks: ResNet blocks per encoder level (the decoder has one more).
        encoder_attention_levels: levels whose ResNet blocks are each followed by self-attention
            (0 = full resolution; LDM gives resolutions, ``attn_resolutions=(16,)`` at 256 px is level 4).
        decoder_attention_levels: the same for the decoder (MAR's KL-16 decoder has none).
        mid_attention: self-attention between the two middle ResNet blocks.
        z_channels: channels of the encoder output and the decoder input.
        latent_dim: channels the quantizer sees (its ``dim``).
        quant_conv: convolutions ``z_channels -> quantizer input`` and ``latent_dim -> z_channels``
            around the quantizer; without them ``z_channels`` must equal ``latent_dim``.
        quant_conv_kernel: their kernel size (1 in taming/LDM/LlamaGen).
        norm_groups: GroupNorm groups (32 in every published model).
        dropout: dropout inside the ResNet blocks during training.
        latent_scale: continuous tokens are the latents times this (LDM's ``scale_factor``, MAR's 0.2325);
            training and ``forward`` are unaffected. 1 for discrete quantizers.
        quantizer: name in `artok.quantizers.QUANTIZERS`.
        quantizer_options: keyword arguments of that quantizer's config (``dim`` is filled in).
    """

    in_channels: int = 3
    image_size: int = 256
    base_channels: int = 128
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    encoder_attention_levels: tuple[int, ...] = (4,)
    decoder_attention_levels: tuple[int, ...] = (4,)
    mid_attention: bool = True
    z_channels: int = 256
    latent_dim: int = 8
    quant_conv: bool = True
    quant_conv_kernel: int = 1
    norm_groups: int = 32
    dropout: float = 0.0
    latent_scale: float = 1.0
    quantizer: str = "vq"
    quantizer_options: dict = field(
        default_factory=lambda: {"codebook_size": 16384, "codebook_dim": None, "l2_normalize": True})

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(self.channel_multipliers)
        self.encoder_attention_levels = tuple(self.encoder_attention_levels)
        self.decoder_attention_levels = tuple(self.decoder_attention_levels)
        if not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise ValueError(f"channel_multipliers must be positive integers, got {self.channel_multipliers}")
        for name in ("in_channels", "base_channels", "num_res_blocks", "z_channels", "latent_dim", "norm_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"AutoencoderConfig.{name} must be positive, got {getattr(self, name)}")
        levels = len(self.channel_multipliers)
        for name in ("encoder_attention_levels", "decoder_attention_levels"):
            if any(not 0 <= level < levels for level in getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)} must be levels in 0..{levels - 1}")
        if self.image_size < 1 or self.image_size % self.downsample_factor:
            raise ValueError(f"image_size {self.image_size} is not divisible by the downsampling factor "
                             f"{self.downsample_factor}")
        if any(self.base_channels * m % self.norm_groups for m in self.channel_multipliers):
            raise ValueError(f"every level width base_channels x channel_multipliers must be divisible by "
                             f"norm_groups {self.norm_groups}")
        if not self.quant_conv and self.z_channels != self.latent_dim:
            raise ValueError(f"without quant_conv z_channels ({self.z_channels}) must equal latent_dim ({self.latent_dim})")
        if self.quant_conv_kernel < 1 or self.quant_conv_kernel % 2 == 0:
            raise ValueError(f"quant_conv_kernel must be a positive odd number, got {self.quant_conv_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.latent_scale > 0:
            raise ValueError(f"latent_scale must be positive, got {self.latent_scale}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample_factor
        return (side, side)

    def widths(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_multipliers]


def llamagen_vq16_config(image_size: int = 256, **changes) -> AutoencoderConfig:
    """LlamaGen's ``VQ_16`` (``vq_ds16_c2i.pt``): 16x downsampling, 16384 l2-normalised codes of dimension 8."""
    return AutoencoderConfig(image_size=image_size, **changes)


def mar_kl16_config(image_size: int = 256, **changes) -> AutoencoderConfig:
    """MAR's KL-16 (LDM ``AutoencoderKL`` kl-f16, ``kl16.ckpt``): 16 Gaussian channels, encoder attention at
    the 16x16 level only, tokens = posterior mean x 0.2325."""
    values = dict(image_size=image_size, z_channels=16, latent_dim=16, decoder_attention_levels=(),
                  latent_scale=0.2325, quantizer="kl", quantizer_options={})
    return AutoencoderConfig(**{**values, **changes})


def _norm(config: AutoencoderConfig, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(config.norm_groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """``x + conv2(drop(swish(norm2(conv1(swish(norm1(x)))))))``, a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, config: AutoencoderConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(config, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(config, out_channels)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H x W`` positions with 1x1-conv projections, plus the input."""

    def __init__(self, config: AutoencoderConfig, channels: int) -> None:
        super().__init__()
        self.norm = _norm(config, channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).reshape(batch, 1, channels, height * width).transpose(2, 3) for conv in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)  # B x 1 x HW x C, scale C ** -0.5
        return x + self.proj_out(h.transpose(2, 3).reshape(batch, channels, height, width))


class Downsample(nn.Module):
    """Zero-pad one row and column at the bottom/right, then a 3x3 stride-2 conv (taming's convention)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Level(nn.Module):
    """One resolution level: ``block`` (ResNet blocks), ``attn`` (one per block, or none) and the resampler."""

    def __init__(self, config: AutoencoderConfig, in_channels: int, out_channels: int, blocks: int,
                 attention: bool) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * blocks
        self.block = nn.ModuleList(ResnetBlock(config, a, b) for a, b in zip(widths, widths[1:]))
        self.attn = nn.ModuleList(AttnBlock(config, out_channels) for _ in range(blocks if attention else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[index](x)
        return x


class Middle(nn.Module):
    def __init__(self, config: AutoencoderConfig, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(config, channels, channels)
        self.attn_1 = AttnBlock(config, channels) if config.mid_attention else nn.Identity()
        self.block_2 = ResnetBlock(config, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Images ``B x C x S x S`` -> ``B x out_channels x S/f x S/f``."""

    def __init__(self, config: AutoencoderConfig, out_channels: int) -> None:
        super().__init__()
        widths = config.widths()
        self.conv_in = nn.Conv2d(config.in_channels, config.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            previous = config.base_channels if level == 0 else widths[level - 1]
            down = Level(config, previous, width, config.num_res_blocks, level in config.encoder_attention_levels)
            if level < len(widths) - 1:
                down.downsample = Downsample(width)
            self.down.append(down)
        self.mid = Middle(config, widths[-1])
        self.norm_out = _norm(config, widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for down in self.down:
            x = down(x)
            if hasattr(down, "downsample"):
                x = down.downsample(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class Decoder(nn.Module):
    """``B x z_channels x S/f x S/f`` -> images; ``up[level]`` runs from the last level to the first."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        widths = config.widths()
        self.conv_in = nn.Conv2d(config.z_channels, widths[-1], 3, padding=1)
        self.mid = Middle(config, widths[-1])
        self.up = nn.ModuleList()
        for level, width in enumerate(widths):
            previous = widths[level + 1] if level < len(widths) - 1 else widths[-1]
            up = Level(config, previous, width, config.num_res_blocks + 1, level in config.decoder_attention_levels)
            if level > 0:
                up.upsample = Upsample(width)
            self.up.append(up)
        self.norm_out = _norm(config, widths[0])
        self.conv_out = nn.Conv2d(widths[0], config.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for up in reversed(self.up):
            x = up(x)
            if hasattr(up, "upsample"):
                x = up.upsample(x)
        return self.conv_out(F.silu(self.norm_out(x)))


@register_model("autoencoder")
class AutoencoderTokenizer(Tokenizer):
    """Taming/LDM encoder -> (quant_conv) -> quantizer -> (post_quant_conv) -> decoder. Images
    ``B x C x S x S`` in [-1, 1]; tokens on the ``S/f x S/f`` grid in raster order."""

    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.quantizer = build_quantizer(config.quantizer, dim=config.latent_dim, **config.quantizer_options)
        if config.latent_scale != 1.0 and self.quantizer.discrete:
            raise ValueError(f"latent_scale applies to continuous tokens; the {config.quantizer} quantizer is discrete")
        # A diagonal Gaussian reads mean and log-variance: twice the channels (LDM's double_z).
        quantizer_input = getattr(self.quantizer, "input_dim", config.latent_dim)
        encoder_out = config.z_channels * quantizer_input // config.latent_dim
        self.encoder = Encoder(config, encoder_out)
        kernel, padding = config.quant_conv_kernel, config.quant_conv_kernel // 2
        self.quant_conv = nn.Conv2d(encoder_out, quantizer_input, kernel, padding=padding) if config.quant_conv else nn.Identity()
        self.post_quant_conv = (nn.Conv2d(config.latent_dim, config.z_channels, kernel, padding=padding)
                                if config.quant_conv else nn.Identity())
        self.decoder = Decoder(config)

    @property
    def spec(self) -> TokenSpec:
        return latent_token_spec(self.quantizer, self.config.grid)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN weight is measured at."""
        return self.decoder.conv_out.weight

    def latent_shape(self) -> tuple[int, int]:
        return self.config.grid

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(images))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> Tokens:
        tokens = super().encode(images)
        if self.config.latent_scale == 1.0:
            return tokens
        return Tokens(tokens.spec, values=tokens.values * self.config.latent_scale)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        if self.config.latent_scale != 1.0 and tokens.values is not None:
            tokens = Tokens(tokens.spec, values=tokens.values / self.config.latent_scale)
        return super().decode(tokens)
