"""Check ``artok convert mar-vae`` against MAR's own KL-16 autoencoder (``models/vae.py`` of a local
clone of https://github.com/LTH14/mar, LDM's ``AutoencoderKL``; nothing of it is copied into artok).

MAR's ``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))`` is built with random weights (seeded;
GroupNorm affines drawn too), saved as MAR publishes ``kl16.ckpt`` (``{"model": state_dict}``),
converted with ``artok convert`` and compared on 16 real photographs (scikit-image's, resized):
the posterior mean and log-variance, the tokens (MAR: ``posterior.mean * 0.2325``, patchified with
patch size 1; artok: ``encode``), and the images decoded from the same tokens (MAR:
``vae.decode(tokens / 0.2325)``), fp32 on CPU.

    git clone https://github.com/LTH14/mar /tmp/mar
    python benchmarks/parity_mar_vae.py --repo /tmp/mar [--image-size 256]

Writes ``runs/bench/parity_mar_vae.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoencoder_parity import (  # noqa: E402
    batched, convert, float64_difference, import_file, max_difference, photos, randomize_norms, write)

from artok.tokens import Tokens  # noqa: E402

MAR_SCALE = 0.2325  # engine_mar.py: x = posterior.sample().mul_(0.2325); vae.decode(tokens / 0.2325)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", "--peer", required=True, help="a local clone of LTH14/mar")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench/parity_mar_vae.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer = import_file(Path(args.repo) / "models" / "vae.py", "mar_vae")

    torch.manual_seed(args.seed)
    theirs = peer.AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4)).eval()
    randomize_norms(theirs, args.seed)
    images = photos(args.image_size, args.images)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "kl16.ckpt"
        torch.save({"model": theirs.state_dict()}, checkpoint)
        ours, seconds = convert("mar-vae", checkpoint, Path(folder) / "vae", "--image-size", str(args.image_size))
    result = {"model": "KL-16", "image_size": args.image_size, "images": images.shape[0], "convert_seconds": seconds,
              "parameters": sum(p.numel() for p in ours.parameters())}

    moments = lambda posterior: torch.cat([posterior.mean, posterior.logvar], 1)  # noqa: E731
    their_moments, result["mar_encode_seconds"] = batched(lambda x: moments(theirs.encode(x)), images, args.batch)
    our_moments, result["artok_encode_seconds"] = batched(lambda x: torch.cat(ours.quantizer.split(ours.encode_latents(x)), 1),
                                                          images, args.batch)
    result["posterior_mean_max_abs_difference"] = max_difference(their_moments[:, :16], our_moments[:, :16])
    result["posterior_logvar_max_abs_difference"] = max_difference(their_moments[:, 16:], our_moments[:, 16:])
    result["posterior_mean_max_abs"] = their_moments[:, :16].abs().max().item()

    # tokens: MAR's scaled mean, patchified with patch size 1; artok's the same way encode() makes them
    their_tokens = (their_moments[:, :16] * MAR_SCALE).flatten(2).transpose(1, 2)
    our_tokens = (our_moments[:, :16] * ours.config.latent_scale).flatten(2).transpose(1, 2)
    assert torch.allclose(ours.encode(images[:1]).values, our_tokens[:1], atol=1e-5)
    result["token_max_abs_difference"] = max_difference(their_tokens, our_tokens)

    side = ours.config.grid[0]
    grid = lambda tokens: tokens.transpose(1, 2).reshape(tokens.shape[0], 16, side, side)  # noqa: E731
    their_pixels, result["mar_decode_seconds"] = batched(lambda t: theirs.decode(grid(t) / MAR_SCALE), our_tokens, args.batch)
    our_pixels, result["artok_decode_seconds"] = batched(lambda t: ours.decode_latents(grid(t) / MAR_SCALE), our_tokens, args.batch)
    assert torch.allclose(ours.decode(Tokens(ours.spec, values=our_tokens[:1])), our_pixels[:1].clamp(-1, 1), atol=1e-4)
    result["decoded_max_abs_difference"] = max_difference(their_pixels, our_pixels)
    result["decoded_clamped_max_abs_difference"] = max_difference(their_pixels.clamp(-1, 1), our_pixels.clamp(-1, 1))
    result["decoded_max_abs"] = their_pixels.abs().max().item()
    result["decoded_float64_max_abs_difference"] = float64_difference(
        theirs, ours, lambda model, z: model.decoder(model.post_quant_conv(z)), grid(our_tokens[:1]) / MAR_SCALE)
    write(result, args.out)


if __name__ == "__main__":
    main()
