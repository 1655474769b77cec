"""Token-Shuffle (Ma et al., "Token-Shuffle: Towards High-Resolution Image Generation with
Autoregressive Models", https://arxiv.org/abs/2504.17789; no public code, this follows the paper).

A raster next-token transformer over *merged* tokens: each ``s x s`` window of neighbouring tokens
is one transformer position. Token-shuffle (input): the ``s^2`` token embeddings of a window are
concatenated along channels and an MLP (a linear fusion ``s^2 dim -> dim`` and a residual SwiGLU)
compresses them to one ``dim`` vector. Token-unshuffle (output): a linear layer expands each
hidden state to ``s^2`` vectors, ``unshuffle_depth`` residual SwiGLU blocks refine them and one
shared linear head gives the logits of the window's ``s^2`` tokens. So an ``h x w`` grid takes
``ceil(h/s) * ceil(w/s)`` transformer steps instead of ``h * w``.

As in the paper, the ``s^2`` tokens of a window are predicted in parallel (independently given the
hidden state) and sampled together in one step. Windows run in raster order over the merged grid,
tokens inside a window in raster order; 2D RoPE is over the merged grid. A grid that ``s`` does not
divide is padded on the right and bottom with a pad id (embedded, never predicted: pad targets are
left out of the loss and dropped from samples).

Simplified vs the paper: class-conditional (the paper shuffles a text LLM's image tokens); the
token embedding is learned here rather than an LLM's vocabulary; no CFG-scheduler variants.
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, normal_init_, require_discrete_grid
from artok.hub import register_model
from artok.nn import RMSNorm, SwiGLU, TransformerBlock, rope_2d_table, swiglu_hidden_dim
from artok.nn.kv_cache import allocate_caches, attach_caches, detach_caches
from artok.tokens import Tokens, TokenSpec


@dataclass
class TokenShuffleConfig(GeneratorConfig):
    """Configuration of `TokenShuffleGenerator`.

    Args:
        token_spec: the `TokenSpec` (as a dict): discrete, one id per cell, grid layout.
        window: ``s``, the side of the merged windows (``s^2`` tokens per transformer position).
        depth: transformer blocks over the merged sequence.
        unshuffle_depth: residual SwiGLU blocks after the token-unshuffle expansion.
        rope_base, norm_eps: rotary base and RMSNorm epsilon.
        (num_classes, dim, num_heads, hidden_dim, class_dropout, dropout: see `GeneratorConfig`.)
    """

    window: int = 2
    depth: int = 4
    unshuffle_depth: int = 1
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        self.token_spec = TokenSpec.coerce(self.token_spec).to_dict()
        TokenShuffleGenerator.check_spec(self.spec)
        self.check_common()
        if self.window < 1 or self.unshuffle_depth < 0:
            raise ValueError(f"need window >= 1 and unshuffle_depth >= 0, got {self.window}, {self.unshuffle_depth}")
        self.check_rope_2d()

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.spec.grid)

    @property
    def merged_grid(self) -> tuple[int, int]:
        """``(ceil(h / s), ceil(w / s))``: the transformer's grid."""
        return tuple(math.ceil(side / self.window) for side in self.grid)

    @property
    def seq_len(self) -> int:
        """Transformer steps per image (merged positions)."""
        height, width = self.merged_grid
        return height * width

    @property
    def group_size(self) -> int:
        return self.window**2


