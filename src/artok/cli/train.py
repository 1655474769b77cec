"""``artok train-tokenizer`` and ``artok train-generator``: every option is checked (device, output
folder, option JSON against the config's fields) before the dataset is read or a step runs;
checkpoints are periodic (every 10% of the run or 10 minutes), atomic and resumable, and Ctrl-C /
SIGTERM writes one before the command exits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from artok.cli.common import (
    add_checkpointing,
    add_common,
    check_output_dir,
    json_object,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    sampling_overrides,
)

QUANTIZER_CHOICES = ("vq", "fsq", "lfq", "bsq", "rvq", "msvq", "kl", "continuous")
CODEBOOK_QUANTIZERS = ("vq", "rvq", "msvq")  # need a codebook size: filled from the dataset preset


def add_tokenizer_parser(sub) -> None:
    tok = sub.add_parser(
        "train-tokenizer",
        help="train an image tokenizer",
        description="Train a tokenizer (a CNN with a 2D token grid, or a ViT with 1D latent tokens) with any quantizer on a "
        "dataset, optionally with adversarial and perceptual losses, and save it (config.json + model.safetensors). "
        "The fields --quantizer-options accepts are listed by 'artok options QUANTIZER'.",
    )
    tok.add_argument("--dataset", default="digits", help="digits, mnist, fashion-mnist, photos or folder:PATH (default: digits)")
    tok.add_argument("--image-size", type=positive_int, help="square image side (default: the dataset's own; a "
                     "folder's most common size)")
    tok.add_argument("--out", required=True, help="output model folder")
    tok.add_argument("--quantizer", default="vq", choices=QUANTIZER_CHOICES, help="quantizer kind (default: vq)")
    tok.add_argument("--quantizer-options", default=None,
                     help='JSON of quantizer config fields, e.g. \'{"codebook_size": 512}\' (see artok options vq)')
    tok.add_argument("--steps", type=positive_int, help="training steps (default: the dataset preset)")
    tok.add_argument("--batch-size", type=positive_int, help="images per step (default: the dataset preset)")
    tok.add_argument("--lr", type=positive_float, help="peak learning rate (default: the dataset preset)")
    tok.add_argument("--base-channels", type=positive_int, help="encoder width (default: the dataset preset)")
    tok.add_argument("--arch", choices=("cnn", "vit1d", "autoencoder"), default="cnn",
                     help="cnn: 2D token grid (default); vit1d: TiTok-style 1D latent tokens with nested dropout; "
                     "autoencoder: the taming/LDM conv autoencoder (LlamaGen VQ, MAR KL; see 'artok options autoencoder')")
    tok.add_argument("--num-tokens", type=positive_int, help="vit1d: number of 1D latent tokens (default: 32)")
    tok.add_argument("--dim", type=positive_int, help="vit1d: transformer width (default: 128)")
    tok.add_argument("--gan-weight", type=nonnegative_float, default=0.0,
                     help="adversarial (PatchGAN hinge) weight; 0 = off (default)")
    tok.add_argument("--gan-start", type=nonnegative_int, default=0, help="step at which the adversarial phase starts (default: 0)")
    tok.add_argument("--lecam-weight", type=nonnegative_float, default=0.0, help="LeCam regularisation of the discriminator (default: 0)")
    tok.add_argument("--perceptual-weights", help="path to VGG16 weights for an LPIPS-style loss (never downloaded)")
    tok.add_argument("--perceptual-weight", type=nonnegative_float, default=0.0,
                     help="weight of the perceptual loss (default: 0 = off)")
    add_checkpointing(tok)
    add_common(tok)


def add_generator_parser(sub, add_sampling) -> None:
    from artok.zoo import KINDS

    gen = sub.add_parser(
        "train-generator",
        help="train a class-conditional generator on a tokenizer's tokens",
        description="Encode a dataset once with a saved tokenizer (cached under $ARTOK_CACHE/tokens) and train a "
        "generator of the zoo on the tokens: raster (LlamaGen), next-scale (VAR, msvq tokens), maskgit, mar (KL "
        "tokens), next-x (xAR, KL tokens), dimwise (TokenBridge, PTQ tokens), bitwise (Infinity head, LFQ/BSQ tokens). "
        "The fields --generator-options accepts are listed by 'artok options KIND'.",
    )
    gen.add_argument("--tokenizer", required=True, help="saved tokenizer folder")
    gen.add_argument("--generator", default="raster", choices=tuple(KINDS),
                     help="generator kind, a row of artok.zoo.KINDS (default: raster)")
    gen.add_argument("--generator-options", default=None,
                     help='JSON of extra generator config fields, e.g. \'{"unit": "cell", "cell_size": 2}\'')
    gen.add_argument("--dataset", default=None, help="dataset to train on (default: the one the tokenizer was trained on)")
    gen.add_argument("--image-size", type=positive_int, help="square image side (default: the tokenizer's)")
    gen.add_argument("--out", required=True, help="output model folder")
    gen.add_argument("--steps", type=positive_int, help="training steps (default: the dataset preset)")
    gen.add_argument("--batch-size", type=positive_int, help="sequences per step")
    gen.add_argument("--lr", type=positive_float, help="peak learning rate")
    gen.add_argument("--dim", type=positive_int, help="transformer width")
    gen.add_argument("--depth", type=positive_int, help="transformer layers")
    gen.add_argument("--heads", type=positive_int, help="attention heads")
    add_checkpointing(gen)
    add_sampling(gen, speculative=False)
    add_common(gen)


def _train_config(preset_train, args):
    from artok.recipes import checkpoint_schedule

    config = replace(preset_train, device=args.device, seed=args.seed, progress=not args.no_progress)
    for field in ("steps", "batch_size", "lr"):
        if getattr(args, field) is not None:
            config = replace(config, **{field: getattr(args, field)})
    return checkpoint_schedule(config, args.checkpoint_every, args.checkpoint_minutes, args.keep)


def _quantizer_options(args, preset) -> dict:
    options = json_object(args.quantizer_options, "--quantizer-options")
    if "dim" in options:
        raise ValueError("--quantizer-options: dim is the tokenizer's latent width, set by the tokenizer; leave it out")
    defaults = {}
    if args.quantizer == "vq":
        defaults = dict(preset.tokenizer.quantizer_options)
    elif args.quantizer in CODEBOOK_QUANTIZERS:
        defaults = {"codebook_size": preset.tokenizer.quantizer_options["codebook_size"]}
    return {**defaults, **options}


def _tokenizer_config(args, train, preset, options):
    from artok.tokenizers import ViT1DTokenizerConfig
    from artok.typed_config import build_config

    if args.arch == "vit1d":
        size = train.image_size[0]
        patch = next(p for p in ((4, 2, 1) if size <= 64 else (16, 8, 4, 2, 1)) if size % p == 0)
        sizes = {key: value for key, value in (("num_latent_tokens", args.num_tokens), ("dim", args.dim)) if value}
        return ViT1DTokenizerConfig(in_channels=train.channels, image_size=size, patch_size=patch,
                                    quantizer=args.quantizer, quantizer_options=options, **sizes)
    if args.num_tokens or args.dim:
        raise ValueError("--num-tokens and --dim apply to --arch vit1d only")
    config = replace(preset.tokenizer, quantizer=args.quantizer, quantizer_options=options)
    if args.base_channels:
        config = replace(config, base_channels=args.base_channels)
    if args.arch == "autoencoder":
        return _autoencoder_config(config)
    return build_config(type(config), dict(vars(config)), "tokenizer options")


def _autoencoder_config(cnn):
    """The taming/LDM autoencoder at the preset's sizes: attention at the lowest level, the widest GroupNorm."""
    from artok.tokenizers import AutoencoderConfig

    widths = [cnn.base_channels * m for m in cnn.channel_multipliers]
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))
    last = (len(widths) - 1,)
    return AutoencoderConfig(in_channels=cnn.in_channels, image_size=cnn.image_size, base_channels=cnn.base_channels,
                             channel_multipliers=cnn.channel_multipliers, num_res_blocks=cnn.num_res_blocks,
                             encoder_attention_levels=last, decoder_attention_levels=last, z_channels=cnn.latent_dim,
                             latent_dim=cnn.latent_dim, norm_groups=groups, quantizer=cnn.quantizer,
                             quantizer_options=cnn.quantizer_options)


