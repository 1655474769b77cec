"""Training checkpoints: written atomically (temp file + rename, so a crash never leaves a torn
file), resumable (model, optimizer, scheduler, EMA, step, history and every RNG state), and
loaded with ``weights_only=True`` (loading never executes code)."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from artok.hub import atomic_write, unpickling_reason


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """``torch.save`` ``state`` to ``path`` atomically."""
    return atomic_write(path, lambda temporary: torch.save(state, temporary))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint` (tensors and plain containers only)."""
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles are noise next to our error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except Exception as error:  # unpickling errors carry long messages (and unsafe advice); keep one line
        raise ValueError(f"{path} is not a readable artok checkpoint: {unpickling_reason(error)}, and artok never "
                         "loads files that can run code") from None


def capture_rng_state() -> dict:
    """Every RNG a training step may draw from."""
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


CHECKPOINT_NAME = "checkpoint.pt"


def kept_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-STEP.pt`` files of ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("checkpoint-*.pt"):
        step = path.stem.removeprefix("checkpoint-")
        if step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def checkpoint_candidates(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints a run could resume from, newest first: ``checkpoint.pt``, then the kept ones."""
    directory = Path(directory)
    latest = directory / CHECKPOINT_NAME
    return ([latest] if latest.is_file() else []) + list(reversed(kept_checkpoints(directory)))


def keep_checkpoint(path: Path, step: int, keep: int) -> None:
    """Keep ``path`` (just written) as ``checkpoint-STEP.pt`` too and prune to the newest ``keep``
    steps (the newest is the same file as ``checkpoint.pt``: a hard link costs no space; a copy
    where links fail)."""
    if keep <= 1:
        return
    kept = path.with_name(f"checkpoint-{step:08d}.pt")
    kept.unlink(missing_ok=True)
    try:
        os.link(path, kept)
    except OSError:
        import shutil

        atomic_write(kept, lambda temporary: shutil.copyfile(path, temporary))
    for old in kept_checkpoints(path.parent)[:-keep]:
        old.unlink(missing_ok=True)
