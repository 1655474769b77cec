"""Load latent diffusion's KL autoencoders (LDM ``AutoencoderKL``, https://arxiv.org/abs/2112.10752) as
artok `AutoencoderTokenizer`s with the ``kl`` quantizer, MAR's ``kl16.ckpt``
(https://github.com/LTH14/mar, weights under ``model``) first among them.

The names are LDM's and artok's autoencoder uses them, so the weights map one to one: ``loss.*``
(discriminator, LPIPS, the learned log-variance of LDM's training loss) is dropped, an
``first_stage_model.`` prefix (the autoencoder inside a full LDM checkpoint) is unwrapped. The
configuration is read from the shapes (`artok.convert.ldm_autoencoder`); MAR's KL-16 comes out as
`artok.tokenizers.autoencoder.mar_kl16_config`: encoder attention at the 16x16 level only, none in the
decoder's levels. Tokens are the posterior mean times ``latent_scale`` (MAR's 0.2325; MAR trains on
posterior samples times 0.2325 and decodes ``tokens / 0.2325``).

Loading never executes code: ``torch.load(..., weights_only=True)`` or a safetensors file. Parity with
MAR's own ``models/vae.py`` is checked by ``benchmarks/parity_mar_vae.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from artok.convert.ldm_autoencoder import describe, infer_config, load_tokenizer
from artok.hub import read_weights
from artok.tokenizers.autoencoder import AutoencoderTokenizer

MAR_LATENT_SCALE = 0.2325
_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The autoencoder weights of an LDM/MAR KL checkpoint (``model`` or ``state_dict`` key, or top level)."""
    state = read_weights(path, "checkpoint", nested=("model", "state_dict"))
    return autoencoder_weights(state, str(path))


def autoencoder_weights(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` without training-only weights (``loss.*``) and wrapper prefixes; refuses other models."""
    for prefix in _PREFIXES:
        state = {key.removeprefix(prefix): value for key, value in state.items()}
    if any(key.startswith("first_stage_model.") for key in state):
        state = {key.removeprefix("first_stage_model."): value for key, value in state.items()
                 if key.startswith("first_stage_model.")}
    if "encoder.conv_in.weight" not in state:
        raise ValueError(f"{source} does not hold an LDM/MAR KL autoencoder state dict (no 'encoder.conv_in.weight')")
    if any(key.startswith("quantize.") for key in state):
        raise ValueError(f"{source} is a vector-quantized autoencoder (it has quantize.* weights), not a KL one; "
                         "convert it with llamagen-vq")
    return {key: value for key, value in state.items() if not key.startswith("loss.")}


def convert_state_dict(state: dict[str, torch.Tensor], image_size: int = 256, latent_scale: float = MAR_LATENT_SCALE,
                       source: str = "the state dict") -> AutoencoderTokenizer:
    """An `AutoencoderTokenizer` with the KL autoencoder weights ``state`` (LDM names)."""
    state = autoencoder_weights(state, source)
    config = infer_config(state, source, image_size, "kl", {}, latent_scale=latent_scale)
    return load_tokenizer(config, state, source)


def convert_file(path: str | Path, image_size: int = 256, latent_scale: float = MAR_LATENT_SCALE):
    """The ``artok convert mar-vae`` row (`artok.convert.table`)."""
    from artok.convert.table import Converted

    tokenizer = convert_state_dict(read_state_dict(path), image_size, latent_scale, source=str(path))
    config = tokenizer.config
    return Converted(tokenizer, f"KL {config.latent_dim} channels x {latent_scale}, {describe(config)}",
                     extra={"image_size": [image_size, image_size]})
