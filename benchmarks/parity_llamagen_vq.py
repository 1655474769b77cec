"""Check ``artok convert llamagen-vq`` against LlamaGen's own VQ model (``tokenizer/tokenizer_image/vq_model.py``
of a local clone of https://github.com/FoundationVision/LlamaGen; nothing of it is copied into artok).

LlamaGen's ``VQ_16`` (or ``VQ_8``) is built with random weights (seeded; GroupNorm affines drawn too),
saved as LlamaGen publishes it (``{"model": state_dict}`` in a ``.pt``), converted with ``artok convert``
and compared on 16 real photographs (scikit-image's, resized): encoder latents (after ``quant_conv``),
code ids, and the images decoded from the same codes, fp32 on CPU.

    git clone https://github.com/FoundationVision/LlamaGen /tmp/LlamaGen
    python benchmarks/parity_llamagen_vq.py --repo /tmp/LlamaGen [--model VQ-16] [--image-size 256]

Writes ``runs/bench/parity_llamagen_vq.json``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", "--peer", required=True, help="a local clone of FoundationVision/LlamaGen")
    parser.add_argument("--model", default="VQ-16", choices=("VQ-16", "VQ-8"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench/parity_llamagen_vq.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer = import_file(Path(args.repo) / "tokenizer" / "tokenizer_image" / "vq_model.py", "llamagen_vq_model")

    torch.manual_seed(args.seed)
    theirs = peer.VQ_models[args.model]().eval()
    randomize_norms(theirs, args.seed)
    images = photos(args.image_size, args.images)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "vq_ds16_c2i.pt"
        torch.save({"model": theirs.state_dict()}, checkpoint)
        ours, seconds = convert("llamagen-vq", checkpoint, Path(folder) / "vq", "--image-size", str(args.image_size))
    result = {"model": args.model, "image_size": args.image_size, "images": images.shape[0], "convert_seconds": seconds,
              "parameters": sum(p.numel() for p in ours.parameters())}

    their_latents, result["llamagen_encoder_seconds"] = batched(lambda x: theirs.quant_conv(theirs.encoder(x)), images, args.batch)
    our_latents, result["artok_encoder_seconds"] = batched(ours.encode_latents, images, args.batch)
    result["latent_max_abs_difference"] = max_difference(their_latents, our_latents)
    result["latent_max_abs"] = their_latents.abs().max().item()

    # ids: each side's own quantizer on its own latents (artok's encode() is quantizer(encode_latents))
    their_ids, _ = batched(lambda z: theirs.quantize(z)[2][2].reshape(z.shape[0], -1), their_latents, args.batch)
    our_ids, _ = batched(lambda z: ours.quantizer(z).ids.reshape(z.shape[0], -1), our_latents, args.batch)
    assert torch.equal(ours.encode(images[:1]).ids, our_ids[:1])
    result["code_id_agreement"] = (their_ids == our_ids).float().mean().item()
    result["code_ids_identical"] = bool(torch.equal(their_ids, our_ids))

    side, dim = ours.config.grid[0], ours.quantizer.dim
    their_pixels, result["llamagen_decode_seconds"] = batched(
        lambda ids: theirs.decode_code(ids.reshape(-1), shape=(ids.shape[0], dim, side, side)), our_ids, args.batch)
    our_pixels, result["artok_decode_seconds"] = batched(
        lambda ids: ours.decode_latents(ours.quantizer.ids_to_codes(ids.reshape(-1, side, side))), our_ids, args.batch)
    assert torch.allclose(ours.decode(Tokens(ours.spec, ids=our_ids[:1])), our_pixels[:1].clamp(-1, 1), atol=1e-4)
    result["decoded_max_abs_difference"] = max_difference(their_pixels, our_pixels)
    result["decoded_clamped_max_abs_difference"] = max_difference(their_pixels.clamp(-1, 1), our_pixels.clamp(-1, 1))
    result["decoded_max_abs"] = their_pixels.abs().max().item()
    codes = ours.quantizer.ids_to_codes(our_ids[:1].reshape(1, side, side))
    result["decoded_float64_max_abs_difference"] = float64_difference(
        theirs, ours, lambda model, z: model.decoder(model.post_quant_conv(z)), codes)
    write(result, args.out)


if __name__ == "__main__":
    main()
