"""Raster-order next-token generator in the LlamaGen style (https://arxiv.org/abs/2406.06525):
a decoder-only LLaMA transformer (RMSNorm, SwiGLU, 2D RoPE over the token grid) whose first
position is a class embedding; label dropout trains the unconditional branch used by
classifier-free guidance (https://arxiv.org/abs/2207.12598).

Sequence layout (``L`` tokens, one class position):
    input  = [class, t_0, t_1, ..., t_{L-2}]     (length L)
    target = [t_0, t_1, ..., t_{L-1}]
Position ``i`` of the input carries the 2D rotary position of target ``t_i``'s grid cell shifted by
one, as LlamaGen does (the class token is unrotated).

Heads (``RasterConfig.head``, see `artok.generators.head_support`): ``categorical`` (a softmax over
the vocabulary, the default), ``bitwise`` (Infinity's independent per-bit logits for LFQ/BSQ tokens,
https://arxiv.org/abs/2412.04431) and ``dimwise`` (TokenBridge's channel-by-channel head for
dimension-wise PTQ tokens, https://arxiv.org/abs/2503.16430). The backbone is the same for all three;
`artok.sampling.sample` picks the matching decode loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError, normal_init_
from artok.generators.head_support import (
    DISCRETE_HEADS,
    build_discrete_head,
    build_token_embedding,
    check_discrete_head,
)
from artok.hub import register_model
from artok.nn import (
    RMSNorm,
    TransformerBlock,
    rope_1d_table,
    rope_2d_table,
    swiglu_hidden_dim,
)
from artok.nn.kv_cache import allocate_caches, attach_caches, detach_caches
from artok.nn.rope import PREFIX_ROTATIONS
from artok.tokens import Tokens, TokenSpec


@dataclass
class RasterConfig(GeneratorConfig):
    """Configuration of `RasterGenerator`.

    Args:
        token_spec: the `TokenSpec` (as a dict) of the tokens this model generates; discrete, one id
            per position, on a grid or a 1D sequence.
        num_classes: class labels; index ``num_classes`` is the "no class" (unconditional) label.
        dim, depth, num_heads: transformer width, layers, heads.
        hidden_dim: SwiGLU hidden size (None: LLaMA's 8/3 rule).
        class_dropout: probability of replacing the label by "no class" in training (for CFG).
        dropout: residual / attention dropout.
        rope_base: rotary base.
        rope_2d: 2D rotary positions over the grid (else 1D over the sequence).
        rope_prefix: rotation of the class position: ``"identity"``, or ``"zero"`` (LlamaGen's table,
            which zeroes the class token's query and key; set by `artok.convert.llamagen`).
        norm_eps: RMSNorm epsilon (LlamaGen: 1e-5).
        head: ``"categorical"``, ``"bitwise"`` (LFQ/BSQ tokens) or ``"dimwise"`` (PTQ tokens).
        head_width, head_depth: size of the dimwise head's channel transformer (unused otherwise).
    """

    depth: int = 4
    rope_base: float = 10000.0
    rope_2d: bool = True
    rope_prefix: str = "identity"
    norm_eps: float = 1e-6
    head: str = "categorical"
    head_width: int = 128
    head_depth: int = 2

    def __post_init__(self) -> None:
        # Normalise (a TokenSpec, or a dict from JSON with lists) to the canonical dict form.
        spec = TokenSpec.coerce(self.token_spec)
        self.token_spec = spec.to_dict()
        if self.head not in DISCRETE_HEADS:
            raise ValueError(f"head must be one of {DISCRETE_HEADS}, got {self.head!r}")
        RasterGenerator.check_spec(self.spec, self.head)
        self.check_common()
        if self.spec.layout == "sequence":
            self.rope_2d = False
        if self.rope_2d:
            self.check_rope_2d()
        if self.rope_prefix not in PREFIX_ROTATIONS:
            raise ValueError(f"rope_prefix must be one of {PREFIX_ROTATIONS}, got {self.rope_prefix!r}")
        if self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if self.head_width < 1 or self.head_depth < 1:
            raise ValueError(f"head_width and head_depth must be positive, got {self.head_width}, {self.head_depth}")

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    @property
    def grid(self) -> tuple[int, int]:
        spec = self.spec
        return spec.grid if spec.layout == "grid" else (1, spec.length)

    @property
    def seq_len(self) -> int:
        return self.spec.seq_len


@register_model("raster")
class RasterGenerator(Generator):
    """Decoder-only transformer over raster-ordered discrete tokens with a class prefix."""

    config_class = RasterConfig

    def __init__(self, config: RasterConfig) -> None:
        super().__init__()
        self.config = config
        # Instances check specs against their own head (train_generator calls generator.check_spec).
        self.bind_spec_check(config.head)
        self.token_embedding = build_token_embedding(config.head, config.spec, config.dim)
        self.class_embedding = nn.Embedding(config.num_classes + 1, config.dim)
        hidden = config.hidden_dim or swiglu_hidden_dim(config.dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.num_heads, hidden, dropout=config.dropout, norm_eps=config.norm_eps)
            for _ in range(config.depth)
        )
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = build_discrete_head(config.head, config.spec, config.dim, config.head_width, config.head_depth)
        head_dim = config.dim // config.num_heads
        if config.rope_2d:
            rope = rope_2d_table(config.grid, head_dim, config.rope_base, num_prefix=1, prefix=config.rope_prefix)
        else:
            rope = rope_1d_table(config.seq_len, head_dim, config.rope_base, num_prefix=1, prefix=config.rope_prefix)
        self.register_buffer("rope", rope, persistent=False)
        causal = torch.ones(config.seq_len, config.seq_len, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", causal, persistent=False)
        self.apply(normal_init_)


    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        """Raise `IncompatibleTokensError` unless ``spec`` fits ``head`` (None: any raster head).

        On an instance, ``head`` defaults to the instance's own head."""
        if spec.kind != "discrete" or spec.layout not in ("grid", "sequence"):
            raise IncompatibleTokensError(
                f"the raster generator models discrete tokens on a grid or sequence; got {spec.kind} tokens with "
                f"layout {spec.layout!r}. Use a VQ/FSQ/LFQ/BSQ/PTQ tokenizer (the next-scale generator models "
                "multi-scale tokens; mar / next-x model continuous ones)."
            )
        if head is not None:
            check_discrete_head(head, spec, "raster")
            return
        errors = []
        for candidate in DISCRETE_HEADS:
            try:
                check_discrete_head(candidate, spec, "raster")
                return
            except IncompatibleTokensError as error:
                errors.append(str(error))
        raise IncompatibleTokensError(errors[0])

    # -- model ---------------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids)

    def embed_class(self, labels: torch.Tensor) -> torch.Tensor:
        """``B`` labels (``num_classes`` = unconditional) -> ``B x 1 x dim``."""
        return self.class_embedding(labels).unsqueeze(1)

    def transformer(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Run the blocks over embeddings ``x`` (``B x T x dim``) at positions ``input_pos``.

        Without ``input_pos`` this is a causal pass over positions ``0..T-1`` (training, recompute);
        with it, keys/values are written to and read from the static caches (`setup_cache`).
        """
        if input_pos is None:
            return self.run_blocks(x, self.rope[: x.shape[1]], None, None, is_causal=True)
        return self.run_blocks(x, self.rope[input_pos], self.causal_mask[input_pos], input_pos)

    def run_blocks(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None, input_pos: torch.Tensor | None,
                   is_causal: bool = False) -> torch.Tensor:
        """The blocks and final norm with an explicit rotary table and attention mask: ``rope`` for
        the positions of ``x``, ``mask`` ``T x S`` (shared) or ``rows x 1 x T x S`` (per row, as the
        sampling engine's per-row positions need), ``input_pos`` ``T`` or ``rows x T`` (cache writes)."""
        for block in self.blocks:
            x = block(x, rope=rope, mask=mask, input_pos=input_pos, is_causal=is_causal)
        return self.norm(x)

    def hidden_states(self, ids: torch.Tensor, labels: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm states ``B x (T+1) x dim`` for the class prefix and ``ids`` (``B x T [x S]``)."""
        x = torch.cat([self.embed_class(labels), self.embed(ids)], dim=1)
        return self.transformer(x, input_pos)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for every input position.

        Without cache: ``ids`` ``B x T`` (T < L) are the tokens after the class prefix; returns
        ``B x (T+1) x V`` (predictions of ``t_0 .. t_T``); bit logits ``B x (T+1) x bits`` for the
        bitwise head. The dimwise head needs the channel prefix: use `hidden_states` and
        ``head.next_logits``.
        """
        if self.config.head == "dimwise":
            raise ValueError("the dimwise head has no single-pass logits; use hidden_states() and head.next_logits()")
        return self.head(self.hidden_states(ids, labels, input_pos))

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        ids = tokens.ids
        labels = cond
        labels = self.drop_labels(labels)
        x = torch.cat([self.embed_class(labels), self.embed(ids[:, :-1])], dim=1)
        hidden = self.transformer(x)
        return {"loss": self.head.loss(hidden, ids)}

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> None:
        """Allocate a static KV cache of ``seq_len`` positions for ``batch_size`` rows."""
        param = next(self.parameters())
        attach_caches(self.blocks, allocate_caches(self.blocks, batch_size, self.config.seq_len, dtype or param.dtype, param.device))

    def clear_cache(self) -> None:
        detach_caches(self.blocks)
