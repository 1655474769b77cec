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
    add_parallel,
    check_output_dir,
    json_object,
    nonnegative_float,
    nonnegative_int,
    parallel_config,
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
    tok.add_argument("--dataset", default="digits",
                     help="digits, mnist, fashion-mnist, photos, folder:PATH or imagenet:ROOT (default: digits)")
    tok.add_argument("--stream", action="store_true",
                     help="read folder:PATH from disk in DataLoader workers instead of loading it into memory "
                     "(always on for imagenet:ROOT)")
    tok.add_argument("--workers", type=nonnegative_int, default=2, help="streaming: decoding processes per rank (default: 2)")
    tok.add_argument("--flip", action="store_true", help="random horizontal flips (deterministic per seed, epoch and image)")
    tok.add_argument("--image-size", type=positive_int, help="square image side (default: the dataset's own; a "
                     "folder's most common size)")
    tok.add_argument("--out", help="output model folder (required unless --dry-run)")
    tok.add_argument("--quantizer", default="vq", choices=QUANTIZER_CHOICES, help="quantizer kind (default: vq)")
    tok.add_argument("--quantizer-options", default=None,
                     help='JSON of quantizer config fields, e.g. \'{"codebook_size": 512}\' (see artok options vq)')
    tok.add_argument("--steps", type=positive_int, help="training steps (default: the dataset preset)")
    tok.add_argument("--batch-size", type=positive_int, help="images per step (default: the dataset preset)")
    tok.add_argument("--lr", type=positive_float, help="peak learning rate (default: the dataset preset)")
    tok.add_argument("--base-channels", type=positive_int, help="encoder width (default: the dataset preset)")
    tok.add_argument("--arch", choices=("cnn", "vit1d", "autoencoder", "dar"), default="cnn",
                     help="cnn: 2D token grid (default); vit1d: TiTok-style 1D latent tokens with nested dropout; "
                     "autoencoder: the taming/LDM conv autoencoder (LlamaGen VQ, MAR KL; see 'artok options autoencoder'); "
                     "dar: D-AR's sequential diffusion tokenizer (1D token groups condition a pixel flow, coarse to fine)")
    tok.add_argument("--num-tokens", type=positive_int, help="vit1d, dar: number of 1D latent tokens (default: 32)")
    tok.add_argument("--dim", type=positive_int, help="vit1d, dar: transformer width (default: 128)")
    tok.add_argument("--gan-weight", type=nonnegative_float, default=0.0,
                     help="adversarial (PatchGAN hinge) weight; 0 = off (default)")
    tok.add_argument("--gan-start", type=nonnegative_int, default=0, help="step at which the adversarial phase starts (default: 0)")
    tok.add_argument("--lecam-weight", type=nonnegative_float, default=0.0, help="LeCam regularisation of the discriminator (default: 0)")
    tok.add_argument("--perceptual-weights", help="path to VGG16 weights for an LPIPS-style loss (never downloaded)")
    tok.add_argument("--perceptual-weight", type=nonnegative_float, default=0.0,
                     help="weight of the perceptual loss (default: 0 = off)")
    add_checkpointing(tok)
    add_parallel(tok)
    add_dry_run(tok, "tokenizer")
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
    gen.add_argument("--tokenizer", help="saved tokenizer folder (required unless --dry-run)")
    gen.add_argument("--generator", default="raster", choices=tuple(KINDS),
                     help="generator kind, a row of artok.zoo.KINDS (default: raster)")
    gen.add_argument("--generator-options", default=None,
                     help='JSON of extra generator config fields, e.g. \'{"unit": "cell", "cell_size": 2}\'')
    gen.add_argument("--dataset", default=None, help="dataset to train on (default: the one the tokenizer was trained on)")
    gen.add_argument("--tokens", default=None,
                     help="a sharded token cache written by 'artok encode-dataset' to train on (instead of --dataset)")
    gen.add_argument("--image-size", type=positive_int, help="square image side (default: the tokenizer's)")
    gen.add_argument("--out", help="output model folder (required unless --dry-run)")
    gen.add_argument("--steps", type=positive_int, help="training steps (default: the dataset preset)")
    gen.add_argument("--batch-size", type=positive_int, help="sequences per step")
    gen.add_argument("--lr", type=positive_float, help="peak learning rate")
    gen.add_argument("--dim", type=positive_int, help="transformer width")
    gen.add_argument("--depth", type=positive_int, help="transformer layers")
    gen.add_argument("--heads", type=positive_int, help="attention heads")
    add_checkpointing(gen)
    add_parallel(gen)
    add_dry_run(gen, "generator")
    add_sampling(gen, speculative=False)
    add_common(gen)


