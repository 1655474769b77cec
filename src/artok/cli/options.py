"""``artok options [KIND]``: the config fields a ``--quantizer-options`` / ``--generator-options``
JSON (or a tokenizer architecture) accepts, with type, default and meaning, read from the config
dataclasses themselves so the list can never drift from the code."""

from __future__ import annotations

import json


def _kinds() -> dict[str, tuple[str, type, tuple[str, ...]]]:
    """``{kind: (family, config class, fields the caller fills in)}``."""
    from artok.quantizers import QUANTIZERS
    from artok.tokenizers import AutoencoderConfig, CNNTokenizerConfig, ViT1DTokenizerConfig
    from artok.zoo import KINDS

    kinds = {name: ("quantizer", config, ("dim",)) for name, (_, config) in QUANTIZERS.items()}
    kinds.update({name: ("generator", kind.config, kind.fixed) for name, kind in KINDS.items()})
    kinds.update({"cnn": ("tokenizer", CNNTokenizerConfig, ()), "vit1d": ("tokenizer", ViT1DTokenizerConfig, ())})
    kinds["autoencoder"] = ("tokenizer", AutoencoderConfig, ())
    from artok.tokenizers import DARTokenizerConfig

    kinds["dar"] = ("tokenizer", DARTokenizerConfig, ())
    from artok.tokenizers import MaskGITVQGANConfig, TiTokConfig

    kinds.update({"titok": ("tokenizer", TiTokConfig, ()), "maskgit-vqgan": ("tokenizer", MaskGITVQGANConfig, ())})
    return kinds


def add_parser(subparsers) -> str:
    parser = subparsers.add_parser(
        "options", help="list the fields of a quantizer, generator or tokenizer kind (for --*-options JSON)",
        description="List the config fields of a kind with their type, default and meaning: quantizer kinds take "
        "them in train-tokenizer --quantizer-options, generator kinds in train-generator --generator-options. "
        "Without KIND: every kind.")
    parser.add_argument("kind", nargs="?", help="a quantizer (vq, fsq, ...), generator (raster, mar, ...) or "
                        "tokenizer architecture (cnn, vit1d)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return "options"


def run(args) -> int:
    from artok.typed_config import describe_options

    kinds = _kinds()
    if args.kind is None:
        for family in ("quantizer", "generator", "tokenizer"):
            print(f"{family}s: {', '.join(name for name, (f, _, _) in kinds.items() if f == family)}")
        print("run 'artok options KIND' for the fields of one")
        return 0
    if args.kind not in kinds:
        raise ValueError(f"unknown kind {args.kind!r}; choose one of {', '.join(kinds)}")
    family, config_class, fixed = kinds[args.kind]
    rows = describe_options(config_class, fixed)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{args.kind} ({family}, {config_class.__name__}); set by artok: {', '.join(fixed) or 'nothing'}")
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        default = json.dumps(row["default"], default=str) if not isinstance(row["default"], str) else row["default"]
        print(f"  {row['name']:<{width}}  {row['type']:<18} default {default:<14} {row['doc']}".rstrip())
    return 0
