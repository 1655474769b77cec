"""Adversarial training of tokenizers: a PatchGAN discriminator, hinge losses, VQGAN's adaptive
weight and LeCam regularisation.

- PatchGAN (pix2pix, Isola et al., https://arxiv.org/abs/1611.07004): a conv net whose output is a
  grid of logits, each judging one receptive-field patch as real or reconstructed.
- Hinge loss (Lim & Ye, https://arxiv.org/abs/1705.02894), as VQGAN uses it:
  ``L_D = 0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat))))``, ``L_G = -mean(D(x_hat))``.
- Adaptive weight (VQGAN, Esser et al., https://arxiv.org/abs/2012.09841, eq. 7):
  ``lambda = ||grad_{w_L} L_rec|| / (||grad_{w_L} L_G|| + 1e-4)`` at the decoder's last layer
  ``w_L``, clamped to ``[0, max_weight]`` and detached, so the adversarial gradient reaching the
  decoder has the size of the reconstruction gradient.
- LeCam regularisation (Tseng et al., "Regularizing Generative Adversarial Networks under Limited
  Data", https://arxiv.org/abs/2104.03310): EMAs ``alpha_R``, ``alpha_F`` of the discriminator's
  mean outputs on real and fake images, and
  ``R_LC = mean(relu(D(x) - alpha_F)^2) + mean(relu(alpha_R - D(x_hat))^2)`` added to ``L_D``
  (the one-sided form of the authors' code), which keeps the discriminator's predictions from
  drifting apart when data is scarce.
- Start step: before ``start_step`` there is no adversarial term and the discriminator is not
  trained (VQGAN's ``disc_start``), so the autoencoder first learns to reconstruct.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GANConfig:
    """Configuration of `AdversarialLoss` (and of its `PatchDiscriminator`).

    Args:
        weight: weight of the generator's adversarial term (multiplies the adaptive weight).
        start_step: training step from which the adversarial term is added and the discriminator
            trained (0: from the start).
        adaptive_weight: scale the adversarial term by VQGAN's gradient-norm ratio.
        max_adaptive_weight: clamp of that ratio.
        lecam_weight: weight of the LeCam term in the discriminator loss (0 = off; 0.001 is common).
        lecam_decay: decay of the EMAs of the discriminator's mean real and fake outputs.
        discriminator_channels: width of the discriminator's first layer.
        discriminator_layers: stride-2 layers (each doubles the width up to 8x); use fewer for
            small images (2 for 28 x 28).
    """

    weight: float = 0.1
    start_step: int = 0
    adaptive_weight: bool = True
    max_adaptive_weight: float = 1e4
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
    discriminator_channels: int = 64
    discriminator_layers: int = 3

    def __post_init__(self) -> None:
        if self.weight < 0 or self.lecam_weight < 0:
            raise ValueError(f"GAN weights must be >= 0, got weight={self.weight}, lecam_weight={self.lecam_weight}")
        if self.start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {self.start_step}")
        if not 0.0 <= self.lecam_decay < 1.0:
            raise ValueError(f"lecam_decay must be in [0, 1), got {self.lecam_decay}")
        if self.discriminator_channels < 1 or self.discriminator_layers < 1:
            raise ValueError("discriminator_channels and discriminator_layers must be positive")


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not VQGAN's BatchNorm: a logit then does not depend on the rest of its batch
    # (real and fake halves are scored in separate calls) and needs no sync under DDP.
    return nn.GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0), channels)


class PatchDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN: images ``B x C x H x W`` in [-1, 1] -> logits ``B x 1 x h x w``.

    ``num_layers`` 4x4 stride-2 convolutions (width ``channels * min(2^i, 8)``), one 4x4 stride-1
    convolution, then a 4x4 stride-1 convolution to one logit per patch.
    """

    def __init__(self, in_channels: int, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers):
            next_width = channels * min(2**i, 8)
            layers += [nn.Conv2d(width, next_width, 4, stride=2, padding=1, bias=False), _norm(next_width), nn.LeakyReLU(0.2)]
            width = next_width
        next_width = channels * min(2**num_layers, 8)
        layers += [nn.Conv2d(width, next_width, 4, stride=1, padding=1, bias=False), _norm(next_width), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(next_width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))``: zero once real logits are >= 1
    and fake ones <= -1."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-mean(fake)``: the generator raises the discriminator's logits on its reconstructions."""
    return -fake_logits.float().mean()


