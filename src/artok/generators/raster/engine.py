"""A fast sampling engine for raster (next-token) generators, in the gpt-fast recipe
(https://github.com/pytorch-labs/gpt-fast): a static KV cache allocated once, a decode step with
static shapes compiled with ``torch.compile(mode="reduce-overhead")`` so that it replays as a CUDA
graph, classifier-free guidance as one doubled batch, bf16 weights and cache on CUDA, and
sampling without host synchronisation (the exponential-race form of Gumbel-max, noise drawn from
the caller's explicit `torch.Generator`).

Decode attention reads only the valid part of the cache (``attention="bucketed"``): the step at
position ``t`` attends over the first ``ceil((t + 1) / bucket) * bucket`` cache slots, so a
256-token image reads ~half the keys/values that a full-cache read would (the KV-read roofline of
``ANCHORS.md``: ~1,380 img/s instead of ~670 img/s for GPT-B on an H100). Lengths are bucketed
rather than exact so that a compiled engine builds one CUDA graph per bucket (8 by default), not
one per position; flex_attention was not chosen because its CPU path cannot be tested here and it
adds a compile dependency to the eager path.

On CPU the engine runs eagerly (``compile=True`` compiles with the inductor C++ backend, without
graphs) and returns *the same tokens* as `artok.sampling.sample_raster` for the same seed: the
same layers run in the same order on the same shapes, and the noise is drawn from the generator
in the same order and sizes (tested).

The engine also exposes a multi-position forward with *per-row* positions
(`SamplingEngine.forward`), which speculative and Jacobi decoding use to verify several draft
tokens per row at once while rows advance by different amounts. There is no explicit rollback:
a rejected draft's keys/values stay in the static cache at positions beyond the row's accepted
length, where the causal mask hides them from every query, and they are overwritten when the row
reaches those positions again.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext

import torch

from artok.generators.raster.sample import pick_tokens
from artok.nn.kv_cache import installed_caches
from artok.sampling.configs import SamplerConfig
from artok.sampling.engine_support import (
    RowKVCache,
    default_device_options,
    engine_rows,
    prepare_engine,
)
from artok.sampling.logits import cfg_combine, logits_to_probs
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens

ATTENTION_MODES = ("full", "bucketed")


class SamplingEngine:
    """Fast sampler for one `RasterGenerator` and a fixed maximum batch size.

    Args:
        generator: a `RasterGenerator` (or any model with the same ``embed``, ``embed_class``,
            ``blocks``, ``norm``, ``head``, ``rope`` and ``config.seq_len``).
        batch_size: the most images sampled at once (CFG doubles the rows internally).
        dtype: weights and KV-cache dtype; ``None``/``"auto"``: bf16 on CUDA, the generator's own
            dtype elsewhere. When it differs from the generator's, the engine works on a converted
            copy (the generator passed in is never modified).
        compile: ``True``, ``False`` or ``"auto"`` (on for CUDA only). Compiles the decode step
            (and the multi-position forward) with ``torch.compile``.
        cuda_graphs: ``True``, ``False`` or ``"auto"`` (on for CUDA). With ``compile``, selects
            ``mode="reduce-overhead"`` (CUDA graphs); ignored on CPU.
        attention: ``"full"`` (every step reads the whole static cache, masked), ``"bucketed"``
            (reads only the valid length rounded up to ``bucket_size``) or ``"auto"`` (bucketed on
            CUDA, full on CPU).
        bucket_size: slots per attention bucket (default: ``seq_len / 8`` rounded up to 16).
        guidance: reserve rows for classifier-free guidance (``2 x batch_size`` rows).
        extra_positions: cache slots beyond ``seq_len`` (speculative decoding writes drafts there
            when a row is near the end of its sequence).

    Use `sample` for plain sampling; `start` + `forward` are the building blocks of the
    speculative samplers.
    """

    def __init__(
        self,
        generator,
        batch_size: int,
        *,
        dtype: torch.dtype | str | None = None,
        compile: bool | str = "auto",
        cuda_graphs: bool | str = "auto",
        attention: str = "auto",
        bucket_size: int | None = None,
        guidance: bool = True,
        extra_positions: int = 0,
    ) -> None:
        generator, self.device, dtype, compile, cuda_graphs = prepare_engine(
            generator, batch_size, dtype, compile, cuda_graphs, "artok.sampling's loop")
        if attention == "auto":
            attention = default_device_options(self.device)["attention"]
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES} or 'auto', got {attention!r}")
        self.model = generator
        self.dtype = dtype
        self.batch_size = batch_size
        self.guidance = guidance
        self.seq_len = generator.config.seq_len
        self.max_len = self.seq_len + extra_positions
        self.attention = attention
        self.bucket_size = bucket_size or max(16, 16 * math.ceil(self.seq_len / 8 / 16))
        self.compiled = bool(compile)
        self.cuda_graphs = bool(cuda_graphs)
        rows = batch_size * (2 if guidance else 1)
        self.caches = [
            RowKVCache(rows, b.attention.num_heads, self.max_len, b.attention.head_dim, dtype, self.device)
            for b in generator.blocks
        ]
        # The rotary table extended by repeating its last row over the extra slots: those slots
        # only ever hold discarded drafts, so their rotation does not matter, only their shape.
        rope = generator.rope
        if extra_positions:
            rope = torch.cat([rope, rope[-1:].expand(extra_positions, *rope.shape[1:])])
        self.rope = rope
        self.slots = torch.arange(self.max_len, device=self.device)
        self._labels: torch.Tensor | None = None
        if self.compiled:
            mode = "reduce-overhead" if self.cuda_graphs else None
            self._step = torch.compile(_decode_step, mode=mode, fullgraph=True, dynamic=False)
            self._forward = torch.compile(_forward_rows, mode=mode, fullgraph=True, dynamic=False)
        else:
            self._step = _decode_step
            self._forward = _forward_rows

    # -- cache management ----------------------------------------------------------------------
    @contextmanager
    def _installed(self, length: int | None = None):
        """Attach the engine's caches to the model's attention layers for the duration of a call
        (restoring whatever was there), with ``length`` visible slots; yields a setter for the
        visible length."""
        def set_length(value: int) -> int:
            if self.caches[0].length != value:
                for cache in self.caches:
                    cache.length = value
            return value

        with installed_caches(self.model.blocks, self.caches):
            set_length(self.max_len if length is None else length)
            yield set_length

    def visible_length(self, last_position: int) -> int:
        """Cache slots a query at ``last_position`` (and below) must see under this engine's
        attention mode."""
        if self.attention == "full":
            return self.max_len
        return min(self.max_len, self.bucket_size * math.ceil((last_position + 1) / self.bucket_size))

    def compile_context(self):
        """Raise dynamo's recompile limit while sampling: one graph per (shape, bucket) is expected."""
        if not self.compiled:
            return nullcontext()
        return torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=1024)

    # -- building blocks -----------------------------------------------------------------------
    def rows_for(self, labels: torch.Tensor, guided: bool) -> torch.Tensor:
        """Labels of the doubled batch under guidance (``[labels, null]``), else ``labels``."""
        return engine_rows(self, labels, guided)

    @torch.no_grad()
    def start(self, labels: torch.Tensor, guided: bool) -> torch.Tensor:
        """Begin a batch: write the class position (slot 0) of every row; return the logits of the
        first token (``rows x V``, rows doubled under guidance). Later `forward` calls with
        position 0 re-embed these labels."""
        rows = self.rows_for(labels, guided)
        self._labels = rows
        length = self.visible_length(0)
        with self._installed(length):
            x = self.model.embed_class(rows)
            mask = self.slots[None, :length] <= 0
            return _run_model(self.model, x, self.rope[:1], mask, self.slots[:1])[:, -1]

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, positions: torch.Tensor, last_position: int | None = None) -> torch.Tensor:
        """Logits after feeding ``ids`` at ``positions`` (both ``rows x T``, rows as returned by
        `start`; position ``i`` carries token ``i-1``, position 0 the class label) -> ``rows x T x V``.

        Writes the keys/values of these positions into the cache; each query sees the slots at or
        before its own position. ``last_position`` (a host int >= every entry of ``positions``)
        lets bucketed attention read only the slots it needs; without it the whole cache is read.
        """
        if self._labels is None:
            raise RuntimeError("call start(labels, guided) before forward")
        length = self.max_len if last_position is None else self.visible_length(last_position)
        with self._installed(length):
            logits = self._forward(self.model, ids, positions, self._labels, self.rope, self.slots[:length])
        return logits.clone() if self.cuda_graphs else logits

    def draw_noise(self, rows: int, rng: torch.Generator | None) -> torch.Tensor:
        """Exp(1) noise for one categorical draw per row, drawn exactly as `sample_from_probs` does."""
        vocab = self.model.config.vocab_size
        return torch.empty(rows, vocab, dtype=torch.float32, device=self.device).exponential_(1.0, generator=rng)

    # -- plain sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None) -> Tokens:
        """Sample ``len(labels)`` token sequences; for the same seed, the tokens `sample_raster`
        returns (exactly on CPU; up to bf16/kernel differences on CUDA)."""
        return Tokens(self.model.spec, ids=self.generate(labels, config, rng))

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None,
                 num_tokens: int | None = None) -> torch.Tensor:
        """The first ``num_tokens`` (default: all) ids of each sequence, ``len(labels) x num_tokens``
        (benchmarks time a prefix of the sequence this way)."""
        guided = config.uses_cfg
        count, seq_len = labels.shape[0], self.seq_len
        num_tokens = seq_len if num_tokens is None else num_tokens
        if not 1 <= num_tokens <= seq_len:
            raise ValueError(f"num_tokens must be in [1, {seq_len}], got {num_tokens}")
        out = torch.empty(count, num_tokens, dtype=torch.long, device=self.device)
        scales = [cfg_scale_at(t, seq_len, config.cfg_scale, config.cfg_schedule) for t in range(seq_len)]
        if self.compiled and config.cfg_schedule != "constant":
            # A tensor scale keeps one graph for every step of a non-constant schedule.
            scales = torch.tensor(scales, dtype=torch.float32, device=self.device)
        sampling = (guided, config.temperature, config.top_k, config.top_p)
        with self.compile_context():
            logits = self.start(labels, guided)
            ids = pick_tokens(logits, self.draw_noise(count, rng), scales[0], *sampling)
            out[:, 0] = ids[:count]
            with self._installed() as set_length:
                for step in range(1, num_tokens):
                    length = set_length(self.visible_length(step))
                    ids = self._step(self.model, ids, self.slots[step : step + 1], self.draw_noise(count, rng),
                                     scales[step], self.rope, self.slots[:length], *sampling)
                    out[:, step] = ids[:count]
        return out


