"""Check ``artok convert mar`` against MAR's own model code (read from a local clone of
https://github.com/LTH14/mar; nothing of it is copied into artok).

MAR's ``models/mar.py::MAR`` is built with seeded random weights (its own init, then every parameter
perturbed so that zero-initialised adaLN gates, output layers, biases and LayerNorm affines all carry
signal), its ``state_dict()`` converted with `artok.convert.mar.convert_state_dict`, and both run on the
same inputs, the transformers in fp64 (``--dtype float32`` for fp32), the heads in fp32 (MAR's timestep
embedding is fp32 whatever the weights):

1. teacher-forced head conditions ``z``: the same tokens, the same random orders and mask (several
   mask ratios, down to every token unknown as in MAR's first iteration), labels including the null
   class (MAR's ``fake_latent``): MAR's ``forward_mae_encoder`` + ``forward_mae_decoder`` vs artok's
   ``condition_vectors``, max |difference|;
2. the diffusion head on fixed ``x_t, t, z``: MAR's ``SimpleMLPAdaLN`` output (eps and the learned
   variance values, ``2 x`` channels) vs artok's ``forward_with_variance``; and MAR's
   ``forward_with_cfg`` (guided eps, kept variance) vs artok's guided eps;
3. per-token sampling with matched noise: MAR's ``DiffLoss.gen_diffusion.p_sample_loop`` (respaced
   cosine DDPM, learned variance, temperature, CFG) with its Gaussian draws recorded vs artok's
   `artok.sampling.continuous.final_mean` given the same draws: max |difference| of the tokens (and
   relative to the largest token: random heads predict eps poorly, and the DDPM's first steps
   multiply that error by ``1 / sqrt(abar_T) ~ 2e4``, so the tokens are large);
4. the training loss (improved DDPM's hybrid MSE + VLB with the learned variance) on the same
   tokens, steps and noise: MAR's ``train_diffusion.training_losses`` vs `DiffusionHead.loss_at`;
5. whole sampling: MAR's ``sample_tokens`` (``--iterations``, ``--sample-steps``, CFG linear) fed
   artok's random numbers (generation orders from artok's reveal ranks, head noise in artok's draw
   order) vs artok's `sample_mar`: relative max |difference| of the tokens, as is and with MAR's
   last-iteration guidance (MAR clamps its ``mask_len`` to >= 1, so its last iteration guides with
   ``1 + (cfg - 1) (L - 1) / L``; artok's with the full ``cfg``).

MAR imports ``timm`` (``timm.models.vision_transformer.Block``), which artok does not depend on:
install it next to artok for this script only (``pip install timm --no-deps``). timm's package
imports torchvision for its data pipeline, which neither MAR's Block nor artok needs: when
torchvision is missing, a stand-in module (every attribute a placeholder class) is put in its place
inside this script. MAR's code calls ``.cuda()`` unconditionally; this CPU script makes
``Tensor.cuda`` return the tensor itself.

    git clone https://github.com/LTH14/mar /tmp/mar
    pip install timm --no-deps
    python benchmarks/parity_mar.py --peer /tmp/mar                    # tiny MAR (fast)
    python benchmarks/parity_mar.py --peer /tmp/mar --size base        # mar_base's shapes

Writes ``runs/bench/parity_mar.json``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.abc
import importlib.machinery
import json
import sys
import types
from functools import partial
from pathlib import Path

import torch
from torch import nn

SIZES = {  # encoder = decoder width, depth, heads; diffusion head width, depth; buffer; image side
    "tiny": {"dim": 64, "depth": 2, "heads": 4, "head_width": 48, "head_depth": 2, "buffer": 8, "img_size": 64},
    "base": {"dim": 768, "depth": 12, "heads": 12, "head_width": 1024, "head_depth": 6, "buffer": 64, "img_size": 256},
}


class _Placeholder(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {"__init__": lambda self, *a, **k: None})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Placeholder(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``torchvision`` and its submodules as placeholders (timm's data code imports them at import time)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__, module.__version__ = [], "0.0.0"
        return module

    def exec_module(self, module):
        pass


def import_mar(peer: Path):
    """MAR's ``models.mar`` from the clone, with timm's real Block."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        sys.meta_path.insert(0, _TorchvisionStandIn())
    try:
        from timm.models.vision_transformer import Block  # noqa: F401
    except ImportError as error:
        raise SystemExit(f"MAR needs timm ({error}); install it for this script: pip install timm --no-deps") from None
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # MAR calls .cuda() everywhere; this is a CPU script
    sys.path.insert(0, str(peer.resolve()))
    from models import mar  # MAR's code, from the clone

    return mar


