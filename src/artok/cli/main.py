"""``artok`` command line: thin wrappers that parse arguments, call the library and print.

Every error a user can fix (bad paths, malformed model folders, bad configs or options,
incompatible models, a device that is not there) is printed as one line (``artok: error: ...``)
with exit status 2 before any work starts, never as a traceback (``--debug`` shows it); warnings
print as ``artok: warning: ...``; Ctrl-C / SIGTERM during training writes a checkpoint first.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from artok.cli.common import (
    OneLineParser,
    add_checkpointing,
    add_common,
    check_device,
    check_output_dir,
    check_output_file,
    nonnegative_float,
    positive_float,
    positive_int,
    probability,
    show_warning,
)
from artok.cli.train import (
    add_generator_parser,
    add_tokenizer_parser,
    cmd_train_generator,
    cmd_train_tokenizer,
    sampling_overrides,
)

EPILOG = ("Run 'artok <command> --help' for the options of a command, 'artok options KIND' for the fields of a "
          "quantizer or generator kind. Any command takes --config FILE (JSON or YAML of its options).")


def _add_sampling(parser: argparse.ArgumentParser, speculative: bool = True) -> None:
    group = parser.add_argument_group("sampling (defaults: the values stored with the generator)")
    group.add_argument("--cfg-scale", type=nonnegative_float, help="classifier-free guidance scale (1 = off)")
    group.add_argument("--cfg-schedule", choices=("constant", "linear"), help="guidance schedule over the sequence")
    group.add_argument("--temperature", type=positive_float, help="softmax temperature (> 0)")
    group.add_argument("--top-k", type=int, help="keep the k most likely tokens (0 = all)")
    group.add_argument("--top-p", type=probability, help="nucleus sampling mass in (0, 1] (1 = off)")
    group.add_argument("--iterations", type=positive_int, help="decoding iterations (maskgit, mar)")
    group.add_argument("--sampling-steps", type=positive_int, help="diffusion / flow steps per token (mar, next-x)")
    group.add_argument("--method", choices=("auto", "ddpm", "euler", "euler-maruyama"),
                       help="continuous-head sampler (mar, next-x; auto: ddpm for diffusion, euler for flow heads)")
    group.add_argument("--final-noise", type=nonnegative_float,
                       help="std of noise on the head sampler's last step (mar; > 0 is needed by --draft)")
    if not speculative:
        return
    group.add_argument("--draft", help="saved smaller generator of the same kind and tokenizer: exact speculative "
                                       "sampling (raster: tokens, mar: iterations per target pass)")
    group.add_argument("--draft-length", type=positive_int, default=4,
                       help="tokens (raster) or MAR iterations drafted per target pass (default: 4)")


def _sampling(args, generator):
    """The sampler config (stored defaults + command-line overrides) and the optional draft."""
    from artok.zoo import from_pretrained, sampler_config_for

    if getattr(args, "top_k", None) is not None and args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
    stored = generator.extra.get("sampling")
    sampler = sampler_config_for(generator, stored if isinstance(stored, dict) else None, sampling_overrides(args))
    draft = from_pretrained(args.draft, args.device, role="generator").eval() if getattr(args, "draft", None) else None
    return sampler, draft


def build_parser() -> argparse.ArgumentParser:
    from artok import __version__

    parser = OneLineParser(
        prog="artok",
        description="artok: image tokenizers, autoregressive generators, fast samplers and evaluation.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"artok {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    demo = sub.add_parser(
        "demo",
        help="train a tokenizer and a class-conditional generator, sample, and write an HTML report",
        description="Train a VQ tokenizer and a LlamaGen-style class-conditional generator on a built-in dataset, "
        "sample a grid with one row per class, score it with the dataset's reference classifier, and write "
        "OUT/report.html and OUT/metrics.json.",
    )
    demo.add_argument("--dataset", default="digits", help="digits (default), mnist, fashion-mnist or folder:PATH")
    demo.add_argument("--image-size", type=positive_int, help="square image side (default: the dataset's own)")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--steps", type=positive_int, help="generator training steps (default: the dataset preset)")
    demo.add_argument("--tokenizer-steps", type=positive_int, help="tokenizer training steps (default: the dataset preset)")
    demo.add_argument("--samples-per-class", type=positive_int, help="samples per class for the evaluation (default: 50)")
    demo.add_argument("--cfg-scale", type=nonnegative_float,
                      help="classifier-free guidance scale for sampling (default: the preset, 2 on digits)")
    demo.add_argument("--limit", type=positive_int, help="use at most this many training images")
    add_checkpointing(demo)
    add_common(demo)

    add_tokenizer_parser(sub)
    add_generator_parser(sub, _add_sampling)

    sample = sub.add_parser("sample", help="sample class-conditional images to a PNG grid",
                            description="Sample images from a saved generator and write a PNG grid (one row per label).")
    sample.add_argument("--generator", required=True, help="saved generator folder")
    sample.add_argument("--tokenizer", help="saved tokenizer folder (default: the one recorded with the generator)")
    sample.add_argument("--labels", default=None, help="comma-separated class indices (default: every class)")
    sample.add_argument("--per-label", type=positive_int, default=8, help="images per label (default: 8)")
    sample.add_argument("--out", default="samples.png", help="output PNG (default: samples.png)")
    _add_sampling(sample)
    add_common(sample)

    ev = sub.add_parser("eval", help="evaluate a tokenizer and/or a generator, write metrics JSON",
                        description="Reconstruction metrics of a tokenizer on a dataset's test split; with --generator, class "
                        "accuracy and Frechet distance of its samples under the dataset's reference classifier (digits, "
                        "mnist, fashion-mnist only: other datasets get tokenizer metrics and a note saying so).")
    ev.add_argument("--tokenizer", help="saved tokenizer folder (default: the generator's)")
    ev.add_argument("--generator", help="saved generator folder")
    ev.add_argument("--dataset", default=None, help="dataset (default: the one recorded with the model)")
    ev.add_argument("--image-size", type=positive_int, help="square image side (default: the tokenizer's)")
    ev.add_argument("--samples-per-class", type=positive_int, default=50, help="samples per class (default: 50)")
    ev.add_argument("--out", default=None, help="write metrics JSON here (default: print only)")
    _add_sampling(ev)
    add_common(ev)

    # Commands that live in their own modules: each exposes add_parser(sub) and run(args).
    for module in _plugin_modules():
        name = module.add_parser(sub)
        COMMANDS[name] = module.run
    for name, command in sub.choices.items():
        command.add_argument("--config", metavar="FILE", help="JSON or YAML file of this command's options "
                             "(keys: option names; flags on the command line win)")
    parser.subcommands = sub.choices
    return parser


PLUGIN_MODULES = ("artok.cli.eval_tokenizer", "artok.cli.bench", "artok.cli.convert", "artok.cli.options", "artok.cli.app")


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
    from artok.recipes import DemoConfig, run_demo

    check_output_dir(args.out)
    metrics = run_demo(DemoConfig(
        dataset=args.dataset, out=args.out, device=args.device, steps=args.steps, tokenizer_steps=args.tokenizer_steps,
        samples_per_class=args.samples_per_class, cfg_scale=args.cfg_scale, seed=args.seed, resume=args.resume,
        progress=not args.no_progress, limit=args.limit, image_size=args.image_size,
        checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes, keep=args.keep,
    ))
    keys = ["tokenizer.psnr", "tokenizer.ssim", "tokenizer.codebook_usage", "generator.class_accuracy", "generator.fd",
            "generator.fd_reference", "seconds_total"]
    for key in keys:
        if key in metrics:
            print(f"{key:28s} {metrics[key]:.4f}")
    print(f"report: {Path(args.out) / 'report.html'}")
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


def _sample(generator, tokenizer, labels, sampler, args, draft, stats):
    """Images through a `Pipeline`: on CUDA with the kind's fast engine (bf16, compiled), said on stderr."""
    from artok.pipeline import Pipeline

    pipeline = Pipeline(generator, tokenizer, sampler, engine="auto")
    images = pipeline(labels, seed=args.seed, draft=draft, draft_length=args.draft_length, stats=stats)
    if pipeline.engine_used:
        print(f"artok: sampled with the {pipeline.engine_used}: bf16 compiled copy of the weights", file=sys.stderr)
    return images


