"""``artok convert``: turn another project's checkpoint into an artok model folder. The formats are
the rows of `artok.convert.table.CONVERTERS`; ``artok convert --list`` prints them."""

from __future__ import annotations

from artok.cli.common import positive_float, positive_int


def _side_list(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``: positive, increasing integers (an argparse ``type=``)."""
    import argparse

    try:
        sides = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if min(sides) < 1 or list(sides) != sorted(set(sides)):
        raise argparse.ArgumentTypeError(f"expected increasing positive integers, got {text!r}")
    return sides


#: every option some converter takes: name -> (argparse keyword arguments)
OPTIONS = {
    "grid": dict(type=positive_int, help="llamagen: token grid side, 16 for 256 px models, 24 for 384 px (default: 16)"),
    "num_heads": dict(type=positive_int, help="llamagen, mar, titok: attention heads (default: the project's table for the width)"),
    "weights": dict(choices=("ema", "model"), help="mar: the checkpoint's EMA weights ('model_ema', MAR's evaluation "
                    "weights) or its raw 'model' weights (default: ema)"),
    "image_size": dict(type=positive_int, help="tokenizers: the image side the model is used at (default: 256)"),
    "latent_scale": dict(type=positive_float, help="mar-vae: tokens are the posterior mean times this "
                         "(default: MAR's 0.2325)"),
    "patch_nums": dict(type=_side_list, metavar="1,2,...,16",
                       help="var-vae: the token-map side of each scale (default: VAR's 1,2,3,4,5,6,8,10,13,16 at 256 px)"),
    "vae": dict(metavar="VAE", help="var: VAR's VAE, the folder 'artok convert var-vae' wrote or the "
                "vae_ch160v4096z32.pth file itself (default: that file next to the checkpoint)"),
    "pixel_decoder": dict(metavar="FILE", help="titok: MaskGIT's VQGAN maskgit-vqgan-imagenet-f16-256.bin, whose decoder "
                          "and codebook complete a stage-1 TiTok checkpoint (published files hold their own)"),
}


def add_parser(subparsers) -> str:
    from artok.convert.table import CONVERTERS

    parser = subparsers.add_parser(
        "convert",
        help="convert a published checkpoint (LlamaGen, MAR, ...) into an artok model folder",
        description="Read another project's checkpoint without executing code (weights-only torch.load or "
        "safetensors), infer its configuration from the weight shapes and save it as an artok model folder "
        "(config.json + model.safetensors), which every artok command then takes: artok bench --checkpoint OUT, "
        "artok sample --generator OUT --tokenizer OUT_VAE ... . 'artok convert --list' names the formats.",
    )
    parser.add_argument("format", nargs="?", choices=tuple(CONVERTERS), help="checkpoint format")
    parser.add_argument("checkpoint", nargs="?", help="the checkpoint file")
    parser.add_argument("out", nargs="?", help="artok model folder to write")
    parser.add_argument("--list", action="store_true", help="list the formats and the files they read")
    for name, keywords in OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), **keywords)
    return "convert"


def _format_table() -> str:
    from artok.convert.table import CONVERTERS

    width = max(map(len, CONVERTERS))
    return "\n".join(f"{row.name:<{width}}  -> {row.writes:<9}  {row.reads}"
                     + (f"  [--{', --'.join(o.replace('_', '-') for o in row.options)}]" if row.options else "")
                     for row in CONVERTERS.values())


def run(args) -> int:
    import time

    from artok.cli.common import check_output_dir
    from artok.convert.table import CONVERTERS
    from artok.hub import save_pretrained

    if args.list:
        print(_format_table())
        return 0
    if args.out is None:
        raise ValueError("give FORMAT CHECKPOINT OUT, e.g. artok convert llamagen-vq vq_ds16_c2i.pt vq16 "
                         "(artok convert --list names the formats)")
    row = CONVERTERS[args.format]
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    foreign = sorted(set(given) - set(row.options))
    if foreign:
        raise ValueError(f"--{foreign[0].replace('_', '-')} does not apply to {row.name}; it takes "
                         f"{', '.join('--' + o.replace('_', '-') for o in row.options) or 'no options'}")
    check_output_dir(args.out)
    start = time.perf_counter()
    converted = row.function()(args.checkpoint, **given)
    path = save_pretrained(converted.model, args.out,
                           extra={"converted_from": f"{row.name}:{args.checkpoint}", **converted.extra})
    parameters = sum(p.numel() for p in converted.model.parameters()) / 1e6
    print(f"converted {args.checkpoint} ({row.name}): {converted.summary}, {parameters:.1f}M parameters -> {path} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
