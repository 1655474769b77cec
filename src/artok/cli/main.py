"""``artok`` command line: thin wrappers that parse arguments, call the library and print.

Every error a user can fix (bad paths, malformed model folders, bad configs or options,
incompatible models, a device that is not there) is printed as one line (``artok: error: ...``)
with exit status 2 before any work starts, never as a traceback (``--debug`` shows it); warnings
print as ``artok: warning: ...``; Ctrl-C / SIGTERM during training writes a checkpoint first.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from artok.cli.common import (
    OneLineParser,
    add_sampling,
    check_device,
    show_warning,
)
from artok.cli.train import (
    add_generator_parser,
    add_tokenizer_parser,
    cmd_train_generator,
    cmd_train_tokenizer,
)

EPILOG = ("Run 'artok <command> --help' for the options of a command, 'artok options KIND' for the fields of a "
          "quantizer or generator kind. Any command takes --config FILE (JSON or YAML of its options).")






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

    add_tokenizer_parser(sub)
    add_generator_parser(sub, add_sampling)

    # Commands that live in their own modules: each exposes add_parser(sub) and run(args).
    for module in _plugin_modules():
        name = module.add_parser(sub)
        if hasattr(module, "run"):
            COMMANDS[name] = module.run
    for name, command in sub.choices.items():  # modules with several commands set ``run`` per parser
        if command.get_default("run") is not None:
            COMMANDS[name] = command.get_default("run")
    for name, command in sub.choices.items():
        command.add_argument("--config", metavar="FILE", help="JSON or YAML file of this command's options "
                             "(keys: option names; flags on the command line win)")
    parser.subcommands = sub.choices
    return parser


PLUGIN_MODULES = ("artok.cli.demo", "artok.cli.generate", "artok.cli.eval_tokenizer", "artok.cli.bench", "artok.cli.convert", "artok.cli.options", "artok.cli.app", "artok.cli.encode")


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












COMMANDS = {
    "train-tokenizer": cmd_train_tokenizer,
    "train-generator": cmd_train_generator,
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
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops at the same step: say it once
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
        if _out_of_memory(error):  # torch's CPU allocator raises a RuntimeError, not MemoryError
            print(f"artok: error: out of memory ({_one_line(error)[:160]}); use a smaller --batch-size, "
                  "--image-size or model", file=sys.stderr)
            return 2
        print(f"artok: error: internal error ({type(error).__name__}: {_one_line(error)[:300]}); "
              "rerun with --debug for the traceback and please report it", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


def _out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if text.startswith("[Errno"):  # OSError: "[Errno 2] No such file or directory: 'x'"
        text = text.split("] ", 1)[-1]
    return text or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
