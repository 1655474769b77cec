"""The kind table: one row per generator kind, above the models (which never import it).

A `Kind` names everything the library and the CLI need to build, load, sample, speculate and
benchmark one kind: its model class and config, the sampler config it takes, its plain sample
function, its fast engine and its speculative sampler (when it has them). Every by-kind decision
(`build_generator`, `kind_of`, `sample`, `sample_speculative`, the CLI's ``--generator``
choices, ``artok options``, ``artok bench``) reads this table, so adding a kind is adding a row:

    register_kind(Kind("toy", ToyGenerator, ToyConfig, sampler="raster", sample=sample_toy))

=============  ==========================  ===========================================  ==============
kind           class                       tokens                                       paper
=============  ==========================  ===========================================  ==============
raster         `RasterGenerator`           discrete grid (VQ/FSQ)                        LlamaGen
bitwise        `RasterGenerator`,          discrete grid, power-of-two vocab (LFQ/BSQ)   Infinity
               ``head="bitwise"``
dimwise        `RasterGenerator`,          dimension-wise PTQ tokens                     TokenBridge
               ``head="dimwise"``
next-scale     `NextScaleGenerator`        multi-scale residual tokens (msvq)            VAR
maskgit        `MaskGITGenerator`          discrete grid                                 MaskGIT
mar            `MARGenerator`              continuous grid (KL)                          MAR
next-x         `NextXGenerator`            continuous grid (KL)                          xAR
rar            `RARGenerator`              discrete grid (VQ/FSQ)                        RAR
nar            `NARGenerator`              discrete grid (VQ/FSQ)                        NAR
token-shuffle  `TokenShuffleGenerator`     discrete grid (VQ/FSQ)                        Token-Shuffle
any-order      `AnyOrderGenerator`         discrete grid (VQ/FSQ)                        ASSD
hi-mar         `HiMARGenerator`            continuous grid (KL)                          Hi-MAR
d-ar           `DARGenerator`              discrete 1D sequence (dar tokenizer)          D-AR
=============  ==========================  ===========================================  ==============

Importing this module imports every built-in model, so `from_pretrained` (re-exported from
`artok.hub`, which itself imports no model) can rebuild any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch

import artok.tokenizers  # noqa: F401 - registers every built-in tokenizer, so `from_pretrained` below knows them
from artok.generators.any_order.model import AnyOrderConfig, AnyOrderGenerator
from artok.generators.any_order.sample import sample_any_order, sample_any_order_recompute
from artok.generators.any_order.speculative import speculative_any_order
from artok.generators.base import Generator
from artok.generators.dar.model import DARConfig, DARGenerator
from artok.generators.dar.sample import sample_dar
from artok.generators.hi_mar.model import HiMARConfig, HiMARGenerator
from artok.generators.hi_mar.sample import sample_hi_mar
from artok.generators.mar.model import MARConfig, MARGenerator
from artok.generators.mar.sample import sample_mar
from artok.generators.mar.speculative import speculative_sample_mar
from artok.generators.nar.model import NARConfig, NARGenerator
from artok.generators.nar.sample import sample_nar, sample_nar_recompute
from artok.generators.maskgit.model import MaskGITConfig, MaskGITGenerator
from artok.generators.maskgit.sample import sample_maskgit
from artok.generators.next_scale.model import NextScaleConfig, NextScaleGenerator
from artok.generators.next_scale.sample import sample_next_scale
from artok.generators.next_x.model import NextXConfig, NextXGenerator
from artok.generators.next_x.sample import sample_next_x
from artok.generators.raster.head_sample import sample_raster_with_head
from artok.generators.raster.model import RasterConfig, RasterGenerator
from artok.generators.raster.sample import sample_raster, sample_raster_recompute
from artok.generators.raster.speculative import speculative_sample
from artok.generators.rar.model import RARConfig, RARGenerator
from artok.generators.token_shuffle.model import TokenShuffleConfig, TokenShuffleGenerator
from artok.generators.token_shuffle.sample import sample_token_shuffle, sample_token_shuffle_recompute
from artok.hub import from_pretrained  # noqa: F401 - the registry is complete once this module is imported
from artok.sampling.configs import (
    SAMPLER_CONFIGS,
    sampler_config_from_dict,
    sampler_kind,
)
from artok.tokens import Tokens
from artok.typed_config import check_field, type_hints


@dataclass(frozen=True)
class Kind:
    """One generator kind.

    Args:
        name: the CLI name (``--generator NAME``).
        model: the generator class (registered with ``@register_model``).
        config: its config dataclass.
        sampler: the sampler-config kind it samples with (a key of `SAMPLER_CONFIGS`).
        sample: the plain loop, ``(generator, labels, config, rng) -> Tokens``.
        head: for kinds that share a class (raster / bitwise / dimwise): the ``config.head`` that
            selects this kind.
        build: ``(tokenizer, num_classes, tokens, options) -> generator``; default: the config
            from ``token_spec``, ``num_classes`` and the options.
        engine: the fast engine class, ``engine(generator, batch_size, guidance=...)`` with a
            ``.sample(labels, config, rng)`` giving the plain loop's tokens on CPU (None: no engine).
        speculative: exact speculative sampling, ``(target, draft, labels, config, rng, length)``.
        uncached: the reference loop that recomputes every step without a KV cache (same signature
            as ``sample``, same tokens for a seed); None for kinds without a cache.
        fixed: config fields the builder fills in (not user options).
        aliases: option names the kind reads as another field (MAR: ``depth`` is ``encoder_depth``).
        estimates_token_scale: continuous kinds: ``token_scale`` defaults to ``1 / std`` of the
            training tokens (MAR's latent scale factor).
        description: one line for help texts.
    """

    name: str
    model: type
    config: type
    sampler: str
    sample: Callable
    head: str | None = None
    build: Callable | None = None
    engine: Callable | None = None
    speculative: Callable | None = None
    uncached: Callable | None = None
    fixed: tuple[str, ...] = ("token_spec", "num_classes")
    aliases: tuple[tuple[str, str], ...] = ()
    estimates_token_scale: bool = False
    description: str = ""

    def matches(self, generator) -> bool:
        """``generator`` is this kind's class, or an unregistered design of it (next-X's two
        denoisers are subclasses that keep its ``model_type``), with this kind's head."""
        cls = type(generator)
        model_type = getattr(self.model, "model_type", None)
        design = model_type is not None and issubclass(cls, self.model) and getattr(cls, "model_type", None) == model_type
        return (cls is self.model or design) and (self.head is None or generator.config.head == self.head)


