"""The demo's model side: request checking and sampling, independent of HTTP so it is easy to test.

Every field of a request is checked here (type, finiteness, range) because the page is not trusted:
a hand-written request must get a one-line reason, never reach the sampler with a NaN or a count
that would exhaust memory. Sampling itself is an `artok.pipeline.Pipeline` (the plain loop, or the
kind's fast engine where it has one) with the config of `artok.zoo.sampler_config_for` (the
generator's stored defaults plus the request's values), exactly what ``artok sample`` runs, so the
page shows what the command line would produce.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from dataclasses import dataclass, fields

import torch
from PIL import Image

#: Most images one request may ask for: keeps one click from holding the lock (and memory) for long.
MAX_COUNT = 64

#: Images per row of the returned grid.
GRID_COLUMNS = 8

#: Sampler options the page can set, when the generator's kind has them.
TOKEN_OPTIONS = ("cfg_scale", "temperature", "top_k", "top_p")

#: Engines kept per pipeline (one per batch size; on CUDA each holds a bf16 copy of the weights).
MAX_ENGINES = 4

#: Largest seed: the page holds numbers as JavaScript doubles, exact up to 2**53 - 1, so a larger seed
#: could not be shown back to the user as the one that made the image.
MAX_SEED = 2**53 - 1


class RequestError(ValueError):
    """A request the client must fix (answered with HTTP `status` and this one-line message)."""

    status = 400


@dataclass(frozen=True)
class NumberRule:
    """The allowed values of one numeric request field."""

    name: str
    integer: bool
    low: float
    high: float

    def check(self, value):
        """``value`` if it is a number of the right type inside [low, high], else RequestError."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"{self.name} must be a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise RequestError(f"{self.name} must be a finite number, got {_shown(value)}")
        if self.integer and not isinstance(value, int):
            raise RequestError(f"{self.name} must be an integer, got {_shown(value)}")
        if not self.low <= value <= self.high:
            raise RequestError(f"{self.name} must lie in [{_number(self.low)}, {_number(self.high)}], got {_shown(value)}")
        return value

    def limits(self) -> list:
        return [_number(self.low), _number(self.high)]


# Temperatures near 0 overflow the logits, so the floor is a small positive value, not 0.
SAMPLER_RULES = {
    "cfg_scale": NumberRule("cfg_scale", integer=False, low=0.0, high=100.0),
    "temperature": NumberRule("temperature", integer=False, low=0.01, high=100.0),
    "top_k": NumberRule("top_k", integer=True, low=0, high=1_000_000),
    "top_p": NumberRule("top_p", integer=False, low=0.001, high=1.0),
}


@dataclass(frozen=True)
class SampleRequest:
    """A checked request: every value is in range and the sampler config is built."""

    label: int
    seed: int
    count: int
    sampler: str
    config: object


def _number(value):
    """Whole floats as ints, so limits read ``[0, 64]`` rather than ``[0.0, 64.0]``."""
    return int(value) if float(value).is_integer() else value


def _shown(value) -> str:
    """A short, one-line rendering of a client value for an error message, as JSON writes it."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def class_names(generator) -> list[str]:
    """The generator's class names (``extra["class_names"]``), numbers where none are recorded."""
    count = generator.config.num_classes
    stored = getattr(generator, "extra", {}).get("class_names")
    if not isinstance(stored, (list, tuple)):
        stored = []
    return [str(stored[index]) if index < len(stored) else f"class {index}" for index in range(count)]


def png_bytes(images: torch.Tensor) -> tuple[bytes, int, int]:
    """A PNG of ``images`` tiled `GRID_COLUMNS` wide (small cells upscaled), with its width and height."""
    from artok.evaluation.report import default_scale, image_grid

    scale = default_scale(images.shape[2], images.shape[3])
    grid = image_grid(images, nrow=GRID_COLUMNS, scale=scale)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), picture.width, picture.height


