"""Turn a trained continuous CNN tokenizer into a dimension-wise discrete one without retraining
(TokenBridge, Wang et al., "Bridging Continuous and Discrete Tokens for Autoregressive Visual
Generation", https://arxiv.org/abs/2503.16430): same encoder and decoder, the continuous bottleneck
replaced by `artok.quantizers.PostTrainingQuantizer` calibrated on the encoder's latents.

For a KL tokenizer the encoder emits mean and log-variance; the discrete tokenizer keeps the mean
half of the encoder's last convolution (the latent the KL tokenizer decodes in eval mode).
"""

from __future__ import annotations

from dataclasses import replace

import torch


@torch.no_grad()
def post_training_quantized(tokenizer, images, bits: int = 4, batch_size: int = 256):
    """A ``ptq`` copy of a continuous tokenizer (``kl`` or ``continuous`` quantizer; any tokenizer
    class, CNN or ViT1D) sharing its weights, calibrated on ``images`` (an ``N x C x H x W`` tensor
    in [-1, 1], or an `ImageDataset`); ``bits`` per channel (``2^bits`` Gaussian-quantile bins,
    ``latent_dim`` sub-tokens). Nothing is retrained; for a KL parent the encoder's output layer
    keeps only its mean half (the posterior mean is what gets quantized). The copy saves and loads
    with `artok.hub` like any tokenizer."""
    kind = tokenizer.config.quantizer
    if kind not in ("kl", "continuous"):
        raise ValueError(f"post-training quantization needs a continuous tokenizer (quantizer 'kl' or 'continuous'), got {kind!r}")
    config = replace(tokenizer.config, quantizer="ptq", quantizer_options={"bits": int(bits)})
    discrete = type(tokenizer)(config)
    discrete.load_state_dict(_transferred_state(tokenizer.state_dict(), discrete.state_dict(), type(tokenizer).__name__))
    device = next(tokenizer.parameters()).device
    discrete.to(device).eval()
    discrete.quantizer.calibrate(discrete.encode_latents(chunk) for chunk in _chunks(images, batch_size, device))
    return discrete


def _transferred_state(source: dict, target: dict, name: str) -> dict:
    """The parent's weights for every non-quantizer entry; where the parent's is twice as long along
    its first axis (the KL encoder's mean and log-variance), its first (mean) half."""
    state = {}
    for key, value in target.items():
        if key.startswith("quantizer."):
            state[key] = value
            continue
        if key not in source:
            raise ValueError(f"{name} has no {key}; cannot derive a PTQ tokenizer from it")
        parent = source[key]
        if parent.shape != value.shape:
            if parent.shape[0] != 2 * value.shape[0] or parent.shape[1:] != value.shape[1:]:
                raise ValueError(f"{key}: cannot map shape {tuple(parent.shape)} onto {tuple(value.shape)}")
            parent = parent[: value.shape[0]]
        state[key] = parent.clone()
    return state


def _chunks(images, batch_size: int, device):
    """Batches of calibration images on ``device`` from a tensor or an `ImageDataset`."""
    count = images.shape[0] if torch.is_tensor(images) else len(images)
    for start in range(0, count, batch_size):
        if torch.is_tensor(images):
            yield images[start : start + batch_size].to(device)
        else:
            yield images.batch(torch.arange(start, min(start + batch_size, count)), device)[0]
