"""Next-X sampling (xAR, https://arxiv.org/abs/2502.20388): one entity (token, cell, scale or the
whole image) per step, with a static KV cache so earlier entities are never recomputed.

Transformer denoiser (xAR): entity n starts from Gaussian noise (times ``temperature``) and is
integrated from ``t = 0`` to ``t = 1`` by `artok.sampling.continuous.integrate_flow` (Euler or
Euler-Maruyama, ``steps`` steps). The velocity field is the transformer run on entity n's positions
only (time ``t``), attending to the cached keys/values of the clean entities ``< n``; its keys/values
at time ``t`` are written to entity n's cache slots and overwritten by the next step. The finished
entity is run once more at ``t = 1`` so that the cache holds its *clean* keys/values for the entities
after it (skipped for the last entity).

Head denoiser (the earlier design): for unit n the transformer runs block n once, its outputs
condition the per-token head, and the head integrates the unit's tokens (flow head: Euler or
Euler-Maruyama; diffusion head: respaced DDPM). The generated unit, at ``t = 1``, is the context of
block n + 1.

Classifier-free guidance runs ``[labels; null]`` rows (both halves see the same ``x_t``) and mixes
the two outputs with `artok.sampling.continuous.guide`; ``cfg_schedule="linear"`` ramps the scale
from 1 at the first entity to ``cfg_scale`` at the last.
"""

from __future__ import annotations

import torch

from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import NextXSamplerConfig
from artok.sampling.continuous import NoiseSource, guide, integrate_flow
from artok.sampling.head_graphs import HeadSampler
from artok.sampling.schedules import cfg_scale_at, guidance_rows
from artok.tokens import Tokens


@torch.no_grad()
def sample_next_x(generator, labels: torch.Tensor, config: NextXSamplerConfig, rng: torch.Generator | None = None,
                  *, compile: bool | str = "auto") -> Tokens:
    """Sample ``len(labels)`` continuous token grids ``B x L x D``.

    ``compile`` (``"auto"``: on CUDA only): the transformer denoiser's velocity call is compiled
    (on CUDA with CUDA graphs: every flow step of an entity is one graph replay; entities of one size
    share the graph); the head denoiser's step loop runs through `HeadSampler` (one graph replay per
    unit on CUDA). On CPU the default is the eager loop, whose draws and tokens are unchanged."""
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    on_cuda = next(generator.parameters()).device.type == "cuda"
    if generator.config.denoiser == "transformer":
        compiled = None
        if compile is True or (compile == "auto" and on_cuda):
            compiled = _compiled_velocity("reduce-overhead" if on_cuda else None)
        return _sample_with_transformer(generator, labels, config, rng, compiled)
    return _sample_with_head(generator, labels, config, rng)


_COMPILED: dict = {}


def _compiled_velocity(mode: str | None):
    """``generator.velocity`` as a compiled function of ``(generator, ...)``: one per mode, so every
    sampling call (and every generator of the same shape) reuses the compiled graphs."""
    if mode not in _COMPILED:
        def run(generator, x, times, rows, input_pos):
            return generator.velocity(x, times, rows, input_pos=input_pos)

        compiled = torch.compile(run, mode=mode, fullgraph=True, dynamic=False)
        cloning = mode == "reduce-overhead"  # graph outputs are overwritten by the next replay

        def velocity(x, times, rows, input_pos, generator=None):
            out = compiled(generator, x, times, rows, input_pos)
            return out.clone() if cloning else out

        _COMPILED[mode] = velocity
    return _COMPILED[mode]


def _flow_method(method: str) -> str:
    if method not in ("auto", "euler", "euler-maruyama"):
        raise ValueError(f"the next-X transformer denoiser samples with 'euler' or 'euler-maruyama', not {method!r}")
    return "euler" if method == "auto" else method


def _sample_with_transformer(generator, labels, config: NextXSamplerConfig, rng, compiled=None) -> Tokens:
    method = _flow_method(config.method)
    spec, channels = generator.spec, generator.spec.channels
    batch, guided, device = labels.shape[0], config.uses_cfg, labels.device
    rows = guidance_rows(labels, generator.null_class, guided)
    num_rows = rows.shape[0]
    sequence = torch.zeros(batch, generator.sequence_length, channels, device=device)
    valid = generator.sequence_valid.to(sequence.dtype)

    def doubled(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x]) if guided else x

    def run(x: torch.Tensor, times: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if compiled is None:
            return generator.velocity(x, times, rows, input_pos=positions)
        return compiled(x, times, rows, positions, generator=generator)

    with static_kv_cache(generator, num_rows):
        for entity in range(generator.num_units):
            start, end = generator.entity_span(entity)
            size, positions = end - start, torch.arange(start, end, device=device)
            cfg_scale = cfg_scale_at(entity, generator.num_units, config.cfg_scale, config.cfg_schedule)

            def velocity(x: torch.Tensor, t: float, size=size, positions=positions, cfg_scale=cfg_scale) -> torch.Tensor:
                times = torch.full((num_rows, size), t, device=device)
                v = run(doubled(x.reshape(batch, size, channels)), times, positions)
                return guide(v.float(), guided, cfg_scale).reshape(batch * size, channels)

            noise = NoiseSource((batch * size, channels), device, rng)
            x = integrate_flow(
                velocity, config.temperature * noise(0), steps=config.steps, method=method,
                temperature=config.temperature, diffusion_scale=config.diffusion_scale, noise=noise,
            )
            x = x.reshape(batch, size, channels) * valid[start:end, None]
            sequence[:, start:end] = x
            if entity + 1 < generator.num_units:  # write the clean entity's keys/values for its successors
                run(doubled(x), torch.ones(num_rows, size, device=device), positions)
    return Tokens(spec, values=generator.from_sequence(sequence) / generator.config.token_scale)


def _sample_with_head(generator, labels, config: NextXSamplerConfig, rng) -> Tokens:
    spec = generator.spec
    batch, guided, device = labels.shape[0], config.uses_cfg, labels.device
    rows = guidance_rows(labels, generator.null_class, guided)
    num_units, unit_size = generator.num_units, generator.unit_size
    units = torch.zeros(batch, num_units, unit_size, spec.channels, device=device)
    valid = generator.unit_valid.to(units.dtype)
    ones = torch.ones(rows.shape[0], device=device)
    head = HeadSampler.for_config(generator.head, config, guided)
    with static_kv_cache(generator, rows.shape[0]):
        context = None
        for unit in range(num_units):
            start, end = generator.unit_span(unit)
            x = generator.block_input(rows, unit, context, None if unit == 0 else ones)
            hidden = generator.transformer(x, torch.arange(start, end, device=device))
            sampled = head(hidden.reshape(-1, hidden.shape[-1]),
                           cfg_scale_at(unit, num_units, config.cfg_scale, config.cfg_schedule), rng)
            units[:, unit] = sampled.reshape(batch, unit_size, -1) * valid[unit][:, None]
            context = torch.cat([units[:, unit], units[:, unit]]) if guided else units[:, unit]
    return Tokens(spec, values=generator.from_units(units) / generator.config.token_scale)