def cmd_sample(args) -> int:
    from artok.evaluation import save_image_grid
    from artok.pipeline import load_pair

    check_output_file(args.out)
    generator, tokenizer = load_pair(args.generator, args.tokenizer, args.device)
    labels = _parse_labels(args.labels, generator.config.num_classes).repeat_interleave(args.per_label)
    sampler, draft = _sampling(args, generator)
    stats = []
    images = _sample(generator, tokenizer, labels, sampler, args, draft, stats)
    save_image_grid(args.out, images, nrow=args.per_label, scale=4)
    print(f"wrote {len(labels)} samples to {args.out}")
    if stats:
        print(f"speculative: {sum(s.mean_accepted for s in stats) / len(stats):.2f} per target pass, "
              f"acceptance {sum(s.acceptance_rate for s in stats) / len(stats):.3f}")
    return 0


def cmd_eval(args) -> int:
    from artok.data import load_dataset
    from artok.pipeline import load_pair
    from artok.recipes import evaluate_samples, evaluate_tokenizer
    from artok.zoo import from_pretrained

    if not args.tokenizer and not args.generator:
        raise ValueError("give --tokenizer and/or --generator")
    if args.out:
        check_output_file(args.out)
    generator = None
    if args.generator:
        generator, tokenizer = load_pair(args.generator, args.tokenizer, args.device)
    else:
        tokenizer = from_pretrained(args.tokenizer, args.device, role="tokenizer")
    recorded = (generator.extra if generator is not None else tokenizer.extra).get("dataset")
    dataset = args.dataset or recorded
    if not isinstance(dataset, str):
        raise ValueError("the model does not record its dataset; pass --dataset")
    image_size = args.image_size or getattr(tokenizer.config, "image_size", None)
    test = load_dataset(dataset, "test", image_size=image_size)
    metrics = {f"tokenizer.{k}": v for k, v in evaluate_tokenizer(tokenizer, test, device=args.device).items()}
    if generator is not None:
        import torch

        train = load_dataset(dataset, "train", image_size=image_size)
        labels = torch.arange(generator.config.num_classes).repeat_interleave(args.samples_per_class)
        sampler, draft = _sampling(args, generator)
        stats = []
        images = _sample(generator, tokenizer, labels, sampler, args, draft, stats)
        result = evaluate_samples(dataset, images, labels, train, test, progress=not args.no_progress)
        if not result:
            warnings.warn(f"no class accuracy or FD for {dataset}: a reference classifier exists only for "
                          "digits, mnist and fashion-mnist", UserWarning, stacklevel=1)
        metrics.update({f"generator.{k}": v for k, v in result.items()})
        if stats:
            metrics["generator.speculative_mean_accepted"] = sum(s.mean_accepted for s in stats) / len(stats)
            metrics["generator.speculative_acceptance_rate"] = sum(s.acceptance_rate for s in stats) / len(stats)
    from artok.hub import atomic_write_text
    from artok.provenance import run_metadata

    metrics["run"] = run_metadata(args.seed, args.device)
    text = json.dumps(metrics, indent=2)
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "train-tokenizer": cmd_train_tokenizer,
    "train-generator": cmd_train_generator,
    "sample": cmd_sample,
    "eval": cmd_eval,
}


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; with ``--config FILE`` its options first become the command's defaults (so
    flags given on the command line win, and options the file gives are no longer required)."""
    from artok.cli.common import apply_config_file

    words = sys.argv[1:] if argv is None else list(argv)
    command = next((word for word in words if word in parser.subcommands), None)
    config = None
    for index, word in enumerate(words):
        if word == "--config" and index + 1 < len(words):
            config = words[index + 1]
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
    if command is not None and config is not None:
        apply_config_file(parser.subcommands[command], config)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from artok.errors import USER_ERRORS
    from artok.training.loop import TrainingInterrupted

    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    previous = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        args = _parse(parser, argv)
        if args.command is None:
            parser.print_help()
            return 0
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        return COMMANDS[args.command](args)
    except TrainingInterrupted as interrupt:
        print(f"artok: interrupted: {interrupt}", file=sys.stderr)
        return 143 if str(interrupt).startswith("SIGTERM") else 130
    except KeyboardInterrupt:
        print("artok: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"artok: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a bug in artok: one line and how to see more
        if debug:
            raise
        print(f"artok: error: internal error ({type(error).__name__}: {_one_line(error)[:300]}); "
              "rerun with --debug for the traceback and please report it", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if text.startswith("[Errno"):  # OSError: "[Errno 2] No such file or directory: 'x'"
        text = text.split("] ", 1)[-1]
    return text or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
