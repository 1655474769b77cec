"""Behaviour fingerprint of artok: exact outputs of every tokenizer and generator kind x sampler.

Purpose
-------
Before code is moved between modules (a restructuring that must not change behaviour), this script
records what the library computes on CPU for fixed seeds: the token ids / values of every tokenizer
kind (``encode``) and its images (``decode``), the tokens every generator kind samples with every
sampler that applies to it (plain loop, uncached loop, CPU engines, speculative, Jacobi, LANTERN /
grouped relaxed acceptance, ReCAP, continuous speculative for MAR), the speculative samplers'
statistics, and each generator's training loss on a fixed batch. Tensors are stored as a sha256 of
their bytes (contiguous, CPU) together with their shape and dtype; losses as the ``repr`` of the
float. Tiny random models are built from a fixed ``torch.manual_seed`` per case with one thread, so
the output is bit-for-bit reproducible on one machine and one torch version.

Usage
-----
Record (the stored reference is ``tests/fixtures/behaviour_hashes.json``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/behaviour_hashes.py --out tests/fixtures/behaviour_hashes.json

Check after a change (prints each differing or missing case, exit status 1 on any difference)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/behaviour_hashes.py --check tests/fixtures/behaviour_hashes.json

``--only PREFIX`` (repeatable) restricts both recording and checking to cases whose names start with
one of the prefixes, e.g. ``--only generator/raster/ --only tokenizer/vit1d``; ``--list`` prints the
case names.

After a restructuring
---------------------
Every library name this script uses is looked up through `IMPORT_CANDIDATES` below: a list of
``"module:attribute"`` paths, the first importable one wins. When a function or class moves, add its
new path to the front of its list (keep the old ones while both layouts exist); do not change the
cases themselves. A difference reported by ``--check`` then means the behaviour changed, not the
layout. Only re-record the fixture for an intended behaviour change, and say so in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

# -- where the library's names live (first importable candidate wins) ----------------------------

IMPORT_CANDIDATES: dict[str, list[str]] = {
    # tokenizers
    "CNNTokenizer": ["artok.tokenizers.cnn:CNNTokenizer", "artok.tokenizers:CNNTokenizer"],
    "CNNTokenizerConfig": ["artok.tokenizers.cnn:CNNTokenizerConfig", "artok.tokenizers:CNNTokenizerConfig"],
    "ViT1DTokenizer": ["artok.tokenizers.vit1d:ViT1DTokenizer", "artok.tokenizers:ViT1DTokenizer"],
    "ViT1DTokenizerConfig": ["artok.tokenizers.vit1d:ViT1DTokenizerConfig", "artok.tokenizers:ViT1DTokenizerConfig"],
    "post_training_quantized": ["artok.tokenizers.ptq:post_training_quantized"],
    "DARTokenizer": ["artok.tokenizers.dar:DARTokenizer"],
    "DARTokenizerConfig": ["artok.tokenizers.dar:DARTokenizerConfig"],
    "Tokens": ["artok.tokens:Tokens"],
    # the kind table
    "GENERATOR_KINDS": ["artok.zoo:GENERATOR_KINDS", "artok.generators.zoo:GENERATOR_KINDS"],
    "build_generator": ["artok.zoo:build_generator", "artok.generators.zoo:build_generator"],
    "get_kind": ["artok.zoo:get_kind", "artok.generators.zoo:get_kind"],
    "default_sampler_config": ["artok.zoo:default_sampler_config", "artok.sampling:default_sampler_config"],
    "sample": ["artok.zoo:sample", "artok.sampling:sample", "artok.generators.zoo:sample"],
    "sample_speculative": ["artok.zoo:sample_speculative", "artok.sampling:sample_speculative",
                           "artok.generators.zoo:sample_speculative"],
    # plain loops
    "sample_raster_recompute": ["artok.generators.raster.sample:sample_raster_recompute", "artok.sampling:sample_raster_recompute", "artok.sampling.loops:sample_raster_recompute"],
    "sample_next_scale": ["artok.generators.next_scale.sample:sample_next_scale", "artok.sampling:sample_next_scale", "artok.sampling.next_scale:sample_next_scale"],
    # engines
    "SamplingEngine": ["artok.generators.raster.engine:SamplingEngine", "artok.sampling:SamplingEngine", "artok.sampling.engine:SamplingEngine"],
    "sample_raster_fast": ["artok.generators.raster.engine:sample_raster_fast", "artok.sampling:sample_raster_fast", "artok.sampling.engine:sample_raster_fast"],
    "NextScaleEngine": ["artok.generators.next_scale.engine:NextScaleEngine", "artok.sampling.next_scale_engine:NextScaleEngine"],
    "sample_next_scale_fast": ["artok.generators.next_scale.engine:sample_next_scale_fast", "artok.sampling.next_scale_engine:sample_next_scale_fast"],
    "MaskGITEngine": ["artok.generators.maskgit.engine:MaskGITEngine", "artok.sampling.maskgit_engine:MaskGITEngine"],
    # speculative family
    "speculative_sample": ["artok.generators.raster.speculative:speculative_sample", "artok.sampling.speculative:speculative_sample", "artok.sampling:speculative_sample"],
    "jacobi_sample": ["artok.generators.raster.jacobi:jacobi_sample", "artok.sampling:jacobi_sample", "artok.sampling.jacobi:jacobi_sample"],
    "lantern_acceptance": ["artok.sampling.relaxed:lantern_acceptance", "artok.sampling:lantern_acceptance"],
    "GroupedAcceptance": ["artok.sampling.relaxed:GroupedAcceptance", "artok.sampling:GroupedAcceptance"],
    "speculative_sample_mar": ["artok.generators.mar.speculative:speculative_sample_mar", "artok.sampling.continuous_speculative:speculative_sample_mar"],
    # ReCAP
    "sample_maskgit_recap": ["artok.generators.maskgit.recap:sample_maskgit_recap", "artok.sampling.recap:sample_maskgit_recap", "artok.sampling:sample_maskgit_recap"],
    "sample_mar_recap": ["artok.generators.mar.recap:sample_mar_recap", "artok.sampling.recap:sample_mar_recap"],
}

_resolved: dict[str, object] = {}


def resolve(name: str):
    """The object ``name`` of `IMPORT_CANDIDATES`: the first candidate path that imports."""
    if name in _resolved:
        return _resolved[name]
    failures = []
    for candidate in IMPORT_CANDIDATES[name]:
        module_name, attribute = candidate.split(":")
        try:
            value = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            failures.append(f"{candidate} ({type(error).__name__}: {error})")
            continue
        _resolved[name] = value
        return value
    raise ImportError(f"none of the candidate paths of {name!r} imports: " + "; ".join(failures)
                      + " - add the new path to IMPORT_CANDIDATES")


# -- fingerprints ---------------------------------------------------------------------------------


def tensor_hash(tensor: torch.Tensor) -> str:
    """sha256 over shape, dtype and the raw bytes of a contiguous CPU copy."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    digest = hashlib.sha256(f"{tuple(tensor.shape)}|{tensor.dtype}|".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint(value) -> str:
    """A stored string for what a case returns: tensors and `Tokens` hashed, floats as ``repr``,
    dicts (sampler statistics) as hashed sorted JSON, strings (already hashes) as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, torch.Tensor):
        return tensor_hash(value)
    if isinstance(value, resolve("Tokens")):
        return tensor_hash(value.data)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


# -- tiny models ----------------------------------------------------------------------------------

LABELS = (0, 2, 1)
NUM_CLASSES = 3
IMAGE_SIZE = 8
TOKENIZER_SEED, GENERATOR_SEED, DRAFT_SEED, IMAGE_SEED, SAMPLE_SEED, LOSS_SEED = 1, 2, 3, 4, 5, 6
WEIGHT_NOISE = 0.1

#: CNN tokenizer quantizers: (latent_dim, quantizer options)
CNN_QUANTIZERS: dict[str, tuple[int, dict]] = {
    "vq": (8, {"codebook_size": 16, "codebook_dim": 4}),
    "fsq": (8, {"levels": (5, 5, 5)}),
    "lfq": (8, {"codebook_dim": 6}),
    "bsq": (8, {"codebook_dim": 6}),
    "rvq": (8, {"codebook_size": 16, "num_levels": 3}),
    "msvq": (8, {"codebook_size": 16, "scales": (1, 2, 4)}),
    "kl": (4, {}),
    "continuous": (4, {}),
    "ptq": (3, {"bits": 2}),
}

#: ViT1D tokenizer quantizers: (latent_dim, quantizer options)
VIT1D_QUANTIZERS: dict[str, tuple[int, dict]] = {
    "vq": (4, {"codebook_size": 32, "codebook_dim": 4}),
    "fsq": (4, {"levels": (5, 5, 5)}),
    "kl": (4, {}),
}

#: each generator kind's natural tokenizer (a key of `CNN_QUANTIZERS`)
NATURAL_TOKENIZER = {"raster": "vq", "maskgit": "vq", "bitwise": "lfq", "next-scale": "msvq", "mar": "kl",
                     "next-x": "kl", "dimwise": "ptq", "rar": "vq", "nar": "vq", "token-shuffle": "vq", "any-order": "vq", "hi-mar": "kl",
                     "d-ar": "dar"}  # dar: `dar_tokenizer`, the only natural tokenizer that is not a CNN one
SMALL_OPTIONS = {"dim": 32, "depth": 1, "num_heads": 2}
DRAFT_OPTIONS = {"dim": 16, "depth": 1, "num_heads": 2}
CONTINUOUS_HEAD_OPTIONS = {"head_width": 16, "head_depth": 1}

#: generator variants beyond the kind table's defaults: name -> (kind, tokenizer, extra options)
GENERATOR_VARIANTS: dict[str, tuple[str, str, dict]] = {
    "maskgit-bitwise": ("maskgit", "lfq", {"head": "bitwise"}),
    "next-scale-bitwise": ("next-scale", "msvq", {"head": "bitwise"}),
    "mar-flow": ("mar", "kl", {"head": "flow"}),
    "next-x-head-diffusion": ("next-x", "kl", {"denoiser": "head", "head": "diffusion"}),
    "next-x-scale": ("next-x", "kl", {"unit": "scale"}),
}


def fixed_images(batch: int = 3) -> torch.Tensor:
    """``batch`` grey 8x8 images in [-1, 1] from a private random stream."""
    stream = torch.Generator().manual_seed(IMAGE_SEED)
    return torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE, generator=stream) * 2 - 1


def cnn_tokenizer(quantizer: str):
    """An untrained 8x8 -> 4x4 CNN tokenizer with ``quantizer``, in eval mode."""
    latent_dim, options = CNN_QUANTIZERS[quantizer]
    torch.manual_seed(TOKENIZER_SEED)
    config = resolve("CNNTokenizerConfig")(image_size=IMAGE_SIZE, base_channels=8, channel_multipliers=(1, 2),
                                           latent_dim=latent_dim, quantizer=quantizer, quantizer_options=options)
    return resolve("CNNTokenizer")(config).eval()


def calibrated_ptq_tokenizer():
    """The KL CNN tokenizer turned into a 3-bit PTQ tokenizer, calibrated on 16 fixed images."""
    kl = cnn_tokenizer("kl")
    calibration = torch.rand(16, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(IMAGE_SEED + 1))
    return resolve("post_training_quantized")(kl, calibration * 2 - 1, bits=3).eval()


def vit1d_tokenizer(quantizer: str):
    """An untrained 8x8 ViT1D tokenizer with 8 latent tokens, in eval mode."""
    latent_dim, options = VIT1D_QUANTIZERS[quantizer]
    torch.manual_seed(TOKENIZER_SEED)
    config = resolve("ViT1DTokenizerConfig")(
        in_channels=1, image_size=IMAGE_SIZE, patch_size=4, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2,
        num_latent_tokens=8, latent_dim=latent_dim, quantizer=quantizer, quantizer_options=options)
    return resolve("ViT1DTokenizer")(config).eval()


def dar_tokenizer():
    """An 8x8 D-AR tokenizer (8 VQ tokens in 4 groups, 4 Euler steps), `perturbed` (its flow
    network's output layers start at zero), in eval mode."""
    torch.manual_seed(TOKENIZER_SEED)
    config = resolve("DARTokenizerConfig")(
        in_channels=1, image_size=IMAGE_SIZE, patch_size=2, dim=32, encoder_depth=1, decoder_depth=1, context_depth=1,
        num_heads=2, num_latent_tokens=8, num_groups=4, latent_dim=4, quantizer="vq",
        quantizer_options={"codebook_size": 16, "codebook_dim": 4}, decode_steps=4)
    return perturbed(resolve("DARTokenizer")(config), TOKENIZER_SEED + 1).eval()


def natural_tokenizer(name: str):
    """A generator's natural tokenizer: `dar_tokenizer` for ``"dar"``, else `cnn_tokenizer`."""
    return dar_tokenizer() if name == "dar" else cnn_tokenizer(name)


def generator_options(kind: str, small: dict) -> dict:
    continuous = kind in ("mar", "next-x", "hi-mar")
    return {**small, **(CONTINUOUS_HEAD_OPTIONS if continuous else {})}


def fresh(kind: str, tokenizer, seed: int, options: dict):
    """A freshly initialised ``kind`` generator for ``tokenizer`` built from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return resolve("build_generator")(kind, tokenizer, num_classes=NUM_CLASSES, **options).eval()


@torch.no_grad()
def perturbed(generator, seed: int):
    """``generator`` with seeded noise (std `WEIGHT_NOISE`) added to every parameter, in place.

    At initialisation several kinds zero their output layers or adaLN gates (next-x's output, MAR's
    head projection, next-scale's modulation), which would make the samples blind to most of the
    network; the noise makes every layer matter."""
    stream = torch.Generator().manual_seed(seed)
    for _, parameter in sorted(generator.named_parameters()):
        parameter.add_(torch.randn(parameter.shape, generator=stream) * WEIGHT_NOISE)
    return generator


def build(kind: str, tokenizer, seed: int, options: dict):
    """A ``kind`` generator for ``tokenizer``: initialised from ``seed``, then `perturbed`."""
    return perturbed(fresh(kind, tokenizer, seed, options), seed + 100)


def state_hash(module) -> str:
    """sha256 over the names and `tensor_hash` of every state-dict entry (sorted by name)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}={tensor_hash(tensor)};".encode())
    return digest.hexdigest()


def variant_parts(variant: str) -> tuple[str, str, dict]:
    """``(kind, natural tokenizer, extra options)`` of a kind or a `GENERATOR_VARIANTS` name."""
    if variant in GENERATOR_VARIANTS:
        return GENERATOR_VARIANTS[variant]
    return variant, NATURAL_TOKENIZER[variant], {}


def target_and_tokenizer(variant: str):
    kind, tokenizer_name, extra = variant_parts(variant)
    tokenizer = natural_tokenizer(tokenizer_name)
    return build(kind, tokenizer, GENERATOR_SEED, {**generator_options(kind, SMALL_OPTIONS), **extra}), tokenizer


def target_draft_and_tokenizer(variant: str):
    kind, _, extra = variant_parts(variant)
    target, tokenizer = target_and_tokenizer(variant)
    draft = build(kind, tokenizer, DRAFT_SEED, {**generator_options(kind, DRAFT_OPTIONS), **extra})
    return target, draft, tokenizer


def guided_config(generator):
    """The kind's default sampler config, shortened (4 iterations, 3 solver steps), CFG scale 2."""
    config = resolve("default_sampler_config")(generator)
    for field, value in (("iterations", 4), ("steps", 3)):
        if hasattr(config, field):
            config = replace(config, **{field: value})
    return replace(config, cfg_scale=2.0)


def unguided_config(generator):
    """No guidance, temperature 0.8 and (where the kind has it) top-k 4."""
    config = replace(guided_config(generator), cfg_scale=1.0, temperature=0.8)
    return replace(config, top_k=4) if hasattr(config, "top_k") else config


def labels() -> torch.Tensor:
    return torch.tensor(LABELS)


def seeded_stream() -> torch.Generator:
    return torch.Generator().manual_seed(SAMPLE_SEED)


# -- tokenizer cases ------------------------------------------------------------------------------


def tokenizer_cases() -> dict[str, Callable]:
    builders = {f"cnn-{name}": (lambda name=name: cnn_tokenizer(name)) for name in CNN_QUANTIZERS}
    builders["cnn-ptq-calibrated"] = calibrated_ptq_tokenizer
    builders.update({f"vit1d-{name}": (lambda name=name: vit1d_tokenizer(name)) for name in VIT1D_QUANTIZERS})
    cases: dict[str, Callable] = {}
    for name, make in builders.items():
        cases[f"tokenizer/{name}/encode"] = lambda make=make: make().encode(fixed_images())
        cases[f"tokenizer/{name}/decode"] = lambda make=make: decode_of_encode(make())
    cases["tokenizer/vit1d-vq/decode-prefix-3"] = lambda: decode_of_encode(vit1d_tokenizer("vq"), num_tokens=3)
    cases["tokenizer/dar-vq/encode"] = lambda: dar_tokenizer().encode(fixed_images())
    cases["tokenizer/dar-vq/decode"] = lambda: decode_of_encode(dar_tokenizer())
    cases["tokenizer/dar-vq/decode-prefix-4"] = lambda: decode_of_encode(dar_tokenizer(), num_tokens=4)
    return cases


def decode_of_encode(tokenizer, **decode_options) -> torch.Tensor:
    return tokenizer.decode(tokenizer.encode(fixed_images()), **decode_options)


# -- generator cases: samplers every kind has ---------------------------------------------------


def plain_sample(variant: str, make_config) -> Callable:
    def run():
        generator, _ = target_and_tokenizer(variant)
        return resolve("sample")(generator, labels(), make_config(generator), seeded_stream(), engine=False)

    return run


def initial_weights(variant: str) -> Callable:
    """The generator's freshly initialised state dict (names and values), before `perturbed`."""

    def run():
        kind, tokenizer_name, extra = variant_parts(variant)
        options = {**generator_options(kind, SMALL_OPTIONS), **extra}
        return state_hash(fresh(kind, natural_tokenizer(tokenizer_name), GENERATOR_SEED, options))

    return run


def training_loss(variant: str) -> Callable:
    def run():
        generator, tokenizer = target_and_tokenizer(variant)
        tokens = tokenizer.encode(fixed_images())
        generator.train()
        torch.manual_seed(LOSS_SEED)
        return float(generator.loss(tokens, labels())["loss"].detach())

    return run


def uncached_sample(variant: str) -> Callable:
    def run():
        generator, _ = target_and_tokenizer(variant)
        kind = variant_parts(variant)[0]
        try:
            uncached = resolve("get_kind")(kind).uncached
        except ImportError:  # the layout before the kind table: the same two reference loops
            uncached = {"raster": resolve("sample_raster_recompute"),
                        "next-scale": lambda *args: resolve("sample_next_scale")(*args, use_cache=False)}[kind]
        return uncached(generator, labels(), guided_config(generator), seeded_stream())

    return run


# -- generator cases: engines ---------------------------------------------------------------------


def raster_engine(attention: str) -> Callable:
    def run():
        generator, _ = target_and_tokenizer("raster")
        config = guided_config(generator)
        engine = resolve("SamplingEngine")(generator, len(LABELS), guidance=config.uses_cfg, attention=attention,
                                           bucket_size=4, compile=False, cuda_graphs=False)
        return engine.sample(labels(), config, seeded_stream())

    return run


def raster_fast():
    generator, _ = target_and_tokenizer("raster")
    return resolve("sample_raster_fast")(generator, labels(), unguided_config(generator), seeded_stream(), compile=False)


def engine_sample(variant: str, engine_name: str, make_config) -> Callable:
    def run():
        generator, _ = target_and_tokenizer(variant)
        config = make_config(generator)
        engine = resolve(engine_name)(generator, len(LABELS), guidance=config.uses_cfg, compile=False, cuda_graphs=False)
        return engine.sample(labels(), config, seeded_stream())

    return run


def next_scale_fast():
    generator, _ = target_and_tokenizer("next-scale")
    return resolve("sample_next_scale_fast")(generator, labels(), unguided_config(generator), seeded_stream(),
                                             compile=False)


# -- generator cases: speculative, Jacobi, relaxed, ReCAP ------------------------------------------


def raster_speculative(acceptance_name: str | None, part: str) -> Callable:
    """Speculative sampling of the raster kind with a smaller raster draft; ``part`` is ``tokens``
    or ``stats``."""

    def run():
        target, draft, tokenizer = target_draft_and_tokenizer("raster")
        output = resolve("speculative_sample")(target, draft, labels(), guided_config(target), seeded_stream(),
                                               num_draft=3, acceptance=acceptance(acceptance_name, tokenizer),
                                               measure_tv=acceptance_name is not None)
        return output_part(output, part)

    return run


def raster_jacobi(acceptance_name: str | None, part: str) -> Callable:
    def run():
        target, tokenizer = target_and_tokenizer("raster")
        output = resolve("jacobi_sample")(target, labels(), guided_config(target), seeded_stream(), window=3,
                                          acceptance=acceptance(acceptance_name, tokenizer),
                                          measure_tv=acceptance_name is not None)
        return output_part(output, part)

    return run


def acceptance(name: str | None, tokenizer):
    """None (exact), LANTERN with 3 latent neighbours, or grouped (GSD) acceptance."""
    if name is None:
        return None
    if name == "lantern":
        return resolve("lantern_acceptance")(tokenizer, k=3, delta=0.1)
    if name == "grouped":
        return resolve("GroupedAcceptance")(rank_window=2, prob_gap=0.2)
    raise ValueError(f"unknown acceptance {name!r}")


def output_part(output, part: str):
    if part == "tokens":
        return output.tokens
    return output.stats.to_dict()


def dispatched_speculative(variant: str, part: str) -> Callable:
    """`sample_speculative` of the kind table (raster: 3 drafts, MAR: 2 draft iterations)."""

    def run():
        target, draft, _ = target_draft_and_tokenizer(variant)
        config = speculative_config(target)
        output = resolve("sample_speculative")(target, draft, labels(), config, seeded_stream(), draft_length=3)
        return output_part(output, part)

    return run


def speculative_config(generator):
    config = guided_config(generator)
    return replace(config, final_noise=0.3) if hasattr(config, "final_noise") else config


def mar_continuous_speculative(part: str) -> Callable:
    def run():
        target, draft, _ = target_draft_and_tokenizer("mar")
        output = resolve("speculative_sample_mar")(target, draft, labels(), speculative_config(target),
                                                   draft_iterations=2, rng=seeded_stream())
        return output_part(output, part)

    return run


def recap_sample(variant: str, function_name: str, group_size: int) -> Callable:
    """ReCAP with 8 iterations (with 4, MAR's local passes happen to reproduce the full ones exactly,
    so the case could not tell ReCAP from the plain loop)."""

    def run():
        generator, _ = target_and_tokenizer(variant)
        config = replace(guided_config(generator), iterations=8)
        return resolve(function_name)(generator, labels(), config, seeded_stream(), group_size=group_size,
                                      cuda_graphs=False)

    return run


# -- the case table -------------------------------------------------------------------------------


def generator_kinds() -> tuple[str, ...]:
    """The built-in kinds of the kind table; each must have a natural tokenizer here."""
    kinds = tuple(resolve("GENERATOR_KINDS"))
    unknown = sorted(set(kinds) - set(NATURAL_TOKENIZER))
    if unknown:
        raise ValueError(f"generator kinds {unknown} have no entry in NATURAL_TOKENIZER; add one (and re-record)")
    return kinds


def generator_cases() -> dict[str, Callable]:
    cases: dict[str, Callable] = {}
    for variant in (*generator_kinds(), *GENERATOR_VARIANTS):
        cases[f"generator/{variant}/plain-guided"] = plain_sample(variant, guided_config)
        cases[f"generator/{variant}/plain-unguided"] = plain_sample(variant, unguided_config)
        cases[f"generator/{variant}/loss"] = training_loss(variant)
        cases[f"generator/{variant}/init-weights"] = initial_weights(variant)
    for variant in ("raster", "next-scale"):
        cases[f"generator/{variant}/uncached"] = uncached_sample(variant)
    cases["generator/raster/engine-full"] = raster_engine("full")
    cases["generator/raster/engine-bucketed"] = raster_engine("bucketed")
    cases["generator/raster/engine-fast-unguided"] = raster_fast
    for config_name, make_config in (("guided", guided_config), ("unguided", unguided_config)):
        cases[f"generator/next-scale/engine-{config_name}"] = engine_sample("next-scale", "NextScaleEngine", make_config)
        cases[f"generator/maskgit/engine-{config_name}"] = engine_sample("maskgit", "MaskGITEngine", make_config)
    cases["generator/next-scale/engine-fast-unguided"] = next_scale_fast
    for part in ("tokens", "stats"):
        for acceptance_name in (None, "lantern", "grouped"):
            suffix = "" if acceptance_name is None else f"-{acceptance_name}"
            cases[f"generator/raster/speculative{suffix}/{part}"] = raster_speculative(acceptance_name, part)
            cases[f"generator/raster/jacobi{suffix}/{part}"] = raster_jacobi(acceptance_name, part)
        cases[f"generator/raster/speculative-dispatch/{part}"] = dispatched_speculative("raster", part)
        cases[f"generator/mar/speculative-dispatch/{part}"] = dispatched_speculative("mar", part)
        cases[f"generator/mar/continuous-speculative/{part}"] = mar_continuous_speculative(part)
    for group_size in (1, 2):
        cases[f"generator/maskgit/recap-group{group_size}"] = recap_sample("maskgit", "sample_maskgit_recap", group_size)
        cases[f"generator/mar/recap-group{group_size}"] = recap_sample("mar", "sample_mar_recap", group_size)
    return cases


def all_cases() -> dict[str, Callable]:
    """Every case name -> a function computing its value (sorted by name)."""
    cases = {**tokenizer_cases(), **generator_cases()}
    return dict(sorted(cases.items()))


def selected(names, prefixes: list[str] | None) -> list[str]:
    return [name for name in names if not prefixes or any(name.startswith(prefix) for prefix in prefixes)]


def compute(prefixes: list[str] | None = None) -> dict[str, str]:
    """Fingerprints of the cases matching ``prefixes`` (all when None), one thread, fixed seeds."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = all_cases()
        return {name: run_case(name, cases[name]) for name in selected(cases, prefixes)}
    finally:
        torch.set_num_threads(previous_threads)


def run_case(name: str, case: Callable) -> str:
    """The fingerprint of one case, or ``"error: ..."`` when it raises (so one broken import or
    call is reported as that case's difference instead of stopping the run)."""
    torch.manual_seed(0)
    try:
        with torch.enable_grad() if name.endswith("/loss") else torch.no_grad():
            return fingerprint(case())
    except Exception as error:  # noqa: BLE001 - every failure is a behaviour difference to report
        return f"error: {type(error).__name__}: {' '.join(str(error).split())}"


def differences(computed: dict[str, str], stored: dict[str, str], prefixes: list[str] | None = None) -> list[str]:
    """One line per case that differs, is missing from the run, or is new (not in ``stored``)."""
    expected = {name: stored[name] for name in selected(stored, prefixes)}
    lines = []
    for name in sorted(set(expected) | set(computed)):
        if name not in computed:
            lines.append(f"MISSING  {name}: stored but not computed")
        elif name not in expected:
            lines.append(f"NEW      {name}: computed but not stored")
        elif computed[name] != expected[name]:
            lines.append(f"CHANGED  {name}: stored {expected[name]}, now {computed[name]}")
    return lines


def parse_arguments(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench/behaviour_hashes.json", help="where to write the fingerprints")
    parser.add_argument("--check", metavar="FILE", help="compare with a stored fingerprint file instead of writing")
    parser.add_argument("--only", action="append", metavar="PREFIX", help="only cases starting with PREFIX (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.list:
        print("\n".join(selected(all_cases(), arguments.only)))
        return 0
    started = time.perf_counter()
    computed = compute(arguments.only)
    elapsed = time.perf_counter() - started
    if arguments.check:
        stored = json.loads(Path(arguments.check).read_text())
        lines = differences(computed, stored, arguments.only)
        print("\n".join(lines) if lines else f"all {len(computed)} cases match {arguments.check} ({elapsed:.1f} s)")
        return 1 if lines else 0
    out = Path(arguments.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(computed, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(computed)} cases to {out} ({elapsed:.1f} s)")
    failed = [f"{name}: {value}" for name, value in computed.items() if value.startswith("error: ")]
    if failed:
        print("cases that raised (recorded as errors):\n" + "\n".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
