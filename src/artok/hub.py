"""The one save/load path: ``save_pretrained(model, dir)`` / ``from_pretrained(dir)``.

A directory holds ``config.json`` (``model_type``, the model's config dataclass as constructor
arguments, and free-form ``extra`` such as sampling defaults) and ``model.safetensors``. Loading
never executes code: safetensors holds only tensors, and the model class is looked up in a
registry by name, never imported from the file.
"""

from __future__ import annotations

import json
import os
import re
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
    """The classes registered so far: a model module registers itself when imported, and
    `artok.zoo` imports every built-in one (this module imports no model)."""
    return _REGISTRY


def current_umask() -> int:
    """The process umask, read without changing it (``/proc`` on Linux; elsewhere the
    set-and-restore dance, which is not thread-safe but only runs where ``/proc`` is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write ``path`` atomically: ``write(temporary_path)`` fills a temporary file in the same
    folder, which is then renamed onto ``path``, so readers (and a crash) only ever see the old
    or the complete new file. The file gets the permissions an ordinary ``open()`` would give
    (``0o666`` minus the umask), not ``mkstemp``'s private ``0o600``, so a shared model folder
    stays readable. A failure removes the temporary file; a kill leaves ``.NAME.XXXX.tmp``,
    which `remove_stale_temporaries` clears."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)  # some writers (safetensors) replace the file, so the mode is set after
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def remove_stale_temporaries(directory: str | os.PathLike, names: tuple[str, ...] | None = None) -> int:
    """Delete the temporary files a killed `atomic_write` left in ``directory`` (``.NAME.XXXX.tmp``,
    and the suffix-less ``.NAME.XXXX`` of older versions) for the file ``names`` (all when None);
    returns how many were removed. Call it when a run starts, never while another writer is active
    in the same folder."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    for candidate in directory.iterdir():
        if not candidate.name.startswith(".") or not candidate.is_file():
            continue
        stem = candidate.name[1:].rsplit(".tmp", 1)[0] if candidate.name.endswith(".tmp") else candidate.name[1:]
        target, _, random_part = stem.rpartition(".")
        if not target or len(random_part) < 6 or (names is not None and target not in names):
            continue
        candidate.unlink(missing_ok=True)
        removed += 1
    return removed


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file atomically)."""
    model_type = getattr(model, "model_type", None)
    if model_type is None:
        raise ValueError(f"{type(model).__name__} is not registered with @register_model and cannot be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory, ("model.safetensors", "config.json"))
    payload = {"model_type": model_type, "config": asdict(model.config), "extra": extra or {}}
    text = json.dumps(payload, indent=2, default=_json_default)  # before any write: a bad value fails early
    atomic_write(directory / "model.safetensors", lambda path: save_model(model, path, metadata={"model_type": model_type}))
    atomic_write_text(directory / "config.json", text)
    return directory


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} into config.json")


def load_config(directory: str | os.PathLike) -> dict:
    """Read ``config.json``; a one-line error if the directory is not an artok checkpoint."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist; give a folder written by artok (config.json + model.safetensors)")
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; give the model folder that holds config.json and model.safetensors")
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an artok model directory (no config.json)")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-save the model or restore the file") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a JSON {type(payload).__name__}, not the object artok writes; re-save the model")
    for key, kind in (("model_type", str), ("config", dict), ("extra", dict)):
        if key not in payload and key == "extra":
            continue
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"{path}: {key!r} must be a JSON {'string' if kind is str else 'object'}, got "
                             f"{payload.get(key)!r:.60}; re-save the model")
    return payload


