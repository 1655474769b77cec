"""The variational-bound term that trains a ``learn_sigma`` diffusion head's variance (improved
DDPM, Nichol & Dhariwal, https://arxiv.org/abs/2102.09672, section 3.1: the *hybrid* objective
``L_simple + L_vlb``, which ADM and MAR train with).

For a training step ``t`` the term is, per token and in bits per dimension:

- ``t > 0``: ``KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))``, both Gaussian. ``q`` is the
  posterior with mean ``c_0 x_0 + c_t x_t`` and its (clipped) log variance; ``p`` has the mean the
  head's *frozen* prediction implies (the mean is trained by ``L_simple`` only, as the paper's
  stop-gradient) and the learned log variance ``f log beta_t + (1 - f) log beta~_t`` with
  ``f = (v + 1) / 2`` for the head's raw variance output ``v``;
- ``t = 0``: the negative log-likelihood of ``x_0`` under ``p(x_0 | x_1)``, discretized to 256
  bins on ``[-1, 1]`` (the 8-bit-image decoder of DDPM; MAR's tokens are not 8-bit data, but MAR
  trains with this same term, so artok does too for its converted heads).

Written from the formulas in the papers; it matches MAR's own ``training_losses`` on the same
``t`` and noise (``benchmarks/parity_mar.py``).
"""

from __future__ import annotations

import math

import torch


def normal_kl(mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor, log_var2: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(mean1, e^log_var1) || N(mean2, e^log_var2))`` in nats."""
    return 0.5 * (-1.0 + log_var2 - log_var1 + torch.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * torch.exp(-log_var2))


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF (as DDPM's decoder likelihood uses)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log-probability (nats) of the 256-bin cell of ``x`` (in ``[-1, 1]``) under
    ``N(mean, e^(2 log_scale))``; the outermost bins extend to infinity."""
    centred = x - mean
    inverse_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inverse_std * (centred + 1.0 / 255.0))
    cdf_minus = _standard_normal_cdf(inverse_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta))


def posterior_terms(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-row (``N``) float64 coefficients of ``q(x_{t-1} | x_t, x_0)`` at steps ``t``: ``c_x0``,
    ``c_xt``, ``log_variance`` (clipped: step 0 uses step 1's variance, which is 0 at step 0) and
    ``log_beta``."""
    abar = alphas_cumprod.double()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1 - abar / abar_prev
    variance = betas * (1 - abar_prev) / (1 - abar)
    log_variance = torch.log(torch.cat([variance[1:2], variance[1:]]))
    return {"c_x0": (betas * abar_prev.sqrt() / (1 - abar))[t], "c_xt": ((1 - abar_prev) * (1 - betas).sqrt() / (1 - abar))[t],
            "log_variance": log_variance[t], "log_beta": torch.log(betas)[t]}


def vlb_bits(alphas_cumprod: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
             predicted_x0: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The term of the module docstring, ``N`` rows (mean over the ``D`` channels, bits).

    ``x0``, ``x_t``: the clean and noised tokens ``N x D``; ``t``: steps ``N``; ``predicted_x0``:
    the clean estimate from the head's prediction (detach it for the paper's stop-gradient);
    ``values``: the head's raw variance output ``N x D``."""
    terms = {key: value.to(x0.dtype).unsqueeze(-1) for key, value in posterior_terms(alphas_cumprod, t).items()}
    true_mean = terms["c_x0"] * x0 + terms["c_xt"] * x_t
    model_mean = terms["c_x0"] * predicted_x0 + terms["c_xt"] * x_t
    frac = (values + 1) / 2
    model_log_variance = frac * terms["log_beta"] + (1 - frac) * terms["log_variance"]
    kl = normal_kl(true_mean, terms["log_variance"].expand_as(x0), model_mean, model_log_variance).mean(-1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_variance).mean(-1) / math.log(2.0)
    return torch.where(t == 0, nll, kl)
