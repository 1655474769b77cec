"""Sequential diffusion tokenizer of D-AR (Gao, Shou et al., "D-AR: Diffusion via Autoregressive
Models", https://arxiv.org/abs/2505.23660; public code: github.com/showlab/D-AR,
``tokenizer/tokenizer_image/vq_model.py`` and ``diff_decoder.py``).

Tokens: ``K`` 1D latent tokens (TokenSpec layout ``"sequence"``) cut into ``G`` groups of
``K / G``. A ViT reads ``[image patches, K learned queries]``; patches attend to patches, query
``i`` to every patch and to queries ``<= i`` (D-AR's causal query mask), so a prefix of tokens is
computed without looking at the later queries. The ``K`` outputs are quantized by any quantizer of
`artok.quantizers` (default VQ).

Decoder: a rectified flow over pixels (artok's convention, `artok.heads.flow`: ``t`` from 0 =
noise to 1 = data, ``x_t = t x + (1 - t) eps``, velocity ``v = x - eps``). Its network is a
pre-norm ViT over ``[noisy patches + time embedding, K condition tokens]``. The unshifted time
``u`` in [0, 1] is cut into ``G`` equal intervals and at ``u`` in interval ``g`` (0-based) the
network sees token groups ``0..g`` only: every later token is replaced by one learned null token
*before* any layer reads it, so the output provably does not depend on it (`velocity`). Coarse
groups steer the noisy start of the path, fine groups its end. The flow time is ``t =
shift(u) = u / (u + s (1 - u))`` (D-AR's time shift, ``s = 2`` by default as in D-AR: more of the
path near the noise, where the tokens decide the most; ``s = 1`` is the identity).

Previews (`decode` with ``num_tokens = k < K``): the Euler ODE runs all its steps and each step
sees the tokens of its interval that are known, ``min(end of its groups, k)`` of them; a prefix of
tokens gives a whole image, sharpening as ``k`` grows.

Training (`forward`): one ``u ~ U(0, 1)`` per image; the loss is the velocity MSE (weighted by
``flow_weight``) plus the quantizer's own loss, both returned in the quantizer output's ``loss``
so the shared tokenizer trainer needs no change; the returned ``reconstruction`` is the one-step
data prediction ``x_t + (1 - t) v_theta``, on which that trainer adds its pixel MSE + 0.2 L1 (D-AR
puts its perceptual and GAN losses on the same prediction). ``flow_loss`` is logged on its own.

Simplified vs the paper: a small ViT over pixel patches that reads the tokens in context, by joint
self-attention, with the time added to the patches (D-AR: a 12-layer SiT over 8x8 patches of 256^2
images, cross-attention to the current group's tokens feeding adaLN; at artok's CPU scale adaLN-Zero
gates kept the tiny decoder from using the tokens for hundreds of steps); the condition tokens come
from one small causal transformer over the quantized tokens with the hidden ones nulled (D-AR: a
causal transformer; its decoder reads only the current group's outputs, which see earlier groups
through the causal mask); Euler steps (D-AR: second-order Adams, 8 steps = 8 groups); no REPA,
LPIPS or GAN terms by default; the VQ loss is over all tokens (D-AR masks it to the groups in use).
Added by artok: ``prefix_dropout``, the probability that a training image also hides every group
after a random one, so the steps a preview runs with missing groups are trained (D-AR's previews
stop the ODE early instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.nn.adaln import TimestepEmbedder
from artok.quantizers import build_quantizer
from artok.tokenizers.base import Tokenizer, TokenizerOutput
from artok.tokenizers.vit1d import check_latent_vit_config
from artok.tokens import Tokens, TokenSpec


@dataclass
class DARTokenizerConfig:
    """Configuration of `DARTokenizer`.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        image_size: square input side; divisible by ``patch_size``.
        patch_size: side of the square patches the encoder reads and the flow network denoises.
        dim: transformer width (encoder, condition transformer, flow network).
        encoder_depth, decoder_depth: blocks of the encoder and of the flow network.
        context_depth: blocks of the causal transformer over the quantized tokens.
        num_heads: attention heads.
        hidden_dim: SwiGLU hidden size (None: LLaMA's 8/3 rule).
        num_latent_tokens: ``K``, the token sequence length.
        num_groups: ``G``, groups of ``K / G`` tokens, one per time interval.
        latent_dim: channels of each latent handed to the quantizer.
        quantizer, quantizer_options: a quantizer of `artok.quantizers` and its options.
        decode_steps: Euler steps of `decode` (default of ``steps``).
        time_shift: D-AR's ``s`` in ``t = u / (u + s (1 - u))`` (1: no shift; D-AR uses 2, the default).
        prefix_dropout: probability that a training image hides the groups after a random one.
        flow_weight: weight of the velocity MSE.
        decode_seed: seed of the initial noise when `decode` is given no generator.
        dropout: residual / attention dropout.
    """

    in_channels: int = 1
    image_size: int = 28
    patch_size: int = 4
    dim: int = 128
    encoder_depth: int = 3
    decoder_depth: int = 4
    context_depth: int = 1
    num_heads: int = 4
    hidden_dim: int | None = None
    num_latent_tokens: int = 32
    num_groups: int = 4
    latent_dim: int = 16
    quantizer: str = "vq"
    quantizer_options: dict = field(default_factory=lambda: {"codebook_size": 1024, "codebook_dim": 8})
    decode_steps: int = 16
    time_shift: float = 2.0
    prefix_dropout: float = 0.2
    flow_weight: float = 1.0
    decode_seed: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_latent_vit_config(self)
        if self.decode_steps < 1:
            raise ValueError(f"decode_steps must be positive, got {self.decode_steps}")
        if self.context_depth < 0:
            raise ValueError(f"context_depth must be >= 0, got {self.context_depth}")
        if self.num_groups < 1 or self.num_latent_tokens % self.num_groups:
            raise ValueError(f"num_latent_tokens {self.num_latent_tokens} is not divisible by num_groups {self.num_groups}")
        if not (math.isfinite(self.time_shift) and math.isfinite(self.flow_weight)) or min(self.time_shift, self.flow_weight) <= 0:
            raise ValueError(f"time_shift and flow_weight must be positive finite numbers, got {self.time_shift}, {self.flow_weight}")
        if not 0.0 <= self.prefix_dropout <= 1.0:
            raise ValueError(f"prefix_dropout must be in [0, 1], got {self.prefix_dropout}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def group_size(self) -> int:
        return self.num_latent_tokens // self.num_groups


def _normal_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _Blocks(nn.Module):
    """`artok.nn.TransformerBlock` s and a final RMSNorm, with an optional boolean attention mask."""

    def __init__(self, config: DARTokenizerConfig, depth: int) -> None:
        super().__init__()
        hidden = config.hidden_dim or swiglu_hidden_dim(config.dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.num_heads, hidden, dropout=config.dropout) for _ in range(depth))
        self.norm = RMSNorm(config.dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.norm(x)


def encoder_mask(num_patches: int, num_queries: int) -> torch.Tensor:
    """D-AR's encoder mask ``T x T`` (True = attend) over ``[patches, queries]``: patches see the
    patches, query ``i`` the patches and queries ``0..i``."""
    size = num_patches + num_queries
    mask = torch.ones(size, size, dtype=torch.bool).tril()
    mask[:, :num_patches] = True
    return mask


class FlowNetwork(nn.Module):
    """``v_theta(x_t, t, condition tokens)``: a pre-norm ViT over ``[noisy patches + time, tokens]``.

    The time embedding is added to every patch (U-ViT / DiT's "in-context" time); the blocks are
    artok's plain `TransformerBlock` s, as vit1d's decoder, so the tokens reach the patches through
    ungated attention from the first step (adaLN-Zero gates made a small decoder ignore them)."""

    def __init__(self, config: DARTokenizerConfig) -> None:
        super().__init__()
        c = config
        patch_pixels = c.in_channels * c.patch_size**2
        self.config = c
        self.patch_embedding = nn.Linear(patch_pixels, c.dim)
        self.patch_positions = nn.Parameter(torch.zeros(c.num_patches, c.dim))
        self.time_embedding = TimestepEmbedder(c.dim, scale=1000.0)
        self.blocks = _Blocks(c, c.decoder_depth)
        self.to_pixels = nn.Linear(c.dim, patch_pixels)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``x_t`` ``B x C x S x S``, ``t`` ``B``, ``condition`` ``B x K x dim`` -> velocity like ``x_t``."""
        c = self.config
        dtype = self.patch_embedding.weight.dtype
        patches = rearrange(x_t.to(dtype), "b c (h p) (w q) -> b (h w) (c p q)", p=c.patch_size, q=c.patch_size)
        patches = self.patch_embedding(patches) + self.patch_positions + self.time_embedding(t)[:, None]
        out = self.blocks(torch.cat([patches, condition.to(dtype)], dim=1))
        pixels = self.to_pixels(out[:, : c.num_patches])
        side = c.image_size // c.patch_size
        return rearrange(pixels, "b (h w) (c p q) -> b c (h p) (w q)", h=side, p=c.patch_size, q=c.patch_size).float()


@register_model("dar_tokenizer")
class DARTokenizer(Tokenizer):
    """D-AR's sequential diffusion tokenizer (see the module docstring). Images ``B x C x S x S`` in
    [-1, 1]; tokens of layout ``"sequence"``, length ``K``, in ``G`` groups."""

    config_class = DARTokenizerConfig

    def __init__(self, config: DARTokenizerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.patch_embedding = nn.Linear(c.in_channels * c.patch_size**2, c.dim)
        self.patch_positions = nn.Parameter(torch.zeros(c.num_patches, c.dim))
        self.latent_queries = nn.Parameter(torch.zeros(c.num_latent_tokens, c.dim))
        self.encoder = _Blocks(c, c.encoder_depth)
        self.register_buffer("encoder_mask", encoder_mask(c.num_patches, c.num_latent_tokens), persistent=False)

        self.null_token = nn.Parameter(torch.zeros(c.dim))
        self.token_positions = nn.Parameter(torch.zeros(c.num_latent_tokens, c.dim))
        self.context = _Blocks(c, c.context_depth)
        self.flow = FlowNetwork(c)
        self.apply(_normal_init)
        for parameter in (self.patch_positions, self.latent_queries, self.null_token, self.token_positions,
                          self.flow.patch_positions):
            nn.init.normal_(parameter, std=0.02)

        # Built after the init above so the quantizer keeps its own initialisation.
        self.quantizer = build_quantizer(c.quantizer, dim=c.latent_dim, **c.quantizer_options)
        self.to_latent = nn.Linear(c.dim, getattr(self.quantizer, "input_dim", c.latent_dim))
        self.from_latent = nn.Linear(c.latent_dim, c.dim)
        for layer in (self.to_latent, self.from_latent):
            _normal_init(layer)

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
        """The flow network's last layer (where the adaptive GAN weight compares gradients)."""
        return self.flow.to_pixels.weight

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``B x C x S x S`` -> pre-quantization latents ``B x D_in x K``."""
        c = self.config
        patches = rearrange(images, "b c (h p) (w q) -> b (h w) (c p q)", p=c.patch_size, q=c.patch_size)
        patches = self.patch_embedding(patches) + self.patch_positions
        queries = self.latent_queries.expand(images.shape[0], -1, -1).to(patches.dtype)
        out = self.encoder(torch.cat([patches, queries], dim=1), self.encoder_mask)
        return rearrange(self.to_latent(out[:, c.num_patches :]), "b k d -> b d k")

    # -- groups, times and the condition tokens --------------------------------------------------

    def shift(self, u: torch.Tensor) -> torch.Tensor:
        """Flow time ``t = u / (u + s (1 - u))`` of unshifted times ``u``."""
        s = self.config.time_shift
        return u if s == 1.0 else u / (u + s * (1 - u))

    def visible_tokens(self, u: torch.Tensor) -> torch.Tensor:
        """Tokens the flow network sees at unshifted times ``u``: the groups up to ``u``'s interval."""
        c = self.config
        interval = (u * c.num_groups).floor().long().clamp(0, c.num_groups - 1)
        return (interval + 1) * c.group_size

    def condition(self, latents: torch.Tensor, visible: torch.Tensor | int) -> torch.Tensor:
        """Quantized latents ``B x D x K`` -> condition tokens ``B x K x dim`` in which every token
        at or past ``visible`` (an int or ``B`` counts) is the null token before any layer reads it."""
        c = self.config
        x = self.from_latent(rearrange(latents, "b d k -> b k d").to(self.from_latent.weight.dtype))
        counts = torch.as_tensor(visible, device=x.device).reshape(-1, 1)
        keep = torch.arange(c.num_latent_tokens, device=x.device) < counts
        x = torch.where(keep[..., None], x, self.null_token.to(x.dtype)) + self.token_positions
        causal = torch.ones(c.num_latent_tokens, c.num_latent_tokens, dtype=torch.bool, device=x.device).tril()
        return self.context(x, causal)

    def velocity(self, x_t: torch.Tensor, u: torch.Tensor, latents: torch.Tensor,
                 visible: torch.Tensor | None = None) -> torch.Tensor:
        """``v_theta`` at noisy images ``x_t`` and unshifted times ``u`` (``B``), seeing the groups
        of ``u``'s interval (or at most ``visible`` tokens per row when given)."""
        counts = self.visible_tokens(u)
        if visible is not None:
            counts = torch.minimum(counts, torch.as_tensor(visible, device=counts.device))
        return self.flow(x_t, self.shift(u), self.condition(latents, counts))

    # -- training ---------------------------------------------------------------------------------

    def training_visible(self, u: torch.Tensor) -> torch.Tensor:
        """Visible tokens of a training batch at times ``u``: the interval's groups, and with
        probability ``prefix_dropout`` at most a random number of groups (global torch RNG)."""
        c = self.config
        counts = self.visible_tokens(u)
        if c.prefix_dropout == 0.0:
            return counts
        groups = torch.randint(1, c.num_groups + 1, u.shape, device=u.device) * c.group_size
        dropped = torch.rand(u.shape, device=u.device) < c.prefix_dropout
        return torch.where(dropped, torch.minimum(counts, groups), counts)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        quantized = self.quantizer(self.encode_latents(images))
        batch = images.shape[0]
        u = torch.rand(batch, device=images.device)
        t = self.shift(u)[:, None, None, None]
        noise = torch.randn_like(images)
        x_t = t * images + (1 - t) * noise
        counts = self.training_visible(u) if self.training else self.visible_tokens(u)
        predicted = self.flow(x_t, t.flatten(), self.condition(quantized.quantized, counts))
        flow_loss = F.mse_loss(predicted, images - noise)
        reconstruction = x_t + (1 - t) * predicted  # the one-step data prediction
        metrics = {**quantized.metrics, "flow_loss": flow_loss.detach()}
        out = replace(quantized, loss=quantized.loss + self.config.flow_weight * flow_loss, metrics=metrics)
        return TokenizerOutput(reconstruction.to(images.dtype), out)

    # -- decoding ---------------------------------------------------------------------------------

    def step_times(self, steps: int) -> torch.Tensor:
        """The ``steps + 1`` unshifted Euler times ``0, 1/steps, ..., 1``."""
        return torch.arange(steps + 1, dtype=torch.float64).div(steps).float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, num_tokens: int | None = None, steps: int | None = None,
                       generator: torch.Generator | None = None, return_states: bool = False):
        """Quantized latents ``B x D x K`` -> images ``B x C x S x S`` by the Euler ODE from noise.

        Args:
            num_tokens: tokens known (default ``K``); each step sees those of its interval, at most these.
            steps: Euler steps (default ``config.decode_steps``).
            generator: draws the initial noise (default: one seeded with ``config.decode_seed``).
            return_states: also return the list of the ``steps + 1`` states along the path.
        """
        c = self.config
        steps = c.decode_steps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        known = c.num_latent_tokens if num_tokens is None else int(num_tokens)
        device = latents.device
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(c.decode_seed)
        shape = (latents.shape[0], c.in_channels, c.image_size, c.image_size)
        x = torch.randn(shape, generator=generator, device=generator.device).to(device)
        times = self.step_times(steps).to(device)
        conditions: dict[int, torch.Tensor] = {}  # one condition per visible count, not per step
        states = [x]
        for i in range(steps):
            u = times[i].expand(shape[0])
            count = min((i * c.num_groups // steps + 1) * c.group_size, known)  # exact integer interval
            if count not in conditions:
                conditions[count] = self.condition(latents, count)
            velocity = self.flow(x, self.shift(u), conditions[count])
            x = x + (self.shift(times[i + 1]) - self.shift(times[i])) * velocity
            states.append(x)
        return (x, states) if return_states else x

    def latents_of(self, tokens: Tokens, num_tokens: int) -> torch.Tensor:
        """The first ``num_tokens`` of ``tokens`` as latents ``B x D x K`` (zeros past them)."""
        if tokens.spec.kind == "discrete":
            latents = self.quantizer.ids_to_codes(tokens.ids[:, :num_tokens]).float()
        else:
            latents = tokens.values[:, :num_tokens].transpose(1, 2).float()
        padded = latents.new_zeros(tokens.batch_size, latents.shape[1], self.config.num_latent_tokens)
        padded[:, :, :num_tokens] = latents
        return padded

    @torch.no_grad()
    def decode(self, tokens: Tokens, num_tokens: int | None = None, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """`Tokens` -> images ``B x C x S x S`` (clamped to [-1, 1]) from their first ``num_tokens``.

        ``tokens`` may hold all ``K`` positions (``num_tokens`` defaults to ``K``) or a prefix of
        ``k < K`` (a spec equal to `spec` but for its length; ``num_tokens`` defaults to ``k``).
        ``steps`` Euler steps (default ``config.decode_steps``); ``generator`` draws the initial
        noise (default: seeded by ``config.decode_seed``, so a decode is deterministic)."""
        spec, length = tokens.spec, tokens.spec.length
        if spec.layout != "sequence" or replace(spec, length=self.config.num_latent_tokens) != self.spec:
            raise ValueError(f"tokens of spec {spec} cannot be decoded by a tokenizer of spec {self.spec}")
        if length > self.config.num_latent_tokens:
            raise ValueError(f"got {length} tokens, this tokenizer decodes at most {self.config.num_latent_tokens}")
        num_tokens = length if num_tokens is None else int(num_tokens)
        if not 1 <= num_tokens <= length:
            raise ValueError(f"num_tokens must be in [1, {length}], got {num_tokens}")
        images = self.decode_latents(self.latents_of(tokens, num_tokens), num_tokens, steps, generator)
        return images.clamp(-1, 1)

    def prefix_lengths(self, fractions=(0.25, 0.5, 0.75, 1.0)) -> list[int]:
        """Token counts of the prefixes at ``fractions`` of ``K``, rounded up to whole groups."""
        c = self.config
        return [max(1, math.ceil(f * c.num_groups - 1e-9)) * c.group_size for f in fractions]
