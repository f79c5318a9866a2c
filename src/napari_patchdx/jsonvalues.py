"""The one rule for values written as JSON (metrics, manifests, sidecars, checkpoint metadata, the report).

Files are strict JSON (``allow_nan=False``): a NaN or infinite number is written as ``null``, numpy and torch
scalars and arrays become Python numbers and lists, tuples and sets become lists, paths become strings, enums their
value, dates ISO 8601 text, dataclasses their fields. Anything else cannot be stored and raises a
:class:`~napari_patchdx.errors.ConfigError` naming where in the document it sits, never a silent ``str()``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

from ._fsutil import atomic_write_text
from .errors import ConfigError

__all__ = ["dumps", "json_value", "write_json"]


def _is_tensor_like(value: Any) -> bool:
    """numpy arrays and scalars, torch tensors: anything with ``tolist`` and ``ndim`` (no torch import needed)."""
    return hasattr(value, "tolist") and hasattr(value, "ndim") and not isinstance(value, str | bytes)


def json_value(value: Any, where: str = "value", *, fallback: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as plain, strict JSON data (see the module docstring); ``where`` names it in errors.

    ``fallback`` is for display only, never for a file: with ``fallback=str`` a value (or mapping key) JSON
    cannot hold becomes ``fallback(value)`` instead of an error, e.g. header fields shown as napari layer
    metadata. Files keep the default (None: raise).

    Raises:
        ConfigError: without ``fallback``, a value (or mapping key) that JSON cannot hold, e.g.
            ``"metrics.auc: a Foo cannot be stored as JSON"``.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return json_value(value.value, where, fallback=fallback)
    if _is_tensor_like(value):
        if getattr(value, "ndim", 0) == 0:
            return json_value(value.item(), where, fallback=fallback)
        return json_value(value.tolist(), where, fallback=fallback)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_value(dataclasses.asdict(value), where, fallback=fallback)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, str | int | float | bool | PurePath):
                if fallback is None:
                    raise ConfigError(f"{where}: key {key!r} cannot be a JSON key")
                key = fallback(key)
            out[str(key)] = json_value(item, f"{where}.{key}", fallback=fallback)
        return out
    if isinstance(value, list | tuple):
        return [json_value(item, f"{where}[{i}]", fallback=fallback) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return sorted((json_value(item, where, fallback=fallback) for item in value), key=repr)
    if fallback is not None:
        return fallback(value)
    raise ConfigError(f"{where}: a {type(value).__name__} cannot be stored as JSON")


def dumps(value: Any, *, indent: int | None = 2, where: str = "value", sort_keys: bool = False) -> str:
    """``value`` as strict JSON text (through :func:`json_value`), without a trailing newline."""
    return json.dumps(json_value(value, where), indent=indent, allow_nan=False, sort_keys=sort_keys)


def write_json(
    path: str | os.PathLike[str], value: Any, *, indent: int | None = 2, overwrite: bool = True, mkdir: bool = False
) -> Path:
    """Write ``value`` as strict JSON plus a newline to ``path`` atomically (temporary file, then rename).

    Returns the path written. Raises ConfigError for a value JSON cannot hold (nothing is written then).
    """
    text = dumps(value, indent=indent, where=os.fspath(path)) + "\n"
    return atomic_write_text(path, text, overwrite=overwrite, mkdir=mkdir)
