"""Next-X prediction (xAR: Ren et al., "Beyond Next-Token: Next-X Prediction for Autoregressive Visual
Generation", https://arxiv.org/abs/2502.20388) over continuous tokens.

The prediction unit ("entity" X) is selectable: ``unit="token"`` (one token per step, raster order)
or ``unit="cell"`` (a ``cell_size x cell_size`` group of neighbouring tokens per step, cells in raster
order, raster inside a cell; xAR found cells best). A grid that is not a multiple of the cell size is
padded up to one; padded positions carry no loss and are dropped from samples.

Each entity is regressed, not classified: a per-token flow-matching head (`artok.heads.FlowHead`,
velocity prediction; the DDPM `DiffusionHead` is interchangeable) models a token given the
transformer's condition vector. The transformer is **block-causal over units**, VAR-style:

    block 0      = class embedding + positions of unit 0
    block n > 0  = proj(context unit n-1) + time_embedding(t_{n-1}) + positions of unit n-1
                   + positions of unit n
    block n attends to blocks 0 .. n; its outputs condition the head for the tokens of unit n.

**Noisy context learning** (xAR's remedy for exposure bias): in training the context units are not
the ground truth but noisy versions ``t x + (1 - t) eps`` with an independent ``t ~ U(0, 1)`` per
unit (``t`` is embedded, so the model knows how much to trust each unit); at sampling the context is
the generated unit at ``t = 1``. ``noisy_context=False`` gives plain teacher forcing.
`artok.sampling.sample_next_x` generates unit by unit with a per-unit KV cache and an Euler or
Euler-Maruyama integration of the head's flow.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from artok.generators.base import Generator, IncompatibleTokensError
from artok.generators.head_support import build_continuous_head, check_continuous_head, validate_continuous_head_options
from artok.generators.next_scale import block_causal_mask
from artok.hub import register_model
from artok.nn import KVCache, RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.nn.adaln import TimestepEmbedder
from artok.tokens import Tokens, TokenSpec

UNITS = ("token", "cell")


@dataclass
class NextXConfig:
    """Configuration of `NextXGenerator`.

    Args:
        token_spec: the tokens' `TokenSpec` (as a dict): continuous, on a grid (or a sequence for
            ``unit="token"``).
        num_classes: class labels; index ``num_classes`` is the unconditional label.
        dim, depth, num_heads, hidden_dim: transformer size.
        unit: ``"token"`` or ``"cell"``.
        cell_size: side of a cell in tokens (``unit="cell"``).
        noisy_context: train on noisy context units (xAR's noisy context learning).
        class_dropout, dropout: label dropout (for CFG) and attention / residual dropout.
        head: ``"flow"`` (xAR) or ``"diffusion"``.
        head_width, head_depth, head_batch_mul: the per-token MLP head and its loss repeats.
        num_timesteps, noise_schedule: diffusion head schedule (unused by the flow head).
        prediction: what the diffusion head regresses, ``"v"`` or ``"epsilon"``.
        time_sampling: flow head training times (``uniform`` or ``logit-normal``).
        token_scale: tokens are multiplied by this before modelling; samples are divided by it.
    """

    token_spec: dict
    num_classes: int = 10
    dim: int = 256
    depth: int = 4
    num_heads: int = 4
    hidden_dim: int | None = None
    unit: str = "cell"
    cell_size: int = 2
    noisy_context: bool = True
    class_dropout: float = 0.1
    dropout: float = 0.0
    head: str = "flow"
    head_width: int = 256
    head_depth: int = 3
    head_batch_mul: int = 4
    num_timesteps: int = 1000
    noise_schedule: str = "cosine"
    prediction: str = "v"
    time_sampling: str = "uniform"
    token_scale: float = 1.0

    def __post_init__(self) -> None:
        spec = TokenSpec.coerce(self.token_spec)
        self.token_spec = spec.to_dict()
        validate_continuous_head_options(
            self.head, self.num_timesteps, self.noise_schedule, self.time_sampling, self.prediction
        )
        NextXGenerator.check_spec(spec, self.head)
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.unit == "token":
            self.cell_size = 1
        if self.cell_size < 1:
            raise ValueError(f"cell_size must be >= 1, got {self.cell_size}")
        if self.unit == "cell" and spec.layout != "grid":
            raise IncompatibleTokensError(f"unit='cell' needs tokens on a 2D grid, got layout {spec.layout!r}; use unit='token'")
        if self.num_classes < 1:
            raise ValueError(f"need num_classes >= 1, got {self.num_classes}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout must be in [0, 1), got {self.class_dropout}")
        if self.head_width < 1 or self.head_depth < 1 or self.head_batch_mul < 1:
            raise ValueError("head_width, head_depth and head_batch_mul must be positive")
        if self.token_scale <= 0:
            raise ValueError(f"token_scale must be positive, got {self.token_scale}")

    @property
    def spec(self) -> TokenSpec:
        return TokenSpec.from_dict(self.token_spec)

    @property
    def grid(self) -> tuple[int, int]:
        spec = self.spec
        return spec.grid if spec.layout == "grid" else (1, spec.length)


def unit_layout(grid: tuple[int, int], cell_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token index of every slot of every unit, and which slots are real.

    Returns ``index`` (``N x u`` int64, index into the raster-ordered grid, 0 for padding) and
    ``valid`` (``N x u`` bool), for ``N`` cells of ``u = cell_size^2`` slots, cells in raster order
    over the grid padded up to a multiple of ``cell_size``, slots in raster order inside a cell."""
    height, width = grid
    cells_h, cells_w = math.ceil(height / cell_size), math.ceil(width / cell_size)
    rows = torch.arange(cells_h).repeat_interleave(cells_w)[:, None] * cell_size
    cols = torch.arange(cells_w).repeat(cells_h)[:, None] * cell_size
    rows = rows + torch.arange(cell_size).repeat_interleave(cell_size)[None]
    cols = cols + torch.arange(cell_size).repeat(cell_size)[None]
    valid = (rows < height) & (cols < width)
    return torch.where(valid, rows * width + cols, torch.zeros_like(rows)), valid


@register_model("next_x")
class NextXGenerator(Generator):
    """Block-causal transformer over units of continuous tokens with a flow head; see the module docstring."""

    config_class = NextXConfig

    def __init__(self, config: NextXConfig) -> None:
        super().__init__()
        self.config = config
        self.check_spec = functools.partial(type(self).check_spec, head=config.head)
        spec, dim = config.spec, config.dim
        index, valid = unit_layout(config.grid, config.cell_size)
        self.register_buffer("unit_index", index, persistent=False)
        self.register_buffer("unit_valid", valid, persistent=False)
        self.num_units, self.unit_size = index.shape
        padded_len = self.num_units * self.unit_size
        self.register_buffer("attention_mask", block_causal_mask([self.unit_size] * self.num_units), persistent=False)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.context_proj = nn.Linear(spec.channels, dim)
        self.context_time = TimestepEmbedder(dim, scale=1000.0)
        self.position = nn.Parameter(torch.zeros(padded_len, dim))  # slot positions, unit order
        self.context_position = nn.Parameter(torch.zeros(padded_len, dim))
        hidden = config.hidden_dim or swiglu_hidden_dim(dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, hidden, config.dropout) for _ in range(config.depth)
        )
        self.norm = RMSNorm(dim)
        self.head = build_continuous_head(
            config.head, spec.channels, dim, config.head_width, config.head_depth, config.num_timesteps,
            config.noise_schedule, config.time_sampling, config.prediction,
        )
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.context_position, std=0.02)
        nn.init.normal_(self.class_embedding.weight, std=0.02)

    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        if spec.layout not in ("grid", "sequence"):
            raise IncompatibleTokensError(
                f"next-X models continuous tokens on a grid or sequence, got layout {spec.layout!r}; use a KL tokenizer"
            )
        check_continuous_head(head or "flow", spec, "next-x")

    @property
    def spec(self) -> TokenSpec:
        return self.config.spec

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    # -- layout -----------------------------------------------------------------------------------
    def to_units(self, values: torch.Tensor) -> torch.Tensor:
        """Tokens ``B x L x D`` -> units ``B x N x u x D`` (padding slots zero)."""
        units = values[:, self.unit_index]
        return units * self.unit_valid[..., None].to(units.dtype)

    def from_units(self, units: torch.Tensor) -> torch.Tensor:
        """Units ``B x N x u x D`` -> tokens ``B x L x D`` (padding slots dropped)."""
        flat_units = units[:, self.unit_valid]
        out = torch.empty(units.shape[0], self.spec.seq_len, units.shape[-1], dtype=units.dtype, device=units.device)
        out[:, self.unit_index[self.unit_valid]] = flat_units
        return out

    def unit_span(self, unit: int) -> tuple[int, int]:
        return unit * self.unit_size, (unit + 1) * self.unit_size

    # -- model ------------------------------------------------------------------------------------
    def block_input(
        self, labels: torch.Tensor, unit: int, context: torch.Tensor | None, context_time: torch.Tensor | None
    ) -> torch.Tensor:
        """Input of block ``unit`` (``B x u x dim``): class for unit 0, else the context unit
        ``context`` (``B x u x D``, model space) at noise time ``context_time`` (``B``; 1 = clean)."""
        start, end = self.unit_span(unit)
        x = self.position[start:end].unsqueeze(0)
        if unit == 0:
            return x + self.class_embedding(labels).unsqueeze(1)
        previous = slice(start - self.unit_size, start)
        x = x + self.context_proj(context) + self.context_position[previous]
        return x + self.context_time(context_time).unsqueeze(1)

    def block_inputs(self, labels: torch.Tensor, context: torch.Tensor, context_time: torch.Tensor) -> torch.Tensor:
        """All block inputs at once: ``context`` ``B x (N-1) x u x D``, times ``B x (N-1)`` -> ``B x N u x dim``."""
        batch = labels.shape[0]
        first = self.position[: self.unit_size].unsqueeze(0) + self.class_embedding(labels).unsqueeze(1)
        if self.num_units == 1:
            return first
        rest = self.context_proj(context) + self.context_time(context_time.reshape(-1)).reshape(batch, -1, 1, self.config.dim)
        rest = rest.reshape(batch, -1, self.config.dim) + self.context_position[: -self.unit_size] + self.position[self.unit_size :]
        return torch.cat([first, rest], dim=1)

    def transformer(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Block-causal pass (``input_pos`` None) or a cached pass over the positions ``input_pos``."""
        mask = self.attention_mask[: x.shape[1], : x.shape[1]] if input_pos is None else self.attention_mask[input_pos]
        for block in self.blocks:
            x = block(x, mask=mask, input_pos=input_pos)
        return self.norm(x)

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        units = self.to_units(tokens.values * self.config.token_scale)
        labels = cond
        batch = units.shape[0]
        if self.training and self.config.class_dropout > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.config.class_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        context = units[:, :-1]
        if self.config.noisy_context:
            times = torch.rand(batch, self.num_units - 1, device=units.device)
            noise = torch.randn_like(context)
            context = times[..., None, None] * context + (1 - times[..., None, None]) * noise
        else:
            times = torch.ones(batch, self.num_units - 1, device=units.device)
        hidden = self.transformer(self.block_inputs(labels, context, times))
        valid = self.unit_valid.reshape(-1)
        z = hidden[:, valid].reshape(-1, hidden.shape[-1])
        target = units.reshape(batch, -1, units.shape[-1])[:, valid].reshape(-1, units.shape[-1])
        repeats = self.config.head_batch_mul
        return {"loss": self.head.loss(z.repeat(repeats, 1), target.repeat(repeats, 1))}

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> None:
        param = self.position
        for block in self.blocks:
            attention = block.attention
            attention.kv_cache = KVCache(
                batch_size, attention.num_heads, self.position.shape[0], attention.head_dim, dtype or param.dtype, param.device
            )

    def clear_cache(self) -> None:
        for block in self.blocks:
            block.attention.kv_cache = None