def add_dry_run(parser, role: str) -> None:
    from artok.training.dry_run import TRAIN_PRESETS

    names = [name for name, preset in TRAIN_PRESETS.items() if preset.role == role]
    group = parser.add_argument_group("planning a published shape (--preset NAME --dry-run)")
    group.add_argument("--preset", choices=names, help="a published training shape: " + ", ".join(names))
    group.add_argument("--dry-run", action="store_true",
                       help="report parameters and memory per GPU of --preset (built on the meta device) for "
                       "--world-size GPUs at the published global batch (or --batch-size per GPU) under --parallel, "
                       "then run 2 steps at batch 1 on synthetic data on --device; trains nothing")
    group.add_argument("--world-size", type=positive_int, default=8, help="--dry-run: GPUs to plan for (default: 8)")
    group.add_argument("--dry-run-steps", type=nonnegative_int, default=2,
                       help="--dry-run: synthetic steps on --device (default: 2; 0 = only the estimate)")


def _require(args, *names: str) -> None:
    missing = [f"--{name}" for name in names if getattr(args, name) is None]
    if missing:
        raise ValueError(f"the following arguments are required: {', '.join(missing)} (or plan a shape with "
                         "--preset NAME --dry-run)")


def cmd_dry_run(args) -> int:
    from artok.training.dry_run import estimate, get_train_preset, trial_steps

    if args.preset is None:
        raise ValueError("--dry-run needs --preset NAME (see --help for the names)")
    preset = get_train_preset(args.preset)
    report = {"estimate": {mode: estimate(preset, args.world_size, args.batch_size, parallel=mode,
                                          activation_checkpointing=args.activation_checkpointing)
                           for mode in ("ddp", "fsdp")}}
    if args.dry_run_steps:
        report["trial"] = trial_steps(preset, args.device, args.dry_run_steps)
    print(json.dumps(report, indent=2))
    return 0


def _train_config(preset_train, args, env):
    from artok.recipes import checkpoint_schedule

    config = replace(preset_train, device=env.device, seed=args.seed, progress=not args.no_progress and env.is_main,
                     grad_accum=args.grad_accum)
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
    if args.arch == "dar":
        return _dar_config(args, train, options)
    if args.num_tokens or args.dim:
        raise ValueError("--num-tokens and --dim apply to --arch vit1d and dar only")
    config = replace(preset.tokenizer, quantizer=args.quantizer, quantizer_options=options)
    if args.base_channels:
        config = replace(config, base_channels=args.base_channels)
    if args.arch == "autoencoder":
        return _autoencoder_config(config)
    return build_config(type(config), dict(vars(config)), "tokenizer options")


def _dar_config(args, train, options):
    """D-AR's tokenizer at the image size: patches of 4 (or the largest of 2, 1 that divides it)."""
    from artok.tokenizers import DARTokenizerConfig

    size = train.image_size[0]
    patch = next(p for p in ((4, 2, 1) if size <= 64 else (16, 8, 4, 2, 1)) if size % p == 0)
    sizes = {key: value for key, value in (("num_latent_tokens", args.num_tokens), ("dim", args.dim)) if value}
    return DARTokenizerConfig(in_channels=train.channels, image_size=size, patch_size=patch, quantizer=args.quantizer,
                              quantizer_options=options, **sizes)


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


