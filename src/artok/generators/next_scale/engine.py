"""A fast sampler for next-scale (VAR) generators, in the recipe of the raster `SamplingEngine`.

Per scale, one function does the whole step on static shapes: the transformer over the scale's
tokens (each query reads exactly the cached prefix it may see, so no mask and SDPA's flash kernel on
CUDA), the head, classifier-free guidance as one doubled batch, temperature / top-k / top-p, and the
draw (the exponential race with noise drawn beforehand from the caller's generator, so there is no
host round trip). With ``compile`` the step is compiled once per scale (``torch.compile``; with
``cuda_graphs`` in ``reduce-overhead`` mode, so each scale replays as a CUDA graph: VAR-d16 has 10
scales x 16 layers, ~2,400 kernel launches per image at batch 1). The static KV cache is allocated
once per engine and attached to the generator only while it samples.

On CPU (eager, the default there) it returns *the same tokens* as `sample_next_scale` for the same
seed: the same layers on the same shapes, the noise drawn in the same order and sizes (tested).
The multi-scale quantizer's update between scales (upsample, convolution, accumulate) runs eagerly.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from artok.generators.next_scale.sample import next_scale_input, scale_step
from artok.nn import KVCache
from artok.nn.kv_cache import installed_caches
from artok.sampling.configs import NextScaleSamplerConfig
from artok.sampling.engine_support import engine_rows, prepare_engine
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


class NextScaleEngine:
    """Fast sampler for one `NextScaleGenerator` (categorical head) and a maximum batch size.

    Args:
        generator: a `NextScaleGenerator`.
        batch_size: the most images sampled at once (CFG doubles the rows internally).
        dtype: weights and cache dtype (``None``/``"auto"``: bf16 on CUDA, the generator's own
            elsewhere); a converted copy is used when it differs (the generator is not modified).
        compile: ``True``, ``False`` or ``"auto"`` (on for CUDA only).
        cuda_graphs: ``True``, ``False`` or ``"auto"`` (on for CUDA); needs ``compile``.
        guidance: reserve rows for classifier-free guidance.
    """

    def __init__(self, generator, batch_size: int, *, dtype: torch.dtype | str | None = None,
                 compile: bool | str = "auto", cuda_graphs: bool | str = "auto", guidance: bool = True) -> None:
        self.model, self.device, dtype, compile, cuda_graphs = prepare_engine(
            generator, batch_size, dtype, compile, cuda_graphs, "artok.sampling.sample_next_scale")
        self.dtype, self.batch_size, self.guidance = dtype, batch_size, guidance
        self.compiled, self.cuda_graphs = compile, cuda_graphs
        self._caches: dict[int, list[KVCache]] = {}  # per row count: static shapes for every batch size
        if self.compiled:
            mode = "reduce-overhead" if self.cuda_graphs else None
            self._step = torch.compile(scale_step, mode=mode, fullgraph=True, dynamic=False)
        else:
            self._step = scale_step

    def caches(self, rows: int) -> list[KVCache]:
        """The static KV caches for ``rows`` rows, allocated on first use and kept."""
        if rows not in self._caches:
            seq_len = self.model.spec.seq_len
            self._caches[rows] = [KVCache(rows, b.attention.num_heads, seq_len, b.attention.head_dim, self.dtype,
                                          self.device) for b in self.model.blocks]
        return self._caches[rows]

    @contextmanager
    def _installed(self, caches: list[KVCache]):
        """Attach ``caches`` to the attention layers for the duration of a call."""
        try:
            with installed_caches(self.model.blocks, caches):
                yield
        finally:
            for cache in caches:
                cache.length = None

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, config: NextScaleSamplerConfig, rng: torch.Generator | None = None) -> Tokens:
        """Sample ``len(labels)`` multi-scale token sequences; for the same seed, the tokens
        `sample_next_scale` returns (exactly on CPU; up to bf16/kernel differences on CUDA)."""
        model = self.model
        batch, guided = labels.shape[0], config.uses_cfg
        rows = engine_rows(self, labels, guided)
        caches = self.caches(rows.shape[0])
        cond = model.condition(rows)
        quantizer = model.scale_quantizer
        final_h, final_w = model.spec.scales[-1]
        f_hat = torch.zeros(batch, quantizer.dim, final_h, final_w, device=labels.device)
        vocab = model.spec.vocab_size
        pieces, scale_input = [], None
        sampling = (guided, config.temperature, config.top_k, config.top_p)
        context = torch._dynamo.config.patch(recompile_limit=64) if self.compiled else nullcontext()
        with context, self._installed(caches):
            for k in range(model.num_scales):
                start, end = model.scale_span(k)
                x = model.embed_scale(rows, k, scale_input)
                for cache in caches:
                    cache.length = end  # queries of scale k see exactly the slots before `end`
                # Drawn as `sample_from_probs` draws it inside `draw_discrete`: same size, same order.
                noise = torch.empty(batch, end - start, vocab, device=labels.device).exponential_(1.0, generator=rng)
                scale = cfg_scale_at(k, model.num_scales, config.cfg_scale, config.cfg_schedule)
                ids = self._step(model, x, cond, torch.arange(start, end, device=labels.device), noise, scale, *sampling)
                ids = ids.clone() if self.cuda_graphs else ids
                pieces.append(ids)
                f_hat, scale_input = next_scale_input(quantizer, f_hat, k, ids, guided, scale_input)
        return Tokens(model.spec, ids=torch.cat(pieces, dim=1))


@torch.no_grad()
def sample_next_scale_fast(generator, labels: torch.Tensor, config: NextScaleSamplerConfig,
                           rng: torch.Generator | None = None, **engine_options) -> Tokens:
    """One-shot convenience: build a `NextScaleEngine` for ``len(labels)`` images and sample."""
    engine = NextScaleEngine(generator, labels.shape[0], guidance=config.uses_cfg, **engine_options)
    return engine.sample(labels.to(engine.device), config, rng)
