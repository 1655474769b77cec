"""Next-X prediction (xAR: Ren et al., "Beyond Next-Token: Next-X Prediction for Autoregressive Visual
Generation", https://arxiv.org/abs/2502.20388) over continuous tokens.

**Entities** (the prediction unit X, ``unit``):

- ``"token"``: one token per step, raster order;
- ``"cell"``: a ``cell_size x cell_size`` group of neighbouring tokens per step, cells in raster
  order, raster inside a cell (xAR found cells best). A grid that is not a multiple of the cell size
  is padded up to one; padded slots carry no loss, are zero inputs and are dropped from samples;
- ``"image"``: one entity, the whole grid (a class-conditional flow-matching transformer);
- ``"scale"``: the grid at increasing resolutions ``s_1 < ... < s_K`` (``scales``; the last is the
  full grid), each the area-downsampled (``F.interpolate(mode="area")``) full-resolution tokens;
  entities have different sizes and the sample is the last scale. We do *not* feed the previous
  scale upsampled as an extra input (VAR does): entity k attends to every earlier scale anyway.

**Denoisers** (``denoiser``):

``"transformer"`` (xAR as published, the default): the transformer itself denoises an entity. On
Fashion-MNIST at ~1M parameters (`benchmarks/generator_zoo.py`, 2x2 cells) it reached accuracy
0.855 / FD 57.9 after 900 steps (256 s of training) against the head design's 0.765 / 67.5 after
900 steps (468 s) and 0.71 / 99.1 after 300 steps (265 s); it is behind only at equal *steps* of a
very short run (300 steps: 0.525 / 172.8), and samples ~3x slower. The training input
is the sequence of all entities, entity n noised to its own time ``t_n`` (``x_t = t x + (1 - t) eps``,
``t = 1`` clean; ``t ~ U(0, 1)`` or logit-normal, ``time_sampling``). A position of entity n has
the input ``input_proj(x_t) + position`` and the condition ``c = time_embedding(t_n) +
class_embedding(label)``, which modulates every block per token by adaLN-Zero (DiT,
https://arxiv.org/abs/2212.09748; per token because every entity has its own time; there is no
class prefix block). Label ``num_classes`` is the null label that label dropout trains for
classifier-free guidance. Attention is block-causal over entities (entity n sees entities ``<= n``)
and an adaLN-modulated linear output layer regresses, at entity n's positions, the velocity
``x_n - eps_n`` of entity n itself (MSE over real, non-padding positions).
That single noisy stream is both the context and the target: **noisy context learning** — the model
learns to use noisy earlier entities, which fights exposure bias. ``noisy_context=False`` instead
trains teacher-forced: the input is ``[clean entities; noisy entities]`` (``2 x`` length), a noisy
entity n attends to the clean entities ``< n`` and to itself, which is exactly the sampling situation.
`artok.sampling.sample_next_x` integrates each entity from noise with the transformer as the velocity
field (attending to the cached keys/values of the clean earlier entities), then runs the finished
entity once more at ``t = 1`` to write its keys/values into the static KV cache.

``"head"`` (token / cell units only; faster to sample, since a flow step runs a small MLP, not
the transformer, but weaker per unit of training compute): a per-token
MLP head (``head``: flow ``FlowHead`` or DDPM ``DiffusionHead``) models each token of unit n given
the output of a block-causal transformer whose block n sees the *previous* unit:

    block 0      = class embedding + positions of unit 0
    block n > 0  = proj(context unit n-1) + time_embedding(t_{n-1}) + positions of unit n-1
                   + positions of unit n

with the context unit noised to an independent ``t ~ U(0, 1)`` in training (noisy context
learning; ``t = 1`` at sampling; ``noisy_context=False``: teacher forcing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError
from artok.generators.head_support import (
    ContinuousHeadFields,
    build_continuous_head,
    check_continuous_config,
    check_continuous_head,
)
from artok.generators.next_scale.model import block_causal_mask
from artok.hub import register_model
from artok.nn import RMSNorm, TransformerBlock, swiglu_hidden_dim
from artok.nn.adaln import AdaLNOutput, AdaLNTransformerBlock, TimestepEmbedder
from artok.nn.kv_cache import allocate_caches, attach_caches, detach_caches
from artok.tokens import Tokens, TokenSpec

UNITS = ("token", "cell", "image", "scale")
DENOISERS = ("transformer", "head")


@dataclass
class NextXConfig(ContinuousHeadFields, GeneratorConfig):
    """Configuration of `NextXGenerator`.

    Args:
        token_spec: the tokens' `TokenSpec` (as a dict): continuous, on a grid (or a sequence for
            ``unit="token"`` / ``"image"``).
        num_classes: class labels; index ``num_classes`` is the unconditional label.
        dim, depth, num_heads, hidden_dim: transformer size.
        unit: ``"token"``, ``"cell"``, ``"image"`` or ``"scale"`` (see the module docstring).
        cell_size: side of a cell in tokens (``unit="cell"``).
        scales: ``unit="scale"`` only: the grid sizes, coarse to fine, each an int ``s`` (``s x s``,
            square grids) or a pair ``(h, w)``; the last must be the token grid. None: halve the grid
            until it is 1 x 1 (7 x 7 -> 1, 2, 4, 7). Stored as ``[[h, w], ...]``.
        denoiser: ``"transformer"`` (default; xAR as published: the transformer predicts each
            entity's velocity) or ``"head"`` (per-token MLP head on a block-causal transformer;
            token / cell units only).
        noisy_context: train on noisy context entities (xAR's noisy context learning).
        class_dropout, dropout: label dropout (for CFG) and attention / residual dropout.
        head: ``denoiser="head"``: ``"flow"`` (xAR) or ``"diffusion"``.
        head_width, head_depth, head_batch_mul, num_timesteps, noise_schedule, prediction,
            time_sampling, token_scale: keyword-only head options (`ContinuousHeadFields`;
            ``time_sampling`` also sets the transformer denoiser's training times).
    """

    depth: int = 4
    unit: str = "cell"
    cell_size: int = 2
    scales: list | None = None
    denoiser: str = "transformer"
    noisy_context: bool = True
    head: str = "flow"

    def __post_init__(self) -> None:
        spec = TokenSpec.coerce(self.token_spec)
        self.token_spec = spec.to_dict()
        if self.denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {DENOISERS}, got {self.denoiser!r}")
        check_continuous_config(self)
        NextXGenerator.check_spec(spec, self.head if self.denoiser == "head" else "flow")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.denoiser == "transformer" and self.head != "flow":
            raise ValueError(f"the transformer denoiser is a flow-matching model; head={self.head!r} needs denoiser='head'")
        if self.denoiser == "head" and self.unit not in ("token", "cell"):
            raise ValueError(f"unit={self.unit!r} needs denoiser='transformer'; the per-token head supports 'token' and 'cell'")
        if self.unit == "token":
            self.cell_size = 1
        if self.cell_size < 1:
            raise ValueError(f"cell_size must be >= 1, got {self.cell_size}")
        if self.unit in ("cell", "scale") and spec.layout != "grid":
            raise IncompatibleTokensError(
                f"unit={self.unit!r} needs tokens on a 2D grid, got layout {spec.layout!r}; use unit='token' or 'image'"
            )
        if self.unit == "scale":
            self.scales = normalized_scales(self.scales, spec.grid)
        elif self.scales is not None:
            raise ValueError(f"scales is only used with unit='scale', got unit={self.unit!r}")
        self.check_common()

    @property
    def grid(self) -> tuple[int, int]:
        spec = self.spec
        return spec.grid if spec.layout == "grid" else (1, spec.length)


def normalized_scales(scales, grid: tuple[int, int]) -> list[list[int]]:
    """``scales`` (ints or ``(h, w)`` pairs, or None) as ``[[h, w], ...]``, checked against ``grid``."""
    height, width = grid
    if scales is None:
        levels = math.ceil(math.log2(max(height, width)))
        pairs = [[math.ceil(height / 2**j), math.ceil(width / 2**j)] for j in range(levels, -1, -1)]
        return [pair for i, pair in enumerate(pairs) if i == 0 or pair != pairs[i - 1]]
    if len(scales) == 0:
        raise ValueError("scales must name at least one grid size")
    pairs = []
    for scale in scales:
        if isinstance(scale, int):
            if height != width:
                raise ValueError(f"an int scale {scale} means {scale} x {scale}; give (h, w) pairs for the {height} x {width} grid")
            scale = (scale, scale)
        if len(scale) != 2 or min(scale) < 1:
            raise ValueError(f"each scale must be a positive int or an (h, w) pair, got {scale!r}")
        pairs.append([int(scale[0]), int(scale[1])])
    if pairs[-1] != [height, width]:
        raise ValueError(f"the last scale must be the token grid {height} x {width}, got {pairs[-1]}")
    for (h0, w0), (h1, w1) in zip(pairs, pairs[1:]):
        if h1 < h0 or w1 < w0 or h1 * w1 <= h0 * w0:
            raise ValueError(f"scales must grow from coarse to fine, got {pairs}")
    return pairs


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


def scale_pyramid(values: torch.Tensor, grid: tuple[int, int], scales: list[list[int]]) -> torch.Tensor:
    """Tokens ``B x L x D`` (raster over ``grid``) -> ``B x sum(h_k w_k) x D``: each scale the
    area-downsampled grid, coarse to fine, raster inside a scale; the last scale is ``values`` itself."""
    batch, _, channels = values.shape
    image = values.transpose(1, 2).reshape(batch, channels, *grid)
    parts = [
        values if [h, w] == list(grid) else F.interpolate(image, size=(h, w), mode="area").flatten(2).transpose(1, 2)
        for h, w in scales
    ]
    return torch.cat(parts, dim=1)


def sample_flow_times(shape: tuple[int, ...], time_sampling: str, device) -> torch.Tensor:
    """Flow-matching training times in (0, 1): uniform or logit-normal (SD3's ``sigmoid(N(0, 1))``)."""
    if time_sampling == "uniform":
        return torch.rand(shape, device=device)
    return torch.sigmoid(torch.randn(shape, device=device))


@register_model("next_x")
class NextXGenerator(Generator):
    """Block-causal transformer over entities of continuous tokens; see the module docstring.

    The two denoisers are two architectures sharing the entity layout, the class embedding, the
    slot positions and the block-causal transformer: ``NextXGenerator(config)`` builds the one
    ``config.denoiser`` names, `XARDenoiserGenerator` (``"transformer"``) or `HeadDenoiserGenerator`
    (``"head"``), each a subclass holding only its own layers and loss (state-dict names are
    unchanged, so checkpoints load either way)."""

    config_class = NextXConfig

    def __new__(cls, config: NextXConfig | None = None, *args, **kwargs):
        if config is not None:
            design = DENOISER_CLASSES[config.denoiser]
            if cls is not NextXGenerator and cls is not design:
                raise ValueError(f"{cls.__name__} is not the denoiser={config.denoiser!r} design; build NextXGenerator(config)")
            cls = design
        return super().__new__(cls)

    def __init__(self, config: NextXConfig) -> None:
        super().__init__()
        self.config = config
        self.bind_spec_check(self.flow_or_head)
        spec, dim = config.spec, config.dim
        if config.unit == "scale":
            self.entity_sizes = [h * w for h, w in config.scales]
            self.unit_size = None  # entities of different sizes
            valid = torch.ones(sum(self.entity_sizes), dtype=torch.bool)
        else:
            if config.unit == "image":
                index, valid = torch.arange(spec.seq_len)[None], torch.ones(1, spec.seq_len, dtype=torch.bool)
            else:
                index, valid = unit_layout(config.grid, config.cell_size)
            self.register_buffer("unit_index", index, persistent=False)
            self.register_buffer("unit_valid", valid, persistent=False)
            self.unit_size = index.shape[1]
            self.entity_sizes = [self.unit_size] * index.shape[0]
        self.num_units = len(self.entity_sizes)
        self.entity_starts = [sum(self.entity_sizes[:n]) for n in range(self.num_units + 1)]
        entity = torch.repeat_interleave(torch.arange(self.num_units), torch.tensor(self.entity_sizes))
        self.register_buffer("sequence_valid", valid.reshape(-1), persistent=False)
        self.register_buffer("entity_of_position", entity, persistent=False)
        self.register_buffer("attention_mask", block_causal_mask(self.entity_sizes), persistent=False)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.position = nn.Parameter(torch.zeros(self.sequence_length, dim))  # slot positions, entity order
        # (this creation and initialisation order keeps the seeded weights of both designs as before)
        self.build_denoiser(config, config.hidden_dim or swiglu_hidden_dim(dim))
        nn.init.normal_(self.position, std=0.02)
        self.init_denoiser()
        nn.init.normal_(self.class_embedding.weight, std=0.02)

    def build_denoiser(self, config: NextXConfig, hidden: int) -> None:
        """The design's own input layers, blocks, final norm and output (subclasses)."""
        raise NotImplementedError

    def init_denoiser(self) -> None:
        """The design's own initialisation after the slot positions' (subclasses)."""

    def denoiser_loss(self, values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def flow_or_head(self) -> str:
        """The continuous model the tokens must suit: ``"flow"`` or the head's kind."""
        raise NotImplementedError

    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        if spec.layout not in ("grid", "sequence"):
            raise IncompatibleTokensError(
                f"next-X models continuous tokens on a grid or sequence, got layout {spec.layout!r}; use a KL tokenizer"
            )
        check_continuous_head(head or "flow", spec, "next-x")

    @property
    def sequence_length(self) -> int:
        return self.entity_starts[-1]

    # -- layout -----------------------------------------------------------------------------------
    def to_units(self, values: torch.Tensor) -> torch.Tensor:
        """Tokens ``B x L x D`` -> units ``B x N x u x D`` (padding slots zero; not for scales)."""
        units = values[:, self.unit_index]
        return units * self.unit_valid[..., None].to(units.dtype)

    def from_units(self, units: torch.Tensor) -> torch.Tensor:
        """Units ``B x N x u x D`` -> tokens ``B x L x D`` (padding slots dropped)."""
        flat_units = units[:, self.unit_valid]
        out = torch.empty(units.shape[0], self.spec.seq_len, units.shape[-1], dtype=units.dtype, device=units.device)
        out[:, self.unit_index[self.unit_valid]] = flat_units
        return out

    def to_sequence(self, values: torch.Tensor) -> torch.Tensor:
        """Tokens ``B x L x D`` -> the entity sequence ``B x S x D`` (entity after entity)."""
        if self.config.unit == "scale":
            return scale_pyramid(values, self.config.grid, self.config.scales)
        return self.to_units(values).flatten(1, 2)

    def from_sequence(self, sequence: torch.Tensor) -> torch.Tensor:
        """Entity sequence ``B x S x D`` -> tokens ``B x L x D`` (for scales: the last, full-size one)."""
        if self.config.unit == "scale":
            return sequence[:, -self.spec.seq_len :]
        return self.from_units(sequence.unflatten(1, (self.num_units, self.unit_size)))

    def entity_span(self, entity: int) -> tuple[int, int]:
        """``[start, end)`` of ``entity`` in the sequence."""
        return self.entity_starts[entity], self.entity_starts[entity + 1]

    def unit_span(self, unit: int) -> tuple[int, int]:
        return self.entity_span(unit)

    # -- shared ----------------------------------------------------------------------------------
    def transformer(
        self, x: torch.Tensor, input_pos: torch.Tensor | None = None, mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Block-causal pass (``input_pos`` None) or a cached pass over the positions ``input_pos``;
        ``mask`` overrides the block-causal mask; ``cond`` (``B x T x dim``) is the per-token adaLN
        condition of the transformer denoiser."""
        if mask is None:
            mask = self.attention_mask[: x.shape[1], : x.shape[1]] if input_pos is None else self.attention_mask[input_pos]
        if cond is None:
            for block in self.blocks:
                x = block(x, mask=mask, input_pos=input_pos)
            return self.norm(x)
        for block in self.blocks:
            x = block(x, cond, mask=mask, input_pos=input_pos)
        return self.norm(x, cond)

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.flow_or_head)
        labels = self.drop_labels(cond)
        return {"loss": self.denoiser_loss(tokens.values * self.config.token_scale, labels)}

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> None:
        param = self.position
        attach_caches(self.blocks, allocate_caches(self.blocks, batch_size, self.sequence_length, dtype or param.dtype, param.device))

    def clear_cache(self) -> None:
        detach_caches(self.blocks)


class XARDenoiserGenerator(NextXGenerator):
    """``denoiser="transformer"`` (xAR as published): the transformer itself, modulated per token by
    adaLN-Zero with the entity's time and the class, regresses each entity's velocity."""

    def build_denoiser(self, config: NextXConfig, hidden: int) -> None:
        spec, dim = config.spec, config.dim
        self.input_proj = nn.Linear(spec.channels, dim)
        self.time_embedding = TimestepEmbedder(dim, scale=1000.0)
        self.blocks = nn.ModuleList(AdaLNTransformerBlock(dim, config.num_heads, hidden, config.dropout)
                                    for _ in range(config.depth))
        self.norm = AdaLNOutput(dim)
        self.output = nn.Linear(dim, spec.channels)
        # zero-initialised, as DiT's final layer: the first prediction is a zero velocity
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    @property
    def flow_or_head(self) -> str:
        return "flow"

    def denoiser_loss(self, values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.transformer_loss(values, labels)

    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, input_pos: torch.Tensor | None = None,
        mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity ``B x T x D`` of noisy entity tokens ``x_t`` (``B x T x D``, model space) at times
        ``t`` (``B x T``; 1 = clean) for class ``labels`` (``B``).

        Positions are ``input_pos`` (a cached pass that writes its keys/values there), else
        ``positions``, else ``0 .. T-1`` (a full block-causal pass over a sequence prefix)."""
        if positions is None:
            positions = input_pos if input_pos is not None else torch.arange(x_t.shape[1], device=x_t.device)
        batch, length, _ = x_t.shape
        x_t = x_t * self.sequence_valid[positions, None].to(x_t.dtype)  # padding slots: no value
        h = self.input_proj(x_t.to(self.input_proj.weight.dtype)) + self.position[positions]
        cond = self.time_embedding(t.reshape(-1)).reshape(batch, length, -1) + self.class_embedding(labels).unsqueeze(1)
        return self.output(self.transformer(h, input_pos=input_pos, mask=mask, cond=cond))

    def teacher_forcing_mask(self) -> torch.Tensor:
        """``2S x 2S`` mask of ``[clean; noisy]``: clean entities block-causal, noisy entity n sees
        the clean entities ``< n`` and itself."""
        entity = self.entity_of_position
        clean_rows = torch.cat([self.attention_mask, torch.zeros_like(self.attention_mask)], dim=1)
        noisy_rows = torch.cat([entity[:, None] > entity[None, :], entity[:, None] == entity[None, :]], dim=1)
        return torch.cat([clean_rows, noisy_rows], dim=0)

    def transformer_loss(self, values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sequence = self.to_sequence(values)
        batch = sequence.shape[0]
        times = sample_flow_times((batch, self.num_units), self.config.time_sampling, sequence.device)
        t = times[:, self.entity_of_position]
        noise = torch.randn_like(sequence)
        x_t = t[..., None] * sequence + (1 - t[..., None]) * noise
        if self.config.noisy_context:
            prediction = self.velocity(x_t, t, labels)
        else:
            positions = torch.arange(self.sequence_length, device=sequence.device).repeat(2)
            both = self.velocity(torch.cat([sequence, x_t], 1), torch.cat([torch.ones_like(t), t], 1), labels,
                                 mask=self.teacher_forcing_mask(), positions=positions)
            prediction = both[:, self.sequence_length :]
        error = (prediction.float() - (sequence - noise).float()).pow(2).mean(-1)
        return error[:, self.sequence_valid].mean()


class HeadDenoiserGenerator(NextXGenerator):
    """``denoiser="head"`` (token / cell units): block n of a plain block-causal transformer sees the
    previous unit and conditions a per-token MLP head (flow or diffusion) that models unit n."""

    def build_denoiser(self, config: NextXConfig, hidden: int) -> None:
        spec, dim = config.spec, config.dim
        self.context_proj = nn.Linear(spec.channels, dim)
        self.context_time = TimestepEmbedder(dim, scale=1000.0)
        self.context_position = nn.Parameter(torch.zeros(self.sequence_length, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, config.num_heads, hidden, config.dropout)
                                    for _ in range(config.depth))
        self.norm = RMSNorm(dim)
        self.head = build_continuous_head(config, spec.channels, dim)

    def init_denoiser(self) -> None:
        nn.init.normal_(self.context_position, std=0.02)

    @property
    def flow_or_head(self) -> str:
        return self.config.head

    def denoiser_loss(self, values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head_loss(values, labels)

    def block_input(
        self, labels: torch.Tensor, unit: int, context: torch.Tensor | None, context_time: torch.Tensor | None
    ) -> torch.Tensor:
        """Head design: input of block ``unit`` (``B x u x dim``): class for unit 0, else the context
        unit ``context`` (``B x u x D``, model space) at noise time ``context_time`` (``B``; 1 = clean)."""
        start, end = self.unit_span(unit)
        x = self.position[start:end].unsqueeze(0)
        if unit == 0:
            return x + self.class_embedding(labels).unsqueeze(1)
        previous = slice(start - self.unit_size, start)
        x = x + self.context_proj(context.to(self.context_proj.weight.dtype)) + self.context_position[previous]
        return x + self.context_time(context_time).unsqueeze(1)

    def block_inputs(self, labels: torch.Tensor, context: torch.Tensor, context_time: torch.Tensor) -> torch.Tensor:
        """Head design, all block inputs at once: ``context`` ``B x (N-1) x u x D``, times
        ``B x (N-1)`` -> ``B x N u x dim``."""
        batch = labels.shape[0]
        first = self.position[: self.unit_size].unsqueeze(0) + self.class_embedding(labels).unsqueeze(1)
        if self.num_units == 1:
            return first
        rest = self.context_proj(context) + self.context_time(context_time.reshape(-1)).reshape(batch, -1, 1, self.config.dim)
        rest = rest.reshape(batch, -1, self.config.dim) + self.context_position[: -self.unit_size] + self.position[self.unit_size :]
        return torch.cat([first, rest], dim=1)

    def head_loss(self, values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        units = self.to_units(values)
        batch = units.shape[0]
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
        return self.head.loss(z.repeat(repeats, 1), target.repeat(repeats, 1))


DENOISER_CLASSES = {"transformer": XARDenoiserGenerator, "head": HeadDenoiserGenerator}
