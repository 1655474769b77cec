"""TiTok (Yu et al., "An Image is Worth 32 Tokens for Reconstruction and Generation",
https://arxiv.org/abs/2406.07550; https://github.com/bytedance/1d-tokenizer, ``modeling/titok.py``,
``modeling/modules/blocks.py``), the published two-stage tokenizer exactly as TiTok computes it:

    images [0, 1] --ViT encoder over [class, 16x16 patches, K latent tokens]--> B x 12 x K
      --l2-normalised VQ, 4096 codes--> ids (TokenSpec layout "sequence", length K)
      --ViT decoder over [class, 256 mask tokens, K latents]--> B x 1024 x 16 x 16 logits over MaskGIT-VQGAN codes
      --softmax x MaskGIT-VQGAN codebook (soft code map B x 256 x 16 x 16)--> MaskGIT-VQGAN decoder --> pixels

The transformer is CLIP's (``ResidualAttentionBlock``: LayerNorm eps 1e-5, ``nn.MultiheadAttention``'s
packed ``in_proj``, scale ``head_dim^-0.5``, exact GELU, MLP ratio 4). Kept as TiTok has them, because
the published weights need them: the class token and positional embeddings drawn at scale
``width^-0.5``; the encoder adds the latent positions to the shared ``latent_tokens`` and puts them
after the patches, the decoder puts the latents after the mask tokens; ``ln_pre`` before the blocks,
``ln_post`` on the kept outputs; the encoder's "legacy" head, which *reshapes* (does not transpose)
the ``K x width`` latent outputs to ``width x K`` before its 1x1 ``conv_out``; the decoder's 1x1
conv head ``width -> 2 width -> tanh -> 1024``. Images are [-1, 1] at artok's interface and mapped to
TiTok's [0, 1] inside (decoded pixels back).

Parameter names are TiTok's (``encoder.transformer.3.attn.in_proj_weight``, ``latent_tokens``,
``decoder.ffn.2.weight``, ``pixel_decoder.up.4.block.0.conv1.weight``), except the two codebooks:
``quantize.embedding.weight`` -> ``quantizer.codebook``, ``pixel_quantize.embedding.weight`` ->
``pixel_codebook``. Training goes through the `Tokenizer` base (pixel reconstruction through the soft
code map and the pixel decoder, the VQ's codebook and 0.25 commitment losses), not TiTok's two stages
(proxy-code cross entropy, then decoder fine-tuning with the encoder frozen).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artok.hub import register_model
from artok.quantizers import build_quantizer
from artok.tokenizers.base import Tokenizer
from artok.tokenizers.titok_vqgan import MaskGITDecoder, check_pixel_codec
from artok.tokens import TokenSpec


@dataclass
class TiTokConfig:
    """Configuration of `TiTokTokenizer` (the defaults are TiTok-L-32 at 256 px).

    Args:
        image_size: square input side, divisible by ``patch_size``.
        patch_size: encoder patch side (and the decoder's grid: ``image_size / patch_size``).
        encoder_width, encoder_depth, encoder_heads: the encoder ViT (TiTok's small / base / large:
            512 / 768 / 1024 wide, 8 / 12 / 24 blocks, 8 / 12 / 16 heads).
        decoder_width, decoder_depth, decoder_heads: the decoder ViT.
        num_latent_tokens: ``K``, the token sequence length.
        token_size: the code dimension (12 in the published models).
        codebook_size: number of codes (4096).
        l2_normalize: features and codes compared on the unit sphere (``use_l2_norm``).
        commitment_weight: TiTok's ``commitment_cost``.
        pixel_codebook_size: MaskGIT-VQGAN codes the decoder predicts (1024).
        pixel_base_channels, pixel_channel_multipliers, pixel_res_blocks, pixel_z_channels: the
            MaskGIT-VQGAN decoder (128, (1, 1, 2, 2, 4), 2, 256); its grid must be the decoder's.
        dropout: dropout inside the pixel decoder's ResNet blocks during training (TiTok: 0).
    """

    image_size: int = 256
    patch_size: int = 16
    encoder_width: int = 1024
    encoder_depth: int = 24
    encoder_heads: int = 16
    decoder_width: int = 1024
    decoder_depth: int = 24
    decoder_heads: int = 16
    num_latent_tokens: int = 32
    token_size: int = 12
    codebook_size: int = 4096
    l2_normalize: bool = True
    commitment_weight: float = 0.25
    pixel_codebook_size: int = 1024
    pixel_base_channels: int = 128
    pixel_channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    pixel_res_blocks: int = 2
    pixel_z_channels: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.pixel_channel_multipliers = tuple(self.pixel_channel_multipliers)
        if self.patch_size < 1 or self.image_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        for half in ("encoder", "decoder"):
            width, depth, heads = (getattr(self, f"{half}_{name}") for name in ("width", "depth", "heads"))
            if min(width, depth, heads) < 1 or width % heads:
                raise ValueError(f"{half}_width {width} must be a positive multiple of {half}_heads {heads}, "
                                 f"and {half}_depth ({depth}) positive")
        if min(self.num_latent_tokens, self.token_size) < 1 or min(self.codebook_size, self.pixel_codebook_size) < 2:
            raise ValueError("num_latent_tokens and token_size must be positive, the codebooks at least 2 codes")
        check_pixel_codec(self.pixel_base_channels, self.pixel_channel_multipliers, self.pixel_res_blocks,
                          self.pixel_z_channels)
        upsampling = 2 ** (len(self.pixel_channel_multipliers) - 1)
        if self.grid * upsampling != self.image_size:
            raise ValueError(f"the pixel decoder turns the {self.grid}x{self.grid} code map into "
                             f"{self.grid * upsampling} px, not image_size {self.image_size}: "
                             "patch_size must equal 2 ** (len(pixel_channel_multipliers) - 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def grid(self) -> int:
        """Side of the patch grid (and of the MaskGIT-VQGAN code map the decoder predicts)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2


class MultiheadSelfAttention(nn.Module):
    """``nn.MultiheadAttention``'s self-attention path (packed ``in_proj_weight`` / ``in_proj_bias``,
    ``out_proj``; scale ``head_dim^-0.5``) on batch-first ``B x L x D`` inputs, through SDPA."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(batch, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-norm block: ``x + attn(ln_1(x))``, then ``x + c_proj(gelu(c_fc(ln_2(x))))``."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, num_heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(4 * width, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _ViT(nn.Module):
    """What TiTok's encoder and decoder share: the class token, the ``N + 1`` positional embeddings,
    the latent positions, ``ln_pre``, the blocks (``transformer``) and ``ln_post``."""

    def __init__(self, width: int, depth: int, heads: int, num_patches: int, num_latent_tokens: int) -> None:
        super().__init__()
        self.width = width
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(num_patches + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)

    def with_class_token(self, x: torch.Tensor) -> torch.Tensor:
        """``B x N x D`` -> ``B x (N + 1) x D``: the class token first, then the positions added."""
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_pre(x)
        for block in self.transformer:
            x = block(x)
        return x


class TiTokEncoder(_ViT):
    """Images ``B x 3 x S x S`` in [0, 1] and the latent tokens ``K x D`` -> ``B x token_size x K``."""

    def __init__(self, config: TiTokConfig) -> None:
        c = config
        super().__init__(c.encoder_width, c.encoder_depth, c.encoder_heads, c.num_patches, c.num_latent_tokens)
        self.patch_embed = nn.Conv2d(3, c.encoder_width, c.patch_size, stride=c.patch_size)
        self.conv_out = nn.Conv2d(c.encoder_width, c.token_size, 1)

    def forward(self, pixels: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        batch = pixels.shape[0]
        patches = self.with_class_token(self.patch_embed(pixels).flatten(2).transpose(1, 2))
        latents = (latent_tokens.to(patches.dtype) + self.latent_token_positional_embedding.to(patches.dtype))
        x = self.run(torch.cat([patches, latents.expand(batch, -1, -1)], dim=1))
        latents = self.ln_post(x[:, patches.shape[1]:])
        # TiTok's legacy head: a reshape, not a transpose, of K x width into width x K x 1.
        latents = latents.reshape(batch, self.width, -1, 1)
        return self.conv_out(latents).flatten(2)


class TiTokDecoder(_ViT):
    """Quantized latents ``B x token_size x K`` -> logits ``B x pixel_codebook_size x g x g``."""

    def __init__(self, config: TiTokConfig) -> None:
        c = config
        super().__init__(c.decoder_width, c.decoder_depth, c.decoder_heads, c.num_patches, c.num_latent_tokens)
        self.grid = c.grid
        self.decoder_embed = nn.Linear(c.token_size, c.decoder_width)
        self.mask_token = nn.Parameter(c.decoder_width**-0.5 * torch.randn(1, 1, c.decoder_width))
        self.ffn = nn.Sequential(nn.Conv2d(c.decoder_width, 2 * c.decoder_width, 1), nn.Tanh(),
                                 nn.Conv2d(2 * c.decoder_width, c.pixel_codebook_size, 1))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch, _, length = latents.shape
        x = self.decoder_embed(latents.transpose(1, 2))
        x = x + self.latent_token_positional_embedding[:length]
        masks = self.with_class_token(self.mask_token.to(x.dtype).expand(batch, self.grid**2, -1))
        x = self.run(torch.cat([masks, x], dim=1))
        x = self.ln_post(x[:, 1:1 + self.grid**2])
        x = x.transpose(1, 2).reshape(batch, self.width, self.grid, self.grid)
        return self.ffn(x)


@register_model("titok")
class TiTokTokenizer(Tokenizer):
    """TiTok's 1D tokenizer with its MaskGIT-VQGAN pixel decoder (see the module docstring).

    Images ``B x 3 x S x S`` in [-1, 1]; tokens: discrete, layout ``"sequence"``, length ``K``.
    State: ``latent_tokens``, ``encoder``, ``quantizer`` (artok ``vq``, no projection), ``decoder``,
    ``pixel_codebook`` (``pixel_codebook_size x pixel_z_channels``), ``pixel_decoder``.
    """

    config_class = TiTokConfig

    def __init__(self, config: TiTokConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = TiTokEncoder(c)
        self.decoder = TiTokDecoder(c)
        self.latent_tokens = nn.Parameter(c.encoder_width**-0.5 * torch.randn(c.num_latent_tokens, c.encoder_width))
        self.apply(_init_weights)
        self.quantizer = build_quantizer("vq", dim=c.token_size, codebook_size=c.codebook_size, codebook_dim=None,
                                         l2_normalize=c.l2_normalize, commitment_weight=c.commitment_weight,
                                         codebook_weight=1.0)
        self.pixel_codebook = nn.Parameter(torch.empty(c.pixel_codebook_size, c.pixel_z_channels).uniform_(
            -1.0 / c.pixel_codebook_size, 1.0 / c.pixel_codebook_size))
        self.pixel_decoder = MaskGITDecoder(c.pixel_base_channels, c.pixel_channel_multipliers, c.pixel_res_blocks,
                                            c.pixel_z_channels, c.dropout)

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec("discrete", "sequence", length=c.num_latent_tokens, vocab_size=c.codebook_size)

    def latent_shape(self) -> tuple[int]:
        return (self.config.num_latent_tokens,)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the pixel decoder's last conv (the adaptive GAN weight compares gradients here)."""
        return self.pixel_decoder.conv_out.weight

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``B x 3 x S x S`` in [-1, 1] -> pre-quantization latents ``B x token_size x K``."""
        return self.encoder((images + 1) / 2, self.latent_tokens)

    def code_logits(self, latents: torch.Tensor) -> torch.Tensor:
        """(Quantized) latents ``B x token_size x K`` -> ``B x pixel_codebook_size x g x g`` logits."""
        return self.decoder(latents)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(Quantized) latents ``B x token_size x K`` -> images ``B x 3 x S x S`` (TiTok's soft code map:
        the softmax over the predicted MaskGIT-VQGAN codes times their embeddings)."""
        probabilities = self.code_logits(latents).softmax(dim=1)
        code_map = torch.einsum("nchw,cd->ndhw", probabilities, self.pixel_codebook.to(probabilities.dtype))
        return self.pixel_decoder(code_map) * 2 - 1


def _init_weights(module: nn.Module) -> None:
    """TiTok's ``_init_weights``: truncated normal(0.02) linear/conv weights, zero biases, unit LayerNorms
    (applied to the ViT halves; the packed ``in_proj_weight`` keeps ``nn.MultiheadAttention``'s Xavier
    draw, the codebooks and the pixel decoder their own initialisation)."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
