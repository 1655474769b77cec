"""Next-scale sampling for VAR-style generators (https://arxiv.org/abs/2404.02905).

Scale by scale: the transformer predicts all ``h_k x w_k`` tokens of scale ``k`` in one pass, the
tokens are drawn (temperature / top-k / top-p, classifier-free guidance whose scale can ramp from 1
at the first scale to ``cfg_scale`` at the last), and the generator's frozen copy of the tokenizer's
multi-scale quantizer turns them into the accumulated latent ``f_hat`` and the next scale's input
(`MultiScaleVectorQuantizer.add_scale`).

With ``use_cache=True`` (default) each scale's keys/values are written once into a static KV cache
and the next scale only runs its own tokens (per-scale KV cache, as VAR). ``use_cache=False`` is the
reference: it reruns every scale so far under the block-causal mask; both consume the random
generator identically and give the same tokens (checked by the tests).
"""

from __future__ import annotations

import contextlib

import torch
from einops import rearrange

from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import NextScaleSamplerConfig
from artok.sampling.heads import draw_discrete
from artok.sampling.logits import cfg_combine, exponential_noise, logits_to_probs
from artok.sampling.schedules import cfg_scale_at, guidance_rows
from artok.tokens import Tokens


@torch.no_grad()
def sample_next_scale(
    generator,
    labels: torch.Tensor,
    config: NextScaleSamplerConfig,
    rng: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tokens:
    """Sample ``len(labels)`` multi-scale token sequences (``B x L`` ids, coarse to fine)."""
    batch, guided = labels.shape[0], config.uses_cfg
    rows = guidance_rows(labels, generator.null_class, guided)
    cond = generator.condition(rows)
    quantizer = generator.scale_quantizer
    final_h, final_w = generator.spec.scales[-1]
    f_hat = torch.zeros(batch, quantizer.dim, final_h, final_w, device=labels.device)
    pieces, inputs, scale_input = [], [], None
    num_scales = generator.num_scales
    categorical = getattr(generator.config, "head", "categorical") == "categorical"
    cache = static_kv_cache(generator, rows.shape[0]) if use_cache else contextlib.nullcontext()
    with cache:
        for k in range(num_scales):
            start, end = generator.scale_span(k)
            x = generator.embed_scale(rows, k, scale_input)
            scale = cfg_scale_at(k, num_scales, config.cfg_scale, config.cfg_schedule)
            if use_cache and categorical:  # the step the engine compiles, its noise drawn as draw_discrete would
                noise = exponential_noise((batch, end - start, generator.spec.vocab_size), rng, labels.device)
                with visible_prefix(generator, end):
                    ids = scale_step(generator, x, cond, torch.arange(start, end, device=labels.device), noise, scale,
                                     guided, config.temperature, config.top_k, config.top_p)
                pieces.append(ids)
                f_hat, scale_input = next_scale_input(quantizer, f_hat, k, ids, guided, scale_input)
                continue
            if use_cache:
                hidden = generator.transformer(x, cond, torch.arange(start, end, device=labels.device), prefix=end)
            else:
                inputs.append(x)
                hidden = generator.transformer(torch.cat(inputs, dim=1), cond)[:, start:end]
            draw = draw_discrete(
                generator.head, hidden, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                guided=guided, cfg_scale=scale, rng=rng,
            )
            pieces.append(draw.ids)
            f_hat, scale_input = next_scale_input(quantizer, f_hat, k, draw.ids, guided, scale_input)
    return Tokens(generator.spec, ids=torch.cat(pieces, dim=1))


def next_scale_input(quantizer, f_hat: torch.Tensor, scale_index: int, ids: torch.Tensor, guided: bool,
                     scale_input: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """After drawing scale ``scale_index``'s ``ids``: the accumulated latent and the next scale's
    input (``rows x h w x D``, doubled for the CFG halves; unchanged after the last scale)."""
    features = quantizer.add_scale(f_hat, scale_index, ids)
    if features.next_input is not None:
        scale_input = rearrange(features.next_input, "b d h w -> b (h w) d")
        scale_input = torch.cat([scale_input, scale_input]) if guided else scale_input
    return features.f_hat, scale_input


@contextlib.contextmanager
def visible_prefix(generator, prefix: int):
    """The generator's attached caches cut to their first ``prefix`` slots for the block."""
    caches = [block.attention.kv_cache for block in generator.blocks]
    for cache in caches:
        cache.length = prefix
    try:
        yield
    finally:
        for cache in caches:
            cache.length = None


def scale_step(model, x, cond, input_pos, noise, scale, guided: bool, temperature: float, top_k: int, top_p: float):
    """One whole scale for a categorical head: blocks (KV written at ``input_pos``; caches already cut
    to the visible prefix, so no mask), final adaLN, head, guidance, filters, and the draw with
    ``noise`` (Exp(1), one per row, position and id). The plain loop runs it eagerly,
    `NextScaleEngine` compiles it (CUDA graphs on CUDA)."""
    for block in model.blocks:
        x = block(x, cond, input_pos=input_pos)
    logits = model.head(model.out_norm(x, cond)).float()
    if guided:
        cond_logits, uncond_logits = logits.chunk(2)
        logits = cfg_combine(cond_logits, uncond_logits, scale)
    return torch.argmax(logits_to_probs(logits, temperature, top_k, top_p) / noise, dim=-1)
