"""What the two autoencoder parity scripts share (``parity_llamagen_vq.py``, ``parity_mar_vae.py``):
the 16 test photographs, importing one model file of a peer's clone, random weights that exercise
every layer, the conversion through ``artok convert`` and the comparison figures.

Nothing of the peers' code is copied: their model file is imported from the clone given on the
command line, by path, so no other module of theirs (training scripts, torchvision, timm) is needed.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import torch


def import_file(path: Path, name: str):
    """The module at ``path`` (one file of a peer's clone), imported on its own."""
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: give --repo a clone of the peer's repository")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def photos(image_size: int, count: int = 16) -> torch.Tensor:
    """``count`` real photographs (scikit-image's bundled ones, then their mirror images) in [-1, 1]."""
    from artok.data import load_dataset

    images = load_dataset("photos", "test", image_size=image_size).images.float() / 127.5 - 1.0
    while images.shape[0] < count:
        images = torch.cat([images, images.flip(-1)])
    return images[:count]


@torch.no_grad()
def randomize_norms(model: torch.nn.Module, seed: int) -> None:
    """GroupNorm's initial affine (1, 0) would hide a misplaced or missing norm: draw it."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.GroupNorm):
            module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=generator))
            module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))


def convert(format_name: str, checkpoint: Path, out: Path, *options: str) -> tuple[torch.nn.Module, float]:
    """``artok convert FORMAT CHECKPOINT OUT`` (the CLI, as a user runs it), then the folder loaded back."""
    from artok.cli.main import main
    from artok.zoo import from_pretrained

    start = time.perf_counter()
    if main(["convert", format_name, str(checkpoint), str(out), *options]) != 0:
        raise SystemExit(f"artok convert {format_name} failed")
    return from_pretrained(out, role="tokenizer"), time.perf_counter() - start


def batched(function, images: torch.Tensor, batch: int) -> tuple[torch.Tensor, float]:
    """``function`` over ``images`` in batches, concatenated, and the seconds it took."""
    start = time.perf_counter()
    with torch.no_grad():
        out = torch.cat([function(images[i:i + batch]) for i in range(0, images.shape[0], batch)])
    return out, time.perf_counter() - start


@torch.no_grad()
def float64_difference(theirs: torch.nn.Module, ours: torch.nn.Module, function, inputs: torch.Tensor) -> float:
    """``function(model, inputs)`` of both models in float64 (copies): fp32 differences that are rounding
    only vanish here, a wrong layer would not."""
    import copy

    theirs, ours = copy.deepcopy(theirs).double(), copy.deepcopy(ours).double()
    return max_difference(function(theirs, inputs.double()), function(ours, inputs.double()))


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def write(result: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
