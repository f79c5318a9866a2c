"""The patch table: its columns, and reading / writing it (CSV or Parquet).

The patch table (a pandas DataFrame, saved as CSV or Parquet) has one row per patch:

=========  ==================================================================================================
``slide``  the image file (path as given)
``x, y``   level-0 top-left corner of the patch's read window, in pixels (continuous frame, integer valued)
``level``  the pyramid level the patch is read from
``size``   side of the read window in pixels of that level (it is resized to the patch size when they differ)
``label``  0 / 1 (slides: tumour if any pixel of the central region is tumour; X-rays: any lesion class)
``split``  ``train`` / ``val`` / ``test``, assigned per slide or image, never per patch
=========  ==================================================================================================

X-ray tables add one ``label_<class>`` 0/1 column per lesion class (multi-label targets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._fsutil import atomic_path
from ..errors import ConfigError, InputFileError
from .splits import SPLITS

__all__ = ["PATCH_COLUMNS", "patch_frame", "read_patch_table", "write_patch_table"]

PATCH_COLUMNS = ("slide", "x", "y", "level", "size", "label", "split")


def patch_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A patch table of ``rows`` (dicts with the patch-table columns), with integer columns typed; no rows gives
    an empty table with :data:`PATCH_COLUMNS`.
    """
    table = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(PATCH_COLUMNS))
    for col in ("x", "y", "level", "size"):
        table[col] = table[col].astype(np.int64)
    table["label"] = table["label"].astype(np.int8)
    return table


def write_patch_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Save a patch table as CSV (``.csv``) or Parquet (``.parquet``), atomically."""
    path = Path(path)
    missing = [c for c in PATCH_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"patch table lacks columns {missing}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{path}: patch tables are saved as .csv or .parquet")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return path


def read_patch_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load a patch table saved by :func:`write_patch_table` (or written by hand), checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise InputFileError(path, f"not a readable patch table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in PATCH_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(path, f"patch table lacks columns {missing}; needs {list(PATCH_COLUMNS)}")
    bad = ~table["split"].isin(SPLITS)
    if bad.any():
        raise InputFileError(path, f"row {int(np.flatnonzero(bad)[0]) + 2}: split must be one of {SPLITS}")
    return table
