"""Pixel reconstruction losses: a weighted sum of mean squared (L2) and mean absolute (L1) error,
computed in fp32 whatever the autocast (as VQGAN, https://arxiv.org/abs/2012.09841, and most
tokenizer recipes combine them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ReconstructionLoss:
    """The weighted total and its parts, each a scalar tensor (none detached).

    Attributes:
        total: ``l2_weight * l2 + l1_weight * l1`` (what is minimised).
        l2: mean squared error.
        l1: mean absolute error.
    """

    total: torch.Tensor
    l2: torch.Tensor
    l1: torch.Tensor


def l2_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element, in fp32."""
    return F.mse_loss(reconstruction.float(), target.float())


def l1_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every element, in fp32."""
    return F.l1_loss(reconstruction.float(), target.float())


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, l2_weight: float = 1.0, l1_weight: float = 0.2
) -> ReconstructionLoss:
    """``l2_weight * MSE + l1_weight * L1`` of images ``B x C x H x W`` (defaults: artok's recipe)."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ in shape")
    if l2_weight < 0 or l1_weight < 0:
        raise ValueError(f"loss weights must be >= 0, got l2_weight={l2_weight}, l1_weight={l1_weight}")
    l2, l1 = l2_loss(reconstruction, target), l1_loss(reconstruction, target)
    return ReconstructionLoss(total=l2_weight * l2 + l1_weight * l1, l2=l2, l1=l1)
