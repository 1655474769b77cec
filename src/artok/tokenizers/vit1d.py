"""1D latent-query tokenizer (TiTok, Yu et al., "An Image is Worth 32 Tokens for Reconstruction
and Generation", https://arxiv.org/abs/2406.07550) with nested dropout for prefix decoding
(FlexTok, Bachmann et al., https://arxiv.org/abs/2502.13967; One-D-Piece, Miwa et al.,
https://arxiv.org/abs/2501.10064).

Encoder: the image is cut into ``P x P`` patches (``N = (S / P)^2`` of them); a ViT runs over
``[patches + patch positions, K learned latent tokens + latent positions]`` and only the ``K``
latent outputs are kept, projected to the quantizer's input channels and quantized with any
quantizer of `artok.quantizers` in a 1D layout ``B x D x K``.

Decoder: a ViT over ``[N mask tokens + patch positions, K projected latents + latent positions]``;
the outputs at the patch positions are mapped back to pixels.

Nested dropout: in training, a sample keeps with probability ``nested_dropout`` only a random
prefix of ``k`` latents (``k`` uniform in ``[min_tokens, K]``); the other ``K - k`` decoder inputs
are replaced by one learned null token. So the first tokens learn to carry the coarse content and
``decode(tokens, num_tokens=k)`` gives a usable image from any prefix ``k <= K``, sharpening as
``k`` grows. Tokens are emitted with TokenSpec layout ``"sequence"`` (length ``K``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from einops import rearrange
from torch import nn

from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.quantizers import QUANTIZERS, build_quantizer
from artok.tokenizers.base import Tokenizer, TokenizerOutput
from artok.tokens import Tokens, TokenSpec


def check_latent_vit_config(config) -> None:
    """The checks every latent-token ViT tokenizer config shares (this one's and D-AR's): image
    channels, patches, heads, positive sizes, a known quantizer."""
    if config.in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {config.in_channels}")
    if config.patch_size < 1 or config.image_size % config.patch_size:
        raise ValueError(f"image_size {config.image_size} is not divisible by patch_size {config.patch_size}")
    if config.dim % config.num_heads:
        raise ValueError(f"dim {config.dim} is not divisible by num_heads {config.num_heads}")
    if min(config.encoder_depth, config.decoder_depth, config.num_latent_tokens, config.latent_dim) < 1:
        raise ValueError("encoder_depth, decoder_depth, num_latent_tokens and latent_dim must be positive")
    if config.quantizer not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {config.quantizer!r}; choose one of {sorted(QUANTIZERS)}")


@dataclass
class ViT1DTokenizerConfig:
    """Configuration of `ViT1DTokenizer`.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        image_size: square input side; must be divisible by ``patch_size``.
        patch_size: side of the square patches the encoder reads and the decoder writes.
        dim: transformer width (encoder and decoder).
        encoder_depth, decoder_depth: transformer blocks in each half.
        num_heads: attention heads.
        hidden_dim: SwiGLU hidden size (None: LLaMA's 8/3 rule).
        num_latent_tokens: ``K``, the length of the token sequence.
        latent_dim: channels of each latent handed to the quantizer.
        quantizer: name in `artok.quantizers.QUANTIZERS` (``"vq"``, ``"fsq"``, ``"kl"``, ...).
        quantizer_options: keyword arguments of that quantizer's config (``dim`` is filled in).
        nested_dropout: probability that a training sample keeps only a random prefix of its
            latents (0 turns nested dropout off).
        min_tokens: the shortest prefix nested dropout keeps.
        dropout: residual / attention dropout.
    """

    in_channels: int = 1
    image_size: int = 28
    patch_size: int = 4
    dim: int = 128
    encoder_depth: int = 4
    decoder_depth: int = 4
    num_heads: int = 4
    hidden_dim: int | None = None
    num_latent_tokens: int = 32
    latent_dim: int = 16
    quantizer: str = "vq"
    quantizer_options: dict = field(default_factory=lambda: {"codebook_size": 1024, "codebook_dim": 8})
    nested_dropout: float = 0.5
    min_tokens: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_latent_vit_config(self)
        if not 0.0 <= self.nested_dropout <= 1.0:
            raise ValueError(f"nested_dropout must be in [0, 1], got {self.nested_dropout}")
        if not 1 <= self.min_tokens <= self.num_latent_tokens:
            raise ValueError(f"min_tokens must be in [1, {self.num_latent_tokens}], got {self.min_tokens}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class _ViT(nn.Module):
    """A stack of `artok.nn.TransformerBlock` followed by a final RMSNorm (no positions of its own)."""

    def __init__(self, config: ViT1DTokenizerConfig, depth: int) -> None:
        super().__init__()
        hidden = config.hidden_dim or swiglu_hidden_dim(config.dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.num_heads, hidden, dropout=config.dropout) for _ in range(depth)
        )
        self.norm = RMSNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


@register_model("vit1d_tokenizer")
class ViT1DTokenizer(Tokenizer):
    """ViT encoder with ``K`` latent queries -> quantizer (``B x D x K``) -> ViT decoder from mask
    tokens. Images ``B x C x S x S`` in [-1, 1]; tokens of layout ``"sequence"``, length ``K``."""

    config_class = ViT1DTokenizerConfig

    def __init__(self, config: ViT1DTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        patch_pixels = c.in_channels * c.patch_size**2
        self.patch_embedding = nn.Linear(patch_pixels, c.dim)
        self.patch_positions = nn.Parameter(torch.zeros(c.num_patches, c.dim))
        self.latent_queries = nn.Parameter(torch.zeros(c.num_latent_tokens, c.dim))
        self.encoder_latent_positions = nn.Parameter(torch.zeros(c.num_latent_tokens, c.dim))
        self.encoder = _ViT(c, c.encoder_depth)

        self.mask_token = nn.Parameter(torch.zeros(c.dim))
        self.null_token = nn.Parameter(torch.zeros(c.dim))
        self.decoder_patch_positions = nn.Parameter(torch.zeros(c.num_patches, c.dim))
        self.decoder_latent_positions = nn.Parameter(torch.zeros(c.num_latent_tokens, c.dim))
        self.decoder = _ViT(c, c.decoder_depth)
        self.to_pixels = nn.Linear(c.dim, patch_pixels)
        self.apply(self._init_weights)
        for parameter in (self.patch_positions, self.latent_queries, self.encoder_latent_positions, self.mask_token,
                          self.null_token, self.decoder_patch_positions, self.decoder_latent_positions):
            nn.init.normal_(parameter, std=0.02)

        # Built after the init above so the quantizer keeps its own initialisation.
        self.quantizer = build_quantizer(c.quantizer, dim=c.latent_dim, **c.quantizer_options)
        # Some quantizers (diagonal Gaussian) take more channels than they output.
        self.to_latent = nn.Linear(c.dim, getattr(self.quantizer, "input_dim", c.latent_dim))
        self.from_latent = nn.Linear(c.latent_dim, c.dim)
        for layer in (self.to_latent, self.from_latent):
            self._init_weights(layer)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # -- the Tokenizer contract -----------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        q, length = self.quantizer, self.config.num_latent_tokens
        if q.discrete:
            return TokenSpec("discrete", "sequence", length=length, vocab_size=q.codebook_size, subtokens=q.subtokens)
        return TokenSpec("continuous", "sequence", length=length, channels=q.dim)

    def latent_shape(self) -> tuple[int]:
        return (self.config.num_latent_tokens,)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last layer (the adaptive GAN weight compares gradients here)."""
        return self.to_pixels.weight

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``B x C x S x S`` -> pre-quantization latents ``B x D_in x K``."""
        p = self.config.patch_size
        patches = rearrange(images, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)
        patches = self.patch_embedding(patches) + self.patch_positions
        latents = (self.latent_queries + self.encoder_latent_positions).expand(images.shape[0], -1, -1)
        out = self.encoder(torch.cat([patches, latents], dim=1))
        latents = self.to_latent(out[:, self.config.num_patches :])
        return rearrange(latents, "b k d -> b d k")

    def decode_latents(self, latents: torch.Tensor, num_tokens: int | torch.Tensor | None = None) -> torch.Tensor:
        """(Quantized) latents ``B x D x K`` -> images ``B x C x S x S``.

        Args:
            num_tokens: keep only the first ``num_tokens`` latents (an int, or a ``B`` tensor of
                per-sample prefix lengths); the rest are replaced by the learned null token.
                None keeps all ``K``.
        """
        c = self.config
        batch = latents.shape[0]
        x = self.from_latent(rearrange(latents, "b d k -> b k d"))
        if num_tokens is not None:
            lengths = torch.as_tensor(num_tokens, device=x.device).reshape(-1, 1)
            keep = torch.arange(c.num_latent_tokens, device=x.device) < lengths  # B x K (or 1 x K)
            x = torch.where(keep[..., None], x, self.null_token.to(x.dtype))
        x = x + self.decoder_latent_positions
        masks = (self.mask_token + self.decoder_patch_positions).expand(batch, -1, -1)
        out = self.decoder(torch.cat([masks.to(x.dtype), x], dim=1))
        pixels = self.to_pixels(out[:, : c.num_patches])
        side = c.image_size // c.patch_size
        return rearrange(pixels, "b (h w) (c p q) -> b c (h p) (w q)", h=side, w=side, p=c.patch_size, q=c.patch_size)

    def sample_prefix_lengths(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """Nested-dropout prefix lengths for a training batch: ``K`` for most samples, a uniform
        ``k`` in ``[min_tokens, K]`` with probability ``nested_dropout`` (global torch RNG, so a
        resumed run draws the same lengths as an uninterrupted one)."""
        c = self.config
        full = torch.full((batch,), c.num_latent_tokens, dtype=torch.long, device=device)
        if c.nested_dropout == 0.0:
            return full
        drawn = torch.randint(c.min_tokens, c.num_latent_tokens + 1, (batch,), device=device)
        dropped = torch.rand(batch, device=device) < c.nested_dropout
        return torch.where(dropped, drawn, full)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        quantized = self.quantizer(self.encode_latents(images))
        lengths = self.sample_prefix_lengths(images.shape[0], images.device) if self.training else None
        return TokenizerOutput(self.decode_latents(quantized.quantized, lengths), quantized)

    @torch.no_grad()
    def decode(self, tokens: Tokens, num_tokens: int | None = None) -> torch.Tensor:
        """`Tokens` -> images ``B x C x S x S`` (clamped to [-1, 1]) from their first ``num_tokens``.

        ``tokens`` may hold all ``K`` positions (``num_tokens`` defaults to ``K``) or only a prefix
        of ``k < K`` (a spec equal to `spec` but for its length; ``num_tokens`` defaults to ``k``).
        """
        spec, length = tokens.spec, tokens.spec.length
        if spec.layout != "sequence" or replace(spec, length=self.config.num_latent_tokens) != self.spec:
            raise ValueError(f"tokens of spec {spec} cannot be decoded by a tokenizer of spec {self.spec}")
        if length > self.config.num_latent_tokens:
            raise ValueError(f"got {length} tokens, this tokenizer decodes at most {self.config.num_latent_tokens}")
        num_tokens = length if num_tokens is None else int(num_tokens)
        if not 1 <= num_tokens <= length:
            raise ValueError(f"num_tokens must be in [1, {length}], got {num_tokens}")
        batch = tokens.batch_size
        if spec.kind == "discrete":
            ids = tokens.ids[:, :num_tokens]
            latents = self.quantizer.ids_to_codes(ids).float()
        else:
            latents = tokens.values[:, :num_tokens].transpose(1, 2).float()
        padded = latents.new_zeros(batch, latents.shape[1], self.config.num_latent_tokens)
        padded[:, :, :num_tokens] = latents
        return self.decode_latents(padded, num_tokens).clamp(-1, 1)
