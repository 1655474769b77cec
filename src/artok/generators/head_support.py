"""Which head fits which tokens, and how a generator builds the head and its input embedding.

Discrete heads (one choice per generator config, ``head=...``):

============  ==========================================  =========================================
head          tokens it models                            input embedding of a token
============  ==========================================  =========================================
categorical   one id per position, vocab <= 2^18          ``nn.Embedding(vocab, dim)``
bitwise       one id per position, vocab a power of two   ``BitEmbedding`` (``+-1`` bits, linear)
              (LFQ / BSQ; 2^16 and beyond)
dimwise       ``S > 1`` sub-tokens per position (PTQ)     ``ChannelEmbedding`` (sum over channels)
============  ==========================================  =========================================

Continuous heads (``diffusion``, ``flow``) model continuous tokens and are interchangeable.
Every mismatch raises `IncompatibleTokensError` naming what would fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from artok.generators.base import IncompatibleTokensError
from artok.heads.bitwise import BitEmbedding, BitwiseHead
from artok.heads.categorical import CategoricalHead
from artok.heads.diffusion import NOISE_SCHEDULES, PREDICTIONS, DiffusionHead
from artok.heads.dimwise import ChannelEmbedding, DimwiseHead
from artok.heads.flow import FlowHead
from artok.tokens import TokenSpec

DISCRETE_HEADS = ("categorical", "bitwise", "dimwise")
CONTINUOUS_HEADS = ("diffusion", "flow")
#: Beyond this a ``dim x vocab`` softmax (and embedding) is impractical: use the bitwise head.
MAX_CATEGORICAL_VOCAB = 2**18


def is_power_of_two(value: int) -> bool:
    return value >= 2 and value & (value - 1) == 0


def _describe(spec: TokenSpec) -> str:
    if spec.kind == "continuous":
        return f"continuous tokens ({spec.channels} channels)"
    sub = f", {spec.subtokens} sub-tokens per position" if spec.subtokens > 1 else ""
    return f"discrete tokens (vocab {spec.vocab_size}{sub})"


def check_discrete_head(head: str, spec: TokenSpec, generator: str) -> None:
    """Raise `IncompatibleTokensError` unless discrete ``head`` can model ``spec``."""
    if head not in DISCRETE_HEADS:
        raise ValueError(f"unknown discrete head {head!r}; choose one of {DISCRETE_HEADS}")
    if spec.kind != "discrete":
        raise IncompatibleTokensError(
            f"the {generator} generator ({head} head) models discrete tokens, got {_describe(spec)}; use a "
            "VQ/FSQ/LFQ/BSQ/PTQ tokenizer, or the mar / next-x generators for continuous tokens"
        )
    if head == "categorical":
        if spec.subtokens != 1:
            raise IncompatibleTokensError(
                f"a categorical head predicts one id per position, got {_describe(spec)}; use head='dimwise' "
                "(the dimwise generator) for dimension-wise PTQ tokens"
            )
        if spec.vocab_size > MAX_CATEGORICAL_VOCAB:
            raise IncompatibleTokensError(
                f"a categorical head over {spec.vocab_size} ids is impractical (max {MAX_CATEGORICAL_VOCAB}); use "
                "head='bitwise' (the bitwise generator) for LFQ/BSQ tokens"
            )
    elif head == "bitwise":
        if spec.subtokens != 1 or not is_power_of_two(spec.vocab_size):
            raise IncompatibleTokensError(
                f"a bitwise head needs one id per position with a power-of-two vocabulary (LFQ/BSQ tokens), got "
                f"{_describe(spec)}; use head='categorical' (or 'dimwise' for PTQ tokens)"
            )
    elif spec.subtokens < 2:
        raise IncompatibleTokensError(
            f"a dimwise head predicts several sub-tokens per position (PTQ tokens), got {_describe(spec)}; use "
            "head='categorical' (or 'bitwise' for LFQ/BSQ tokens)"
        )


def check_continuous_head(head: str, spec: TokenSpec, generator: str) -> None:
    """Raise `IncompatibleTokensError` unless continuous ``head`` can model ``spec``."""
    if head not in CONTINUOUS_HEADS:
        raise ValueError(f"unknown continuous head {head!r}; choose one of {CONTINUOUS_HEADS}")
    if spec.kind != "continuous":
        raise IncompatibleTokensError(
            f"the {generator} generator ({head} head) models continuous tokens, got {_describe(spec)}; use a KL "
            "(or plain continuous) tokenizer, or a discrete generator (raster, maskgit, next-scale, dimwise, bitwise)"
        )


def num_bits(spec: TokenSpec) -> int:
    return spec.vocab_size.bit_length() - 1


def build_token_embedding(head: str, spec: TokenSpec, dim: int) -> nn.Module:
    """The input embedding that matches ``head``: ids (``B x T`` or ``B x T x S``) -> ``B x T x dim``."""
    if head == "bitwise":
        return BitEmbedding(num_bits(spec), dim)
    if head == "dimwise":
        return ChannelEmbedding(spec.subtokens, spec.vocab_size, dim)
    return nn.Embedding(spec.vocab_size, dim)


def build_discrete_head(head: str, spec: TokenSpec, dim: int, width: int = 128, depth: int = 2) -> nn.Module:
    """``categorical`` / ``bitwise`` / ``dimwise`` head for ``spec`` on a ``dim``-wide backbone
    (``width``/``depth`` size the dimwise head's channel transformer)."""
    if head == "bitwise":
        return BitwiseHead(dim, num_bits(spec))
    if head == "dimwise":
        return DimwiseHead(dim, spec.subtokens, spec.vocab_size, width=width, depth=depth, num_heads=max(1, width // 64))
    return CategoricalHead(dim, spec.vocab_size)


@dataclass(kw_only=True)
class ContinuousHeadFields:
    """Config fields of the per-token continuous head, shared by MAR and next-X (keyword-only, so the
    generator's own fields keep their positions). ``head`` itself stays in each config: its default
    differs (MAR: diffusion, next-X: flow).

    Args:
        head_width, head_depth: the per-token MLP head.
        head_batch_mul: repeats of the tokens in the head loss (fresh noise each; MAR's diffusion
            batch multiplier).
        num_timesteps, noise_schedule: diffusion head training schedule (unused by flow models).
        prediction: what the diffusion head regresses: ``"v"`` (default; well conditioned for small,
            briefly trained heads) or ``"epsilon"`` (MAR's choice).
        time_sampling: flow training times (``uniform`` or ``logit-normal``).
        token_scale: tokens are multiplied by this before modelling (a latent scale factor bringing
            latents to roughly unit variance); samples are divided by it.
    """

    head_width: int = 256
    head_depth: int = 3
    head_batch_mul: int = 4
    num_timesteps: int = 1000
    noise_schedule: str = "cosine"
    prediction: str = "v"
    time_sampling: str = "uniform"
    token_scale: float = 1.0


def build_continuous_head(config, token_dim: int, cond_dim: int) -> nn.Module:
    """A `DiffusionHead` or `FlowHead` for ``token_dim``-channel tokens conditioned on ``cond_dim``
    vectors, from a continuous generator's config (``head``, ``head_width``, ``head_depth``,
    ``num_timesteps``, ``noise_schedule``, ``prediction``, ``time_sampling``)."""
    if config.head == "diffusion":
        return DiffusionHead(token_dim, cond_dim, config.head_width, config.head_depth, config.num_timesteps,
                             config.noise_schedule, config.prediction)
    return FlowHead(token_dim, cond_dim, config.head_width, config.head_depth, config.time_sampling)


def check_continuous_config(config) -> None:
    """Validation of the fields the continuous generators (MAR, next-X) share: the head and its
    options, head sizes, ``token_scale`` (a clear ValueError)."""
    if config.head not in CONTINUOUS_HEADS:
        raise ValueError(f"head must be one of {CONTINUOUS_HEADS}, got {config.head!r}")
    if config.num_timesteps < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {config.num_timesteps}")
    if config.noise_schedule not in NOISE_SCHEDULES:
        raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {config.noise_schedule!r}")
    if config.prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {config.prediction!r}")
    if config.time_sampling not in ("uniform", "logit-normal"):
        raise ValueError(f"time_sampling must be 'uniform' or 'logit-normal', got {config.time_sampling!r}")
    if config.head_width < 1 or config.head_depth < 1 or config.head_batch_mul < 1:
        raise ValueError("head_width, head_depth and head_batch_mul must be positive")
    if config.token_scale <= 0:
        raise ValueError(f"token_scale must be positive, got {config.token_scale}")
