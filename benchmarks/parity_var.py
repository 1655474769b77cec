"""Check ``artok convert var-vae`` / ``artok convert var`` against VAR's own model code (read from a
local clone of https://github.com/FoundationVision/VAR; nothing of it is copied into artok).

VAR's ``models.build_vae_var`` builds its VQVAE and transformer; their weights are re-drawn from a
seed (VAR's builder disables PyTorch's initialisers, its VAE is meant to be loaded, and its
``init_weights`` makes every block near the identity: adaLN gates x 1e-5, head x 0.02, zero biases),
saved with ``torch.save(model.state_dict())`` as VAR publishes them (``vae_ch160v4096z32.pth``,
``var_d16.pth``), converted with ``artok convert``, and compared on the same inputs:

1. VAE: encoder latents (``quant_conv(encoder(x))``) max |difference| on scikit-image photos, the
   code ids of every scale (fraction identical), decoded pixels from the same codes;
2. transformer: teacher-forced logits at every position (VAR's ``forward`` on
   ``idxBl_to_var_input`` vs artok's generator on the same ids and classes);
3. sampling: VAR's ``autoregressive_infer_cfg`` with top-k 1 (greedy, so no random numbers are
   consumed and the two samplers' different draws do not matter) and CFG on vs artok's plain loop
   and `NextScaleEngine` with ``cfg_scale = 1 + cfg``, linear schedule: identical tokens and the
   decoded images' max |difference|;
4. ``--timing 1,8``: CPU seconds of VAR's sampler (which includes its VAE decode) vs artok's plain
   loop and engine (each followed by the decode) at those batch sizes, VAR's demo settings (cfg 4,
   top-k 900, top-p 0.95).

VAR imports ``huggingface_hub`` (for a hub mixin) which artok does not need: a stub module stands in
for it inside this script when it is not installed.

    git clone https://github.com/FoundationVision/VAR /tmp/VAR
    python benchmarks/parity_var.py --peer /tmp/VAR                      # VAE at 256 px, VAR-d16 shapes
    python benchmarks/parity_var.py --peer /tmp/VAR --depth 2 --ch 32 --image-size 64 --patch-nums 1,2,3,4

Writes ``runs/bench/parity_var.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn

_INIT_CLASSES = (nn.Linear, nn.LayerNorm, nn.BatchNorm2d, nn.SyncBatchNorm, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d,
                 nn.ConvTranspose2d)


def import_var(peer: Path):
    """VAR's ``models`` package from the clone (with a stub ``huggingface_hub`` if it is missing)."""
    sys.path.insert(0, str(peer.resolve()))
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        stub = types.ModuleType("huggingface_hub")
        stub.PyTorchModelHubMixin = type("PyTorchModelHubMixin", (), {})
        sys.modules["huggingface_hub"] = stub
    import models  # VAR's code, from the clone

    return models


@contextlib.contextmanager
def initialisers_kept():
    """VAR's builder replaces ``reset_parameters`` of the layer classes with a no-op; put them back after."""
    saved = {cls: cls.reset_parameters for cls in _INIT_CLASSES}
    try:
        yield
    finally:
        for cls, method in saved.items():
            cls.reset_parameters = method


@torch.no_grad()
def redraw_vae(vae, images: torch.Tensor, seed: int) -> None:
    """PyTorch's default initialisation for every layer, GroupNorm affines perturbed, and a codebook
    with the spread of the encoder's latents (so every scale uses many codes)."""
    torch.manual_seed(seed)
    for module in vae.modules():
        if isinstance(module, (nn.Conv2d, nn.GroupNorm)):
            module.reset_parameters()
        if isinstance(module, nn.GroupNorm):
            module.weight.add_(0.1 * torch.randn_like(module.weight))
            module.bias.add_(0.1 * torch.randn_like(module.bias))
    latents = vae.quant_conv(vae.encoder(images))
    std = latents.std(dim=(0, 2, 3))
    vae.quantize.embedding.weight.copy_(torch.randn_like(vae.quantize.embedding.weight) * std)
    vae.quantize.ema_vocab_hit_SV.copy_(torch.rand_like(vae.quantize.ema_vocab_hit_SV))


@torch.no_grad()
def redraw_var(var, seed: int) -> None:
    """Every weight of VAR's transformer re-drawn (none zero, gates and biases included); the learned
    attention scales spread around VAR's log 4."""
    torch.manual_seed(seed)
    for name, param in var.named_parameters():
        if name.endswith("scale_mul_1H11"):
            param.copy_(math.log(4.0) + 0.5 * torch.randn_like(param))
        elif param.dim() == 1 or "ada_gss" in name:
            param.normal_(0.0, 0.05)
        else:
            param.normal_(0.0, param.shape[-1] ** -0.5)


def photos(image_size: int, count: int) -> torch.Tensor:
    from artok.data.photos import load_photos

    source = load_photos(image_size)
    images = source.images[:count].float() / 127.5 - 1.0
    repeats = math.ceil(count / images.shape[0])
    return images.repeat(repeats, 1, 1, 1)[:count]


