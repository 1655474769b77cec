"""``artok convert``: turn another project's checkpoint into an artok model folder."""

from __future__ import annotations

FORMATS = ("llamagen",)


def add_parser(subparsers) -> str:
    parser = subparsers.add_parser(
        "convert",
        help="convert a LlamaGen class-conditional GPT checkpoint into an artok generator folder",
        description="Read another project's checkpoint without executing code (weights-only torch.load or "
        "safetensors) and save it as an artok model folder (config.json + model.safetensors), which every artok "
        "command then takes: artok bench --checkpoint OUT, artok sample --generator OUT --tokenizer ... . "
        "llamagen: c2i_{B,L,XL,XXL}_{256,384}.pt from FoundationVision/LlamaGen; its VQ-16 tokenizer is not "
        "converted, so decoding to pixels needs a tokenizer with the same 16384 codes.",
    )
    parser.add_argument("format", choices=FORMATS, help="checkpoint format")
    parser.add_argument("checkpoint", help="the checkpoint file")
    parser.add_argument("out", help="artok model folder to write")
    parser.add_argument("--grid", type=int, default=16,
                        help="token grid side: 16 for LlamaGen's 256 px models, 24 for 384 px (default: 16)")
    parser.add_argument("--num-heads", type=int, help="attention heads (default: LlamaGen's table for the width)")
    return "convert"


def run(args) -> int:
    from artok.convert.llamagen import load_llamagen
    from artok.hub import save_pretrained

    if args.grid < 1:
        raise ValueError(f"--grid must be positive, got {args.grid}")
    generator = load_llamagen(args.checkpoint, grid=(args.grid, args.grid), num_heads=args.num_heads)
    config = generator.config
    path = save_pretrained(generator, args.out, extra={"converted_from": f"llamagen:{args.checkpoint}",
                                                       "sampling": {"kind": "raster", "cfg_scale": 4.0, "top_k": 2000}})
    print(f"converted {args.checkpoint}: {config.depth} layers, width {config.dim}, {config.num_heads} heads, "
          f"vocab {config.vocab_size}, {config.num_classes} classes, {config.grid[0]}x{config.grid[1]} tokens, "
          f"{sum(p.numel() for p in generator.parameters()) / 1e6:.1f}M parameters -> {path}")
    return 0