class ResidualMLP(nn.Module):
    """``x + SwiGLU(RMSNorm(x))``."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


@register_model("token_shuffle")
class TokenShuffleGenerator(Generator):
    """Raster transformer over ``s x s`` merged windows with token-shuffle / token-unshuffle."""

    config_class = TokenShuffleConfig

    def __init__(self, config: TokenShuffleConfig) -> None:
        super().__init__()
        self.config = config
        dim, groups, vocab = config.dim, config.group_size, config.spec.vocab_size
        hidden = config.hidden_dim or swiglu_hidden_dim(dim)
        self.token_embedding = nn.Embedding(vocab + 1, dim)  # + the pad id of partial windows
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.shuffle = nn.Linear(groups * dim, dim, bias=False)
        self.shuffle_mlp = ResidualMLP(dim, hidden, config.norm_eps)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, hidden, dropout=config.dropout, norm_eps=config.norm_eps)
            for _ in range(config.depth))
        self.norm = RMSNorm(dim, config.norm_eps)
        self.unshuffle = nn.Linear(dim, groups * dim, bias=False)
        self.unshuffle_mlps = nn.Sequential(*(ResidualMLP(dim, hidden, config.norm_eps)
                                              for _ in range(config.unshuffle_depth)))
        self.head_norm = RMSNorm(dim, config.norm_eps)
        self.head = nn.Linear(dim, vocab, bias=False)
        head_dim = dim // config.num_heads
        self.register_buffer("rope", rope_2d_table(config.merged_grid, head_dim, config.rope_base, num_prefix=1),
                             persistent=False)
        self.register_buffer("causal_mask", torch.ones(config.seq_len, config.seq_len, dtype=torch.bool).tril(),
                             persistent=False)
        self.register_buffer("padding", self.group_ids(torch.zeros(1, config.spec.seq_len, dtype=torch.long))[0] < 0,
                             persistent=False)  # merged positions x s^2: True where a window slot is padding
        self.apply(functools.partial(normal_init_, zero_bias=False))


    @classmethod
    def check_spec(cls, spec: TokenSpec) -> None:
        require_discrete_grid("token-shuffle", spec)

    @property
    def pad_id(self) -> int:
        return self.config.spec.vocab_size

    # -- token shuffle -------------------------------------------------------------------------
    def group_ids(self, ids: torch.Tensor, pad: int = -1) -> torch.Tensor:
        """Raster ids ``B x (h w)`` -> window ids ``B x M x s^2`` (partial windows padded with ``pad``)."""
        (height, width), s = self.config.grid, self.config.window
        grid = ids.view(ids.shape[0], height, width)
        merged_h, merged_w = self.config.merged_grid
        grid = F.pad(grid, (0, merged_w * s - width, 0, merged_h * s - height), value=pad)
        return rearrange(grid, "b (gh s1) (gw s2) -> b (gh gw) (s1 s2)", s1=s, s2=s)

    def ungroup_ids(self, groups: torch.Tensor) -> torch.Tensor:
        """Window ids ``B x M x s^2`` -> raster ids ``B x (h w)`` (padding cropped)."""
        (height, width), s = self.config.grid, self.config.window
        merged_w = self.config.merged_grid[1]
        grid = rearrange(groups, "b (gh gw) (s1 s2) -> b (gh s1) (gw s2)", gw=merged_w, s1=s, s2=s)
        return grid[:, :height, :width].flatten(1)

    def embed_groups(self, groups: torch.Tensor) -> torch.Tensor:
        """Token-shuffle: window ids ``B x T x s^2`` (pad id allowed) -> ``B x T x dim``."""
        merged = rearrange(self.token_embedding(groups), "b t g d -> b t (g d)")
        return self.shuffle_mlp(self.shuffle(merged))

    def embed_class(self, labels: torch.Tensor) -> torch.Tensor:
        return self.class_embedding(labels).unsqueeze(1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Token-unshuffle + head: ``B x T x dim`` -> ``B x T x s^2 x V`` (fp32)."""
        expanded = rearrange(self.unshuffle(hidden), "b t (g d) -> b t g d", g=self.config.group_size)
        return self.head(self.head_norm(self.unshuffle_mlps(expanded))).float()

    # -- model ---------------------------------------------------------------------------------
    def transformer(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks + final norm over ``x`` (``B x T x dim``): causal over positions ``0..T-1``
        without ``input_pos``, else through the static caches at ``input_pos`` (`setup_cache`)."""
        if input_pos is None:
            rope, mask, causal = self.rope[: x.shape[1]], None, True
        else:
            rope, mask, causal = self.rope[input_pos], self.causal_mask[input_pos], False
        for block in self.blocks:
            x = block(x, rope=rope, mask=mask, input_pos=input_pos, is_causal=causal)
        return self.norm(x)

    def forward(self, groups: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Window logits ``B x (T+1) x s^2 x V`` after the class and ``groups`` (``B x T x s^2``,
        T < M window ids): the predictions of windows ``0..T``."""
        x = torch.cat([self.embed_class(labels), self.embed_groups(groups)], dim=1)
        return self.logits(self.transformer(x))

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec)
        groups = self.group_ids(tokens.ids, pad=self.pad_id)
        logits = self(groups[:, :-1], self.drop_labels(cond))
        targets = groups.masked_fill(self.padding, -100)  # pad slots are not predicted
        return {"loss": F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=-100)}

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> None:
        """Static KV caches of ``M`` merged positions for ``batch_size`` rows."""
        param = next(self.parameters())
        attach_caches(self.blocks, allocate_caches(self.blocks, batch_size, self.config.seq_len, dtype or param.dtype,
                                                   param.device))

    def clear_cache(self) -> None:
        detach_caches(self.blocks)
