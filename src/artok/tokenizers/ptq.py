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

from artok.quantizers.gaussian import DiagonalGaussian
from artok.tokenizers.cnn import CNNTokenizer


@torch.no_grad()
def post_training_quantized(tokenizer: CNNTokenizer, images: torch.Tensor, bits: int = 4, batch_size: int = 256) -> CNNTokenizer:
    """A ``ptq`` CNN tokenizer sharing ``tokenizer``'s weights, calibrated on ``images``
    (``N x C x H x W`` in [-1, 1]); ``bits`` per channel (``2^bits`` bins, ``latent_dim`` sub-tokens)."""
    if tokenizer.quantizer.discrete:
        raise ValueError("post-training quantization needs a continuous tokenizer (quantizer 'kl' or 'continuous')")
    config = replace(tokenizer.config, quantizer="ptq", quantizer_options={"bits": bits})
    discrete = CNNTokenizer(config)
    state = {key: value for key, value in tokenizer.state_dict().items() if not key.startswith("quantizer.")}
    if isinstance(tokenizer.quantizer, DiagonalGaussian):
        last = len(discrete.encoder.layers) - 1
        for name in ("weight", "bias"):
            key = f"encoder.layers.{last}.{name}"
            state[key] = state[key][: config.latent_dim]
    missing, unexpected = discrete.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("quantizer.") for key in missing):
        raise ValueError(f"cannot transfer weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    discrete.eval()
    device = next(tokenizer.parameters()).device
    latents = [discrete.encode_latents(images[i : i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
    discrete.quantizer.calibrate(latents)
    return discrete
