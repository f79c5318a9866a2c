"""Atomic file output: every artifact is written under a temporary name beside its target, then renamed.

An interrupted write therefore never leaves a file that looks complete, and an existing target stays
byte-identical until the new content is fully on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "current_umask", "keep_backup", "sha256_file"]


def current_umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; 0o022 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True, mkdir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The new file gets the
    existing target's permissions, or the umask's default for a new file.

    Raises:
        FileNotFoundError: the parent folder does not exist (and ``mkdir`` is False).
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    parent = target.parent
    if mkdir:
        parent.mkdir(parents=True, exist_ok=True)
    if not parent.is_dir():
        raise FileNotFoundError(f"{target}: cannot write, folder {parent} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"{target}: cannot write, it is a folder")
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: already exists (pass overwrite=True to replace it)")
    mode = (target.stat().st_mode & 0o7777) if target.exists() else (0o666 & ~current_umask())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, **kwargs: bool) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path` for ``overwrite`` / ``mkdir``)."""
    with atomic_path(path, **kwargs) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], write: str | Callable[[TextIO], None], **kwargs: bool) -> Path:
    """Write text (a string, or a function writing to a text handle) as UTF-8 with ``\\n`` line ends, atomically."""
    with atomic_path(path, **kwargs) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        if isinstance(write, str):
            fh.write(write)
        else:
            write(fh)
    return Path(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keep_backup(path: str | os.PathLike[str]) -> Path | None:
    """Copy an existing ``path`` to ``<path>.bak`` (replacing an older backup, atomically) before it is rewritten;
    returns the backup, or None when there was nothing to keep."""
    source = Path(path)
    if not source.is_file():
        return None
    return atomic_write_bytes(source.with_name(source.name + ".bak"), source.read_bytes())