def build_mar(mar, size: dict, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = mar.MAR(img_size=size["img_size"], vae_stride=16, patch_size=1, encoder_embed_dim=size["dim"],
                    encoder_depth=size["depth"], encoder_num_heads=size["heads"], decoder_embed_dim=size["dim"],
                    decoder_depth=size["depth"], decoder_num_heads=size["heads"], mlp_ratio=4.0,
                    norm_layer=partial(nn.LayerNorm, eps=1e-6), vae_embed_dim=16, class_num=classes,
                    buffer_size=size["buffer"], diffloss_d=size["head_depth"], diffloss_w=size["head_width"],
                    num_sampling_steps="100")
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def teacher_forced(model, artok, counts, batch: int, classes: int, seed: int) -> dict:
    """Max |z difference| per number of unknown tokens."""
    seq_len, channels = model.seq_len, model.token_embed_dim
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, seq_len, channels, generator=generator, dtype=torch.float64).to(torch.get_default_dtype())
    orders = torch.rand(batch, seq_len, generator=generator).argsort(dim=1)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    labels[-1] = classes  # the null class: MAR's fake_latent
    class_embedding = torch.cat([model.class_emb(labels[:-1]), model.fake_latent])
    out = {}
    with torch.no_grad():
        for count in counts:
            mask = torch.zeros(batch, seq_len).scatter(1, orders[:, :count], 1.0)
            theirs = model.forward_mae_decoder(model.forward_mae_encoder(tokens, mask, class_embedding), mask)
            ours = artok.condition_vectors(tokens, mask.bool(), labels)
            out[str(count)] = float((theirs - ours).abs().max())
            last = theirs
    return out, last


def fp32_heads(model, artok):
    """fp32 copies of the two diffusion heads (MAR's sinusoids are fp32, so its head runs in fp32 only)."""
    return copy.deepcopy(model.diffloss).float(), copy.deepcopy(artok.head).float()


def head_outputs(model, artok, z: torch.Tensor, seed: int, cfg: float) -> dict:
    diffloss, head = fp32_heads(model, artok)
    z = z.float()
    generator = torch.Generator().manual_seed(seed)
    rows = z.reshape(-1, z.shape[-1])
    x_t = torch.randn(rows.shape[0], model.token_embed_dim, generator=generator, dtype=torch.float32)
    t = torch.randint(0, 1000, (rows.shape[0],), generator=generator)
    with torch.no_grad():
        theirs = diffloss.net(x_t, t, rows)
        eps, values = head.forward_with_variance(x_t, t, rows)
        ours = torch.cat([eps, values], dim=1)
        half = rows.shape[0] // 2
        paired = torch.cat([rows[:half], rows[half : 2 * half]])
        x_pair = torch.cat([x_t[:half], x_t[:half]])
        guided_theirs = diffloss.net.forward_with_cfg(x_pair, t[: 2 * half], paired, cfg)
        cond, uncond = head(x_pair, t[: 2 * half], paired).chunk(2)
        guided_ours = uncond + cfg * (cond - uncond)
    channels = model.token_embed_dim
    return {"head_output_max_abs_diff": float((theirs - ours).abs().max()),
            "head_output_max_abs": float(theirs.abs().max()),
            "guided_eps_max_abs_diff": float((guided_theirs[:half, :channels] - guided_ours).abs().max())}