def convert(kind: str, path: Path, out: Path, *options: str) -> None:
    from artok.cli.main import main as artok_main

    code = artok_main(["convert", kind, str(path), str(out), *options])
    if code != 0:
        raise SystemExit(f"artok convert {kind} failed with exit status {code}")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


@torch.no_grad()
def vae_parity(vae, tokenizer, images: torch.Tensor) -> tuple[dict, list[torch.Tensor]]:
    their_latents = vae.quant_conv(vae.encoder(images))
    our_latents = tokenizer.encode_latents(images)
    # the ids of each side from its own latents (what img_to_idxBl / encode do, without encoding twice)
    their_ids = vae.quantize.f_to_idxBl_or_fhat(their_latents, to_fhat=False)
    our_ids = tokenizer.quantizer.split_ids(tokenizer.quantizer(our_latents).ids)
    same = [float((a.reshape(a.shape[0], -1) == b.reshape(b.shape[0], -1)).float().mean()) for a, b in zip(their_ids, our_ids)]
    their_pixels = vae.idxBl_to_img(their_ids, same_shape=True, last_one=True)
    from artok.tokens import Tokens

    our_pixels = tokenizer.decode(Tokens(tokenizer.spec, ids=torch.cat(their_ids, dim=1)))
    result = {"images": images.shape[0], "latents_max_abs_diff": max_diff(their_latents, our_latents),
              "latents_abs_max": float(their_latents.abs().max()),
              "ids_identical_fraction_per_scale": same, "ids_identical_all": all(s == 1.0 for s in same),
              "codes_used_per_scale": [int(ids.unique().numel()) for ids in their_ids],
              "decoded_pixels_max_abs_diff": max_diff(their_pixels, our_pixels)}
    return result, their_ids


@torch.no_grad()
def logits_parity(var, vae, generator, ids_per_scale: list[torch.Tensor], labels: torch.Tensor) -> dict:
    """Teacher-forced logits on the same ids and classes (any ids: VAR's ``idxBl_to_var_input`` builds
    the inputs from the VAE's codebook and phi convolutions, artok's generator from its copy)."""
    var.cond_drop_rate = 0.0  # VAR drops labels inside forward (training); off for the comparison
    theirs = var(labels, vae.quantize.idxBl_to_var_input(ids_per_scale))
    ours = generator(torch.cat(ids_per_scale, dim=1), labels)
    per_scale = [max_diff(theirs[:, a:b], ours[:, a:b]) for a, b in var.begin_ends]
    return {"positions": theirs.shape[1], "logits_max_abs_diff": max_diff(theirs, ours),
            "logits_max_abs_diff_per_scale": per_scale, "logits_abs_max": float(theirs.abs().max()),
            "argmax_identical_fraction": float((theirs.argmax(-1) == ours.argmax(-1)).float().mean())}


class Recorder:
    """Records the ids VAR's sampler draws (wrapping its ``sample_with_top_k_top_p_``)."""

    def __init__(self, var_module) -> None:
        self.module, self.original, self.ids = var_module, var_module.sample_with_top_k_top_p_, []

    def __enter__(self):
        def record(*args, **kwargs):
            out = self.original(*args, **kwargs)
            self.ids.append(out[:, :, 0].clone())
            return out

        self.module.sample_with_top_k_top_p_ = record
        return self

    def __exit__(self, *exc) -> None:
        self.module.sample_with_top_k_top_p_ = self.original


@torch.no_grad()
def sampling_parity(var, generator, tokenizer, labels: torch.Tensor, cfg: float) -> dict:
    import models.var as var_module  # VAR's module namespace, where its sampler looks the draw up

    from artok.generators.next_scale.engine import NextScaleEngine
    from artok.generators.next_scale.sample import sample_next_scale
    from artok.sampling.configs import NextScaleSamplerConfig

    with Recorder(var_module) as recorder:
        their_images = var.autoregressive_infer_cfg(labels.shape[0], labels, g_seed=0, cfg=cfg, top_k=1, top_p=0.0)
    their_ids = torch.cat(recorder.ids, dim=1)
    config = NextScaleSamplerConfig(cfg_scale=1.0 + cfg, cfg_schedule="linear", top_k=1)
    plain = sample_next_scale(generator, labels, config, torch.Generator().manual_seed(0))
    engine = NextScaleEngine(generator, labels.shape[0]).sample(labels, config, torch.Generator().manual_seed(0))
    our_images = (tokenizer.decode(plain) + 1) / 2
    return {"batch": labels.shape[0], "var_cfg": cfg, "artok_cfg_scale": 1.0 + cfg, "schedule": "linear", "top_k": 1,
            "plain_tokens_identical": bool(torch.equal(their_ids, plain.ids)),
            "plain_tokens_identical_fraction": float((their_ids == plain.ids).float().mean()),
            "engine_tokens_identical": bool(torch.equal(their_ids, engine.ids)),
            "images_max_abs_diff_0_1": max_diff(their_images, our_images)}


