"""Distributed checkpoints: ``torch.distributed.checkpoint`` (DCP) folders for sharded runs.

Under FSDP2 every rank writes its own shards of the model, optimizer and EMA state (no gather to
rank 0) into ``OUT/.checkpoint-STEP.dcp.tmp/``; rank 0 adds ``meta.pt`` (step, schedules, loss
curve, data position, config) and every rank its RNG state (``rng-RANK.pt``); after a barrier rank 0
renames the folder to ``OUT/checkpoint-STEP.dcp`` — the rename is what makes it a checkpoint, so a
kill during the save leaves the previous one as it was — and prunes to the newest ``keep``.

Loading reshards: a folder written by 4 ranks resumes on 2, or on one process without a process
group (DCP's no-dist mode). RNG states are restored per rank when the world size is unchanged;
otherwise every rank re-seeds from ``(seed, step, rank)`` (the batch order is unaffected: it is a
function of the seed and the step, see `artok.distributed.sharding`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from artok.distributed.env import barrier

SUFFIX = ".dcp"


def dcp_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete DCP checkpoint folders of ``directory``, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"checkpoint-*{SUFFIX}"):
        step = path.name.removeprefix("checkpoint-").removesuffix(SUFFIX)
        if step.isdigit() and (path / "meta.pt").is_file():
            found.append((int(step), path))
    return [path for _, path in sorted(found, reverse=True)]


def remove_stale_dcp(directory: str | os.PathLike) -> None:
    """Folders a killed save left behind (``.checkpoint-*.dcp.tmp``)."""
    for path in Path(directory).glob(f".checkpoint-*{SUFFIX}.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def tensor_state(model: nn.Module, optimizer, ema, extra: dict) -> dict:
    """The DCP state: model and optimizer by parameter names (`get_state_dict`), the EMA's and
    the extra modules'/optimizers' (a ``NAME_optimizer`` belongs to the module ``NAME``)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    if ema is not None:
        state["ema"] = ema.state_dict()
    modules = {name: value for name, value in extra.items() if isinstance(value, nn.Module)}
    for name, module in modules.items():
        state[name] = module.state_dict()
    for name, value in extra.items():
        if isinstance(value, torch.optim.Optimizer):
            owner = modules.get(name.removesuffix("_optimizer"))
            if owner is None:
                raise ValueError(f"extra state {name!r}: a sharded checkpoint needs its module as {name.removesuffix('_optimizer')!r}")
            state[name] = get_state_dict(owner, value)[1]
    return state


def save_dcp(directory: Path, step: int, state: dict, meta: dict, rng: dict, *, rank: int, keep: int) -> Path:
    """Write ``checkpoint-STEP.dcp`` atomically (a collective: every rank calls it)."""
    import torch.distributed.checkpoint as dcp

    final = directory / f"checkpoint-{step:08d}{SUFFIX}"
    temporary = directory / f".checkpoint-{step:08d}{SUFFIX}.tmp"
    if rank == 0:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    barrier()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(temporary))
    torch.save(rng, temporary / f"rng-{rank}.pt")
    if rank == 0:
        torch.save(meta, temporary / "meta.pt")
    barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync_directory(directory)
        for old in dcp_checkpoints(directory)[max(keep, 1):]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_meta(path: Path) -> dict:
    try:
        return torch.load(path / "meta.pt", map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a torn or foreign file: one line
        raise ValueError(f"{path} is not a readable artok checkpoint ({type(error).__name__})") from None


def load_dcp(path: Path, model: nn.Module, optimizer, ema, extra: dict) -> None:
    """Load the tensors of ``path`` into the (maybe sharded) objects, resharding as needed."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict, set_state_dict

    state = tensor_state(model, optimizer, ema, extra)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.load(state, checkpoint_id=str(path))
    except Exception as error:  # noqa: BLE001 - shape/key mismatches come as long CheckpointExceptions
        first = " ".join(str(error).split())[:200]
        raise ValueError(f"{path} does not fit this model ({first}); resume with the options it was trained with, "
                         "or train into a new --out") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    if ema is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    for name, value in extra.items():
        if isinstance(value, nn.Module):
            value.load_state_dict(state[name])
        elif isinstance(value, torch.optim.Optimizer):
            set_optimizer_state_dict(extra[name.removesuffix("_optimizer")], value, optim_state_dict=state[name])
