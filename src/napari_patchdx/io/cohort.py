"""A chest X-ray cohort's tables: ``labels.csv`` and ``lesions.csv`` (one parser each, used everywhere).

* ``labels.csv``: one row per image: ``image`` (its id), ``png`` (the image file, relative to the cohort folder),
  optional ``dcm`` and ``split``, and one 0 / 1 column per class (every other column, in file order).
* ``lesions.csv``: one row per lesion box: ``image``, ``class`` (one of the label columns), ``y0, x0, y1, x1`` —
  a half-open box in native pixels ordered (row, col); other columns (e.g. ``lesion``) are ignored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputFileError

__all__ = ["LABELS_NAME", "LESIONS_NAME", "LesionBox", "cohort_folder", "read_labels", "read_lesions"]

LABELS_NAME = "labels.csv"
LESIONS_NAME = "lesions.csv"
#: columns of ``labels.csv`` that are not classes
LABEL_RESERVED = ("image", "png", "dcm", "split")
LESION_COLUMNS = ("image", "class", "y0", "x0", "y1", "x1")


def cohort_folder(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Path | None:
    """The chest X-ray cohort folder when ``inputs`` is one folder holding ``labels.csv``, else None (slides)."""
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if len(paths) == 1 and (Path(paths[0]) / LABELS_NAME).is_file():
        return Path(paths[0])
    return None


@dataclass(frozen=True)
class LesionBox:
    """One row of ``lesions.csv``: a half-open box ``[y0, y1) x [x0, x1)`` in native pixels of ``image``."""

    image: str
    cls: str
    class_index: int
    y0: float
    x0: float
    y1: float
    x1: float


def read_labels(root: str | os.PathLike[str]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A cohort's ``labels.csv`` (in folder ``root``), checked; returns the table and the class names.

    ``image``, ``png``, ``dcm`` and ``split`` are read as text (an id ``001`` stays ``001``, as in ``lesions.csv``).

    Raises:
        InputFileError: naming ``labels.csv`` (and the line): missing or unreadable, no ``image`` / ``png``
            column, no class column, an empty image id or png, or a class value other than 0 / 1.
    """
    labels_csv = Path(root) / LABELS_NAME
    if not labels_csv.is_file():
        raise InputFileError(labels_csv, "no such file (a chest X-ray cohort needs labels.csv)")
    try:
        table = pd.read_csv(labels_csv, dtype={c: str for c in LABEL_RESERVED})
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(labels_csv, f"not a readable CSV table ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for col in ("image", "png"):
        if col not in table.columns:
            raise InputFileError(labels_csv, f"missing column {col!r} (has {', '.join(table.columns) or 'none'})")
    for col in ("image", "png"):
        blank = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if blank.any():
            lineno = int(np.flatnonzero(blank.to_numpy())[0]) + 2
            raise InputFileError(labels_csv, f"line {lineno}: empty {col!r}")
    classes = tuple(str(c) for c in table.columns if c not in LABEL_RESERVED)
    if not classes:
        raise InputFileError(labels_csv, "has no class columns besides image, png, dcm and split")
    values = table[list(classes)]
    numbers = values.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() | ~numbers.isin([0, 1])
    if bad.any().any():
        row = int(np.flatnonzero(bad.any(axis=1).to_numpy())[0])
        col = str(bad.columns[bad.iloc[row].to_numpy()][0])
        value = values.iloc[row][col]
        shown = "empty" if pd.isna(value) else repr(str(value))
        raise InputFileError(
            labels_csv,
            f"line {row + 2}: class {col!r} is {shown}; class columns {list(classes)} must hold 0 or 1 in every row",
        )
    return table, classes


def read_lesions(path: str | os.PathLike[str], classes: tuple[str, ...] | list[str]) -> dict[str, list[LesionBox]]:
    """``lesions.csv`` as ``{image id: [LesionBox, ...]}`` (file order), every row checked.

    Raises:
        InputFileError: naming the file (and the line): unreadable, a missing column, an unknown class, a
            coordinate that is not a number, or an empty / non-finite box.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a readable lesion table (image, class, y0, x0, y1, x1): {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in LESION_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing columns {', '.join(missing)} (has {', '.join(table.columns) or 'none'})")
    classes = tuple(classes)
    out: dict[str, list[LesionBox]] = {}
    rows = table[list(LESION_COLUMNS)].itertuples(index=False, name=None)
    for lineno, (image, cls, *coords) in enumerate(rows, start=2):
        image, cls = str(image).strip(), str(cls).strip()
        if not image:
            raise InputFileError(path, f"line {lineno}: empty 'image'")
        if cls not in classes:
            raise InputFileError(path, f"line {lineno}: unknown class {cls!r} (the labels have {', '.join(classes)})")
        try:
            y0, x0, y1, x1 = (float(str(v).strip()) for v in coords)
        except ValueError:
            raise InputFileError(path, f"line {lineno}: box coordinates must be numbers") from None
        if not all(math.isfinite(v) for v in (y0, x0, y1, x1)) or y1 <= y0 or x1 <= x0:
            raise InputFileError(path, f"line {lineno}: box ({y0:g}, {x0:g}, {y1:g}, {x1:g}) is empty or not finite")
        out.setdefault(image, []).append(LesionBox(image, cls, classes.index(cls), y0, x0, y1, x1))
    return out