def _training_images(args, env, train_config):
    """The training images: in memory (built-in sets, small folders) or streamed from disk by
    DataLoader workers (``--stream``, ``imagenet:``); and what the preset is chosen by."""
    from types import SimpleNamespace

    from artok.data import load_dataset
    from artok.data.step_batches import StreamingBatches
    from artok.data.stream import is_stream_name, open_stream

    if not (args.stream or args.dataset.startswith("imagenet:")):
        train = load_dataset(args.dataset, "train", image_size=args.image_size)
        return train, train
    if not is_stream_name(args.dataset):
        raise ValueError(f"--stream reads folder:PATH or imagenet:ROOT, not {args.dataset!r}")
    size = args.image_size or 256
    images = open_stream(args.dataset, "train", image_size=size, flip=args.flip, seed=args.seed)
    if train_config is None:
        return None, SimpleNamespace(channels=images.channels, image_size=(size, size), name=args.dataset)
    source = StreamingBatches(images, train_config.batch_size, env.shard(train_config.grad_accum), seed=args.seed,
                              workers=args.workers, device=env.device)
    return source, SimpleNamespace(channels=images.channels, image_size=(size, size), name=args.dataset)


def cmd_train_tokenizer(args) -> int:
    import torch

    if args.dry_run or args.preset is not None:
        return cmd_dry_run(args)
    _require(args, "out")

    from artok.data import load_dataset
    from artok.data.step_batches import sum_across_ranks
    from artok.distributed import distributed_run
    from artok.hub import save_pretrained
    from artok.losses import GANConfig
    from artok.recipes import evaluate_tokenizer, preset_for
    from artok.tokenizers import AutoencoderTokenizer, CNNTokenizer, DARTokenizer, ViT1DTokenizer
    from artok.training import train_tokenizer
    from artok.training.tokenizer_trainer import TokenizerLossConfig

    check_output_dir(args.out)
    if args.perceptual_weight > 0 and args.perceptual_weights and not Path(args.perceptual_weights).is_file():
        raise FileNotFoundError(f"--perceptual-weights {args.perceptual_weights} does not exist")
    with distributed_run(args.device) as env:
        train, shape = _training_images(args, env, None)
        preset = preset_for(shape)
        config = _tokenizer_config(args, shape, preset, _quantizer_options(args, preset))
        train_config = _train_config(preset.tokenizer_train, args, env)
        if train is None:  # streamed: the loader needs the batch size and the accumulation
            train, _ = _training_images(args, env, train_config)
        adversarial = None
        if args.gan_weight > 0:
            layers = 2 if min(shape.image_size) <= 32 else 3
            adversarial = GANConfig(weight=args.gan_weight, start_step=args.gan_start, lecam_weight=args.lecam_weight,
                                    discriminator_layers=layers)
        losses = TokenizerLossConfig(perceptual_weight=args.perceptual_weight,
                                     perceptual_weights=args.perceptual_weights, adversarial=adversarial)
        torch.manual_seed(args.seed)  # every rank builds the same initial weights
        tokenizer = {"vit1d": ViT1DTokenizer, "autoencoder": AutoencoderTokenizer,
                     "dar": DARTokenizer}.get(args.arch, CNNTokenizer)(config)
        result = train_tokenizer(tokenizer, train, train_config, out_dir=args.out, resume=args.resume, losses=losses,
                                 parallel=parallel_config(args), env=env)
        skipped = sum_across_ranks(getattr(train, "skipped", 0)) if hasattr(train, "micro_batches") else 0
        if hasattr(train, "close"):
            train.close()
    # The process group is gone: rank 0 saves and evaluates alone (no collective can wait on the others).
    if not env.is_main:
        return 0
    final = result.model  # the trained weights (under FSDP2: gathered into a whole model)
    save_pretrained(final, args.out, extra={"dataset": args.dataset, "image_size": list(shape.image_size)})
    if skipped:
        print(f"artok: warning: {skipped} unreadable files were skipped (all ranks)")
    if hasattr(train, "micro_batches"):
        print(f"saved {args.out} (streamed training; evaluate with 'artok eval --tokenizer {args.out}')")
        return 0
    metrics = evaluate_tokenizer(final, load_dataset(args.dataset, "test", image_size=args.image_size), device=env.device)
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