def seconds(function) -> float:
    """Wall seconds of one call (CPU, eager: nothing to warm up but the allocator, so no warm-up run)."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@torch.no_grad()
def timing(var, generator, tokenizer, cfg: float, batches: tuple[int, ...], record=None) -> list[dict]:
    from artok.generators.next_scale.engine import NextScaleEngine
    from artok.generators.next_scale.sample import sample_next_scale
    from artok.sampling.configs import NextScaleSamplerConfig

    top_k = min(900, generator.spec.vocab_size)  # VAR's demo top-k (fewer for a small test vocabulary)
    config = NextScaleSamplerConfig(cfg_scale=1.0 + cfg, cfg_schedule="linear", top_k=top_k, top_p=0.95)
    rows = []
    for batch in batches:
        labels = torch.arange(batch) % generator.config.num_classes
        engine = NextScaleEngine(generator, batch)
        rows.append({
            "batch": batch,
            "var_autoregressive_infer_cfg_s": seconds(lambda b=batch, y=labels: var.autoregressive_infer_cfg(
                b, y, g_seed=0, cfg=cfg, top_k=top_k, top_p=0.95)),
            "artok_plain_plus_decode_s": seconds(lambda y=labels: tokenizer.decode(sample_next_scale(
                generator, y, config, torch.Generator().manual_seed(0)))),
            "artok_engine_plus_decode_s": seconds(lambda y=labels, e=engine: tokenizer.decode(e.sample(
                y, config, torch.Generator().manual_seed(0)))),
        })
        if record is not None:
            record("timing", rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", required=True, help="a local clone of FoundationVision/VAR")
    parser.add_argument("--depth", type=int, default=16, help="VAR depth (width 64 x depth, heads = depth)")
    parser.add_argument("--shared-adaln", action="store_true", help="VAR's shared_aln variant")
    parser.add_argument("--ch", type=int, default=160, help="VAE base channels (VAR: 160)")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--patch-nums", default="1,2,3,4,5,6,8,10,13,16")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=16, help="photos for the VAE check")
    parser.add_argument("--batch", type=int, default=4, help="sequences for the logits / sampling checks")
    parser.add_argument("--cfg", type=float, default=4.0, help="VAR's cfg (artok cfg_scale = 1 + cfg)")
    parser.add_argument("--timing", default="", metavar="1,8",
                        help="also time the samplers at these batch sizes (default: no timing)")
    parser.add_argument("--timing-only", action="store_true", help="skip the checks, only time")
    parser.add_argument("--keep", help="keep the saved VAR files and the converted folders here (for artok sample)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench/parity_var.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    patch_nums = tuple(int(p) for p in args.patch_nums.split(","))
    models = import_var(Path(args.peer))

    with initialisers_kept():
        vae, var = models.build_vae_var(
            device="cpu", patch_nums=patch_nums, V=args.vocab, Cvae=32, ch=args.ch, share_quant_resi=4,
            num_classes=args.num_classes, depth=args.depth, shared_aln=args.shared_adaln, attn_l2_norm=True,
            flash_if_available=False, fused_if_available=False)
    vae.eval(), var.eval()
    images = photos(args.image_size, max(args.images, 2))
    redraw_vae(vae, images[:2], seed=0)  # two photos set the codebook's spread
    images = images[: args.images]
    redraw_var(var, seed=1)
    from artok.zoo import from_pretrained

    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save(vae.state_dict(), tmp / "vae_ch160v4096z32.pth")
        torch.save(var.state_dict(), tmp / f"var_d{args.depth}.pth")
        start = time.perf_counter()
        convert("var-vae", tmp / "vae_ch160v4096z32.pth", tmp / "vae", "--image-size", str(args.image_size),
                "--patch-nums", args.patch_nums)
        convert("var", tmp / f"var_d{args.depth}.pth", tmp / "var", "--vae", str(tmp / "vae"))
        conversion_s = time.perf_counter() - start
        tokenizer = from_pretrained(tmp / "vae", role="tokenizer").eval()
        generator = from_pretrained(tmp / "var", role="generator").eval()

    result = {"peer": str(args.peer), "depth": args.depth, "width": 64 * args.depth, "shared_adaln": args.shared_adaln,
              "vae_ch": args.ch, "vocab": args.vocab, "image_size": args.image_size, "patch_nums": list(patch_nums),
              "generator_params_M": sum(p.numel() for p in generator.parameters()) / 1e6,
              "conversion_s": conversion_s, "torch": torch.__version__, "threads": args.threads}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(section: str, value) -> None:  # written after every section, so a long run keeps what it has
        result[section] = value
        print(section, json.dumps(value), flush=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    labels = torch.arange(args.batch) * 7 % args.num_classes
    generator_ids = torch.Generator().manual_seed(3)
    ids = [torch.randint(args.vocab, (args.batch, p * p), generator=generator_ids) for p in patch_nums]
    if not args.timing_only:
        record("transformer", logits_parity(var, vae, generator, ids, labels))
        record("sampling", sampling_parity(var, generator, tokenizer, labels, args.cfg))
    if args.images and not args.timing_only:
        record("vae", vae_parity(vae, tokenizer, images)[0])
    if args.timing:
        timing(var, generator, tokenizer, args.cfg, tuple(int(b) for b in args.timing.split(",")), record)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
