"""Config dataclasses built from untrusted JSON (``config.json``, ``--*-options``, ``--config``):
unknown, missing and wrong-typed fields are refused with one line that names the field and what
it accepts, before any constructor runs; `describe_options` lists a config's fields, types,
defaults and documentation (``artok options``)."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a JSON object",
           list: "a JSON list", tuple: "a JSON list"}


def type_hints(config_class) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 - an unresolvable annotation is simply not checked
        return {}


def _accepted(annotation) -> tuple[list, bool] | None:
    """The plain types a field accepts and whether None is allowed; None when not checkable."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        optional = type(None) in members
        plain = []
        for member in members:
            if member is type(None):
                continue
            inner = _accepted(member)
            if inner is None:
                return None
            plain.extend(inner[0])
        return plain, optional
    if origin is not None:
        annotation = origin
    if annotation in _SIMPLE:
        return [annotation], False
    return None


def _matches(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


def check_field(name: str, value, annotation, where: str) -> None:
    accepted = _accepted(annotation)
    if accepted is None:
        return
    kinds, optional = accepted
    if value is None and optional:
        return
    if any(_matches(value, kind) for kind in kinds):
        return
    wanted = " or ".join(dict.fromkeys(_SIMPLE[kind] for kind in kinds)) + (" or null" if optional else "")
    raise ValueError(f"{where}: {name} must be {wanted} (finite), got {value!r}")


def build_config(config_class, values, where: str, *, fixed: tuple[str, ...] = ()):
    """``config_class(**values)`` after checking ``values`` is an object whose keys are fields
    and whose values have the fields' types; ``__post_init__`` errors come back as one line
    prefixed with ``where``. ``fixed`` names fields filled in by the caller (not user options)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a JSON object of {config_class.__name__} fields, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        close = _closest(unknown[0], fields)
        hint = f" (did you mean {close!r}?)" if close else ""
        known = ", ".join(name for name in fields if name not in fixed)
        raise ValueError(f"{where}: {config_class.__name__} has no field {unknown[0]!r}{hint}; fields: {known}")
    missing = [name for name, field in fields.items() if name not in values and _required(field)]
    if missing:
        raise ValueError(f"{where}: {config_class.__name__} needs {', '.join(missing)}")
    hints = type_hints(config_class)
    for name, value in values.items():
        if name in hints:
            check_field(name, value, hints[name], where)
    try:
        return config_class(**values)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{where}: {message}") from None


def _required(field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _closest(name: str, candidates) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return matches[0] if matches else None


def field_docs(config_class) -> dict[str, str]:
    """Per-field text from the ``Args:`` section of the class docstring (``name, other: text``)."""
    docs: dict[str, str] = {}
    current: list[str] = []
    in_args = False
    for line in (config_class.__doc__ or "").splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Attributes:"):
            in_args = True
            continue
        if not in_args:
            continue
        match = re.match(r"^([A-Za-z_][\w, ]*):\s*(.*)$", stripped)
        if match and all(part.strip().isidentifier() for part in match.group(1).split(",")):
            current = [part.strip() for part in match.group(1).split(",")]
            for name in current:
                docs[name] = match.group(2)
        elif stripped and current:
            for name in current:
                docs[name] = f"{docs[name]} {stripped}".strip()
        elif not stripped and docs:
            current = []
    return docs


def describe_options(config_class, fixed: tuple[str, ...] = ()) -> list[dict]:
    """``[{name, type, default, doc}]`` for the user-settable fields of ``config_class``."""
    hints, docs = type_hints(config_class), field_docs(config_class)
    rows = []
    for field in dataclasses.fields(config_class):
        if field.name in fixed:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = "(required)"
        annotation = hints.get(field.name, field.type)
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        rows.append({"name": field.name, "type": type_name, "default": default, "doc": docs.get(field.name, "")})
    return rows