def from_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu", role: str | None = None) -> torch.nn.Module:
    """Rebuild a model from ``directory`` (see `save_pretrained`); returns it in eval mode.

    ``role`` (``"generator"`` / ``"tokenizer"``) refuses a folder of the other role with one line.
    Every malformed folder (bad JSON, unknown or wrong-typed config fields, missing, truncated or
    foreign weights, shapes that do not match the config) raises a one-line ValueError or
    FileNotFoundError before the weights are read. The ``extra`` dict is attached as ``model.extra``.
    """
    from artok.typed_config import build_config

    payload = load_config(directory)
    registry = _registry()
    model_type = payload["model_type"]
    if model_type not in registry:
        raise ValueError(f"unknown model_type {model_type!r} in {directory}; known: {', '.join(sorted(registry))} "
                         "(import artok.zoo, or the module defining that model, before loading)")
    cls = registry[model_type]
    found_role = getattr(cls, "model_role", None)
    if role is not None and found_role is not None and found_role != role:
        raise ValueError(f"{directory} holds a {found_role} ({model_type}), but a {role} folder is needed here")
    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has no model.safetensors; re-save the model")
    stored = _stored_tensors(weights)
    config = build_config(cls.config_class, payload["config"], f"{Path(directory) / 'config.json'}")
    try:
        model = cls(config)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as error:
        raise ValueError(f"{directory}/config.json does not build a {cls.__name__}: {' '.join(str(error).split())[:200]}") from None
    _check_weights(weights, model, stored)
    load_model(model, str(weights), strict=False)
    model.extra = payload.get("extra", {})
    return model.to(device).eval()


def _stored_tensors(weights: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` from the safetensors header, without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {name: (tuple(handle.get_slice(name).get_shape()), handle.get_slice(name).get_dtype())
                    for name in handle.keys()}
    except Exception as error:  # noqa: BLE001 - SafetensorError, OSError ...: all mean "not a readable file"
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        raise ValueError(f"{weights} is not a readable safetensors file ({reason}); it is truncated, empty or of "
                         "another format: re-save or re-download the model") from None


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2")


def _check_weights(weights: Path, model: torch.nn.Module, stored: dict) -> None:
    """Names, shapes and dtype families of ``stored`` against ``model``, with the first mismatch named.
    Weights shared by several names are saved once, so a name may be absent when an alias is present."""
    expected = model.state_dict()
    aliases: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        aliases.setdefault(tensor.data_ptr() if tensor.numel() else id(tensor), []).append(name)
    for names in aliases.values():
        if not any(name in stored for name in names):
            raise ValueError(f"{weights} lacks {names[0]}: the weights are from another model than config.json describes")
    unexpected = sorted(set(stored) - set(expected))
    if unexpected:
        raise ValueError(f"{weights} holds {unexpected[0]}, which {type(model).__name__} does not have: "
                         "the weights are from another model than config.json describes")
    for name, (shape, dtype) in stored.items():
        tensor = expected[name]
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{weights}: {name} has shape {list(shape)} but config.json describes {list(tensor.shape)}; "
                             "the weights and config.json are from different models")
        if tensor.is_floating_point() != (dtype in _FLOAT_DTYPES):
            raise ValueError(f"{weights}: {name} is stored as {dtype} but the model needs "
                             f"{str(tensor.dtype).removeprefix('torch.')}; re-save the model")


def unpickling_reason(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words, without torch's advice
    to retry with ``weights_only=False`` (which would execute the file's code)."""
    text = " ".join(str(error).split())
    if "weights only load failed" in text.lower() or "unsupported global" in text.lower() or "Unpickler" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        return f"it holds Python objects{f' ({found.group(1)})' if found else ''} that would run code when loaded"
    if "central directory" in text or "PytorchStreamReader" in text or isinstance(error, EOFError):
        return "it is truncated or corrupt: not a complete PyTorch archive"
    if isinstance(error, KeyError) or "invalid load key" in text:
        return "it is not a PyTorch checkpoint at all"
    return f"{type(error).__name__}: {text[:160]}"


def read_weights(path: str | os.PathLike, what: str = "weights", nested: tuple[str, ...] = ("state_dict",)) -> dict:
    """A state dict from a ``.safetensors`` file or a weights-only PyTorch file, never executing code
    (``torch.load(weights_only=True)``); the first of the ``nested`` keys that holds a dict is
    unwrapped (checkpoints keep their weights under ``model``, ``state_dict``, ...). ``what`` names the
    file in the one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file ({' '.join(str(error).split())[:120]}); "
                             "it may be truncated: download it again") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a one-line reason instead of the unpickler's trace
        raise ValueError(f"{path} is not a weights-only PyTorch file ({unpickling_reason(error)}); artok never loads "
                         "files that can run code: convert it to safetensors where it was made") from None
    for key in nested:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state
