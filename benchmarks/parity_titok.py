"""Check ``artok convert titok`` (and ``maskgit-vqgan``) against TiTok's own code (``modeling/titok.py``,
``modeling/modules/blocks.py``, ``modeling/quantizer/quantizer.py``, ``modeling/modules/maskgit_vqgan.py``
of a local clone of https://github.com/bytedance/1d-tokenizer; nothing of it is copied into artok).

TiTok's class is built from its published config (``configs/infer/TiTok/titok_l32.yaml`` and friends:
``vit_{enc,dec}_model_size``, ``num_latent_tokens``, VQ 4096 x 12 l2-normalised, ``finetune_decoder``
True, so the MaskGIT-VQGAN decoder and codebook are part of it) with seeded random weights: TiTok's own
initialisation, then every zero-initialised bias and every LayerNorm / GroupNorm affine re-drawn (a
misplaced bias or norm would hide behind 0 / 1), the VQ and pixel codebooks drawn wider than TiTok's
``uniform(-1/K, 1/K)`` so codes are well separated, the weight matrices at N(0, 1/fan_in) so the codes
depend on the image (``randomize``). It is saved as ``PyTorchModelHubMixin`` publishes it
(``model.safetensors`` of the state dict), converted with ``artok convert titok`` and compared on 16
real photographs (scikit-image's, resized; TiTok reads [0, 1], artok [-1, 1]): encoder latents, code
ids (16 x K), the MaskGIT-VQGAN code logits and the images decoded from the same codes, fp32 on CPU;
one image again in float64. The MaskGIT VQGAN alone (``PretrainedTokenizer``'s ``Encoder`` /
``VectorQuantizer`` / ``Decoder``) is saved as ``maskgit-vqgan-imagenet-f16-256.bin`` and checked through
``artok convert maskgit-vqgan`` and as ``--pixel-decoder`` of a stage-1 TiTok file.

TiTok's modules import omegaconf, huggingface_hub, accelerate and (through their packages'
``__init__``) its losses; none of those are needed to compute, so this script gives them minimal
stand-ins (``_stub_imports``) and imports the four model files by path.

    git clone https://github.com/bytedance/1d-tokenizer /tmp/1d-tokenizer
    python benchmarks/parity_titok.py --repo /tmp/1d-tokenizer [--model titok_l32] [--images 16]

Writes ``runs/bench/parity_titok.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoencoder_parity import batched, convert, max_difference, photos, write

from artok.tokens import Tokens

#: TiTok's published VQ configs (configs/infer/TiTok/*.yaml): encoder/decoder size, latent tokens
MODELS = {"titok_l32": ("large", 32), "titok_b64": ("base", 64), "titok_s128": ("small", 128)}


class _Config(dict):
    """Stand-in for omegaconf's DictConfig: attribute access and ``.get`` over nested dicts."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Config(value) if isinstance(value, dict) else value


def _stub_imports(repo: Path) -> None:
    omegaconf = types.ModuleType("omegaconf")
    omegaconf.OmegaConf = types.SimpleNamespace(create=_Config, to_container=dict)
    omegaconf.DictConfig = _Config
    hub = types.ModuleType("huggingface_hub")

    class PyTorchModelHubMixin:
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__()

    hub.PyTorchModelHubMixin = PyTorchModelHubMixin
    accelerate = types.ModuleType("accelerate")
    utils = types.ModuleType("accelerate.utils")
    operations = types.ModuleType("accelerate.utils.operations")
    operations.gather = lambda tensor: tensor
    for name, module in (("omegaconf", omegaconf), ("huggingface_hub", hub), ("accelerate", accelerate),
                         ("accelerate.utils", utils), ("accelerate.utils.operations", operations)):
        sys.modules.setdefault(name, module)
    # Packages without their __init__ (which import the training losses): the model files only.
    for package in ("modeling", "modeling.modules", "modeling.quantizer"):
        module = types.ModuleType(package)
        module.__path__ = [str(repo / package.replace(".", "/"))]
        sys.modules[package] = module
    sys.path.insert(0, str(repo))


