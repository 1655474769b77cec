"""The tokenizer contract: images ``B x C x H x W`` in [-1, 1] <-> `Tokens`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artok.quantizers.base import QuantizerOutput
from artok.tokens import Tokens, TokenSpec


@dataclass
class TokenizerOutput:
    """What a tokenizer's training forward returns.

    Attributes:
        reconstruction: ``B x C x H x W`` decoded images.
        quantizer: the quantizer's output (its ``loss`` is added to the reconstruction loss).
    """

    reconstruction: torch.Tensor
    quantizer: QuantizerOutput


class Tokenizer(nn.Module):
    """Base class. Subclasses implement `encode_latents`, `decode_latents`, `spec` and own a ``quantizer``."""

    model_role = "tokenizer"
    config: object
    quantizer: nn.Module

    @property
    def spec(self) -> TokenSpec:
        raise NotImplementedError

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> pre-quantization features ``B x D x *spatial``."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(Quantized) features ``B x D x *spatial`` -> images."""
        raise NotImplementedError

    def latent_shape(self) -> tuple[int, ...]:
        """``*spatial`` of the latent grid."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        quantized = self.quantizer(self.encode_latents(images))
        return TokenizerOutput(self.decode_latents(quantized.quantized), quantized)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> Tokens:
        """Images ``B x C x H x W`` in [-1, 1] -> `Tokens` of `spec` (flattened in raster order; for
        the multi-scale layout, scale by scale with raster order inside a scale)."""
        self._check_images(images)
        out = self.quantizer(self.encode_latents(images))
        batch = images.shape[0]
        if self.spec.kind == "discrete":
            ids = out.ids.reshape(batch, self.spec.seq_len, -1) if self.spec.subtokens > 1 else out.ids.reshape(batch, -1)
            return Tokens(self.spec, ids=ids)
        values = out.quantized.flatten(2).transpose(1, 2)
        return Tokens(self.spec, values=values.float())

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """`Tokens` -> images ``B x C x H x W`` (clamped to [-1, 1])."""
        if tokens.spec != self.spec:
            raise ValueError(f"tokens of spec {tokens.spec} cannot be decoded by a tokenizer of spec {self.spec}")
        batch, spatial = tokens.batch_size, self.latent_shape()
        if self.spec.layout == "scales":
            # Multi-scale ids stay flat (``B x L``, scale by scale); the quantizer rebuilds the latent.
            latents = self.quantizer.ids_to_codes(tokens.ids)
        elif self.spec.kind == "discrete":
            ids = tokens.ids.reshape(batch, *spatial, *((self.spec.subtokens,) if self.spec.subtokens > 1 else ()))
            latents = self.quantizer.ids_to_codes(ids)
        else:
            latents = tokens.values.transpose(1, 2).reshape(batch, -1, *spatial)
        return self.decode_latents(latents.float()).clamp(-1, 1)

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (self.config.in_channels, self.config.image_size, self.config.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must be B x {' x '.join(map(str, expected))}, got {tuple(images.shape)}")


def latent_token_spec(quantizer: nn.Module, grid: tuple[int, int]) -> TokenSpec:
    """The `TokenSpec` of ``quantizer``'s output on a ``grid`` of latents: multi-scale residual ids
    (msvq, VAR's layout: one flat sequence, scale by scale), discrete ids on the grid, or continuous
    values on the grid."""
    if getattr(quantizer, "scales", None) is not None:
        return TokenSpec("discrete", "scales", scales=quantizer.scales, vocab_size=quantizer.codebook_size,
                         channels=quantizer.dim)
    if quantizer.discrete:
        return TokenSpec("discrete", "grid", grid=grid, vocab_size=quantizer.codebook_size, subtokens=quantizer.subtokens)
    return TokenSpec("continuous", "grid", grid=grid, channels=quantizer.dim)