def training_loss(model, artok, z: torch.Tensor, seed: int) -> dict:
    """MAR's hybrid training loss (``train_diffusion.training_losses``: eps MSE + the VLB term on the
    learned variance, NLL at t = 0) vs artok's `DiffusionHead.loss_at`, same tokens, steps and noise;
    rows at t = 0 and tokens beyond +-0.999 included (the decoder NLL and its edge bins)."""
    diffloss, head = fp32_heads(model, artok)
    rows = z.float().reshape(-1, z.shape[-1])
    generator = torch.Generator().manual_seed(seed)
    target = 0.7 * torch.randn(rows.shape[0], model.token_embed_dim, generator=generator)
    t = torch.randint(0, 1000, (rows.shape[0],), generator=generator)
    t[: max(1, rows.shape[0] // 8)] = 0
    noise = torch.randn(target.shape, generator=generator)
    with torch.no_grad():
        terms = diffloss.train_diffusion.training_losses(diffloss.net, target, t, dict(c=rows), noise=noise)
        ours = head.loss_at(rows, target, t, noise)
    theirs = terms["loss"].float()
    zero = t == 0
    return {"rows": int(rows.shape[0]), "rows_at_t0": int(zero.sum()),
            "loss_max_abs_diff": float((ours - theirs).abs().max()), "loss_max_abs": float(theirs.abs().max()),
            "loss_max_abs_diff_t0": float((ours - theirs)[zero].abs().max()),
            "vb_mean_theirs": float(terms["vb"].mean()), "mse_mean_theirs": float(terms["mse"].mean())}


def matched_sampling(model, artok, z: torch.Tensor, seed: int, cfg: float, temperature: float, steps: int) -> dict:
    """MAR's respaced DDPM loop with recorded draws vs artok's `final_mean` fed the same draws."""
    import diffusion.gaussian_diffusion as gd  # MAR's, from the clone

    from artok.sampling.continuous import final_mean

    diffusion = mar_diffusion(steps)
    diffloss, head = fp32_heads(model, artok)
    rows = z.float().reshape(-1, z.shape[-1])
    half = rows.shape[0] // 2
    paired = torch.cat([rows[:half], rows[half : 2 * half]])
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(half, model.token_embed_dim, generator=generator, dtype=torch.float32)
    draws, original = [], gd.th.randn_like

    def recorded(x, *args, **kwargs):
        draws.append(torch.randn(x.shape, generator=generator, dtype=x.dtype))
        return draws[-1]

    gd.th.randn_like = recorded
    try:
        with torch.no_grad():
            theirs = diffusion.p_sample_loop(diffloss.net.forward_with_cfg, (2 * half, model.token_embed_dim),
                                             torch.cat([start, start]), clip_denoised=False,
                                             model_kwargs={"c": paired, "cfg_scale": cfg}, temperature=temperature)
    finally:
        gd.th.randn_like = original
    noise = torch.stack([start] + [draw[:half] for draw in draws[:-1]])  # MAR's last draw is masked out (t = 0)
    ours = final_mean(head, paired, steps=steps, method="ddpm", temperature=temperature, guided=True,
                      cfg_scale=cfg, noise=noise)
    return {"steps": steps, "temperature": temperature, "cfg": cfg,
            "sample_max_abs_diff": float((theirs[:half] - ours.to(theirs.dtype)).abs().max()),
            "sample_max_abs": float(theirs[:half].abs().max()),
            "sample_relative_diff": float((theirs[:half] - ours.to(theirs.dtype)).abs().max() / theirs[:half].abs().max())}


def full_sampling(model, artok, labels: torch.Tensor, seed: int, cfg: float, temperature: float, steps: int,
                  iterations: int) -> dict:
    """MAR's ``sample_tokens`` vs artok's `sample_mar`, MAR fed artok's random numbers: its generation
    orders from artok's reveal ranks, its head noise from the same generator in artok's draw order (the
    initial noise and one draw per step but the last; MAR's ``t = 0`` draw is masked out anyway)."""
    import diffusion.gaussian_diffusion as gd  # MAR's, from the clone

    import artok.generators.mar.sample as artok_sample
    from artok.sampling.configs import MARSamplerConfig

    diffloss, head = fp32_heads(model, artok)
    mar_model, ours_model = copy.deepcopy(model).float(), copy.deepcopy(artok).float()
    mar_model.diffloss, ours_model.head = diffloss, head
    diffloss.gen_diffusion = mar_diffusion(steps)  # MAR's --num_sampling_steps
    batch, seq_len, channels = labels.shape[0], model.seq_len, model.token_embed_dim
    rng = torch.Generator().manual_seed(seed)
    rank = torch.rand(batch, seq_len, generator=rng).argsort(dim=1).argsort(dim=1)
    mar_model.sample_orders = lambda bsz: rank.argsort(dim=1, descending=True)  # orders[:, :n] = last revealed
    calls = {"n": 0}
    original_randn, original_like = torch.randn, gd.th.randn_like

    def initial(*shape, **kwargs):  # DiffLoss.sample's torch.randn(N, C)
        calls["n"] = 0
        return original_randn(*shape, generator=rng)

    def step_noise(x, *args, **kwargs):  # p_sample's randn_like(x), x = 2N x C under CFG
        calls["n"] += 1
        rows = x.shape[0] // 2 if cfg != 1.0 else x.shape[0]
        if calls["n"] == steps:
            return torch.zeros_like(x)
        draw = original_randn((rows, channels), generator=rng)
        return torch.cat([draw, torch.zeros_like(draw)]) if cfg != 1.0 else draw

    import models.diffloss as mar_diffloss

    mar_diffloss.torch = types.SimpleNamespace(**{**vars(torch), "randn": initial})
    gd.th.randn_like = step_noise
    try:
        with torch.no_grad():
            theirs = mar_model.sample_tokens(batch, num_iter=iterations, cfg=cfg, cfg_schedule="linear", labels=labels,
                                             temperature=temperature)
    finally:
        mar_diffloss.torch, gd.th.randn_like = torch, original_like
    theirs = theirs.flatten(2).transpose(1, 2)  # unpatchify's B x C x h x w -> B x L x C
    config = MARSamplerConfig(iterations=iterations, steps=steps, cfg_scale=cfg, cfg_schedule="linear",
                              temperature=temperature, method="ddpm")
    ours = artok_sample.sample_mar(ours_model, labels, config, torch.Generator().manual_seed(seed)).values
    out = {"iterations": iterations, "steps": steps, "cfg": cfg, "temperature": temperature,
           "tokens_max_abs": float(theirs.abs().max()),
           "tokens_relative_diff": float((theirs - ours).abs().max() / theirs.abs().max())}
    # MAR's last iteration guides with 1 + (cfg - 1) (L - 1) / L (its mask_len is clamped to >= 1
    # even when nothing stays masked); artok's with the full cfg (all L known). The same tokens with
    # MAR's rule, to show that this is the only difference:
    original_scale = artok_sample.mar_cfg_scale
    artok_sample.mar_cfg_scale = lambda scale, schedule, known, length: original_scale(
        scale, schedule, min(known, length - 1), length)
    try:
        ours = artok_sample.sample_mar(ours_model, labels, config, torch.Generator().manual_seed(seed)).values
    finally:
        artok_sample.mar_cfg_scale = original_scale
    out["tokens_relative_diff_with_mars_last_step_cfg"] = float((theirs - ours).abs().max() / theirs.abs().max())
    return out


def sampling_times(model, artok, batches: list[int], seed: int, cfg: float, temperature: float, steps: int,
                   iterations: int, classes: int) -> dict:
    """CPU seconds per call of MAR's own ``sample_tokens`` (its own RNG) and artok's `sample_mar` (plain
    loop; its head graphs are a CUDA feature, so on CPU the "engine" call is the same eager loop and is
    timed too) on the same converted weights, fp32, the faster of two calls each after a warm-up of one iteration."""
    import time

    import artok.generators.mar.sample as artok_sample
    from artok.sampling.configs import MARSamplerConfig

    diffloss, head = fp32_heads(model, artok)
    mar_model, ours_model = copy.deepcopy(model).float(), copy.deepcopy(artok).float()
    mar_model.diffloss, ours_model.head = diffloss, head
    diffloss.gen_diffusion = mar_diffusion(steps)
    config = MARSamplerConfig(iterations=iterations, steps=steps, cfg_scale=cfg, cfg_schedule="linear",
                              temperature=temperature, method="ddpm")
    rows = {}
    for batch in batches:
        labels = torch.arange(batch) % classes
        torch.manual_seed(seed)

        def theirs(n=iterations):
            return mar_model.sample_tokens(batch, num_iter=n, cfg=cfg, cfg_schedule="linear", labels=labels,
                                           temperature=temperature)

        def ours(n=iterations, graphs=False):
            return artok_sample.sample_mar(ours_model, labels, MARSamplerConfig(**{**vars(config), "iterations": n}),
                                           torch.Generator().manual_seed(seed), cuda_graphs=graphs)

        timings = {}
        with torch.no_grad():
            for name, call in (("mar_sample_tokens_s", theirs), ("artok_plain_s", ours),
                               ("artok_engine_s", lambda n=iterations: ours(n, "auto"))):
                call(1)  # warm-up
                seconds = []
                for _ in range(2):  # the faster of two calls: the CPU is shared
                    began = time.perf_counter()
                    call()
                    seconds.append(time.perf_counter() - began)
                timings[name] = min(seconds)
        timings["speedup_plain"] = timings["mar_sample_tokens_s"] / timings["artok_plain_s"]
        timings["speedup_engine"] = timings["mar_sample_tokens_s"] / timings["artok_engine_s"]
        rows[str(batch)] = timings
    return {"iterations": iterations, "steps": steps, "cfg": cfg, "threads": torch.get_num_threads(), "batches": rows}


def mar_diffusion(steps: int):
    from diffusion import create_diffusion  # MAR's, from the clone

    return create_diffusion(timestep_respacing=str(steps), noise_schedule="cosine")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", type=Path, required=True, help="a clone of https://github.com/LTH14/mar")
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, default=0.95)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=4, help="sample_tokens: MAR iterations")
    parser.add_argument("--sample-steps", type=int, default=20, help="sample_tokens: diffusion steps per iteration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-batches", default="", help="also time both samplers at these batch sizes, e.g. 1,8")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/parity_mar.json"))
    args = parser.parse_args(argv)
    if not (args.peer / "models" / "mar.py").is_file():
        raise SystemExit(f"{args.peer} is not a MAR clone (no models/mar.py); git clone https://github.com/LTH14/mar")
    torch.set_default_dtype(getattr(torch, args.dtype))
    mar = import_mar(args.peer)
    from artok.convert.mar import convert_state_dict

    size = SIZES[args.size]
    model = build_mar(mar, size, args.classes, args.seed)
    artok = convert_state_dict(model.state_dict(), num_heads=size["heads"], source="MAR's seeded model").to(
        torch.get_default_dtype())
    seq_len = model.seq_len
    counts = sorted({seq_len, max(1, int(seq_len * 0.7)), seq_len // 2, 1})
    z_diffs, z = teacher_forced(model, artok, counts, args.batch, args.classes, args.seed + 1)
    report = {"size": args.size, "dtype": args.dtype, "seq_len": seq_len, "dim": size["dim"],
              "z_max_abs_diff_by_unknown_count": z_diffs, "z_max_abs": float(z.abs().max())}
    torch.set_default_dtype(torch.float32)  # the heads: fp32 (MAR's diffusion code makes fp32 tensors)
    report.update(head_outputs(model, artok, z, args.seed + 2, args.cfg))
    report["training_loss"] = training_loss(model, artok, z, args.seed + 5)
    report["sampling"] = matched_sampling(model, artok, z, args.seed + 3, args.cfg, args.temperature, args.steps)
    labels = torch.arange(args.batch) % args.classes
    report["sample_tokens"] = full_sampling(model, artok, labels, args.seed + 4, args.cfg, args.temperature,
                                            args.sample_steps, args.iterations)
    if args.time_batches:
        report["cpu_sampling_times"] = sampling_times(
            model, artok, [int(b) for b in args.time_batches.split(",")], args.seed + 6, args.cfg, args.temperature,
            args.sample_steps, args.iterations, args.classes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
