"""Per-token flow-matching head (rectified flow / conditional flow matching: Liu et al.,
https://arxiv.org/abs/2209.03003; Lipman et al., https://arxiv.org/abs/2210.02747), as xAR
(Ren et al., "Beyond Next-Token: Next-X Prediction for Autoregressive Visual Generation",
https://arxiv.org/abs/2502.20388) uses it to regress continuous entities instead of classifying
discrete tokens.

Convention: time ``t`` runs from 0 (noise) to 1 (data) along the straight path

    x_t = t x + (1 - t) eps,        velocity  v = dx_t/dt = x - eps,

and the network regresses ``v_theta(x_t, t, z) ~ v`` with ``t ~ U(0, 1)`` (or logit-normal, as in
SD3, which puts more weight on the middle of the path). The same residual adaLN MLP as MAR's
diffusion head predicts it (`artok.nn.adaln.AdaLNMLP`), so the two heads are interchangeable.
Euler (ODE) and Euler-Maruyama (SDE) samplers live in `artok.sampling.continuous`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from artok.nn.adaln import AdaLNMLP

TIME_SAMPLING = ("uniform", "logit-normal")


class FlowHead(nn.Module):
    """``v_theta(x_t, t, z)`` for rows ``N x token_dim``; see the module docstring.

    Args:
        token_dim: channels of a continuous token.
        cond_dim: size of the condition vector ``z``.
        width, depth: the residual MLP.
        time_sampling: ``"uniform"`` or ``"logit-normal"`` training times.
    """

    kind = "flow"

    def __init__(self, token_dim: int, cond_dim: int, width: int = 256, depth: int = 3, time_sampling: str = "uniform") -> None:
        super().__init__()
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLING}, got {time_sampling!r}")
        self.token_dim = token_dim
        self.time_sampling = time_sampling
        # Times in [0, 1] are scaled by 1000 so their sinusoidal features span the same
        # frequencies as integer diffusion steps.
        self.net = AdaLNMLP(token_dim, cond_dim, width, depth, token_dim, time_scale=1000.0)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Velocity at noisy tokens ``x_t`` (``N x D``) and times ``t`` (``N``, in [0, 1])."""
        return self.net(x_t, t, z)

    def sample_times(self, count: int, device) -> torch.Tensor:
        if self.time_sampling == "uniform":
            return torch.rand(count, device=device)
        return torch.sigmoid(torch.randn(count, device=device))

    def loss(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean velocity MSE for tokens ``target`` (``N x D``) given ``z`` (``N x cond_dim``)."""
        t = self.sample_times(target.shape[0], target.device)
        noise = torch.randn_like(target)
        x_t = t[:, None] * target + (1 - t[:, None]) * noise
        return F.mse_loss(self.velocity(x_t, t, z).float(), (target - noise).float())
