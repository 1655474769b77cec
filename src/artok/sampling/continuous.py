"""Samplers for the per-token continuous heads: pure functions of ``(head, z, settings, rng)``.

- `sample_diffusion`: DDPM ancestral sampling (https://arxiv.org/abs/2006.11239) with the training
  schedule *respaced* to ``steps`` evenly spaced timesteps (improved DDPM,
  https://arxiv.org/abs/2102.09672, section 4): for the kept steps ``t_1 > ... > t_S`` the betas are
  recomputed as ``1 - abar_{t_i} / abar_{t_{i+1}}``. The reverse-step noise is multiplied by
  ``temperature`` as in MAR (https://arxiv.org/abs/2406.11838), which trades diversity for fidelity.
  Its std is the posterior's (fixed), or for a ``learn_sigma`` head (MAR's converted heads) ADM's
  learned interpolation between ``log beta`` and the posterior's log variance, per element, taken
  from the conditional rows under guidance (MAR guides eps only).
- `sample_flow`: integrates the flow head's velocity from ``t = 0`` (noise) to ``t = 1`` (data) with
  ``steps`` uniform steps, either by Euler (the ODE) or by Euler-Maruyama on the SDE with the same
  marginals (Song et al., https://arxiv.org/abs/2011.13456; SiT, https://arxiv.org/abs/2401.08740):

      dx = [v - s (x - t v)] dt + sqrt(2 s (1 - t)) dW,

  using that for ``x_t = t x + (1 - t) eps`` the score is ``-(x_t - t v) / (1 - t)`` and choosing the
  diffusion ``g^2 = 2 s (1 - t)`` (``s = diffusion_scale``; it vanishes at the data end). The last
  step is a plain Euler step. ``temperature`` scales the initial noise (and the SDE noise).

Classifier-free guidance: when ``guided``, ``z`` is ``[conditional; unconditional]`` (``2N`` rows);
both halves share the same ``x_t`` and the network output (eps, v or velocity) is
``uncond + scale * (cond - uncond)``. The result has ``N`` rows. ``cfg_scale`` may be a float or a
per-row tensor (``N``), so rows of different sampler iterations can share one head call.

Every sampler is split into a deterministic *mean* of its last step, a function of the head, ``z``
and the noise used before the last step (`final_mean`), plus optional Gaussian ``final_noise`` on
that last step (DDPM's and Euler's last step are deterministic by default). The noise is drawn in a
fixed order (initial noise, then one draw per stochastic step) from ``rng``, or taken from a
pre-drawn ``noise`` tensor (``K x N x D``, `noise_count` slices): two heads given the same ``noise``
follow aligned trajectories, which is what continuous speculative decoding
(`artok.generators.mar.speculative`) needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from artok.heads.diffusion import DiffusionHead
from artok.heads.flow import FlowHead

HEAD_METHODS = ("auto", "ddpm", "euler", "euler-maruyama")


def respaced_timesteps(num_timesteps: int, steps: int) -> torch.Tensor:
    """``steps`` training timesteps evenly spread over ``[0, num_timesteps)``, descending (last is 0)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    return torch.linspace(num_timesteps - 1, 0, steps).round().long()


