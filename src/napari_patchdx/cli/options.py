"""Command-line options built from a stage's settings object: one ``--flag`` per field, typed, with the field's
default and help text, and the parsed values turned back into the settings object (so a value is checked by the
same rule as in a configuration file, and a new setting is one edit: its field)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from ..errors import ConfigError

S = TypeVar("S")


def flag(name: str) -> str:
    """The command-line flag of setting ``name`` (``nms_radius_um`` -> ``--nms-radius-um``)."""
    return "--" + name.replace("_", "-")


def _fields(cls: type, names: Sequence[str] | None) -> list[dataclasses.Field[Any]]:
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise ValueError(f"{cls.__name__} has no settings {unknown}")
    return [by_name[n] for n in names] if names is not None else list(by_name.values())


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the scalar type, whether None is allowed) of a settings field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = len(args) < len(typing.get_args(hint))
    if optional and len(args) == 1:
        return args[0], True
    return hint, False


def add_setting_options(
    parser: argparse.ArgumentParser, cls: type, names: Sequence[str] | None = None, *, prefix: str = ""
) -> None:
    """Add one option per field of the settings dataclass ``cls`` (or the fields ``names``) to ``parser``.

    A bool field that defaults to True becomes ``--no-<name>``, one that defaults to False ``--<name>``; a list
    field takes one or more values; an optional field keeps None as its default. Help is the field's
    ``metadata["help"]`` and its default. ``prefix`` is put before the destination names (``dest``) so that two
    settings objects with a field of the same name can share a parser.
    """
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in _fields(cls, names):
        default = getattr(defaults, f.name)
        help_text = str(f.metadata.get("help", ""))
        kind, _ = _base_type(hints[f.name])
        dest = prefix + f.name
        if kind is bool:
            if default:
                parser.add_argument(
                    flag("no_" + f.name),
                    dest=dest,
                    action="store_false",
                    help=f"{help_text} (default: on; this flag turns it off)",
                )
            else:
                parser.add_argument(flag(f.name), dest=dest, action="store_true", help=help_text)
            continue
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            parser.add_argument(
                flag(f.name), dest=dest, nargs="+", type=item, default=default,
                help=f"{help_text} (default: {' '.join(map(str, default))})",
            )  # fmt: skip
            continue
        shown = "none" if default is None else default
        parser.add_argument(flag(f.name), dest=dest, type=kind, default=default, help=f"{help_text} (default: {shown})")


def settings_from_args(
    cls: type[S], args: argparse.Namespace, names: Sequence[str] | None = None, *, prefix: str = ""
) -> S:
    """The settings object of the options :func:`add_setting_options` added (fields not on the command line keep
    their defaults); a bad value raises the settings' ConfigError, naming the option (``--score``)."""
    fields = _fields(cls, names)  # type: ignore[arg-type]
    try:
        return cls(**{f.name: getattr(args, prefix + f.name) for f in fields})
    except ConfigError as exc:  # name the option the user typed, not the configuration key
        message = str(exc)
        for f in fields:
            message = re.sub(rf"\b[a-z_]+\.{f.name}\b", flag(f.name), message)
        raise ConfigError(message) from None
