"""``artok`` command line: thin wrappers that parse arguments, call the library and print.

User errors (bad paths, bad configs, incompatible models) are printed as one line
(``artok: error: ...``) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

EPILOG = "Run 'artok <command> --help' for the options of a command."


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, batch order and sampling (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_sampling(parser: argparse.ArgumentParser, speculative: bool = True) -> None:
    group = parser.add_argument_group("sampling (defaults: the values stored with the generator)")
    group.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale (1 = off)")
    group.add_argument("--cfg-schedule", choices=("constant", "linear"), help="guidance schedule over the sequence")
    group.add_argument("--temperature", type=float, help="softmax temperature")
    group.add_argument("--top-k", type=int, help="keep the k most likely tokens (0 = all)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass (1 = off)")
    group.add_argument("--iterations", type=int, help="decoding iterations (maskgit, mar)")
    group.add_argument("--sampling-steps", type=int, help="diffusion / flow steps per token (mar, next-x)")
    group.add_argument("--method", choices=("auto", "ddpm", "euler", "euler-maruyama"),
                       help="continuous-head sampler (mar, next-x; auto: ddpm for diffusion, euler for flow heads)")
    group.add_argument("--final-noise", type=float,
                       help="std of noise on the head sampler's last step (mar; > 0 is needed by --draft)")
    if not speculative:
        return
    group.add_argument("--draft", help="saved smaller generator of the same kind and tokenizer: exact speculative "
                                       "sampling (raster: tokens, mar: iterations per target pass)")
    group.add_argument("--draft-length", type=int, default=4,
                       help="tokens (raster) or MAR iterations drafted per target pass (default: 4)")


def _sampling(args, generator):
    """The sampler config (stored defaults + command-line overrides) and the optional draft."""
    from artok.hub import from_pretrained
    from artok.sampling import sampler_config_for

    overrides = {key: getattr(args, key, None) for key in
                 ("cfg_scale", "cfg_schedule", "temperature", "top_k", "top_p", "iterations", "method", "final_noise")}
    overrides["steps"] = args.sampling_steps
    sampler = sampler_config_for(generator, generator.extra.get("sampling"), overrides)
    draft = from_pretrained(args.draft, args.device).eval() if args.draft else None
    return sampler, draft


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artok",
        description="artok: image tokenizers, autoregressive generators, fast samplers and evaluation.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train a tokenizer and a class-conditional generator, sample, and write an HTML report",
        description="Train a VQ tokenizer and a LlamaGen-style class-conditional generator on a built-in dataset, "
        "sample a grid with one row per class, score it with the dataset's reference classifier, and write "
        "OUT/report.html and OUT/metrics.json.",
    )
    demo.add_argument("--dataset", default="digits", help="digits (default), mnist, fashion-mnist or folder:PATH")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--steps", type=int, help="generator training steps (default: the dataset preset)")
    demo.add_argument("--tokenizer-steps", type=int, help="tokenizer training steps (default: the dataset preset)")
    demo.add_argument("--samples-per-class", type=int, help="samples per class for the evaluation (default: 50)")
    demo.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale for sampling (default: the preset, 2 on digits)")
    demo.add_argument("--limit", type=int, help="use at most this many training images")
    demo.add_argument("--resume", action="store_true", help="continue from checkpoints in OUT if present")
    _add_common(demo)

    tok = sub.add_parser(
        "train-tokenizer",
        help="train an image tokenizer",
        description="Train a tokenizer (a CNN with a 2D token grid, or a ViT with 1D latent tokens) with any quantizer on a "
        "dataset, optionally with adversarial and perceptual losses, and save it (config.json + model.safetensors).",
    )
    tok.add_argument("--dataset", default="digits", help="digits, mnist, fashion-mnist, photos or folder:PATH")
    tok.add_argument("--out", required=True, help="output model folder")
    tok.add_argument("--quantizer", default="vq", help="vq, fsq, lfq, bsq, rvq, msvq, kl, continuous (default: vq)")
    tok.add_argument("--quantizer-options", default=None, help='JSON of quantizer config fields, e.g. \'{"codebook_size": 512}\'')
    tok.add_argument("--steps", type=int, help="training steps (default: the dataset preset)")
    tok.add_argument("--batch-size", type=int, help="images per step (default: the dataset preset)")
    tok.add_argument("--lr", type=float, help="peak learning rate (default: the dataset preset)")
    tok.add_argument("--base-channels", type=int, help="encoder width (default: the dataset preset)")
    tok.add_argument("--arch", choices=("cnn", "vit1d"), default="cnn",
                     help="cnn: 2D token grid (default); vit1d: TiTok-style 1D latent tokens with nested dropout")
    tok.add_argument("--num-tokens", type=int, help="vit1d: number of 1D latent tokens (default: 32)")
    tok.add_argument("--dim", type=int, help="vit1d: transformer width (default: 128)")
    tok.add_argument("--gan-weight", type=float, default=0.0, help="adversarial (PatchGAN hinge) weight; 0 = off (default)")
    tok.add_argument("--gan-start", type=int, default=0, help="step at which the adversarial phase starts (default: 0)")
    tok.add_argument("--lecam-weight", type=float, default=0.0, help="LeCam regularisation of the discriminator (default: 0)")
    tok.add_argument("--perceptual-weights", help="path to VGG16 weights for an LPIPS-style loss (never downloaded)")
    tok.add_argument("--perceptual-weight", type=float, default=0.0, help="weight of the perceptual loss (default: 0 = off)")
    tok.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    _add_common(tok)

    gen = sub.add_parser(
        "train-generator",
        help="train a class-conditional generator on a tokenizer's tokens",
        description="Encode a dataset once with a saved tokenizer (cached under $ARTOK_CACHE/tokens) and train a "
        "generator of the zoo on the tokens: raster (LlamaGen), next-scale (VAR, msvq tokens), maskgit, mar (KL "
        "tokens), next-x (xAR, KL tokens), dimwise (TokenBridge, PTQ tokens), bitwise (Infinity head, LFQ/BSQ tokens).",
    )
    gen.add_argument("--tokenizer", required=True, help="saved tokenizer folder")
    gen.add_argument("--generator", default="raster",
                     choices=("raster", "next-scale", "maskgit", "mar", "next-x", "dimwise", "bitwise"),
                     help="generator kind (default: raster)")
    gen.add_argument("--generator-options", default=None,
                     help='JSON of extra generator config fields, e.g. \'{"unit": "cell", "cell_size": 2}\'')
    gen.add_argument("--dataset", default="digits", help="dataset to train on (default: digits)")
    gen.add_argument("--out", required=True, help="output model folder")
    gen.add_argument("--steps", type=int, help="training steps (default: the dataset preset)")
    gen.add_argument("--batch-size", type=int, help="sequences per step")
    gen.add_argument("--lr", type=float, help="peak learning rate")
    gen.add_argument("--dim", type=int, help="transformer width")
    gen.add_argument("--depth", type=int, help="transformer layers")
    gen.add_argument("--heads", type=int, help="attention heads")
    gen.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    _add_sampling(gen, speculative=False)
    _add_common(gen)

    sample = sub.add_parser("sample", help="sample class-conditional images to a PNG grid",
                            description="Sample images from a saved generator and write a PNG grid (one row per label).")
    sample.add_argument("--generator", required=True, help="saved generator folder")
    sample.add_argument("--tokenizer", help="saved tokenizer folder (default: the one recorded with the generator)")
    sample.add_argument("--labels", default=None, help="comma-separated class indices (default: every class)")
    sample.add_argument("--per-label", type=int, default=8, help="images per label (default: 8)")
    sample.add_argument("--out", default="samples.png", help="output PNG (default: samples.png)")
    _add_sampling(sample)
    _add_common(sample)

    ev = sub.add_parser("eval", help="evaluate a tokenizer and/or a generator, write metrics JSON",
                        description="Reconstruction metrics of a tokenizer on a dataset's test split; with --generator, class "
                        "accuracy and Frechet distance of its samples under the dataset's reference classifier.")
    ev.add_argument("--tokenizer", help="saved tokenizer folder (default: the generator's)")
    ev.add_argument("--generator", help="saved generator folder")
    ev.add_argument("--dataset", default=None, help="dataset (default: the one recorded with the model)")
    ev.add_argument("--samples-per-class", type=int, default=50, help="samples per class (default: 50)")
    ev.add_argument("--out", default=None, help="write metrics JSON here (default: print only)")
    _add_sampling(ev)
    _add_common(ev)

    # Commands that live in their own modules: each exposes add_parser(sub) and run(args).
    for module in _plugin_modules():
        name = module.add_parser(sub)
        COMMANDS[name] = module.run
    return parser


PLUGIN_MODULES = ("artok.cli.eval_tokenizer", "artok.cli.bench", "artok.cli.convert")


def _plugin_modules():
    import importlib

    modules = []
    for name in PLUGIN_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:  # a real missing dependency inside the module: surface it
                raise
    return modules


def cmd_demo(args) -> int:
    from artok.pipeline import DemoConfig, run_demo

    metrics = run_demo(DemoConfig(
        dataset=args.dataset, out=args.out, device=args.device, steps=args.steps, tokenizer_steps=args.tokenizer_steps,
        samples_per_class=args.samples_per_class, cfg_scale=args.cfg_scale, seed=args.seed, resume=args.resume,
        progress=not args.no_progress, limit=args.limit,
    ))
    keys = ["tokenizer.psnr", "tokenizer.ssim", "tokenizer.codebook_usage", "generator.class_accuracy", "generator.fd",
            "generator.fd_reference", "seconds_total"]
    for key in keys:
        if key in metrics:
            print(f"{key:28s} {metrics[key]:.4f}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def cmd_train_tokenizer(args) -> int:
    from artok.data import load_dataset
    from artok.hub import save_pretrained
    from artok.losses import GANConfig
    from artok.pipeline import evaluate_tokenizer, preset_for
    from artok.tokenizers import CNNTokenizer, ViT1DTokenizer, ViT1DTokenizerConfig
    from artok.training.tokenizer_trainer import TokenizerLossConfig

    train = load_dataset(args.dataset, "train")
    preset = preset_for(train)
    options = dict(preset.tokenizer.quantizer_options) if args.quantizer == "vq" else {}
    if args.quantizer_options:
        try:
            options.update(json.loads(args.quantizer_options))
        except json.JSONDecodeError as error:
            raise ValueError(f"--quantizer-options is not valid JSON: {error}") from None
    if args.arch == "vit1d":
        size = train.image_size[0]
        patch = next(p for p in ((4, 2, 1) if size <= 64 else (16, 8, 4, 2, 1)) if size % p == 0)
        sizes = {key: value for key, value in (("num_latent_tokens", args.num_tokens), ("dim", args.dim)) if value}
        config = ViT1DTokenizerConfig(in_channels=train.channels, image_size=size, patch_size=patch,
                                      quantizer=args.quantizer, quantizer_options=options, **sizes)
    else:
        if args.num_tokens or args.dim:
            raise ValueError("--num-tokens and --dim apply to --arch vit1d only")
        config = replace(preset.tokenizer, quantizer=args.quantizer, quantizer_options=options)
        if args.base_channels:
            config = replace(config, base_channels=args.base_channels)
    train_config = replace(preset.tokenizer_train, device=args.device, seed=args.seed, progress=not args.no_progress)
    for field in ("steps", "batch_size", "lr"):
        if getattr(args, field) is not None:
            train_config = replace(train_config, **{field: getattr(args, field)})
    adversarial = None
    if args.gan_weight > 0:
        layers = 2 if min(train.image_size) <= 32 else 3
        adversarial = GANConfig(weight=args.gan_weight, start_step=args.gan_start, lecam_weight=args.lecam_weight,
                                discriminator_layers=layers)
    losses = TokenizerLossConfig(perceptual_weight=args.perceptual_weight, perceptual_weights=args.perceptual_weights,
                                 adversarial=adversarial)
    import torch

    torch.manual_seed(args.seed)
    tokenizer = ViT1DTokenizer(config) if args.arch == "vit1d" else CNNTokenizer(config)
    from artok.training import train_tokenizer

    train_tokenizer(tokenizer, train, train_config, out_dir=args.out, resume=args.resume, losses=losses)
    save_pretrained(tokenizer, args.out, extra={"dataset": args.dataset})
    metrics = evaluate_tokenizer(tokenizer, load_dataset(args.dataset, "test"), device=args.device)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_train_generator(args) -> int:
    import torch

    from artok.data import load_dataset
    from artok.data.token_cache import cached_tokens
    from artok.generators import build_generator
    from artok.hub import from_pretrained, save_pretrained
    from artok.pipeline import preset_for
    from artok.sampling import sampler_config_for, sampler_config_to_dict
    from artok.training import train_generator

    tokenizer = from_pretrained(args.tokenizer, args.device)
    train = load_dataset(args.dataset, "train")
    preset = preset_for(train)
    options = dict(preset.generator)
    for key, field in (("dim", "dim"), ("depth", "depth"), ("heads", "num_heads")):
        if getattr(args, key) is not None:
            options[field] = getattr(args, key)
    if args.generator_options:
        try:
            options.update(json.loads(args.generator_options))
        except json.JSONDecodeError as error:
            raise ValueError(f"--generator-options is not valid JSON: {error}") from None
    tokens = cached_tokens(tokenizer, train, device=args.device, progress=not args.no_progress)
    torch.manual_seed(args.seed)
    generator = build_generator(args.generator, tokenizer, train.num_classes, tokens=tokens, **options)
    train_config = replace(preset.generator_train, device=args.device, seed=args.seed, progress=not args.no_progress)
    for field in ("steps", "batch_size", "lr"):
        if getattr(args, field) is not None:
            train_config = replace(train_config, **{field: getattr(args, field)})
    result = train_generator(generator, tokens, train.labels, train_config, out_dir=args.out, resume=args.resume)
    overrides = {key: getattr(args, key, None) for key in
                 ("cfg_scale", "cfg_schedule", "temperature", "top_k", "top_p", "iterations", "method", "final_noise")}
    overrides["steps"] = args.sampling_steps
    overrides["cfg_scale"] = preset.sampler.cfg_scale if args.cfg_scale is None else args.cfg_scale
    stored = preset.sampler.to_dict() if args.generator == "raster" else None
    sampler = sampler_config_for(result.final_model, stored, overrides)
    save_pretrained(result.final_model, args.out, extra={
        "sampling": sampler_config_to_dict(sampler), "tokenizer": str(Path(args.tokenizer).resolve()),
        "dataset": args.dataset, "class_names": train.class_names, "generator": args.generator})
    print(f"saved {args.out} (final loss {result.history[-1]['loss']:.4f})")
    return 0


def _parse_labels(text: str | None, num_classes: int):
    import torch

    if text is None:
        return torch.arange(num_classes)
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated integers, got {text!r}") from None
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad or not labels:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {text!r}")
    return torch.tensor(labels)


def cmd_sample(args) -> int:
    from artok.evaluation import save_image_grid
    from artok.pipeline import load_pair, sample_images

    generator, tokenizer = load_pair(args.generator, args.tokenizer, args.device)
    labels = _parse_labels(args.labels, generator.config.num_classes).repeat_interleave(args.per_label)
    sampler, draft = _sampling(args, generator)
    stats = []
    images = sample_images(generator, tokenizer, labels, sampler, seed=args.seed, draft=draft,
                           draft_length=args.draft_length, stats=stats)
    save_image_grid(args.out, images, nrow=args.per_label, scale=4)
    print(f"wrote {len(labels)} samples to {args.out}")
    if stats:
        print(f"speculative: {sum(s.mean_accepted for s in stats) / len(stats):.2f} per target pass, "
              f"acceptance {sum(s.acceptance_rate for s in stats) / len(stats):.3f}")
    return 0


def cmd_eval(args) -> int:
    from artok.data import load_dataset
    from artok.hub import from_pretrained
    from artok.pipeline import evaluate_samples, evaluate_tokenizer, load_pair, sample_images

    if not args.tokenizer and not args.generator:
        raise ValueError("give --tokenizer and/or --generator")
    generator = None
    if args.generator:
        generator, tokenizer = load_pair(args.generator, args.tokenizer, args.device)
    else:
        tokenizer = from_pretrained(args.tokenizer, args.device)
    recorded = (generator.extra if generator is not None else tokenizer.extra).get("dataset")
    dataset = args.dataset or recorded
    if dataset is None:
        raise ValueError("the model does not record its dataset; pass --dataset")
    test = load_dataset(dataset, "test")
    metrics = {f"tokenizer.{k}": v for k, v in evaluate_tokenizer(tokenizer, test, device=args.device).items()}
    if generator is not None:
        import torch

        train = load_dataset(dataset, "train")
        labels = torch.arange(generator.config.num_classes).repeat_interleave(args.samples_per_class)
        sampler, draft = _sampling(args, generator)
        stats = []
        images = sample_images(generator, tokenizer, labels, sampler, seed=args.seed, draft=draft,
                               draft_length=args.draft_length, stats=stats)
        result = evaluate_samples(dataset, images, labels, train, test, progress=not args.no_progress)
        metrics.update({f"generator.{k}": v for k, v in result.items()})
        if stats:
            metrics["generator.speculative_mean_accepted"] = sum(s.mean_accepted for s in stats) / len(stats)
            metrics["generator.speculative_acceptance_rate"] = sum(s.acceptance_rate for s in stats) / len(stats)
    text = json.dumps(metrics, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "train-tokenizer": cmd_train_tokenizer,
    "train-generator": cmd_train_generator,
    "sample": cmd_sample,
    "eval": cmd_eval,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from artok.errors import USER_ERRORS

    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"artok: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artok: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