class LeCamEMA(nn.Module):
    """Exponential moving averages of the discriminator's mean logits on real and fake images
    (buffers, so they are saved with the discriminator and restored on resume)."""

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("real", torch.zeros(()))
        self.register_buffer("fake", torch.zeros(()))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        real, fake = real_logits.detach().float().mean(), fake_logits.detach().float().mean()
        if not bool(self.initialized):
            self.real.copy_(real)
            self.fake.copy_(fake)
            self.initialized.fill_(True)
        else:
            self.real.lerp_(real, 1.0 - self.decay)
            self.fake.lerp_(fake, 1.0 - self.decay)


def lecam_regularization(real_logits: torch.Tensor, fake_logits: torch.Tensor, ema: LeCamEMA) -> torch.Tensor:
    """``mean(relu(real - ema.fake)^2) + mean(relu(ema.real - fake)^2)`` (uses ``ema`` as is; call
    ``ema.update`` first to include the current batch)."""
    return (
        F.relu(real_logits.float() - ema.fake).pow(2).mean() + F.relu(ema.real - fake_logits.float()).pow(2).mean()
    )


def adaptive_weight(
    reconstruction_loss: torch.Tensor,
    generator_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VQGAN's ``||grad L_rec|| / (||grad L_G|| + eps)`` at ``last_layer``, clamped to
    ``[0, max_weight]`` and detached. Both losses must depend on ``last_layer`` (graphs are kept)."""
    reconstruction_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    generator_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    ratio = reconstruction_grad.float().norm() / (generator_grad.float().norm() + eps)
    return ratio.clamp(0.0, max_weight).detach()


class AdversarialLoss(nn.Module):
    """The discriminator and both sides of the hinge game, switched on at ``config.start_step``.

    Usage per training step (the trainer alternates two optimisers)::

        g = adversarial.generator_loss(reconstruction, rec_loss, tokenizer_last_layer, step)
        (rec_loss + g["loss"]).backward()            # discriminator frozen meanwhile
        d = adversarial.discriminator_loss(images, reconstruction.detach(), step)
        if adversarial.active(step): d["loss"].backward()
    """

    def __init__(self, config: GANConfig, in_channels: int) -> None:
        super().__init__()
        self.config = config
        self.discriminator = PatchDiscriminator(in_channels, config.discriminator_channels, config.discriminator_layers)
        self.lecam = LeCamEMA(config.lecam_decay)

    def active(self, step: int) -> bool:
        """Whether the adversarial game runs at ``step`` (``step >= start_step``)."""
        return step >= self.config.start_step

    def generator_loss(
        self, reconstruction: torch.Tensor, reconstruction_loss: torch.Tensor, last_layer: torch.Tensor | None, step: int
    ) -> dict[str, torch.Tensor]:
        """``{"loss": weight * lambda * L_G, "generator_adversarial": L_G, "adaptive_weight": lambda}``;
        all zeros before the start step. ``lambda`` is 1 without ``adaptive_weight`` (or without
        ``last_layer``, or outside autograd)."""
        zero = reconstruction.new_zeros((), dtype=torch.float32)
        if not self.active(step) or self.config.weight == 0:
            return {"loss": zero, "generator_adversarial": zero, "adaptive_weight": zero}
        g_loss = hinge_generator_loss(self.discriminator(reconstruction))
        weight = torch.ones((), device=reconstruction.device)
        if self.config.adaptive_weight and last_layer is not None and torch.is_grad_enabled():
            weight = adaptive_weight(reconstruction_loss, g_loss, last_layer, self.config.max_adaptive_weight)
        return {"loss": self.config.weight * weight * g_loss, "generator_adversarial": g_loss.detach(), "adaptive_weight": weight}

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """``{"loss": hinge + lecam_weight * R_LC, "hinge": ..., "lecam": ..., "logits_real": ...,
        "logits_fake": ...}`` on real images and (detached) reconstructions; zero before the start step."""
        zero = real.new_zeros((), dtype=torch.float32)
        if not self.active(step):
            return {"loss": zero, "hinge": zero, "lecam": zero, "logits_real": zero, "logits_fake": zero}
        real_logits = self.discriminator(real.detach())
        fake_logits = self.discriminator(fake.detach())
        hinge = hinge_discriminator_loss(real_logits, fake_logits)
        lecam = zero
        if self.config.lecam_weight > 0:
            self.lecam.update(real_logits, fake_logits)
            lecam = lecam_regularization(real_logits, fake_logits, self.lecam)
        return {
            "loss": hinge + self.config.lecam_weight * lecam,
            "hinge": hinge.detach(),
            "lecam": lecam.detach(),
            "logits_real": real_logits.detach().float().mean(),
            "logits_fake": fake_logits.detach().float().mean(),
        }
