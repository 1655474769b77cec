"""NAR, neighbouring autoregressive modeling (He et al., "Neighboring Autoregressive Modeling for
Efficient Visual Generation", https://arxiv.org/abs/2503.10696; public code:
github.com/ThisisBillhe/NAR, ``NAR-images/autoregressive/models/gpt.py``).

Tokens are generated outward from the top-left cell in order of Manhattan distance: front ``d``
holds the cells with ``row + col = d`` and is predicted in one forward pass, so an ``h x w`` grid
takes ``h + w - 1`` passes instead of ``h * w``. Two dimension-oriented heads predict the
neighbours of every fed token: the horizontal head (the backbone's final state) its right
neighbour ``(r, c + 1)``, the vertical head (``vertical_depth`` more transformer blocks on top of
the backbone, NAR's extra layers) its lower neighbour ``(r + 1, c)``. A cell with both a left and
an upper neighbour gets the mean of the two heads' logits; the first cell is predicted from the
class token by the mean of both heads.

The sequence stays in raster order, ``[class, t_0, ..., t_{L-1}]``, rotated by 2D RoPE of each
token's own cell; attention is block-causal over fronts (a token sees the class token and every
token on its own front or an earlier one), so a front's tokens are fed together and their keys and
values go into a static KV cache at their raster slots (`setup_cache`).

Simplified vs the paper: class-conditional only (no text), the class is one prefix token; no
video variant.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, normal_init_, require_discrete_grid
from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, rope_2d_table, swiglu_hidden_dim
from artok.nn.kv_cache import allocate_caches, attach_caches, detach_caches
from artok.tokens import Tokens, TokenSpec


@dataclass
class NARConfig(GeneratorConfig):
    """Configuration of `NARGenerator`.

    Args:
        token_spec: the `TokenSpec` (as a dict): discrete, one id per cell, grid layout.
        depth: backbone blocks (the horizontal head reads their output).
        vertical_depth: extra blocks of the vertical head (NAR's ``medusa_attention_num``).
        rope_base, norm_eps: rotary base and RMSNorm epsilon.
        (num_classes, dim, num_heads, hidden_dim, class_dropout, dropout: see `GeneratorConfig`.)
    """

    depth: int = 4
    vertical_depth: int = 1
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        self.token_spec = TokenSpec.coerce(self.token_spec).to_dict()
        NARGenerator.check_spec(self.spec)
        self.check_common()
        if self.vertical_depth < 1:
            raise ValueError(f"vertical_depth must be >= 1, got {self.vertical_depth}")
        self.check_rope_2d()

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.spec.grid)

    @property
    def seq_len(self) -> int:
        return self.spec.seq_len

    @property
    def num_fronts(self) -> int:
        """Forward passes per image: ``h + w - 1``."""
        height, width = self.grid
        return height + width - 1


@dataclass(frozen=True)
class NeighbourPlan:
    """Where the logits of some target cells come from: for target ``i``, the horizontal head's
    output at source slot ``left[i]`` with weight ``left_weight[i]`` plus the vertical head's at
    ``up[i]`` with ``up_weight[i]`` (slots index the states passed to `combine_heads`)."""

    cells: torch.Tensor
    left: torch.Tensor
    up: torch.Tensor
    left_weight: torch.Tensor
    up_weight: torch.Tensor


def front_cells(grid: tuple[int, int]) -> list[list[int]]:
    """Raster indices of each front ``d = row + col``, ordered by row."""
    height, width = grid
    return [[r * width + (d - r) for r in range(max(0, d - width + 1), min(height, d + 1))]
            for d in range(height + width - 1)]


def neighbour_plan(grid: tuple[int, int], cells: list[int], source_slot) -> NeighbourPlan:
    """The plan of ``cells``; ``source_slot(cell)`` is the slot of a fed cell (``-1``: the class token)."""
    width = grid[1]
    left, up, left_weight, up_weight = [], [], [], []
    for cell in cells:
        row, col = divmod(cell, width)
        has_left, has_up = col > 0, row > 0
        first = not (has_left or has_up)
        missing = source_slot(-1) if first else 0  # the class slot for the first cell; else unused (weight 0)
        left.append(source_slot(cell - 1) if has_left else missing)
        up.append(source_slot(cell - width) if has_up else missing)
        both = (has_left and has_up) or first
        left_weight.append(0.5 if both else float(has_left))
        up_weight.append(0.5 if both else float(has_up))
    tensor = torch.tensor
    return NeighbourPlan(tensor(cells), tensor(left), tensor(up), tensor(left_weight), tensor(up_weight))


def front_plans(grid: tuple[int, int]) -> list[NeighbourPlan]:
    """One plan per front; the sources are the previous front's cells in their order (the class
    token for front 0), as the sampler feeds them."""
    fronts = front_cells(grid)
    plans = [neighbour_plan(grid, fronts[0], lambda cell: 0)]
    for previous, cells in zip(fronts, fronts[1:]):
        index = {cell: i for i, cell in enumerate(previous)}
        plans.append(neighbour_plan(grid, cells, index.__getitem__))
    return plans


def combine_heads(horizontal: torch.Tensor, vertical: torch.Tensor, plan: NeighbourPlan) -> torch.Tensor:
    """Logits ``B x n x V`` of the plan's ``n`` cells from head logits ``B x S x V`` (fp32)."""
    left = horizontal.float()[:, plan.left.to(horizontal.device)]
    up = vertical.float()[:, plan.up.to(vertical.device)]
    weights = plan.left_weight.to(left.device)[:, None], plan.up_weight.to(up.device)[:, None]
    return weights[0] * left + weights[1] * up