def titok_config(size: str, tokens: int, image_size: int) -> dict:
    return {"model": {"vq_model": {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
                                   "vit_enc_model_size": size, "vit_dec_model_size": size, "vit_enc_patch_size": 16,
                                   "vit_dec_patch_size": 16, "num_latent_tokens": tokens, "finetune_decoder": True}},
            "dataset": {"preprocessing": {"crop_size": image_size}}}


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Re-draw what TiTok initialises to constants (biases 0, norms 1 / 0), widen the codebooks and draw the
    weight matrices at N(0, 1 / fan_in): with TiTok's std 0.02 the latent outputs hardly depend on the
    image (one code per position for every photo), which would make identical ids a weak check."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith("bias") or ".ln_" in name or "norm" in name:
            base = 1.0 if name.endswith("weight") else 0.0
            parameter.copy_(base + 0.1 * torch.randn(parameter.shape, generator=generator))
        elif name.endswith("embedding.weight"):  # both codebooks
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
        elif name.endswith("weight") and parameter.dim() >= 2:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter[0].numel() ** 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", "--peer", required=True, help="a local clone of bytedance/1d-tokenizer")
    parser.add_argument("--model", default="titok_l32", choices=tuple(MODELS))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-float64", action="store_true", help="skip the one-image float64 comparison")
    parser.add_argument("--out", default="runs/bench/parity_titok.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repo = Path(args.repo)
    if not (repo / "modeling" / "titok.py").is_file():
        raise SystemExit(f"{repo} is not a clone of bytedance/1d-tokenizer (no modeling/titok.py)")
    _stub_imports(repo)
    from modeling.titok import TiTok

    size, tokens = MODELS[args.model]
    torch.manual_seed(args.seed)
    theirs = TiTok(titok_config(size, tokens, args.image_size)).eval()
    randomize(theirs, args.seed)
    images = photos(args.image_size, args.images)
    unit = (images + 1) / 2  # TiTok's pixel range
    result = {"model": args.model, "image_size": args.image_size, "images": images.shape[0]}
    with tempfile.TemporaryDirectory() as folder:
        result.update(compare_titok(theirs, images, unit, Path(folder), args))
        write(result, args.out)  # the TiTok figures, before the MaskGIT VQGAN part
        result.update(compare_vqgan(theirs, images, unit, Path(folder), args))
    write(result, args.out)


@torch.no_grad()
def compare_titok(theirs, images, unit, folder: Path, args) -> dict:
    from safetensors.torch import save_file

    checkpoint = folder / "model.safetensors"
    save_file({key: value.contiguous() for key, value in theirs.state_dict().items()}, str(checkpoint))
    ours, seconds = convert("titok", checkpoint, folder / "titok")
    result = {"convert_seconds": seconds, "parameters": sum(p.numel() for p in ours.parameters()),
              "peer_parameters": sum(p.numel() for p in theirs.parameters())}

    their_latents, result["titok_encoder_seconds"] = batched(
        lambda x: theirs.encoder(pixel_values=x, latent_tokens=theirs.latent_tokens), unit, args.batch)
    our_latents, result["artok_encoder_seconds"] = batched(ours.encode_latents, images, args.batch)
    result["latent_max_abs_difference"] = max_difference(their_latents.flatten(2), our_latents)
    result["latent_max_abs"] = their_latents.abs().max().item()

    # ids: each side's own quantizer on its own latents (artok's encode() is quantizer(encode_latents))
    their_ids, _ = batched(lambda z: theirs.quantize(z)[1]["min_encoding_indices"].reshape(z.shape[0], -1),
                           their_latents, args.batch)
    our_ids, _ = batched(lambda x: ours.encode(x).ids, images, args.batch)
    result["code_ids_shape"] = list(our_ids.shape)
    result["code_id_agreement"] = (their_ids == our_ids).float().mean().item()
    result["code_ids_identical"] = bool(torch.equal(their_ids, our_ids))
    result["distinct_codes"] = int(our_ids.unique().numel())
    result["distinct_codes_per_position_mean"] = sum(our_ids[:, k].unique().numel() for k in range(our_ids.shape[1])) / our_ids.shape[1]

    quantized = ours.quantizer.ids_to_codes(our_ids)
    # the code logits each side's ViT decoder produces on the way (caught by a hook: one decode per side)
    their_logits, our_logits = [], []
    hooks = [theirs.decoder.register_forward_hook(lambda module, inputs, output: their_logits.append(output)),
             ours.decoder.register_forward_hook(lambda module, inputs, output: our_logits.append(output))]
    their_pixels, result["titok_decode_seconds"] = batched(lambda ids: theirs.decode_tokens(ids), our_ids, args.batch)
    our_pixels, result["artok_decode_seconds"] = batched(ours.decode_latents, quantized, args.batch)
    for hook in hooks:
        hook.remove()
    their_logits, our_logits = torch.cat(their_logits), torch.cat(our_logits)
    result["code_logits_max_abs_difference"] = max_difference(their_logits, our_logits)
    result["code_logits_max_abs"] = their_logits.abs().max().item()
    our_pixels = (our_pixels + 1) / 2  # back to TiTok's [0, 1]
    first = slice(0, args.batch)  # artok's decode(Tokens) is decode_latents of the codes, clamped (same batch: same kernels)
    assert torch.equal(ours.decode(Tokens(ours.spec, ids=our_ids[first])), ours.decode_latents(quantized[first]).clamp(-1, 1))
    result["decoded_max_abs_difference"] = max_difference(their_pixels, our_pixels)
    result["decoded_clamped_max_abs_difference"] = max_difference(their_pixels.clamp(0, 1), our_pixels.clamp(0, 1))
    result["decoded_max_abs"] = their_pixels.abs().max().item()
    if not args.skip_float64:
        result.update(float64_check(theirs, ours, unit[:1], images[:1]))
    result["sample_grid"] = sample_grid(ours, folder, args)
    return result


def sample_grid(tokenizer, folder: Path, args) -> str:
    """``artok sample`` from the converted folder: TiTok's generator is not converted, so a random tiny artok
    MaskGIT generator over its 1D tokens draws them (noise images; the point is the path to pixels)."""
    from artok.cli.main import main
    from artok.hub import save_pretrained
    from artok.zoo import build_generator

    torch.manual_seed(args.seed)
    save_pretrained(build_generator("maskgit", tokenizer, num_classes=1000, dim=64, depth=2, num_heads=2), folder / "maskgit")
    grid = Path(args.out).with_suffix(".png")
    grid.parent.mkdir(parents=True, exist_ok=True)
    if main(["sample", "--generator", str(folder / "maskgit"), "--tokenizer", str(folder / "titok"), "--labels", "1,207",
             "--per-label", "2", "--iterations", "8", "--out", str(grid), "--no-progress"]) != 0:
        raise SystemExit("artok sample failed")
    return str(grid)


@torch.no_grad()
def float64_check(theirs, ours, unit, images) -> dict:
    """Latents and decoded pixels of one image with both models in float64 (rounding vanishes, a wrong layer
    would not), one half at a time so that L-32 fits in memory twice."""
    def in_float64(modules, function):
        for module in modules:
            module.double()
        try:
            return function()
        finally:
            for module in modules:
                module.float()

    their_latents, our_latents = in_float64(
        (theirs.encoder, ours.encoder),
        lambda: (theirs.encoder(pixel_values=unit.double(), latent_tokens=theirs.latent_tokens.double()),
                 ours.encode_latents(images.double())))
    z = torch.nn.functional.normalize(our_latents, dim=1).unsqueeze(2)  # the same (unquantized) decoder input
    their_pixels, our_pixels = in_float64(
        (theirs.decoder, theirs.pixel_quantize, theirs.pixel_decoder, ours.decoder, ours.pixel_decoder),
        lambda: (theirs.decode(z), (ours.decode_latents(z.squeeze(2)) + 1) / 2))
    return {"float64_latent_max_abs_difference": max_difference(their_latents.flatten(2), our_latents),
            "float64_decoded_max_abs_difference": max_difference(their_pixels, our_pixels)}


@torch.no_grad()
def compare_vqgan(theirs, images, unit, folder: Path, args) -> dict:
    """MaskGIT's VQGAN file: its own classes (encoder + quantizer + TiTok's pixel decoder) vs ``artok convert maskgit-vqgan``,
    and the same file as ``--pixel-decoder`` of a stage-1 TiTok checkpoint."""
    from modeling.modules import maskgit_vqgan as peer

    torch.manual_seed(args.seed + 1)
    encoder = peer.Encoder(theirs.pixel_decoder.config).eval()
    randomize(encoder, args.seed + 1)
    vqgan = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
             **{f"decoder.{k}": v for k, v in theirs.pixel_decoder.state_dict().items()},
             "quantize.embedding.weight": theirs.pixel_quantize.embedding.weight.detach()}
    file = folder / "maskgit-vqgan-imagenet-f16-256.bin"
    torch.save(vqgan, file)
    ours, _ = convert("maskgit-vqgan", file, folder / "vqgan", "--image-size", str(args.image_size))
    result = {}
    their_features, _ = batched(encoder, unit, args.batch)
    our_features, _ = batched(ours.encode_latents, images, args.batch)
    result["vqgan_latent_max_abs_difference"] = max_difference(their_features, our_features)
    their_ids, _ = batched(lambda z: theirs.pixel_quantize(z)[1], their_features, args.batch)
    our_ids, _ = batched(lambda z: ours.quantizer(z).ids.flatten(1), our_features, args.batch)
    result["vqgan_code_ids_identical"] = bool(torch.equal(their_ids, our_ids))
    their_pixels, _ = batched(lambda ids: theirs.pixel_decoder(theirs.pixel_quantize.get_codebook_entry(ids)), our_ids,
                              args.batch)
    our_pixels, _ = batched(lambda ids: ours.decode_latents(ours.quantizer.ids_to_codes(ids.reshape(-1, *ours.config.grid))),
                            our_ids, args.batch)
    result["vqgan_decoded_max_abs_difference"] = max_difference(their_pixels, (our_pixels + 1) / 2)

    stage1 = {k: v for k, v in theirs.state_dict().items() if not k.startswith("pixel_")}
    stage1_file = folder / "stage1.bin"
    torch.save(stage1, stage1_file)
    completed, _ = convert("titok", stage1_file, folder / "titok_stage1", "--pixel-decoder", str(file))
    reference = folder / "titok"
    from artok.hub import from_pretrained

    same = from_pretrained(reference, role="tokenizer").state_dict()
    result["stage1_plus_pixel_decoder_identical_weights"] = all(
        torch.equal(value, same[key]) for key, value in completed.state_dict().items())
    return result


if __name__ == "__main__":
    main()
