"""File helpers of the evaluation modules: the path type, atomic writes and reading a text input file."""

from __future__ import annotations

import os
from pathlib import Path

from .._fsutil import atomic_write_bytes
from ..errors import InputFileError

PathLike = str | os.PathLike[str]
"""A file path: a ``str`` or an :class:`os.PathLike`."""


def atomic_write(path: PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`napari_patchdx._fsutil.atomic_path`)."""
    return atomic_write_bytes(path, data, overwrite=overwrite)


def read_text(path: Path, what: str) -> str:
    """The text of a UTF-8 input file; a missing, unreadable or non-UTF-8 file names ``what`` was expected."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(path, f"is a directory, not {what}") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(path, f"not UTF-8 text; expected {what}") from None
