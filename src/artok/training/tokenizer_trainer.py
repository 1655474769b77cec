"""Train a tokenizer on an image dataset: reconstruction (MSE + L1) plus the quantizer's own loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from artok.data.base import ImageDataset
from artok.tokenizers.base import Tokenizer
from artok.training.loop import TrainConfig, TrainResult, batch_indices, train


def tokenizer_loss(model: Tokenizer, images: torch.Tensor, l1_weight: float = 0.2) -> dict[str, torch.Tensor]:
    """Reconstruction + quantizer loss for one batch of images in [-1, 1]."""
    out = model(images)
    reconstruction = out.reconstruction.float()
    mse = F.mse_loss(reconstruction, images)
    l1 = F.l1_loss(reconstruction, images)
    losses = {"loss": mse + l1_weight * l1 + out.quantizer.loss, "mse": mse.detach(), "quantizer_loss": out.quantizer.loss.detach()}
    for key, value in out.quantizer.metrics.items():
        losses[key] = value.detach()
    return losses


def train_tokenizer(
    tokenizer: Tokenizer,
    dataset: ImageDataset,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    eval_fn=None,
) -> TrainResult:
    """Train ``tokenizer`` on ``dataset`` (images in memory, batches drawn by `batch_indices`)."""
    torch.manual_seed(config.seed)

    def loss_fn(model, step):
        images, _ = dataset.batch(batch_indices(len(dataset), config.batch_size, step, config.seed), config.device)
        return {**tokenizer_loss(model, images), "batch_size": images.shape[0]}

    return train(tokenizer, loss_fn, config, out_dir=out_dir, resume=resume, eval_fn=eval_fn, description="tokenizer")
