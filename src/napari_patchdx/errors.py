"""Exceptions raised by napari-patchdx.

Every error about a file names the file and the problem, so a user can act on the message alone.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ConfigError", "InputFileError", "MissingMetadataError", "PatchdxError"]


class PatchdxError(Exception):
    """Base class of every error napari-patchdx raises on purpose."""


class InputFileError(PatchdxError, ValueError):
    """A file cannot be used: unreadable, wrong format, truncated, unsafe or inconsistent.

    The message reads ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

    def __reduce__(self) -> tuple[type, tuple[Path | None, str], dict]:
        """Pickle as ``(path, problem)`` so the error survives a trip to and from a worker process."""
        return type(self), (self.path, self.problem), self.__dict__


class MissingMetadataError(InputFileError):
    """A value a step needs (e.g. microns per pixel) is not in the file and was not given."""


class ConfigError(PatchdxError, ValueError):
    """A configuration value is unknown, out of range or inconsistent."""
