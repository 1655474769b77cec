"""Per-token diffusion head of MAR (Li et al., "Autoregressive Image Generation without Vector
Quantization", https://arxiv.org/abs/2406.11838): a small residual MLP with adaLN
(`artok.nn.adaln.AdaLNMLP`) models ``p(x | z)`` for one continuous token ``x`` given the backbone's
condition vector ``z``, trained as a DDPM (Ho et al., https://arxiv.org/abs/2006.11239) with the
cosine noise schedule of improved DDPM (Nichol & Dhariwal, https://arxiv.org/abs/2102.09672):

    x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps,    loss = || eps - eps_theta(x_t, t, z) ||^2,

with ``t`` uniform over ``num_timesteps`` training steps. ``prediction="v"`` regresses
``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x`` instead (Salimans & Ho, https://arxiv.org/abs/2202.00512):
the same model family, but well conditioned at the noisy end of the cosine schedule, where
``abar_T ~ 1e-9`` and recovering ``x`` from an eps-prediction multiplies its error by
``1 / sqrt(abar_T) ~ 2e4`` (MAR's large heads learn eps precisely enough; small, briefly trained
ones do not). Sampling (respaced to fewer steps, with
MAR's temperature on the per-step noise and classifier-free guidance on ``eps``) lives in
`artok.sampling.continuous`; the head only predicts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from artok.heads.diffusion_vlb import vlb_bits
from artok.nn.adaln import AdaLNMLP

NOISE_SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("epsilon", "v")


def alphas_cumprod_schedule(num_timesteps: int, schedule: str = "cosine") -> torch.Tensor:
    """``abar_t`` for ``t = 0 .. num_timesteps - 1`` (fp64).

    ``cosine``: ``f(t) = cos^2((t/T + s) / (1 + s) * pi/2)`` with ``s = 0.008``, betas clipped at 0.999
    (improved DDPM). ``linear``: betas from ``1e-4`` to ``0.02`` scaled to ``num_timesteps`` (DDPM).
    """
    if schedule == "cosine":
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    elif schedule == "linear":
        scale = 1000 / num_timesteps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
    else:
        raise ValueError(f"unknown noise schedule {schedule!r}; choose one of {NOISE_SCHEDULES}")
    return torch.cumprod(1 - betas, dim=0)


class DiffusionHead(nn.Module):
    """``eps_theta(x_t, t, z)`` for rows ``N x token_dim``; see the module docstring.

    Args:
        token_dim: channels of a continuous token.
        cond_dim: size of the condition vector ``z`` (the backbone width).
        width, depth: the residual MLP.
        num_timesteps: training diffusion steps.
        noise_schedule: ``"cosine"`` or ``"linear"``.
        prediction: what the network regresses, ``"epsilon"`` (MAR) or ``"v"``.
        learn_sigma: the network also outputs ``token_dim`` variance channels (MAR's / ADM's learned
            range ``v``: ``log var = v' log beta + (1 - v') log beta~`` with ``v' = (v + 1) / 2``);
            `forward` still returns the prediction only, `forward_with_variance` both. Training
            uses improved DDPM's hybrid objective: the prediction's MSE plus the variational-bound
            term on the variance with the mean frozen (`artok.heads.diffusion_vlb`, MAR's loss).
            Default False: the output is ``token_dim`` wide as before.
    """

    kind = "diffusion"

    def __init__(
        self, token_dim: int, cond_dim: int, width: int = 256, depth: int = 3, num_timesteps: int = 1000,
        noise_schedule: str = "cosine", prediction: str = "epsilon", learn_sigma: bool = False,
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        self.token_dim = token_dim
        self.num_timesteps = num_timesteps
        self.learn_sigma = learn_sigma
        self.net = AdaLNMLP(token_dim, cond_dim, width, depth, 2 * token_dim if learn_sigma else token_dim)
        # Derived from the config, so not saved; fp64 for exact respacing.
        self.register_buffer("alphas_cumprod", alphas_cumprod_schedule(num_timesteps, noise_schedule), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Raw network output (eps or v, see ``prediction``) for noisy tokens ``x_t`` (``N x D``) at
        integer steps ``t`` (``N``) given conditions ``z``."""
        output = self.net(x_t, t, z)
        return output[:, : self.token_dim] if self.learn_sigma else output

    def forward_with_variance(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction, variance values)`` of a ``learn_sigma`` head: both ``N x D``; the values are
        ADM's raw interpolation values ``v`` (see ``learn_sigma``)."""
        if not self.learn_sigma:
            raise ValueError("this diffusion head has a fixed variance (learn_sigma=False); it outputs no variance")
        output = self.net(x_t, t, z)
        return output[:, : self.token_dim], output[:, self.token_dim :]

    def x0_from_output(self, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The clean-token estimate implied by a network ``output`` (fp32). Affine in ``output``, so
        classifier-free guidance may combine outputs before this step."""
        abar = self.alphas_cumprod[t].float().unsqueeze(-1)
        x_t, output = x_t.float(), output.float()
        if self.prediction == "v":
            return abar.sqrt() * x_t - (1 - abar).sqrt() * output
        return (x_t - (1 - abar).sqrt() * output) / abar.sqrt()

    def loss(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean training loss for tokens ``target`` (``N x D``) given ``z`` (``N x cond_dim``): the
        regression MSE (+ the VLB term with ``learn_sigma``), at uniformly drawn steps."""
        t = torch.randint(0, self.num_timesteps, (target.shape[0],), device=target.device)
        noise = torch.randn_like(target)
        if self.learn_sigma:
            return self.loss_at(z, target, t, noise).mean()
        x_t, goal = self._noised(target, t, noise)
        return F.mse_loss(self.forward(x_t, t, z).float(), goal.float())

    def _noised(self, target: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_t`` and the regression goal (eps or v) of clean tokens ``target`` at steps ``t``."""
        abar = self.alphas_cumprod[t].float().unsqueeze(-1)
        x_t = abar.sqrt() * target + (1 - abar).sqrt() * noise
        goal = noise if self.prediction == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * target
        return x_t, goal

    def loss_at(self, z: torch.Tensor, target: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-row training loss (``N``) at steps ``t`` with noise ``noise`` (both given: parity
        checks against MAR's ``training_losses`` feed the same draws)."""
        x_t, goal = self._noised(target, t, noise)
        if not self.learn_sigma:
            return (self.forward(x_t, t, z).float() - goal.float()).pow(2).mean(-1)
        output, values = self.forward_with_variance(x_t, t, z)
        mse = (output.float() - goal.float()).pow(2).mean(-1)
        predicted_x0 = self.x0_from_output(x_t, t, output.detach())
        return mse + vlb_bits(self.alphas_cumprod, target.float(), x_t.float(), t, predicted_x0, values.float())