class DemoService:
    """A loaded generator/tokenizer pair that answers the page's requests, one sample at a time.

    The lock serialises sampling: two concurrent clicks would otherwise double the memory peak and
    make each other's timings meaningless."""

    def __init__(self, generator, tokenizer, name: str = "") -> None:
        from artok.pipeline import Pipeline
        from artok.zoo import (
            eligible_for_engine,
            generator_kind,
            sampler_config_for,
            sampler_kind_for,
        )

        self.generator = generator.eval()
        self.tokenizer = tokenizer.eval()
        self.name = name
        self.kind = generator_kind(generator)  # raster, bitwise, mar ... as ``artok train-generator`` names it
        self.sampler_kind = sampler_kind_for(generator)
        stored = getattr(generator, "extra", {}).get("sampling")
        # As `artok sample`: a malformed stored entry falls back to the kind's defaults.
        self.stored_sampling = stored if isinstance(stored, dict) else None
        self.defaults = sampler_config_for(generator, self.stored_sampling)
        self.options = [option for option in TOKEN_OPTIONS if option in {f.name for f in fields(self.defaults)}]
        self.classes = class_names(generator)
        self.pipelines = {"plain": Pipeline(generator, tokenizer, engine=False)}
        if eligible_for_engine(generator):
            self.pipelines["engine"] = Pipeline(generator, tokenizer, engine=True)
        self.samplers = list(self.pipelines)
        # As `artok sample` (engine="auto"): the engine on CUDA, where it is faster; the plain loop elsewhere.
        on_cuda = next(generator.parameters()).device.type == "cuda"
        self.default_sampler = "engine" if on_cuda and "engine" in self.pipelines else "plain"
        self.lock = threading.Lock()

    @classmethod
    def load(cls, generator_dir, tokenizer_dir=None, device: str = "cpu") -> DemoService:
        """Load a saved pair as ``artok sample`` does (`artok.pipeline.load_pair`)."""
        from artok.pipeline import (
            load_pair,  # imports artok.zoo, which registers every generator kind
        )

        generator, tokenizer = load_pair(generator_dir, tokenizer_dir, device)
        return cls(generator, tokenizer, name=str(generator_dir))

    @property
    def tokens_per_image(self) -> int:
        return self.generator.spec.seq_len

    def info(self) -> dict:
        """What the page needs to build its form: classes, options of this kind, defaults, limits."""
        defaults = {"label": 0, "seed": 0, "count": GRID_COLUMNS, "sampler": self.default_sampler}
        defaults.update({option: getattr(self.defaults, option) for option in self.options})
        limits = {"label": [0, len(self.classes) - 1], "seed": [0, MAX_SEED], "count": [1, MAX_COUNT]}
        limits.update({option: SAMPLER_RULES[option].limits() for option in self.options})
        return {"kind": self.kind, "name": self.name, "device": str(next(self.generator.parameters()).device),
                "classes": self.classes, "options": self.options, "samplers": self.samplers,
                "defaults": defaults, "limits": limits, "tokens_per_image": self.tokens_per_image}

    def parse(self, payload) -> SampleRequest:
        """A checked `SampleRequest` from a decoded JSON body; RequestError names the first bad field."""
        if not isinstance(payload, dict):
            raise RequestError(f"the request body must be a JSON object, got a JSON {type(payload).__name__}")
        known = {"label", "seed", "count", "sampler", *self.options}
        unknown = sorted(str(key) for key in payload if key not in known)
        if unknown:
            not_here = [key for key in unknown if key in TOKEN_OPTIONS]
            if not_here:
                raise RequestError(f"{', '.join(not_here)} does not apply to {self.sampler_kind} sampling")
            raise RequestError(f"unknown field(s) {', '.join(_shown(key) for key in unknown)}; known: {', '.join(sorted(known))}")
        label = NumberRule("label", True, 0, len(self.classes) - 1).check(payload.get("label", 0))
        seed = NumberRule("seed", True, 0, MAX_SEED).check(payload.get("seed", 0))
        count = NumberRule("count", True, 1, MAX_COUNT).check(payload.get("count", GRID_COLUMNS))
        sampler = payload.get("sampler", self.default_sampler)
        if sampler not in self.samplers:
            raise RequestError(f"sampler must be one of {', '.join(self.samplers)}, got {_shown(sampler)}")
        overrides = {option: SAMPLER_RULES[option].check(payload[option]) for option in self.options if option in payload}
        return SampleRequest(label, seed, count, sampler, self._config(overrides))

    def _config(self, overrides: dict):
        """The kind's sampler config with the request's values; the config's own checks become 400s."""
        from artok.zoo import sampler_config_for

        try:
            return sampler_config_for(self.generator, self.stored_sampling, overrides)
        except ValueError as error:
            raise RequestError(str(error).strip().splitlines()[0]) from None

    def sample(self, request: SampleRequest) -> dict:
        """Sample ``request.count`` images of one class; the PNG grid (base64), seconds and token count."""
        from artok.pipeline import EngineCache

        labels = torch.full((request.count,), request.label, dtype=torch.long)
        pipeline = self.pipelines[request.sampler]
        with self.lock, torch.no_grad():
            pipeline.sampler = request.config  # safe under the lock: one request uses a pipeline at a time
            start = time.perf_counter()
            images = pipeline(labels, seed=request.seed)
            seconds = time.perf_counter() - start
            if len(pipeline.engines) > MAX_ENGINES:
                pipeline.engines = EngineCache()  # many image counts tried: let the old engines go
        data, width, height = png_bytes(images)
        return {"png": base64.b64encode(data).decode("ascii"), "width": width, "height": height,
                "seconds": seconds, "tokens": request.count * self.tokens_per_image, "count": request.count,
                "label": request.label, "class_name": self.classes[request.label], "seed": request.seed,
                "sampler": request.sampler}