# -- pure functions (compiled by the engine) ---------------------------------------------------------
def _run_model(model, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    """The cached forward (`RasterGenerator.run_blocks`) + head with an explicit rotary table and
    attention mask (``T x S`` shared or ``rows x 1 x T x S`` per row); ``x`` are embeddings."""
    return model.head(model.run_blocks(x, rope, mask, input_pos))


def _decode_step(model, ids, input_pos, noise, scale, rope, slots, guided, temperature, top_k, top_p):
    """One decode step at the shared position ``input_pos`` (shape ``1``): feed ``ids`` (``rows``),
    return the next ids (``rows``). Static shapes, no host sync: what CUDA graphs capture."""
    mask = input_pos[:, None] >= slots[None, :]
    logits = _run_model(model, model.embed(ids[:, None]), rope[input_pos], mask, input_pos)[:, -1]
    return pick_tokens(logits, noise, scale, guided, temperature, top_k, top_p)


def _forward_rows(model, ids, positions, labels, rope, slots):
    """Per-row positions: ``ids``/``positions`` ``rows x T`` -> logits ``rows x T x V``."""
    x = model.embed(ids.clamp(min=0))
    # Position 0 is the class slot: a row that re-feeds it (a draft model catching up at the start
    # of a sequence) gets its label's embedding there.
    x = torch.where((positions == 0)[..., None], model.embed_class(labels).to(x.dtype), x)
    table = rope[positions].unsqueeze(1)  # rows x 1 x T x head_dim/2 x 2: broadcasts over heads
    mask = (positions[..., None] >= slots).unsqueeze(1)  # rows x 1 x T x S
    return _run_model(model, x, table, mask, positions)


def guided_probs(logits: torch.Tensor, config: SamplerConfig, scale) -> torch.Tensor:
    """Probabilities that a token is sampled with under ``config``: CFG-combined (rows halved),
    then temperature, top-k, top-p. ``scale``: a float or a tensor broadcastable to the logits'
    leading dims + 1 (per-row / per-position guidance scales)."""
    if config.uses_cfg:
        cond, uncond = logits.chunk(2)
        logits = cfg_combine(cond.float(), uncond.float(), scale)
    return logits_to_probs(logits, config.temperature, config.top_k, config.top_p)


def guidance_scales(config: SamplerConfig, seq_len: int, device) -> torch.Tensor:
    """``cfg_scale_at`` for every token index, as a tensor to index with per-row steps."""
    return torch.tensor([cfg_scale_at(t, seq_len, config.cfg_scale, config.cfg_schedule) for t in range(seq_len)],
                        dtype=torch.float32, device=device)


@torch.no_grad()
def sample_raster_fast(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None,
                       **engine_options) -> Tokens:
    """One-shot convenience: build a `SamplingEngine` for ``len(labels)`` images and sample."""
    engine = SamplingEngine(generator, labels.shape[0], guidance=config.uses_cfg, **engine_options)
    return engine.sample(labels.to(engine.device), config, rng)