@register_model("nar")
class NARGenerator(Generator):
    """Block-causal transformer over fronts with horizontal and vertical next-neighbour heads."""

    config_class = NARConfig

    def __init__(self, config: NARConfig) -> None:
        super().__init__()
        self.config = config
        vocab, dim = config.spec.vocab_size, config.dim
        hidden = config.hidden_dim or swiglu_hidden_dim(dim)
        self.token_embedding = nn.Embedding(vocab, dim)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)

        def block():
            return TransformerBlock(dim, config.num_heads, hidden, dropout=config.dropout, norm_eps=config.norm_eps)

        self.blocks = nn.ModuleList(block() for _ in range(config.depth))
        self.vertical_blocks = nn.ModuleList(block() for _ in range(config.vertical_depth))
        self.horizontal_norm, self.vertical_norm = RMSNorm(dim, config.norm_eps), RMSNorm(dim, config.norm_eps)
        self.horizontal_head, self.vertical_head = nn.Linear(dim, vocab, bias=False), nn.Linear(dim, vocab, bias=False)
        self.register_buffer("rope", rope_2d_table(config.grid, dim // config.num_heads, config.rope_base, num_prefix=1),
                             persistent=False)
        height, width = config.grid
        cells = torch.arange(height * width)
        front = torch.cat([torch.tensor([-1]), cells // width + cells % width])
        self.register_buffer("front_mask", front[None, :] <= front[:, None], persistent=False)
        self.training_plan = neighbour_plan(config.grid, list(range(height * width)), lambda cell: cell + 1)
        self.plans = front_plans(config.grid)
        self.apply(functools.partial(normal_init_, zero_bias=False))


    @classmethod
    def check_spec(cls, spec: TokenSpec) -> None:
        require_discrete_grid("nar", spec)

    @property
    def all_blocks(self) -> list[nn.Module]:
        return [*self.blocks, *self.vertical_blocks]

    # -- model ---------------------------------------------------------------------------------
    def head_logits(self, x: torch.Tensor, slots: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Horizontal and vertical logits (``B x T x V`` each) of embeddings ``x`` at sequence
        ``slots`` (``T``; 0 = class, ``1 + k`` = cell ``k``). Without ``slots``: slots
        ``0..T-1`` without cache (training, recompute); with them, keys/values are written to and
        read from the static caches (`setup_cache`)."""
        cached = slots is not None
        slots = torch.arange(x.shape[1], device=x.device) if slots is None else slots
        rope = self.rope[slots]
        mask = self.front_mask[slots] if cached else self.front_mask[slots][:, slots]
        input_pos = slots if cached else None
        for block in self.blocks:
            x = block(x, rope=rope, mask=mask, input_pos=input_pos)
        vertical = x
        for block in self.vertical_blocks:
            vertical = block(vertical, rope=rope, mask=mask, input_pos=input_pos)
        return self.horizontal_head(self.horizontal_norm(x)), self.vertical_head(self.vertical_norm(vertical))

    def embed_inputs(self, ids: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        """``[class, tokens]`` embeddings ``B x T x dim`` (either part may be None)."""
        parts = [] if labels is None else [self.class_embedding(labels).unsqueeze(1)]
        return torch.cat(parts + ([] if ids is None else [self.token_embedding(ids)]), dim=1)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``B x L x V`` of every cell given the whole grid ``ids`` (``B x L``): each cell
        sees only the fronts before its own (teacher forcing)."""
        horizontal, vertical = self.head_logits(self.embed_inputs(ids, labels))
        return combine_heads(horizontal, vertical, self.training_plan)

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec)
        logits = self(tokens.ids, self.drop_labels(cond))
        return {"loss": F.cross_entropy(logits.flatten(0, 1), tokens.ids.flatten())}

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> None:
        """Static KV caches of ``1 + L`` slots (class + every cell) for ``batch_size`` rows."""
        param = next(self.parameters())
        caches = allocate_caches(self.all_blocks, batch_size, self.config.seq_len + 1, dtype or param.dtype, param.device)
        attach_caches(self.all_blocks, caches)

    def clear_cache(self) -> None:
        detach_caches(self.all_blocks)
