"""Command-line options built from a stage's settings object: one ``--flag`` per field, typed, with the field's
default and help text, and the parsed values turned back into the settings object (so a value is checked by the
same rule as in a configuration file, and a new setting is one edit: its field). Also the one ``--mpp`` option of
the commands that read slides (:func:`add_mpp_option`, :func:`mpp_from_args`) and :class:`UsageError`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from ..errors import ConfigError
from ..io.names import file_name
from ..sampling.sources import check_mpp_names, check_slide_mpp

S = TypeVar("S")

MPP_HELP = (
    "slides: level-0 microns per pixel, overriding the files' (needed where a file says nothing): UM for every "
    "slide, or NAME=UM (repeated) for the slides named (by file name without the suffix)"
)
"""The help of ``--mpp``, the slides' microns per pixel wherever a command reads slides."""


class UsageError(Exception):
    """A command-line usage problem found after parsing (exit code 2)."""


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


def add_mpp_option(parser: argparse.ArgumentParser, also: str = "") -> None:
    """Add ``--mpp UM`` / ``--mpp NAME=UM`` (repeatable): the slides' level-0 microns per pixel (:data:`MPP_HELP`;
    ``also`` is appended to the help), read back by :func:`mpp_from_args`."""
    parser.add_argument(
        "--mpp", action="append", default=None, metavar="UM | NAME=UM", help=MPP_HELP + (f"; {also}" if also else "")
    )


def _micrometres(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--mpp: {text!r} is not a number of microns per pixel") from None


def mpp_from_args(
    args: argparse.Namespace, slides: Sequence[str | os.PathLike[str]]
) -> float | dict[str, float] | None:
    """The slides' microns per pixel ``--mpp`` gives (:data:`~napari_patchdx.sampling.sources.SlideMpp`): one
    value, a mapping slide name -> value, or None when the option is absent.

    Raises:
        UsageError: ``--mpp`` without slides, a value that is not a number, one value given twice, values mixed
            with ``NAME=UM``, a name given twice.
        ConfigError: a value that is not > 0, or a name that is not one of ``slides`` (the closest suggested).
    """
    given: list[str] | None = args.mpp
    if not given:
        return None
    if not slides:
        raise UsageError("--mpp gives slides their microns per pixel, but no slide is among the inputs")
    named = [text.partition("=") for text in given]
    if not any(sep for _, sep, _ in named):
        if len(given) > 1:
            raise UsageError("--mpp: give one value for every slide, or NAME=UM for each slide named")
        value: float | dict[str, float] = _micrometres(given[0])
    elif all(sep for _, sep, _ in named):
        value = {}
        for name, _, um in named:
            name = name.strip()
            if name in value:
                raise UsageError(f"--mpp: slide {name!r} is given twice")
            value[name] = _micrometres(um)
    else:
        raise UsageError("--mpp: give either one value for every slide or NAME=UM per slide, not both")
    checked = check_slide_mpp(value, "--mpp")
    check_mpp_names(checked, [file_name(s) for s in slides], "--mpp")
    return checked
