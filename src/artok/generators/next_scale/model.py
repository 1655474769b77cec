"""Next-scale prediction (VAR: Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation
via Next-Scale Prediction", https://arxiv.org/abs/2404.02905).

Tokens are the multi-scale residual ids of `artok.quantizers.MultiScaleVectorQuantizer` (TokenSpec
layout ``"scales"``: scale by scale, coarse to fine, raster inside a scale). The transformer predicts
**all tokens of scale k at once** from the scales before it:

    input of scale 1      = start tokens (class embedding + learned start positions)
    input of scale k > 1  = Linear(area_downsample(f_hat_{k-1}, (h_k, w_k)))      (VAR's word_embed)
    every input           += learned absolute position + level (scale index) embedding

where ``f_hat_{k-1}`` is the latent accumulated from the ids of scales ``1 .. k-1``. Attention is
**block-causal**: a token of scale k sees every token of scales ``<= k`` (`block_causal_mask`).
Every block is conditioned on the class by adaLN (`artok.nn.adaln.AdaLNTransformerBlock`); label
dropout trains the unconditional branch for classifier-free guidance.

Where the next-scale inputs come from (the design decision): the inputs of scale k are a function
of the *tokenizer's* quantizer (codebook, upsampling, phi convolutions). The generator therefore
holds a **frozen copy of that quantizer** (``scale_quantizer``, built from ``config.quantizer`` and
filled with `load_quantizer` from the tokenizer; its weights are saved with the generator). So
``loss(tokens, labels)`` needs nothing but tokens (teacher-forcing inputs come from
``scale_quantizer.teacher_forcing_inputs``), and `artok.sampling.sample_next_scale` needs nothing but
the generator (it calls ``scale_quantizer.add_scale`` after each scale). `artok.pipeline.load_pair`
checks that the copy matches the tokenizer it is paired with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError
from artok.generators.head_support import build_discrete_head, check_discrete_head
from artok.generators.next_scale.var_blocks import BiasedCategoricalHead, build_var_blocks, init_var_weights
from artok.hub import register_model
from artok.nn import swiglu_hidden_dim
from artok.nn.adaln import AdaLNOutput, AdaLNTransformerBlock
from artok.nn.kv_cache import allocate_caches, attach_caches, detach_caches
from artok.quantizers.multiscale import MultiScaleVectorQuantizer, MultiScaleVQConfig
from artok.tokens import Tokens, TokenSpec

NEXT_SCALE_HEADS = ("categorical", "bitwise")
#: ``artok``: `AdaLNTransformerBlock` (SwiGLU, adaLN-Zero); ``var``: VAR's own block (`var_blocks`)
NEXT_SCALE_BLOCKS = ("artok", "var")


def block_causal_mask(lengths: Sequence[int]) -> torch.Tensor:
    """``L x L`` boolean mask (True = may attend) for blocks of ``lengths``: a position attends to
    every position of its own block and of all earlier blocks."""
    block = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(list(lengths)), output_size=sum(lengths))
    return block[:, None] >= block[None, :]


@dataclass
class NextScaleConfig(GeneratorConfig):
    """Configuration of `NextScaleGenerator`.

    Args:
        token_spec: the tokens' `TokenSpec` (as a dict); layout ``"scales"``, discrete.
        quantizer: the `MultiScaleVQConfig` fields of the tokenizer's quantizer (the generator keeps a
            frozen copy to build next-scale inputs; see the module docstring).
        num_classes: class labels; index ``num_classes`` is the unconditional label.
        dim, depth, num_heads, hidden_dim: transformer size (hidden_dim None: LLaMA's 8/3 rule).
        class_dropout: label-dropout probability (trains the CFG branch).
        dropout: attention / residual dropout.
        head: ``"categorical"`` or ``"bitwise"`` (power-of-two codebooks, as Infinity).
        block: ``"artok"`` (SwiGLU blocks, adaLN-Zero, bias-free head) or ``"var"`` (VAR's published
            architecture: l2-normalised attention, GELU MLP of ``4 * dim`` by default, biased head; see
            `artok.generators.next_scale.var_blocks`; categorical head only).
        shared_adaln: ``block="var"`` only: one adaLN regressor shared by all blocks (VAR's ``shared_aln``).
        attention_l2_norm: ``block="var"`` only: VAR's ``attn_l2_norm`` (learned per-head scale).
    """

    quantizer: dict
    depth: int = 4
    head: str = "categorical"
    block: str = "artok"
    shared_adaln: bool = False
    attention_l2_norm: bool = True

    def __post_init__(self) -> None:
        spec = TokenSpec.coerce(self.token_spec)
        self.token_spec = spec.to_dict()
        if self.head not in NEXT_SCALE_HEADS:
            raise ValueError(f"head must be one of {NEXT_SCALE_HEADS}, got {self.head!r}")
        if self.block not in NEXT_SCALE_BLOCKS:
            raise ValueError(f"block must be one of {NEXT_SCALE_BLOCKS}, got {self.block!r}")
        if self.block == "var" and self.head != "categorical":
            raise ValueError(f"block='var' (VAR's architecture) has a categorical head, got head={self.head!r}")
        if self.block != "var" and (self.shared_adaln or not self.attention_l2_norm):
            raise ValueError("shared_adaln and attention_l2_norm=False are options of block='var'")
        NextScaleGenerator.check_spec(spec, self.head)
        quantizer = self.quantizer if isinstance(self.quantizer, MultiScaleVQConfig) else MultiScaleVQConfig(**self.quantizer)
        if tuple(quantizer.scales) != tuple(spec.scales) or quantizer.codebook_size != spec.vocab_size:
            raise ValueError(
                f"the quantizer (scales {quantizer.scales}, {quantizer.codebook_size} codes) does not emit these "
                f"tokens (scales {spec.scales}, vocab {spec.vocab_size})"
            )
        self.quantizer = asdict(quantizer)
        self.check_common()


@register_model("next_scale")
class NextScaleGenerator(Generator):
    """VAR-style transformer over multi-scale tokens; see the module docstring."""

    config_class = NextScaleConfig

    def __init__(self, config: NextScaleConfig) -> None:
        super().__init__()
        self.config = config
        self.bind_spec_check(config.head)
        spec = config.spec
        self.scale_lengths = [h * w for h, w in spec.scales]
        seq_len = spec.seq_len
        self.scale_quantizer = MultiScaleVectorQuantizer(MultiScaleVQConfig(**config.quantizer))
        self.scale_quantizer.requires_grad_(False)
        dim = config.dim
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.start_position = nn.Parameter(torch.empty(self.scale_lengths[0], dim))
        self.word_embedding = nn.Linear(self.scale_quantizer.dim, dim)
        self.position = nn.Parameter(torch.empty(seq_len, dim))
        self.level_embedding = nn.Embedding(len(self.scale_lengths), dim)
        if config.block == "var":
            self.blocks, self.shared_modulation = build_var_blocks(
                dim, config.depth, config.num_heads, config.hidden_dim or 4 * dim, shared_adaln=config.shared_adaln,
                l2_norm=config.attention_l2_norm, dropout=config.dropout)
        else:
            hidden = config.hidden_dim or swiglu_hidden_dim(dim)
            self.blocks = nn.ModuleList(
                AdaLNTransformerBlock(dim, config.num_heads, hidden, config.dropout) for _ in range(config.depth)
            )
        self.out_norm = AdaLNOutput(dim)
        self.head = BiasedCategoricalHead(dim, spec.vocab_size) if config.block == "var" else build_discrete_head(
            config.head, spec, dim)
        levels = torch.repeat_interleave(torch.arange(len(self.scale_lengths)), torch.tensor(self.scale_lengths),
                                         output_size=sum(self.scale_lengths))
        self.register_buffer("level_of_position", levels, persistent=False)
        self.register_buffer("attention_mask", block_causal_mask(self.scale_lengths), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.config.block == "var":
            init_var_weights(self)
            return
        for module in (self.class_embedding, self.word_embedding, self.level_embedding, self.head):
            for param in module.parameters():
                if param.dim() > 1:
                    nn.init.normal_(param, std=0.02)
        nn.init.normal_(self.start_position, std=0.02)
        nn.init.normal_(self.position, std=0.02)
        for block in self.blocks:
            for layer in (block.attention.qkv, block.attention.proj, block.ffn.gate_up, block.ffn.down):
                nn.init.normal_(layer.weight, std=0.02)

    @classmethod
    def check_spec(cls, spec: TokenSpec, head: str | None = None) -> None:
        if spec.layout != "scales" or spec.kind != "discrete" or spec.subtokens != 1:
            raise IncompatibleTokensError(
                f"the next-scale generator models discrete multi-scale tokens (layout 'scales'), got {spec.kind} "
                f"tokens with layout {spec.layout!r}; use a CNN tokenizer with quantizer 'msvq' (raster / maskgit "
                "model single-scale grids)"
            )
        check_discrete_head(head or "categorical", spec, "next-scale")

    # -- pieces the samplers call ---------------------------------------------------------------
    @property
    def num_scales(self) -> int:
        return len(self.scale_lengths)

    def scale_span(self, scale_index: int) -> tuple[int, int]:
        """``(start, end)`` of scale ``scale_index`` in the flat sequence."""
        start = sum(self.scale_lengths[:scale_index])
        return start, start + self.scale_lengths[scale_index]

    @torch.no_grad()
    def load_quantizer(self, quantizer: MultiScaleVectorQuantizer) -> None:
        """Copy the weights of the tokenizer's multi-scale quantizer (the configs must match)."""
        if asdict(quantizer.config) != self.config.quantizer:
            raise ValueError("the quantizer's config differs from NextScaleConfig.quantizer")
        self.scale_quantizer.load_state_dict(quantizer.state_dict())

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        """adaLN condition ``B x dim`` of labels (``num_classes`` = unconditional)."""
        return self.class_embedding(labels)

    def embed_scale(self, labels: torch.Tensor, scale_index: int, scale_input: torch.Tensor | None) -> torch.Tensor:
        """Input embeddings of one scale: ``B x h_k w_k x dim``.

        ``scale_input``: for ``scale_index > 0``, the downsampled accumulated latent
        ``B x h_k w_k x D`` (channel-last); ignored for the first scale (start tokens)."""
        start, end = self.scale_span(scale_index)
        if scale_index == 0:
            x = self.class_embedding(labels).unsqueeze(1) + self.start_position
        else:
            x = self.word_embedding(scale_input.to(self.word_embedding.weight.dtype))
        return x + self.position[start:end] + self.level_embedding.weight[scale_index]

    def transformer(self, x: torch.Tensor, cond: torch.Tensor, input_pos: torch.Tensor | None = None,
                    prefix: int | None = None) -> torch.Tensor:
        """Blocks + final adaLN over ``x`` (``B x T x dim``).

        Without ``input_pos``: positions ``0 .. T-1`` under the block-causal mask (training, or the
        recompute reference sampler). With it: the static KV caches are written at ``input_pos``
        and the queries attend to every cached position their scale may see. ``prefix`` (with
        ``input_pos`` = one whole scale, ``start .. prefix - 1``): every query sees exactly the first
        ``prefix`` slots, so attention reads only those and needs no mask (SDPA's flash kernel on
        CUDA) instead of masking the whole static cache."""
        mask = None
        if input_pos is None:
            mask = self.attention_mask[: x.shape[1], : x.shape[1]]
        elif prefix is None:
            mask = self.attention_mask[input_pos]
        caches = [block.attention.kv_cache for block in self.blocks] if prefix is not None else []
        for cache in caches:
            cache.length = prefix
        try:
            for block in self.blocks:
                x = block(x, cond, mask=mask, input_pos=input_pos)
        finally:
            for cache in caches:
                cache.length = None
        return self.out_norm(x, cond)

    def teacher_forcing_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``B x L`` -> the inputs of scales 2..K, ``B x (L - h_1 w_1) x D`` (no gradient)."""
        with torch.no_grad():
            return self.scale_quantizer.teacher_forcing_inputs(ids)

    def hidden_states(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced states ``B x L x dim`` predicting every token of ``ids`` (``B x L``)."""
        first = self.embed_scale(labels, 0, None)
        rest = self.word_embedding(self.teacher_forcing_inputs(ids))
        rest = rest + self.position[first.shape[1] :] + self.level_embedding(self.level_of_position[first.shape[1] :])
        return self.transformer(torch.cat([first, rest], dim=1), self.condition(labels))

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``B x L x V`` (bit logits for the bitwise head) of every token of ``ids``."""
        return self.head(self.hidden_states(ids, labels))

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_spec(tokens.spec, head=self.config.head)
        labels = cond
        labels = self.drop_labels(labels)
        return {"loss": self.head.loss(self.hidden_states(tokens.ids, labels), tokens.ids)}

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> None:
        """Static KV caches over the whole multi-scale sequence for ``batch_size`` rows."""
        param = self.position
        attach_caches(self.blocks, allocate_caches(self.blocks, batch_size, self.spec.seq_len, dtype or param.dtype, param.device))

    def clear_cache(self) -> None:
        detach_caches(self.blocks)

    @classmethod
    def from_tokenizer(cls, tokenizer, **options) -> "NextScaleGenerator":
        """A generator for ``tokenizer``'s tokens with a copy of its multi-scale quantizer."""
        cls.check_spec(tokenizer.spec, options.get("head"))
        quantizer = tokenizer.quantizer
        if not isinstance(quantizer, MultiScaleVectorQuantizer):
            raise IncompatibleTokensError(
                f"the next-scale generator needs a tokenizer with quantizer 'msvq', got {type(quantizer).__name__}; "
                "use a CNN tokenizer with quantizer 'msvq'"
            )
        generator = cls(NextScaleConfig(token_spec=tokenizer.spec.to_dict(), quantizer=asdict(quantizer.config), **options))
        generator.load_quantizer(quantizer)
        return generator
