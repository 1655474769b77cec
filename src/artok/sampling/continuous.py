"""Samplers for the per-token continuous heads: pure functions of ``(head, z, settings, rng)``.

- `sample_diffusion`: DDPM ancestral sampling (https://arxiv.org/abs/2006.11239) with the training
  schedule *respaced* to ``steps`` evenly spaced timesteps (improved DDPM,
  https://arxiv.org/abs/2102.09672, section 4): for the kept steps ``t_1 > ... > t_S`` the betas are
  recomputed as ``1 - abar_{t_i} / abar_{t_{i+1}}``. The reverse-step noise is multiplied by
  ``temperature`` as in MAR (https://arxiv.org/abs/2406.11838), which trades diversity for fidelity.
- `sample_flow`: integrates the flow head's velocity from ``t = 0`` (noise) to ``t = 1`` (data) with
  ``steps`` uniform steps, either by Euler (the ODE) or by Euler-Maruyama on the SDE with the same
  marginals (Song et al., https://arxiv.org/abs/2011.13456; SiT, https://arxiv.org/abs/2401.08740):

      dx = [v - s (x - t v)] dt + sqrt(2 s (1 - t)) dW,

  using that for ``x_t = t x + (1 - t) eps`` the score is ``-(x_t - t v) / (1 - t)`` and choosing the
  diffusion ``g^2 = 2 s (1 - t)`` (``s = diffusion_scale``; it vanishes at the data end). The last
  step is a plain Euler step. ``temperature`` scales the initial noise (and the SDE noise).

Classifier-free guidance: when ``guided``, ``z`` is ``[conditional; unconditional]`` (``2N`` rows);
both halves share the same ``x_t`` and the network output (eps, v or velocity) is
``uncond + scale * (cond - uncond)``. The result has ``N`` rows.
"""

from __future__ import annotations

import torch

from artok.heads.diffusion import DiffusionHead
from artok.heads.flow import FlowHead

HEAD_METHODS = ("auto", "ddpm", "euler", "euler-maruyama")


def respaced_timesteps(num_timesteps: int, steps: int) -> torch.Tensor:
    """``steps`` training timesteps evenly spread over ``[0, num_timesteps)``, descending (last is 0)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    return torch.linspace(num_timesteps - 1, 0, steps).round().long()


def _guided(prediction: torch.Tensor, guided: bool, cfg_scale: float) -> torch.Tensor:
    if not guided:
        return prediction
    cond, uncond = prediction.chunk(2)
    return uncond + cfg_scale * (cond - uncond)


def _double(x: torch.Tensor, guided: bool) -> torch.Tensor:
    return torch.cat([x, x]) if guided else x


def _randn(shape, like: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=rng, device=like.device, dtype=torch.float32)


@torch.no_grad()
def sample_diffusion(
    head: DiffusionHead,
    z: torch.Tensor,
    *,
    steps: int = 50,
    temperature: float = 1.0,
    guided: bool = False,
    cfg_scale: float = 1.0,
    clip_x0: float | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Tokens ``N x D`` from a `DiffusionHead` given conditions ``z`` (``N`` or ``2N`` rows).

    ``clip_x0`` clamps the clean-token estimate of every step to ``[-clip_x0, clip_x0]`` (ADM's
    ``clip_denoised``; None: off). Guidance combines the raw network outputs (eps or v)."""
    rows = z.shape[0] // 2 if guided else z.shape[0]
    timesteps = respaced_timesteps(head.num_timesteps, steps).to(z.device)
    abar_all = head.alphas_cumprod.to(z.device)
    x = _randn((rows, head.token_dim), z, rng)
    for i, t in enumerate(timesteps):
        abar = abar_all[t]
        abar_prev = abar_all[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.ones((), dtype=abar.dtype, device=z.device)
        beta = 1 - abar / abar_prev
        t_rows = t.expand(z.shape[0])
        output = _guided(head(_double(x, guided), t_rows, z).float(), guided, cfg_scale)
        x0 = head.x0_from_output(x, t.expand(rows), output)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        mean = (abar_prev.sqrt() * beta / (1 - abar)).float() * x0 + ((1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)).float() * x
        if i + 1 < len(timesteps):
            variance = (beta * (1 - abar_prev) / (1 - abar)).float()
            x = mean + variance.sqrt() * temperature * _randn(x.shape, z, rng)
        else:
            x = mean
    return x


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
    cfg_scale: float = 1.0,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Tokens ``N x D`` from a `FlowHead` given conditions ``z``, by Euler or Euler-Maruyama."""
    if method not in ("euler", "euler-maruyama"):
        raise ValueError(f"flow sampling method must be 'euler' or 'euler-maruyama', got {method!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    rows = z.shape[0] // 2 if guided else z.shape[0]
    x = temperature * _randn((rows, head.token_dim), z, rng)
    dt = 1.0 / steps
    for i in range(steps):
        t = i * dt
        t_rows = torch.full((z.shape[0],), t, device=z.device)
        v = _guided(head.velocity(_double(x, guided), t_rows, z).float(), guided, cfg_scale)
        if method == "euler" or i == steps - 1:
            x = x + v * dt
        else:
            drift = v - diffusion_scale * (x - t * v)
            noise = _randn(x.shape, z, rng)
            x = x + drift * dt + temperature * (2 * diffusion_scale * (1 - t) * dt) ** 0.5 * noise
    return x


def sample_head(
    head: torch.nn.Module,
    z: torch.Tensor,
    *,
    steps: int,
    method: str = "auto",
    temperature: float = 1.0,
    diffusion_scale: float = 1.0,
    guided: bool = False,
    cfg_scale: float = 1.0,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Dispatch to `sample_diffusion` or `sample_flow`; ``method="auto"`` picks DDPM for a diffusion
    head and Euler for a flow head. A method the head cannot use raises ValueError."""
    if method not in HEAD_METHODS:
        raise ValueError(f"method must be one of {HEAD_METHODS}, got {method!r}")
    if isinstance(head, DiffusionHead):
        if method not in ("auto", "ddpm"):
            raise ValueError(f"a diffusion head samples with method 'ddpm', not {method!r}")
        return sample_diffusion(head, z, steps=steps, temperature=temperature, guided=guided, cfg_scale=cfg_scale, rng=rng)
    if isinstance(head, FlowHead):
        if method == "ddpm":
            raise ValueError("a flow head samples with 'euler' or 'euler-maruyama', not 'ddpm'")
        return sample_flow(
            head, z, steps=steps, method="euler" if method == "auto" else method, temperature=temperature,
            diffusion_scale=diffusion_scale, guided=guided, cfg_scale=cfg_scale, rng=rng,
        )
    raise ValueError(f"{type(head).__name__} is not a continuous head")
