"""Training objectives of tokenizers: pixel reconstruction (L1/L2), adversarial (PatchGAN, hinge,
adaptive weight, LeCam) and LPIPS-style perceptual (only with user-supplied backbone weights)."""

from artok.losses.gan import (
    AdversarialLoss,
    GANConfig,
    LeCamEMA,
    PatchDiscriminator,
    adaptive_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lecam_regularization,
)
from artok.losses.perceptual import (
    PERCEPTUAL_OFF_MESSAGE,
    PerceptualLoss,
    load_perceptual_loss,
)
from artok.losses.reconstruction import (
    ReconstructionLoss,
    l1_loss,
    l2_loss,
    reconstruction_loss,
)

__all__ = [
    "PERCEPTUAL_OFF_MESSAGE",
    "AdversarialLoss",
    "GANConfig",
    "LeCamEMA",
    "PatchDiscriminator",
    "PerceptualLoss",
    "ReconstructionLoss",
    "adaptive_weight",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "l1_loss",
    "l2_loss",
    "lecam_regularization",
    "load_perceptual_loss",
    "reconstruction_loss",
]