def cmd_train_tokenizer(args) -> int:
    import torch

    from artok.data import load_dataset
    from artok.hub import save_pretrained
    from artok.losses import GANConfig
    from artok.recipes import evaluate_tokenizer, preset_for
    from artok.tokenizers import AutoencoderTokenizer, CNNTokenizer, ViT1DTokenizer
    from artok.training import train_tokenizer
    from artok.training.tokenizer_trainer import TokenizerLossConfig

    check_output_dir(args.out)
    if args.perceptual_weight > 0 and args.perceptual_weights and not Path(args.perceptual_weights).is_file():
        raise FileNotFoundError(f"--perceptual-weights {args.perceptual_weights} does not exist")
    train = load_dataset(args.dataset, "train", image_size=args.image_size)
    preset = preset_for(train)
    config = _tokenizer_config(args, train, preset, _quantizer_options(args, preset))
    train_config = _train_config(preset.tokenizer_train, args)
    adversarial = None
    if args.gan_weight > 0:
        layers = 2 if min(train.image_size) <= 32 else 3
        adversarial = GANConfig(weight=args.gan_weight, start_step=args.gan_start, lecam_weight=args.lecam_weight,
                                discriminator_layers=layers)
    losses = TokenizerLossConfig(perceptual_weight=args.perceptual_weight, perceptual_weights=args.perceptual_weights,
                                 adversarial=adversarial)
    torch.manual_seed(args.seed)
    tokenizer = {"vit1d": ViT1DTokenizer, "autoencoder": AutoencoderTokenizer}.get(args.arch, CNNTokenizer)(config)
    train_tokenizer(tokenizer, train, train_config, out_dir=args.out, resume=args.resume, losses=losses)
    save_pretrained(tokenizer, args.out, extra={"dataset": args.dataset, "image_size": list(train.image_size)})
    metrics = evaluate_tokenizer(tokenizer, load_dataset(args.dataset, "test", image_size=args.image_size),
                                 device=args.device)
    print(json.dumps(metrics, indent=2))
    return 0


