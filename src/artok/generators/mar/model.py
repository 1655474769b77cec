"""Masked autoregression over continuous tokens (MAR: Li et al., "Autoregressive Image Generation
without Vector Quantization", https://arxiv.org/abs/2406.11838).

Tokens are continuous (a KL tokenizer's latents), so no softmax can model them: a bidirectional
transformer produces a condition vector ``z_i`` for every position, and a small per-token head
(`artok.heads.DiffusionHead`, MAR's choice, or the interchangeable `artok.heads.FlowHead`) models
``p(x_i | z_i)``. Generation is *random-order masked autoregression*: in training a random subset of
positions is masked (ratio from a truncated normal ``N(1, 0.25)`` on ``[mask_ratio_min, 1]``, one per
batch, random order per row) and the head's loss is taken on the masked positions only, repeated
``head_batch_mul`` times with fresh noise (MAR's diffusion batch multiplier). Sampling
(`artok.sampling.sample_mar`) unmasks a cosine-scheduled number of positions per iteration, in a
random order, with classifier-free guidance whose scale can rise linearly with the number of
known tokens.

Backbone (``decoder_depth > 0``): MAE-style encoder / decoder split (He et al.,
https://arxiv.org/abs/2111.06377) as MAR: ``buffer_size`` class tokens + the *known* tokens go
through the encoder; the decoder re-inserts a learned mask token at the unknown positions. With
``decoder_depth = 0`` one bidirectional stack sees every position, unknown ones as the mask token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError
from artok.generators.head_support import (
    ContinuousHeadFields,
    build_continuous_head,
    check_continuous_config,
    check_continuous_head,
)
from artok.generators.mar.timm_blocks import TimmBlock
from artok.heads.diffusion import DiffusionHead
from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.tokens import Tokens, TokenSpec


@dataclass
class MARConfig(ContinuousHeadFields, GeneratorConfig):
    """Configuration of `MARGenerator`.

    Args:
        token_spec: the tokens' `TokenSpec` (as a dict): continuous, grid or sequence.
        num_classes: class labels; index ``num_classes`` is the unconditional label.
        dim, num_heads, hidden_dim: transformer width, heads, SwiGLU size.
        encoder_depth: encoder layers (the whole stack when ``decoder_depth`` is 0).
        decoder_depth: MAE decoder layers (0: no encoder/decoder split).
        buffer_size: class-token positions prepended to the sequence (MAR uses 64).
        class_dropout: label-dropout probability (trains the CFG branch).
        dropout: attention / residual dropout.
        mask_ratio_min, mask_ratio_std: training mask ratio ~ N(1, std) truncated to [min, 1].
        head: ``"diffusion"`` (DDPM) or ``"flow"`` (flow matching).
        block: ``"swiglu"`` (artok's RMSNorm / SwiGLU blocks) or ``"timm"``: MAR's own layout
            (`artok.generators.mar.timm_blocks`: LayerNorm ViT blocks with GELU MLPs, LayerNorm
            encoder / decoder norms, and MAR's ``z_proj_ln`` LayerNorm on the encoder input after
            the position embedding); ``hidden_dim`` then defaults to ``4 * dim``.
        learn_sigma: the diffusion head also outputs a learned variance (MAR's 2 x channels).
        head_width, head_depth, head_batch_mul, num_timesteps, noise_schedule, prediction,
            time_sampling, token_scale: keyword-only head options (`ContinuousHeadFields`).
    """

    encoder_depth: int = 4
    decoder_depth: int = 0
    buffer_size: int = 4
    mask_ratio_min: float = 0.7
    mask_ratio_std: float = 0.25
    head: str = "diffusion"
    block: str = "swiglu"
    learn_sigma: bool = False

    def __post_init__(self) -> None:
        spec = TokenSpec.coerce(self.token_spec)
        self.token_spec = spec.to_dict()
        check_continuous_config(self)
        MARGenerator.check_spec(spec, self.head)
        self.check_common()
        if self.encoder_depth < 1 or self.decoder_depth < 0:
            raise ValueError(f"need encoder_depth >= 1 and decoder_depth >= 0, got {self.encoder_depth}, {self.decoder_depth}")
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if not 0.0 < self.mask_ratio_min <= 1.0 or self.mask_ratio_std <= 0:
            raise ValueError(f"need 0 < mask_ratio_min <= 1 and mask_ratio_std > 0, got {self.mask_ratio_min}, {self.mask_ratio_std}")
        if self.block not in ("swiglu", "timm"):
            raise ValueError(f"block must be 'swiglu' or 'timm', got {self.block!r}")
        if self.learn_sigma and self.head != "diffusion":
            raise ValueError("learn_sigma needs head='diffusion' (a flow head has no variance)")


def truncated_normal_ratio(mean: float, std: float, low: float, high: float, device=None) -> float:
    """One draw of ``N(mean, std)`` truncated to ``[low, high]`` (inverse-CDF sampling)."""
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    lo, hi = normal.cdf(torch.tensor(low, dtype=torch.float64)), normal.cdf(torch.tensor(high, dtype=torch.float64))
    u = lo + (hi - lo) * torch.rand((), dtype=torch.float64)
    return float(normal.icdf(u.clamp(1e-12, 1 - 1e-12)).clamp(low, high))


@register_model("mar")
class MARGenerator(Generator):
    """Random-order masked autoregression with a per-token continuous head; see the module docstring."""

    config_class = MARConfig

    def __init__(self, config: MARConfig) -> None:
        super().__init__()
        self.config = config
        self.bind_spec_check(config.head)
        spec, dim = config.spec, config.dim
        seq_len, token_dim = spec.seq_len, spec.channels
        timm = config.block == "timm"
        hidden = config.hidden_dim or (4 * dim if timm else swiglu_hidden_dim(dim))

        def make_block() -> nn.Module:
            if timm:
                return TimmBlock(dim, config.num_heads, hidden, config.dropout)
            return TransformerBlock(dim, config.num_heads, hidden, config.dropout)

        def make_norm() -> nn.Module:
            return nn.LayerNorm(dim, eps=1e-6) if timm else RMSNorm(dim)

        self.token_proj = nn.Linear(token_dim, dim)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.encoder_position = nn.Parameter(torch.zeros(config.buffer_size + seq_len, dim))
        if timm:
            self.input_norm = nn.LayerNorm(dim, eps=1e-6)
        self.encoder = nn.ModuleList(make_block() for _ in range(config.encoder_depth))
        self.encoder_norm = make_norm()
        if config.decoder_depth:
            self.decoder_proj = nn.Linear(dim, dim)
            self.decoder_position = nn.Parameter(torch.zeros(config.buffer_size + seq_len, dim))
            self.decoder = nn.ModuleList(make_block() for _ in range(config.decoder_depth))
            self.decoder_norm = make_norm()
        self.head_position = nn.Parameter(torch.zeros(seq_len, dim))
        if config.learn_sigma:
            self.head = DiffusionHead(token_dim, dim, config.head_width, config.head_depth, config.num_timesteps,
                                      config.noise_schedule, config.prediction, learn_sigma=True)
        else:
            self.head = build_continuous_head(config, token_dim, dim)
        for name, param in self.named_parameters():
            if "position" in name or name == "mask_token":
                nn.init.normal_(param, std=0.02)
        nn.init.normal_(self.class_embedding.weight, std=0.02)

    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        if spec.layout not in ("grid", "sequence"):
            raise IncompatibleTokensError(
                f"MAR models continuous tokens on a grid or sequence, got layout {spec.layout!r}; use a KL tokenizer"
            )
        check_continuous_head(head or "diffusion", spec, "mar")

    def _with_buffer(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        buffer = self.class_embedding(labels).unsqueeze(1).expand(-1, self.config.buffer_size, -1)
        return torch.cat([buffer, x], dim=1)

    def _encoder_input(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class buffer + token embeddings + encoder positions (then MAR's ``z_proj_ln`` with ``block="timm"``)."""
        x = self._with_buffer(x, labels) + self.encoder_position
        return self.input_norm(x) if self.config.block == "timm" else x

    def embed_values(self, values: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``B x L x dim`` of scaled tokens (samplers keep tokens in fp32; the
        projection runs in the weights' dtype)."""
        return self.token_proj(values.to(self.token_proj.weight.dtype))

    def _masked_inputs(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed_values(values)
        return torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)

    def _bidirectional(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The single stack (``decoder_depth=0``) over encoder inputs ``x`` (positions added), at
        sequence ``positions`` when given (a cached pass)."""
        if self.config.block == "timm":
            x = self.input_norm(x)  # MAR's z_proj_ln, per token
        for block in self.encoder:
            x = block(x, input_pos=positions)
        return self.encoder_norm(x)

    def condition_vectors(self, values: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, *,
                          write_cache: bool = False) -> torch.Tensor:
        """Head conditions ``z`` ``B x L x dim`` for scaled tokens ``values`` (``B x L x D``, model
        space: already multiplied by ``token_scale``) with unknown positions ``mask`` (``B x L``,
        True = unknown). With the encoder/decoder split every row must hide the same count.

        ``write_cache`` (``decoder_depth=0`` only): the pass also writes every position's keys/values
        into the attached caches (ReCAP's full pass, `artok.generators.mar.recap`)."""
        buffer = self.config.buffer_size
        if not self.config.decoder_depth:
            x = self._with_buffer(self._masked_inputs(values, mask), labels) + self.encoder_position
            positions = torch.arange(x.shape[1], device=x.device) if write_cache else None
            return self._bidirectional(x, positions)[:, buffer:] + self.head_position
        if write_cache:
            raise ValueError("cached passes need the single bidirectional stack (decoder_depth=0)")
        x = self.embed_values(values)
        counts = mask.sum(dim=1)
        if not bool((counts == counts[0]).all()):
            raise ValueError("the MAE encoder needs the same number of unknown tokens in every row")
        keep = torch.cat([torch.zeros_like(mask[:, :buffer]), mask], dim=1)  # True = drop
        x = self._encoder_input(x, labels)
        num_keep = x.shape[1] - int(counts[0])
        index = torch.argsort(keep.int(), dim=1, stable=True)[:, :num_keep]  # kept positions, in order
        gathered = torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        for block in self.encoder:
            gathered = block(gathered)
        gathered = self.decoder_proj(self.encoder_norm(gathered))
        full = self.mask_token.to(gathered.dtype).expand(x.shape[0], x.shape[1], -1).clone()
        full = full.scatter(1, index.unsqueeze(-1).expand(-1, -1, full.shape[-1]), gathered)
        full = full + self.decoder_position
        for block in self.decoder:
            full = block(full)
        return self.decoder_norm(full)[:, buffer:] + self.head_position

    def local_condition_vectors(self, values: torch.Tensor, mask: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Conditions of the ``active`` positions only (``B x n`` token indices), computed against the
        cached keys/values of every other position (refreshing the active positions' entries)."""
        x = self._masked_inputs(values, mask).gather(1, active[..., None].expand(-1, -1, self.config.dim))
        positions = active + self.config.buffer_size
        return self._bidirectional(x + self.encoder_position[positions], positions) + self.head_position[active]

    def random_mask(self, batch_size: int, device) -> torch.Tensor:
        """Training mask ``B x L``: one truncated-normal ratio for the batch, random order per row."""
        seq_len = self.spec.seq_len
        ratio = truncated_normal_ratio(1.0, self.config.mask_ratio_std, self.config.mask_ratio_min, 1.0)
        count = min(seq_len, max(1, math.ceil(seq_len * ratio)))
        ranks = torch.rand(batch_size, seq_len, device=device).argsort(dim=1).argsort(dim=1)
        return ranks < count

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        values = tokens.values * self.config.token_scale
        labels = cond
        labels = self.drop_labels(labels)
        mask = self.random_mask(values.shape[0], values.device)
        z = self.condition_vectors(values, mask, labels)[mask]
        target = values[mask]
        repeats = self.config.head_batch_mul
        return {"loss": self.head.loss(z.repeat(repeats, 1), target.repeat(repeats, 1))}