def _engine(module: str, name: str):
    """An engine class imported when first used (engines pull in compile machinery)."""

    def load(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return load


def _sample_raster_any_head(generator, labels, config, rng):
    if generator.config.head == "categorical":
        return sample_raster(generator, labels, config, rng)
    return sample_raster_with_head(generator, labels, config, rng)


def _next_scale_recompute(generator, labels, config, rng):
    return sample_next_scale(generator, labels, config, rng, use_cache=False)


def _speculative_raster(target, draft, labels, config, rng, length):
    if target.config.head != "categorical" or draft.config.head != "categorical":
        raise ValueError("speculative sampling of raster generators needs categorical heads on target and draft")
    return speculative_sample(target, draft, labels, config, rng, num_draft=length)


def _speculative_mar(target, draft, labels, config, rng, length):
    return speculative_sample_mar(target, draft, labels, config, draft_iterations=length, rng=rng)


def _build_next_scale(tokenizer, num_classes, tokens, options):
    return NextScaleGenerator.from_tokenizer(tokenizer, num_classes=num_classes, **options)


def _build_dar(tokenizer, num_classes, tokens, options):
    """d-ar: ``num_groups`` from a dar tokenizer (else the largest of 4, 2, 1 dividing the length)."""
    groups = getattr(tokenizer.config, "num_groups", None) or next(g for g in (4, 2, 1) if tokenizer.spec.seq_len % g == 0)
    options = {"num_groups": groups, **options}
    return DARGenerator(DARConfig(token_spec=tokenizer.spec.to_dict(), num_classes=num_classes, **options))


def default_build(kind: Kind):
    def build(tokenizer, num_classes, tokens, options):
        head = {"head": kind.head} if kind.head is not None else {}
        return kind.model(kind.config(token_spec=tokenizer.spec.to_dict(), num_classes=num_classes, **head, **options))

    return build


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Add (or replace) a row of the table."""
    if kind.sampler not in SAMPLER_CONFIGS:
        raise ValueError(f"kind {kind.name!r}: unknown sampler kind {kind.sampler!r}; one of {sorted(SAMPLER_CONFIGS)}")
    KINDS[kind.name] = kind
    return kind


def _raster(name: str, head: str, description: str) -> Kind:
    return Kind(name, RasterGenerator, RasterConfig, "raster", _sample_raster_any_head, head=head,
                engine=_engine("artok.generators.raster.engine", "SamplingEngine") if head == "categorical" else None,
                speculative=_speculative_raster if head == "categorical" else None,
                uncached=sample_raster_recompute if head == "categorical" else None,
                fixed=("token_spec", "num_classes", "head"), description=description)


for _row in (
    _raster("raster", "categorical", "LlamaGen next-token over a discrete grid"),
    _raster("dimwise", "dimwise", "TokenBridge dimension-wise heads over post-training-quantized tokens"),
    _raster("bitwise", "bitwise", "Infinity bitwise head over LFQ/BSQ tokens"),
    Kind("next-scale", NextScaleGenerator, NextScaleConfig, "next-scale", sample_next_scale, build=_build_next_scale,
         engine=_engine("artok.generators.next_scale.engine", "NextScaleEngine"), uncached=_next_scale_recompute,
         fixed=("token_spec", "num_classes", "quantizer"), description="VAR next-scale over multi-scale VQ tokens"),
    Kind("maskgit", MaskGITGenerator, MaskGITConfig, "maskgit", sample_maskgit,
         engine=_engine("artok.generators.maskgit.engine", "MaskGITEngine"), description="MaskGIT masked prediction"),
    Kind("mar", MARGenerator, MARConfig, "mar", sample_mar, speculative=_speculative_mar,
         aliases=(("depth", "encoder_depth"),), estimates_token_scale=True,
         description="MAR masked autoregression with a diffusion head over continuous tokens"),
    Kind("next-x", NextXGenerator, NextXConfig, "next-x", sample_next_x, estimates_token_scale=True,
         description="xAR next-X flow matching over continuous tokens"),
    Kind("rar", RARGenerator, RARConfig, "raster", sample_raster,
         engine=_engine("artok.generators.raster.engine", "SamplingEngine"), uncached=sample_raster_recompute,
         fixed=("token_spec", "num_classes", "head", "head_width", "head_depth"),
         description="RAR raster GPT trained on annealed random orders, target-aware positions"),
    Kind("nar", NARGenerator, NARConfig, "raster", sample_nar, uncached=sample_nar_recompute,
         description="NAR next-neighbour fronts (h + w - 1 steps) with horizontal and vertical heads"),
    Kind("token-shuffle", TokenShuffleGenerator, TokenShuffleConfig, "raster", sample_token_shuffle,
         uncached=sample_token_shuffle_recompute,
         description="Token-Shuffle raster GPT over s x s merged windows (h w / s^2 steps)"),
    Kind("any-order", AnyOrderGenerator, AnyOrderConfig, "raster", sample_any_order,
         uncached=sample_any_order_recompute, speculative=speculative_any_order, fixed=("token_spec", "num_classes", "head", "head_width", "head_depth"),
         description="any-subset AR (random orders, target-aware positions); exact parallel ASSD sampling"),
    Kind("hi-mar", HiMARGenerator, HiMARConfig, "mar", sample_hi_mar, estimates_token_scale=True,
         description="Hi-MAR: MAR over low-resolution pivots, then over the full grid given them"),
    Kind("d-ar", DARGenerator, DARConfig, "raster", sample_dar, build=_build_dar,
         engine=_engine("artok.generators.raster.engine", "SamplingEngine"), uncached=sample_raster_recompute,
         fixed=("token_spec", "num_classes", "head", "head_width", "head_depth"),
         description="D-AR plain next-token GPT over a sequential diffusion tokenizer's 1D groups; previews from prefixes"),
):
    register_kind(_row)

#: the built-in kinds, in table order (the CLI reads `KINDS` itself, so registered kinds appear too)
GENERATOR_KINDS = tuple(KINDS)


def token_scale_for(tokens: Tokens) -> float:
    """``1 / std`` of continuous token values (MAR's latent scale factor, estimated from data)."""
    values = tokens.values[: min(tokens.batch_size, 4096)].float()
    return float(1.0 / values.std().clamp_min(1e-6))


def get_kind(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown generator kind {name!r}; choose one of {', '.join(KINDS)}")
    return KINDS[name]


def checked_options(kind: Kind, options: dict) -> dict:
    """``options`` if every key is a user-settable field of the kind's config with the right type."""
    known = {f.name for f in fields(kind.config)} - set(kind.fixed)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{kind.name} generator has no option(s) {unknown}; options: {sorted(known)} "
                         f"(see artok options {kind.name})")
    hints = type_hints(kind.config)
    for name, value in options.items():
        if name in hints:
            check_field(name, value, hints[name], f"{kind.name} generator options")
    return options


def build_generator(kind: str, tokenizer, num_classes: int, tokens: Tokens | None = None, **options) -> Generator:
    """A fresh ``kind`` generator for ``tokenizer``'s tokens.

    ``options`` are fields of the kind's config (``dim``, ``depth``, ``num_heads``, ...; for MAR
    ``depth`` means ``encoder_depth``); continuous kinds estimate ``token_scale`` from ``tokens``.
    Raises `artok.generators.IncompatibleTokensError` when the tokens do not fit the kind, and a
    one-line ValueError for unknown or wrong-typed options.
    """
    row = get_kind(kind)
    aliases = dict(row.aliases)
    options = {aliases.get(key, key): value for key, value in options.items()}
    if row.estimates_token_scale and "token_scale" not in options and tokens is not None and tokens.values is not None:
        options["token_scale"] = token_scale_for(tokens)
    checked_options(row, options)
    build = row.build or default_build(row)
    try:
        return build(tokenizer, num_classes, tokens, options)
    except (TypeError, KeyError, IndexError, ZeroDivisionError) as error:  # a value the config checks missed
        raise ValueError(f"{kind} generator options: {' '.join(str(error).split())}") from None


def kind_of(generator) -> Kind:
    """The row of the table ``generator`` belongs to."""
    for kind in KINDS.values():
        if kind.matches(generator):
            return kind
    raise ValueError(f"{type(generator).__name__} is not a generator of the kind table; known: {', '.join(KINDS)}")


def generator_kind(generator) -> str:
    """The CLI kind name of a generator instance."""
    return kind_of(generator).name


def sampler_kind_for(generator) -> str:
    """The sampler-config kind a generator samples with."""
    return kind_of(generator).sampler


def default_sampler_config(generator):
    """The generator's stored sampling defaults, else its kind's defaults."""
    kind = sampler_kind_for(generator)
    stored = getattr(generator, "extra", {}).get("sampling")
    if stored:
        config = sampler_config_from_dict(stored, default_kind="raster")
        if sampler_kind(config) == kind:
            return config
    return SAMPLER_CONFIGS[kind]()


def sampler_config_for(generator, stored: dict | None = None, overrides: dict | None = None):
    """A config of the generator's kind: ``stored`` (a dict, e.g. ``extra["sampling"]``; None: the
    generator's defaults) with ``overrides`` (None values are skipped). An override that the kind does
    not have raises ValueError naming the kind."""
    kind = sampler_kind_for(generator)
    if stored is None:
        config = default_sampler_config(generator)
    else:
        config = sampler_config_from_dict(stored, default_kind=kind)
        if sampler_kind(config) != kind:
            raise ValueError(f"stored sampling defaults are for {sampler_kind(config)!r}, but the generator needs {kind!r}")
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"sampling option(s) {unknown} do not apply to {kind} sampling (options: {sorted(known)})")
    return replace(config, **overrides)


def _resolve_config(generator, config):
    kind = sampler_kind_for(generator)
    if config is None:
        return default_sampler_config(generator)
    if isinstance(config, dict):
        return sampler_config_from_dict(config, default_kind=kind)
    if sampler_kind(config) != kind:
        raise ValueError(
            f"a {type(generator).__name__} samples with {SAMPLER_CONFIGS[kind].__name__}, got {type(config).__name__}"
        )
    return config


def eligible_for_engine(generator) -> bool:
    """Kinds with an engine, and categorical heads (the engines' only head)."""
    return kind_of(generator).engine is not None and getattr(generator.config, "head", "categorical") == "categorical"


def uses_engine(generator, engine) -> bool:
    """Whether ``engine`` (False, True, ``"auto"``: on CUDA, or an engine object) asks for the
    kind's fast engine for ``generator``; True for a generator without one raises ValueError."""
    if engine is False or engine is None:
        return False
    if engine not in (True, "auto"):
        if hasattr(engine, "sample"):
            return True
        raise ValueError(f"engine must be True, False, 'auto' or an engine object, got {engine!r}")
    eligible = eligible_for_engine(generator)
    if engine is True and not eligible:
        raise ValueError(f"no fast engine for {kind_of(generator).name!r} generators with a "
                         f"{getattr(generator.config, 'head', None)!r} head")
    on_cuda = next(generator.parameters()).device.type == "cuda"
    return eligible and (engine is True or on_cuda)


def make_engine(generator, batch_size: int, guided: bool):
    """A new fast engine of ``generator``'s kind for ``batch_size`` rows (with guidance rows when
    ``guided``); on CUDA it samples from a bf16 compiled copy. The caller keeps it (see
    `artok.pipeline.Pipeline`)."""
    if not eligible_for_engine(generator):
        raise ValueError(f"no fast engine for {kind_of(generator).name!r} generators")
    return kind_of(generator).engine(generator, batch_size, guidance=guided)


@torch.no_grad()
def sample(generator, labels: torch.Tensor, config=None, rng: torch.Generator | None = None, *,
           engine=False) -> Tokens:
    """Sample one token sequence per label with the loop of ``generator``'s kind.

    ``config``: a sampler config of the kind, a dict (``extra["sampling"]`` style), or None for the
    generator's defaults. ``rng``: the only source of randomness. ``engine``: False (default) runs
    the plain loop; an engine object (`make_engine`) samples with it; True (or ``"auto"``, on CUDA
    only) builds a one-off engine, which on CUDA samples from a bf16 compiled copy: to reuse
    engines across calls, keep them (`artok.pipeline.Pipeline` does). On CPU an engine gives the
    plain loop's tokens."""
    config = _resolve_config(generator, config)
    row = kind_of(generator)
    if uses_engine(generator, engine):
        runner = engine if hasattr(engine, "sample") else make_engine(generator, labels.shape[0], config.uses_cfg)
        return runner.sample(labels, config, rng)
    return row.sample(generator, labels, config, rng)


@torch.no_grad()
def sample_speculative(generator, draft, labels: torch.Tensor, config=None, rng: torch.Generator | None = None,
                       draft_length: int = 4):
    """Exact speculative sampling with a smaller ``draft`` of the same kind (raster with categorical
    heads: ``draft_length`` tokens per target pass; MAR: ``draft_length`` iterations per target pass,
    needs ``config.final_noise > 0``). The output law is the plain sampler's; returns a
    `SpeculativeOutput`. Kinds without a speculative sampler raise ValueError."""
    row, draft_row = kind_of(generator), kind_of(draft)
    if draft_row.sampler != row.sampler:
        raise ValueError(f"the draft samples as {draft_row.sampler!r}, the target as {row.sampler!r}; use a draft of the same kind")
    if row.speculative is None:
        with_speculative = [name for name, kind in KINDS.items() if kind.speculative is not None]
        raise ValueError(f"speculative sampling is implemented for {', '.join(with_speculative)}, not {row.name!r} "
                         f"({type(generator).__name__})")
    return row.speculative(generator, draft, labels, _resolve_config(generator, config), rng, draft_length)
