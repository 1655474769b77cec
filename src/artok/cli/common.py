"""What every command shares: argument types that refuse nonsense (NaN, inf, negative counts) with
one line, the device and output checks every command runs before any work, ``--config FILE``,
and the one-line parser error."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line (``artok: error: ...``) with exit status 2, instead of the
    usage block followed by the message."""

    def error(self, message: str):
        self.exit(2, f"artok: error: {message} (see '{self.prog} --help')\n")


def _argument_type(parse, accepts, expectation: str, name: str):
    """An argparse ``type=`` function: ``parse(text)`` (ValueError: not a number at all), then
    ``accepts(value)``; either failure is one line saying what was expected."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if parse is int else 'a number'}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expectation}, got {text!r}")
        return value

    convert.__name__ = name
    return convert


finite_float = _argument_type(float, math.isfinite, "a finite number", "finite_float")
nonnegative_float = _argument_type(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "nonnegative_float")
positive_float = _argument_type(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0", "positive_float")
probability = _argument_type(float, lambda v: math.isfinite(v) and 0.0 < v <= 1.0, "a finite number in (0, 1]", "probability")
positive_int = _argument_type(int, lambda v: v >= 1, "an integer >= 1", "positive_int")
nonnegative_int = _argument_type(int, lambda v: v >= 0, "an integer >= 0", "nonnegative_int")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed for initialisation, batch order and sampling (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error instead of one line")


def add_checkpointing(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoints (OUT/checkpoint.pt: atomic, resumable with --resume)")
    group.add_argument("--checkpoint-every", type=positive_int,
                       help="write a checkpoint every N steps (default: every 10%% of the run)")
    group.add_argument("--checkpoint-minutes", type=nonnegative_float, default=10.0,
                       help="also write one when this many minutes passed since the last (default: 10; 0 = off)")
    group.add_argument("--keep", type=positive_int, default=1,
                       help="checkpoints kept as OUT/checkpoint-STEP.pt (default: 1 = only the latest)")
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest readable checkpoint in OUT (says so when there is none)")


def add_parallel(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "scale (start with: torchrun --nproc-per-node N -m artok COMMAND ...; the global batch is "
        "--batch-size x N x --grad-accum)")
    group.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp",
                       help="under torchrun: ddp (replicated weights) or fsdp (FSDP2: weights, gradients and "
                       "optimizer state sharded per block, DCP checkpoints) (default: ddp; one process: ignored)")
    group.add_argument("--grad-accum", type=positive_int, default=1,
                       help="gradient-accumulation micro-steps per step (default: 1)")
    group.add_argument("--compile", action="store_true", help="torch.compile each transformer/residual block")
    group.add_argument("--activation-checkpointing", action="store_true",
                       help="recompute each block's activations in the backward pass (less memory, ~30%% more compute)")


def parallel_config(args):
    from artok.distributed import ParallelConfig

    return ParallelConfig(mode=args.parallel, compile=args.compile,
                          activation_checkpointing=args.activation_checkpointing)


def check_device(text: str) -> str:
    """``text`` if it names a device this process can use, else a one-line ValueError."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.backends.cuda.is_built() else "without"
            raise ValueError(f"--device {text}: no CUDA device is visible (torch {torch.__version__} built {built} CUDA); "
                             "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {text}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ValueError(f"--device {text}: artok runs on cpu, cuda or mps")
    return text


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_output_dir(text: str, flag: str = "--out") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {text} is an existing file; give a folder (created if missing)")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {text}: {ancestor} is a file, so the folder cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {text}: {ancestor} is not writable; choose another folder")
    return path


def check_output_file(text: str, flag: str = "--out") -> Path:
    """Refuse, before any work, an output file that is a folder or whose folder cannot be written."""
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{flag} {text} is a folder; give a file name, e.g. {Path(text) / 'samples.png'}")
    check_output_dir(str(path.parent) if str(path.parent) else ".", flag)
    return path


def json_object(text: str | None, flag: str) -> dict:
    """``--*-options`` JSON: an object, or a one-line error that shows the expected form."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} is not valid JSON ({error.msg} at character {error.pos}); "
                         f"write an object, e.g. '{{\"dim\": 64}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object of config fields, e.g. '{{\"dim\": 64}}', got {text!r}")
    return value


def read_config_file(path: str) -> dict:
    """The options of ``--config FILE`` (JSON, or YAML when the file ends in .yaml/.yml)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config {path} does not exist")
    text = file.read_text()
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # noqa: BLE001 - json and yaml raise their own types
        raise ValueError(f"--config {path} is not valid {'YAML' if file.suffix in ('.yaml', '.yml') else 'JSON'} "
                         f"({' '.join(str(error).split())[:120]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold an object of options (e.g. {{\"steps\": 500}}), "
                         f"got a {type(values).__name__}")
    return values


def apply_config_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Make the options in ``path`` the defaults of ``parser`` (flags given on the command line
    still win). Keys are option names (``steps``, ``cfg-scale`` or ``cfg_scale``); each value goes
    through the option's own type check."""
    values = read_config_file(path)
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    defaults = {}
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("config", "help"):
            known = ", ".join(sorted(name.replace("_", "-") for name in actions if name not in ("config", "help")))
            raise ValueError(f"--config {path}: {parser.prog} has no option {key!r}; options: {known}")
        defaults[dest] = _config_value(action, value, path, key)
        action.required = False
    parser.set_defaults(**defaults)


def _config_value(action: argparse.Action, value, path: str, key: str):
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"--config {path}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(value, (dict, list)):
        if action.dest.endswith("_options"):
            return json.dumps(value)
        raise ValueError(f"--config {path}: {key} must be a single value, got {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
        raise ValueError(f"--config {path}: {key}: {error}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"--config {path}: {key} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``artok: warning: ...`` lines (no source path, no category name)."""
    text = " ".join(str(message).split())
    print(f"artok: warning: {text}", file=file or sys.stderr)


def add_sampling(parser: argparse.ArgumentParser, speculative: bool = True) -> None:
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
                                       "sampling (raster: tokens, mar: iterations per target pass); 'self' for "
                                       "an any-order generator: ASSD, the model drafts for itself")
    group.add_argument("--draft-length", type=positive_int, default=4,
                       help="tokens (raster, any-order) or MAR iterations drafted per target pass (default: 4)")


def sampling_config(args, generator):
    """The sampler config (stored defaults + command-line overrides) and the optional draft."""
    from artok.zoo import from_pretrained, sampler_config_for

    if getattr(args, "top_k", None) is not None and args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
    stored = generator.extra.get("sampling")
    sampler = sampler_config_for(generator, stored if isinstance(stored, dict) else None, sampling_overrides(args))
    given = getattr(args, "draft", None)
    if given == "self":
        return sampler, generator
    draft = from_pretrained(given, args.device, role="generator").eval() if given else None
    return sampler, draft


SAMPLING_KEYS = ("cfg_scale", "cfg_schedule", "temperature", "top_k", "top_p", "iterations", "method", "final_noise")


def sampling_overrides(args: argparse.Namespace) -> dict:
    overrides = {key: getattr(args, key, None) for key in SAMPLING_KEYS}
    overrides["steps"] = getattr(args, "sampling_steps", None)
    return overrides