def guide(prediction: torch.Tensor, guided: bool, cfg_scale: float | torch.Tensor) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` over the two halves of ``prediction`` (no-op unguided)."""
    if not guided:
        return prediction
    cond, uncond = prediction.chunk(2)
    if isinstance(cfg_scale, torch.Tensor):
        cfg_scale = cfg_scale.to(cond.dtype).reshape(-1, *([1] * (cond.dim() - 1)))
    return uncond + cfg_scale * (cond - uncond)


def _double(x: torch.Tensor, guided: bool) -> torch.Tensor:
    return torch.cat([x, x]) if guided else x


class NoiseSource:
    """The ``i``-th Gaussian draw of a head sampler (``0``: the initial noise, ``i >= 1``: the noise of
    the ``i``-th stochastic step): from a pre-drawn ``noise`` tensor when given, else fresh from ``rng``
    in call order (so samplers without pre-drawn noise consume ``rng`` exactly as before)."""

    def __init__(self, shape: tuple[int, int], device, rng: torch.Generator | None, noise: torch.Tensor | None = None) -> None:
        if noise is not None and tuple(noise.shape[1:]) != tuple(shape):
            raise ValueError(f"pre-drawn noise has rows {tuple(noise.shape[1:])}, expected {tuple(shape)}")
        self.shape, self.device, self.rng, self.noise = shape, device, rng, noise

    def __call__(self, index: int) -> torch.Tensor:
        if self.noise is not None:
            return self.noise[index].float()
        return torch.randn(self.shape, generator=self.rng, device=self.device, dtype=torch.float32)


def noise_count(steps: int) -> int:
    """Gaussian draws a head sampler uses before its last step: the initial noise plus at most one
    per intermediate step (Euler uses only the first; DDPM and Euler-Maruyama use all)."""
    return steps


def integrate_flow(
    velocity: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    *,
    steps: int,
    method: str = "euler",
    temperature: float = 1.0,
    diffusion_scale: float = 1.0,
    noise: Callable[[int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Integrate a flow from ``t = 0`` (``x``: the initial noise, already temperature-scaled) to
    ``t = 1`` in ``steps`` uniform steps; ``velocity(x, t)`` returns the (guided) velocity.

    ``method="euler"`` is the ODE; ``"euler-maruyama"`` the SDE of the module docstring, whose
    ``i``-th step draws ``noise(i)`` (``i = 1 .. steps - 1``; the last step is plain Euler). The result
    is the deterministic end of the last step. Any model that predicts a velocity (a per-token head,
    or a whole transformer as in xAR) can use it."""
    if method not in ("euler", "euler-maruyama"):
        raise ValueError(f"flow sampling method must be 'euler' or 'euler-maruyama', got {method!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "euler-maruyama" and noise is None:
        raise ValueError("Euler-Maruyama needs a noise source")
    dt = 1.0 / steps
    for i in range(steps):
        t = i * dt
        v = velocity(x, t).float()
        if method == "euler" or i == steps - 1:
            x = x + v * dt
        else:
            drift = v - diffusion_scale * (x - t * v)
            x = x + drift * dt + temperature * (2 * diffusion_scale * (1 - t) * dt) ** 0.5 * noise(i + 1)
    return x


def ddpm_table(alphas_cumprod: torch.Tensor, steps: int) -> list[tuple[int, float, float, float, float, float]]:
    """Per respaced step ``(t, sqrt(abar), sqrt(1 - abar), c_x0, c_xt, sigma)`` as Python numbers
    (computed in fp64): ``x0`` from the network output uses the first two, the posterior mean is
    ``c_x0 x0 + c_xt x_t`` and the step's noise std is ``sigma`` (0 on the last step). Constants
    rather than per-step tensor arithmetic keep the loop to the network call and a few fused
    multiply-adds (cheap on a CPU, and nothing but constants for a CUDA graph to capture)."""
    timesteps = respaced_timesteps(len(alphas_cumprod), steps).tolist()
    abar_all = alphas_cumprod.double().cpu()
    table = []
    for i, t in enumerate(timesteps):
        abar = float(abar_all[t])
        abar_prev = float(abar_all[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        beta = 1 - abar / abar_prev
        c_x0 = abar_prev**0.5 * beta / (1 - abar)
        c_xt = (1 - beta) ** 0.5 * (1 - abar_prev) / (1 - abar)
        sigma = (beta * (1 - abar_prev) / (1 - abar)) ** 0.5 if i + 1 < len(timesteps) else 0.0
        table.append((t, abar**0.5, (1 - abar) ** 0.5, c_x0, c_xt, sigma))
    return table


def _learned_sigma(values: torch.Tensor, step: tuple, next_step: tuple, guided: bool) -> torch.Tensor:
    """Per-element noise std of a ``learn_sigma`` head's step (not the last): ADM's
    ``exp(0.5 (f log beta + (1 - f) log posterior_variance))`` with ``f = (v + 1) / 2``, ``beta`` the
    respaced step's (from the table's ``sqrt(abar)`` of this and the next step)."""
    if guided:
        values = values.chunk(2)[0]
    beta = 1 - step[1] ** 2 / next_step[1] ** 2
    frac = (values.float() + 1) / 2
    log_variance = frac * math.log(beta) + (1 - frac) * math.log(step[5] ** 2)
    return torch.exp(0.5 * log_variance)


def _diffusion_final_mean(head: DiffusionHead, z, noise: NoiseSource, *, steps, temperature, guided, cfg_scale, clip_x0,
                          table=None):
    x = noise(0)
    table = table or ddpm_table(head.alphas_cumprod, steps)
    learned = getattr(head, "learn_sigma", False)
    for i, (t, sqrt_abar, sqrt_one_minus, c_x0, c_xt, sigma) in enumerate(table):
        t_rows = torch.full((z.shape[0],), t, device=z.device, dtype=torch.long)
        if learned:
            output, values = head.forward_with_variance(_double(x, guided), t_rows, z)
            output = guide(output.float(), guided, cfg_scale)
        else:
            output = guide(head(_double(x, guided), t_rows, z).float(), guided, cfg_scale)
        if head.prediction == "v":
            x0 = sqrt_abar * x - sqrt_one_minus * output
        else:
            x0 = (x - sqrt_one_minus * output) / sqrt_abar
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        mean = c_x0 * x0 + c_xt * x
        if i + 1 == len(table):
            return mean
        if learned:  # ADM's learned range, the conditional rows' variance under guidance (as MAR)
            x = mean + temperature * _learned_sigma(values, table[i], table[i + 1], guided) * noise(i + 1)
            continue
        x = mean + (sigma * temperature) * noise(i + 1)
    raise AssertionError("unreachable")


def _flow_final_mean(head: FlowHead, z, noise: NoiseSource, *, steps, method, temperature, diffusion_scale, guided, cfg_scale):
    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        t_rows = torch.full((z.shape[0],), t, device=z.device)
        return guide(head.velocity(_double(x, guided), t_rows, z).float(), guided, cfg_scale)

    return integrate_flow(
        velocity, temperature * noise(0), steps=steps, method=method, temperature=temperature,
        diffusion_scale=diffusion_scale, noise=noise,
    )


def _resolve_method(head: torch.nn.Module, method: str) -> str:
    if method not in HEAD_METHODS:
        raise ValueError(f"method must be one of {HEAD_METHODS}, got {method!r}")
    if isinstance(head, DiffusionHead):
        if method not in ("auto", "ddpm"):
            raise ValueError(f"a diffusion head samples with method 'ddpm', not {method!r}")
        return "ddpm"
    if isinstance(head, FlowHead):
        if method == "ddpm":
            raise ValueError("a flow head samples with 'euler' or 'euler-maruyama', not 'ddpm'")
        return "euler" if method == "auto" else method
    raise ValueError(f"{type(head).__name__} is not a continuous head")


@torch.no_grad()
def final_mean(
    head: torch.nn.Module,
    z: torch.Tensor,
    *,
    steps: int,
    method: str = "auto",
    temperature: float = 1.0,
    diffusion_scale: float = 1.0,
    guided: bool = False,
    cfg_scale: float | torch.Tensor = 1.0,
    clip_x0: float | None = None,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """The deterministic part of a head sampler's last step (``N x D``): every step but the last is
    taken, with noise from ``noise`` (pre-drawn, ``noise_count(steps) x N x D``) or ``rng``."""
    return _final_mean(
        head, z, _resolve_method(head, method), steps=steps, temperature=temperature, diffusion_scale=diffusion_scale,
        guided=guided, cfg_scale=cfg_scale, clip_x0=clip_x0, noise=noise, rng=rng,
    )


def _final_mean(head, z, method, *, steps, temperature, diffusion_scale=1.0, guided=False, cfg_scale=1.0,
                clip_x0=None, noise=None, rng=None, table=None) -> torch.Tensor:
    """``table``: a precomputed `ddpm_table` (graph capture must not read the device back)."""
    rows = z.shape[0] // 2 if guided else z.shape[0]
    source = NoiseSource((rows, head.token_dim), z.device, rng, noise)
    if method == "ddpm":
        return _diffusion_final_mean(
            head, z, source, steps=steps, temperature=temperature, guided=guided, cfg_scale=cfg_scale, clip_x0=clip_x0,
            table=table,
        )
    return _flow_final_mean(
        head, z, source, steps=steps, method=method, temperature=temperature, diffusion_scale=diffusion_scale,
        guided=guided, cfg_scale=cfg_scale,
    )


def _with_final_noise(mean: torch.Tensor, final_noise: float, rng: torch.Generator | None) -> torch.Tensor:
    if final_noise <= 0:
        return mean
    return mean + final_noise * torch.randn(mean.shape, generator=rng, device=mean.device, dtype=mean.dtype)


@torch.no_grad()
def sample_diffusion(
    head: DiffusionHead,
    z: torch.Tensor,
    *,
    steps: int = 50,
    temperature: float = 1.0,
    guided: bool = False,
    cfg_scale: float | torch.Tensor = 1.0,
    clip_x0: float | None = None,
    final_noise: float = 0.0,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Tokens ``N x D`` from a `DiffusionHead` given conditions ``z`` (``N`` or ``2N`` rows).

    ``clip_x0`` clamps the clean-token estimate of every step to ``[-clip_x0, clip_x0]`` (ADM's
    ``clip_denoised``; None: off). Guidance combines the raw network outputs (eps or v).
    ``final_noise`` adds ``N(0, final_noise^2)`` to the (otherwise deterministic) last step."""
    mean = _final_mean(head, z, "ddpm", steps=steps, temperature=temperature, guided=guided,
                       cfg_scale=cfg_scale, clip_x0=clip_x0, rng=rng)
    return _with_final_noise(mean, final_noise, rng)


@torch.no_grad()
def sample_flow(
    head: FlowHead,
    z: torch.Tensor,
    *,
    steps: int = 25,
    method: str = "euler",
    temperature: float = 1.0,
    diffusion_scale: float = 1.0,
    guided: bool = False,
    cfg_scale: float | torch.Tensor = 1.0,
    final_noise: float = 0.0,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Tokens ``N x D`` from a `FlowHead` given conditions ``z``, by Euler or Euler-Maruyama."""
    if method not in ("euler", "euler-maruyama"):
        raise ValueError(f"flow sampling method must be 'euler' or 'euler-maruyama', got {method!r}")
    mean = _final_mean(head, z, method, steps=steps, temperature=temperature, diffusion_scale=diffusion_scale,
                       guided=guided, cfg_scale=cfg_scale, rng=rng)
    return _with_final_noise(mean, final_noise, rng)


def sample_head(
    head: torch.nn.Module,
    z: torch.Tensor,
    *,
    steps: int,
    method: str = "auto",
    temperature: float = 1.0,
    diffusion_scale: float = 1.0,
    guided: bool = False,
    cfg_scale: float | torch.Tensor = 1.0,
    final_noise: float = 0.0,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Dispatch to `sample_diffusion` or `sample_flow`; ``method="auto"`` picks DDPM for a diffusion
    head and Euler for a flow head. A method the head cannot use raises ValueError."""
    method = _resolve_method(head, method)
    mean = final_mean(head, z, steps=steps, method=method, temperature=temperature, diffusion_scale=diffusion_scale,
                      guided=guided, cfg_scale=cfg_scale, rng=rng)
    return _with_final_noise(mean, final_noise, rng)
