"""Checks of configuration values shared by the trainer and the pipeline: each names its key and, for a choice,
the closest valid value."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ConfigError


def closest(name: str, options: Sequence[str]) -> str:
    """The option most similar to ``name`` (for "did you mean ...?" hints)."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.0)
    return match[0] if match else options[0]


def unknown_key(values: Mapping[str, Any], names: Sequence[str]) -> tuple[str, str] | None:
    """The first key of ``values`` not in ``names`` and the closest valid name to it, or None when all are known."""
    for key in values:
        if key not in names:
            return str(key), closest(str(key), names)
    return None


def choice(key: str, value: Any, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``, else a ConfigError naming ``key`` and the closest option."""
    if value not in options:
        hint = f" (did you mean {closest(str(value), options)!r}?)" if isinstance(value, str) else ""
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, options))}, got {value!r}{hint}")
    return value


def integer(key: str, value: Any, low: int, *, optional: bool = False) -> int | None:
    """``value`` as an int >= ``low`` (None allowed when ``optional``), else a ConfigError naming ``key``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < low:
        raise ConfigError(f"{key} must be an integer >= {low}{' or None' if optional else ''}, got {value!r}")
    return int(value)


def number(key: str, value: Any, *, low: float = 0.0, strict: bool = True, optional: bool = False) -> float | None:
    """``value`` as a finite float above ``low`` (or at least ``low`` when not ``strict``), else a ConfigError."""
    if value is None and optional:
        return None
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or (float(value) <= low if strict else float(value) < low):
        rel = ">" if strict else ">="
        raise ConfigError(f"{key} must be a finite number {rel} {low}{' or None' if optional else ''}, got {value!r}")
    return float(value)


def boolean(key: str, value: Any) -> bool:
    """``value`` if it is a bool, else a ConfigError naming ``key``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def text(key: str, value: Any, *, optional: bool = False) -> str | None:
    """The setting ``key`` as a non-empty string (a path becomes its text); None passes when ``optional``.

    Raises:
        ConfigError: ``value`` is not a non-empty string (the message names ``key``).
    """
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string{' or null' if optional else ''}, got {value!r}")
    return str(value)


def about(help_text: str) -> dict[str, str]:
    """A settings field's metadata: ``help_text`` is the one text that the configuration reference, the command
    line's ``--help`` and the widgets' tooltips show for the setting (``field(default=..., metadata=about(...))``)."""
    return {"help": help_text}
