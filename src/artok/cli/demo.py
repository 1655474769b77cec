"""``artok demo``: the whole pipeline on a built-in dataset (`artok.recipes.run_demo`)."""

from __future__ import annotations

from pathlib import Path

from artok.cli.common import (
    add_checkpointing,
    add_common,
    check_output_dir,
    nonnegative_float,
    positive_int,
)


def add_parser(sub) -> str:
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

    demo.set_defaults(run=cmd_demo)
    return "demo"


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

