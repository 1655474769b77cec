"""The one save/load path: ``save_pretrained(model, dir)`` / ``from_pretrained(dir)``.

A directory holds ``config.json`` (``model_type``, the model's config dataclass as constructor
arguments, and free-form ``extra`` such as sampling defaults) and ``model.safetensors``. Loading
never executes code: safetensors holds only tensors, and the model class is looked up in a
registry by name, never imported from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

_REGISTRY: dict[str, type] = {}


def register_model(model_type: str):
    """Class decorator: make ``cls`` loadable by `from_pretrained` under ``model_type``."""

    def wrap(cls):
        cls.model_type = model_type
        _REGISTRY[model_type] = cls
        return cls

    return wrap


def _registry() -> dict[str, type]:
    # Importing the model packages runs their @register_model decorators.
    import artok.generators  # noqa: F401
    import artok.tokenizers  # noqa: F401

    return _REGISTRY


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file atomically)."""
    model_type = getattr(model, "model_type", None)
    if model_type is None:
        raise ValueError(f"{type(model).__name__} is not registered with @register_model and cannot be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.safetensors.")
    os.close(fd)
    save_model(model, tmp, metadata={"model_type": model_type})
    os.replace(tmp, directory / "model.safetensors")
    payload = {"model_type": model_type, "config": asdict(model.config), "extra": extra or {}}
    _atomic_write_text(directory / "config.json", json.dumps(payload, indent=2, default=_json_default))
    return directory


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} into config.json")


def load_config(directory: str | os.PathLike) -> dict:
    """Read ``config.json``; a one-line error if the directory is not an artok checkpoint."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an artok model directory (no config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def from_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from ``directory`` (see `save_pretrained`); returns it in eval mode.

    The ``extra`` dict of the config is attached as ``model.extra``.
    """
    payload = load_config(directory)
    registry = _registry()
    model_type = payload.get("model_type")
    if model_type not in registry:
        raise ValueError(f"unknown model_type {model_type!r} in {directory}; known: {', '.join(sorted(registry))}")
    cls = registry[model_type]
    config = cls.config_class(**payload["config"])
    model = cls(config)
    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has no model.safetensors")
    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights} does not match {cls.__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.extra = payload.get("extra", {})
    return model.to(device).eval()


def read_weights(path: str | os.PathLike, what: str = "weights", nested: tuple[str, ...] = ("state_dict",)) -> dict:
    """A state dict from a ``.safetensors`` file or a weights-only PyTorch file, never executing code
    (``torch.load(weights_only=True)``); the first of the ``nested`` keys that holds a dict is
    unwrapped (checkpoints keep their weights under ``model``, ``state_dict``, ...). ``what`` names the
    file in the one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a one-line reason instead of the unpickler's trace
        raise ValueError(f"{path} is not a weights-only PyTorch file ({type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else ''})") from None
    for key in nested:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state