def _generator_data(args, tokenizer, env):
    """``(tokens, labels, dataset name, class names, preset shape)``: a sharded cache from
    ``artok encode-dataset`` (``--tokens``), or the dataset encoded once into the token cache
    (rank 0 encodes, the other ranks then read the cache)."""
    from types import SimpleNamespace

    from artok.data import load_dataset
    from artok.data.token_cache import cached_tokens
    from artok.data.token_shards import TokenShards
    from artok.distributed import barrier

    if args.tokens is not None:
        if args.dataset is not None:
            raise ValueError("give --tokens or --dataset, not both")
        from artok.data.token_cache import tokenizer_fingerprint

        cache = TokenShards(args.tokens)
        recorded = cache.manifest.get("tokenizer_fingerprint")
        if recorded is not None and recorded != tokenizer_fingerprint(tokenizer):
            raise ValueError(f"--tokens {args.tokens} was encoded by another tokenizer than --tokenizer "
                             f"{args.tokenizer}; give the tokenizer it was written with, or re-encode")
        class_names = list(cache.manifest.get("class_names") or [str(c) for c in range(cache.num_classes)])
        size = getattr(tokenizer.config, "image_size", 256)
        shape = SimpleNamespace(channels=getattr(tokenizer.config, "in_channels", 3), image_size=(size, size),
                                num_classes=len(class_names))
        return cache, None, cache.manifest.get("dataset", args.tokens), class_names, shape
    dataset, image_size = _generator_dataset(args, tokenizer)
    train = load_dataset(dataset, "train", image_size=image_size)
    progress = not args.no_progress and env.is_main
    if not env.is_main:
        barrier()
    tokens = cached_tokens(tokenizer, train, device=env.device, progress=progress)
    if env.is_main:
        barrier()
    return tokens, train.labels, dataset, train.class_names, train


def cmd_train_generator(args) -> int:
    import torch

    if args.dry_run or args.preset is not None:
        return cmd_dry_run(args)
    _require(args, "tokenizer", "out")

    from artok.distributed import distributed_run
    from artok.hub import save_pretrained
    from artok.pipeline import tokenizer_reference
    from artok.recipes import preset_for
    from artok.sampling import sampler_config_to_dict
    from artok.tokens import Tokens
    from artok.training import train_generator
    from artok.zoo import build_generator, from_pretrained, sampler_config_for

    check_output_dir(args.out)
    if args.tokens is not None and not Path(args.tokens).is_dir():
        raise FileNotFoundError(f"--tokens {args.tokens} is not a folder; write one with 'artok encode-dataset'")
    with distributed_run(args.device) as env:
        tokenizer = from_pretrained(args.tokenizer, env.device, role="tokenizer")
        tokens, labels, dataset, class_names, shape = _generator_data(args, tokenizer, env)
        preset = preset_for(shape)
        options = _generator_options(args, preset)
        overrides = sampling_overrides(args)
        overrides["cfg_scale"] = preset.sampler.cfg_scale if args.cfg_scale is None else args.cfg_scale
        torch.manual_seed(args.seed)
        generator = build_generator(args.generator, tokenizer, len(class_names), tokens=None, **options)
        stored = preset.sampler.to_dict() if args.generator == "raster" else None
        sampler_config_for(generator, stored, overrides)  # sampling options are checked before training, too
        sample = tokens if isinstance(tokens, Tokens) else tokens[torch.arange(min(len(tokens), 4096))]
        torch.manual_seed(args.seed)  # every rank builds the same initial weights
        generator = build_generator(args.generator, tokenizer, len(class_names), tokens=sample, **options)
        result = train_generator(generator, tokens, labels, _train_config(preset.generator_train, args, env),
                                 out_dir=args.out, resume=args.resume, parallel=parallel_config(args), env=env)
    if not env.is_main:  # the process group is gone: rank 0 saves alone
        return 0
    sampler = sampler_config_for(result.final_model, stored, overrides)
    save_pretrained(result.final_model, args.out, extra={
        "sampling": sampler_config_to_dict(sampler), "tokenizer": tokenizer_reference(args.tokenizer, args.out),
        "dataset": dataset, "class_names": class_names, "generator": args.generator})
    losses = [record["loss"] for record in result.history if "loss" in record]
    print(f"saved {args.out}" + (f" (final loss {losses[-1]:.4f})" if losses else ""))
    return 0
