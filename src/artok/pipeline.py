"""`Pipeline`: a generator, its tokenizer and sampler settings, from one folder to images.

A pipeline owns the engines it builds (explicitly: ``Pipeline(..., engine=True)``, or ``"auto"``
for the kind's fast engine on CUDA): an engine samples from a bf16, compiled, CUDA-graphed copy
of the generator, built once per batch size and rebuilt when the weights change. Nothing is kept
on the generator itself, and `artok.zoo.sample` never switches to an engine unless asked;
`Pipeline.engine_used` says which path the last call took.

    pipeline = Pipeline.from_pretrained("runs/demo/generator")
    images = pipeline(torch.arange(10), seed=0)      # N x C x H x W in [-1, 1]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from artok.tokens import Tokens
from artok.zoo import (
    from_pretrained,
    kind_of,
    make_engine,
    sample,
    sample_speculative,
    uses_engine,
)


def weights_version(generator) -> tuple:
    """Where every weight lives and how often it was modified in place (``Tensor._version``): it
    changes when a training step, ``load_state_dict`` or a move touches any weight."""
    return tuple((p.data_ptr(), p._version) for p in generator.parameters())


class EngineCache:
    """Engines by ``(batch size, guided)``, each with the weights version it was built from."""

    def __init__(self) -> None:
        self.engines: dict = {}

    def get(self, generator, batch_size: int, guided: bool):
        key, version = (batch_size, guided), weights_version(generator)
        if key not in self.engines or self.engines[key][0] != version:
            self.engines[key] = (version, make_engine(generator, batch_size, guided))
        return self.engines[key][1]

    def __len__(self) -> int:
        return len(self.engines)


class Pipeline:
    """``generator`` + ``tokenizer`` + ``sampler`` (a sampler config of the generator's kind; None:
    the defaults stored with the generator). ``engine``: False (plain loops), True (the kind's
    engine; refused for kinds without one) or ``"auto"`` (the engine on CUDA)."""

    def __init__(self, generator, tokenizer, sampler=None, *, engine: bool | str = False) -> None:
        self.generator, self.tokenizer, self.sampler = generator, tokenizer, sampler
        self.engine = engine
        uses_engine(generator, engine)  # refuses a bad value or engine=True without an engine now
        self.engines = EngineCache()
        self.engine_used: str | None = None

    @classmethod
    def from_pretrained(cls, generator_dir, tokenizer_dir=None, device: str = "cpu", sampler=None,
                        engine: bool | str = False) -> "Pipeline":
        generator, tokenizer = load_pair(generator_dir, tokenizer_dir, device)
        return cls(generator, tokenizer, sampler, engine=engine)

    @torch.no_grad()
    def tokens(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> Tokens:
        """One token sequence per label (the plain loop, or this pipeline's engine)."""
        if uses_engine(self.generator, self.engine):
            config = self.sampler
            engine = self.engines.get(self.generator, labels.shape[0], _guided(self.generator, config))
            self.engine_used = f"{kind_of(self.generator).name} engine (batch {labels.shape[0]})"
            return sample(self.generator, labels, config, rng, engine=engine)
        self.engine_used = None
        return sample(self.generator, labels, self.sampler, rng)

    @torch.no_grad()
    def __call__(self, labels: torch.Tensor, seed: int = 0, batch_size: int = 256, draft=None, draft_length: int = 4,
                 stats: list | None = None) -> torch.Tensor:
        """Class-conditional images (``N x C x H x W`` in [-1, 1]) for ``labels``; deterministic in ``seed``.
        With a ``draft`` generator, exact speculative sampling is used and each batch's
        `SpeculativeStats` is appended to ``stats`` (when given)."""
        device = next(self.generator.parameters()).device
        rng = torch.Generator(device=device).manual_seed(seed)
        images = []
        for start in range(0, labels.shape[0], batch_size):
            batch = labels[start : start + batch_size].to(device)
            if draft is None:
                tokens = self.tokens(batch, rng)
            else:
                output = sample_speculative(self.generator, draft, batch, self.sampler, rng, draft_length=draft_length)
                tokens = output.tokens
                if stats is not None:
                    stats.append(output.stats)
            images.append(self.tokenizer.decode(tokens).cpu())
        return torch.cat(images)


def _guided(generator, config) -> bool:
    from artok.zoo import default_sampler_config

    return (config if config is not None and not isinstance(config, dict) else default_sampler_config(generator)).uses_cfg


def sample_images(generator, tokenizer, labels: torch.Tensor, sampler=None, seed: int = 0, batch_size: int = 256,
                  draft=None, draft_length: int = 4, stats: list | None = None) -> torch.Tensor:
    """`Pipeline` ``(generator, tokenizer, sampler)(labels, seed, ...)`` with the plain loops."""
    return Pipeline(generator, tokenizer, sampler)(labels, seed=seed, batch_size=batch_size, draft=draft,
                                                   draft_length=draft_length, stats=stats)


def tokenizer_reference(tokenizer_dir: str | Path, generator_dir: str | Path) -> str:
    """How a generator folder records its tokenizer: the path relative to the generator folder,
    so the pair can be moved or shared together (an absolute path when no relative one exists)."""

    tokenizer_dir, generator_dir = Path(tokenizer_dir).resolve(), Path(generator_dir).resolve()
    try:
        return os.path.relpath(tokenizer_dir, generator_dir)
    except ValueError:  # another drive on Windows
        return str(tokenizer_dir)


def recorded_tokenizer(generator_dir: str | Path, recorded: str) -> Path:
    """The tokenizer folder a generator recorded: relative paths are relative to the generator
    folder; older folders stored absolute paths, which still load."""
    path = Path(recorded)
    return path if path.is_absolute() else Path(generator_dir) / path


def load_pair(generator_dir: str | Path, tokenizer_dir: str | Path | None = None, device: str = "cpu"):
    """Load a generator and its tokenizer (by default the one recorded in the generator's config)."""
    generator = from_pretrained(generator_dir, device, role="generator")
    if tokenizer_dir is None:
        recorded = generator.extra.get("tokenizer")
        if not isinstance(recorded, str):
            raise ValueError(f"{generator_dir} does not record its tokenizer; pass --tokenizer DIR")
        tokenizer_dir = recorded_tokenizer(generator_dir, recorded)
        if not Path(tokenizer_dir).is_dir():
            raise FileNotFoundError(f"the tokenizer recorded by {generator_dir} ({recorded}) is not there; "
                                    "pass --tokenizer DIR")
    tokenizer = from_pretrained(tokenizer_dir, device, role="tokenizer")
    if tokenizer.spec != generator.spec:
        raise ValueError(f"tokenizer {tokenizer_dir} emits {tokenizer.spec}, but the generator models {generator.spec}")
    own_quantizer = getattr(generator, "scale_quantizer", None)
    if own_quantizer is not None:
        # A next-scale generator builds its inputs with its copy of the tokenizer's quantizer.
        theirs = tokenizer.quantizer.state_dict()
        if any(not torch.equal(value.cpu(), theirs[key].cpu()) for key, value in own_quantizer.state_dict().items()
               if key != "usage"):
            raise ValueError(f"tokenizer {tokenizer_dir} is not the one the next-scale generator {generator_dir} was trained with")
    return generator, tokenizer