def _generator_options(args, preset) -> dict:
    options = dict(preset.generator)
    for key, field in (("dim", "dim"), ("depth", "depth"), ("heads", "num_heads")):
        if getattr(args, key) is not None:
            options[field] = getattr(args, key)
    options.update(json_object(args.generator_options, "--generator-options"))
    return options


def _generator_dataset(args, tokenizer) -> tuple[str, int | None]:
    """The dataset (default: the tokenizer's) and image size (default: the tokenizer's input size)."""
    dataset = args.dataset or tokenizer.extra.get("dataset") or "digits"
    size = args.image_size or getattr(tokenizer.config, "image_size", None)
    return dataset, size


def cmd_train_generator(args) -> int:
    import torch

    from artok.data import load_dataset
    from artok.data.token_cache import cached_tokens
    from artok.hub import save_pretrained
    from artok.pipeline import tokenizer_reference
    from artok.recipes import preset_for
    from artok.sampling import sampler_config_to_dict
    from artok.training import train_generator
    from artok.zoo import build_generator, from_pretrained, sampler_config_for

    check_output_dir(args.out)
    tokenizer = from_pretrained(args.tokenizer, args.device, role="tokenizer")
    dataset, image_size = _generator_dataset(args, tokenizer)
    train = load_dataset(dataset, "train", image_size=image_size)
    preset = preset_for(train)
    options = _generator_options(args, preset)
    overrides = sampling_overrides(args)
    overrides["cfg_scale"] = preset.sampler.cfg_scale if args.cfg_scale is None else args.cfg_scale
    torch.manual_seed(args.seed)
    generator = build_generator(args.generator, tokenizer, train.num_classes, tokens=None, **options)
    stored = preset.sampler.to_dict() if args.generator == "raster" else None
    sampler_config_for(generator, stored, overrides)  # sampling options are checked before training, too
    tokens = cached_tokens(tokenizer, train, device=args.device, progress=not args.no_progress)
    torch.manual_seed(args.seed)
    generator = build_generator(args.generator, tokenizer, train.num_classes, tokens=tokens, **options)
    result = train_generator(generator, tokens, train.labels, _train_config(preset.generator_train, args),
                             out_dir=args.out, resume=args.resume)
    sampler = sampler_config_for(result.final_model, stored, overrides)
    save_pretrained(result.final_model, args.out, extra={
        "sampling": sampler_config_to_dict(sampler), "tokenizer": tokenizer_reference(args.tokenizer, args.out),
        "dataset": dataset, "class_names": train.class_names, "generator": args.generator})
    losses = [record["loss"] for record in result.history if "loss" in record]
    print(f"saved {args.out}" + (f" (final loss {losses[-1]:.4f})" if losses else ""))
    return 0
