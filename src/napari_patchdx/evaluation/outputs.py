"""CSV output of the evaluations (NaN and None as empty cells, written atomically) and AUC intervals.

JSON goes through :mod:`napari_patchdx.jsonvalues` (the one JSON rule).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonvalues import json_value
from .files import PathLike, atomic_write


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(float(value)) else repr(float(value))
    return str(value)


def write_csv(path: PathLike, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write a CSV with a header row of ``columns``, atomically (NaN and None as empty cells)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return atomic_write(path, buf.getvalue().encode("utf-8"))


def auc_interval(values: tuple[float, float, float] | None) -> dict[str, float | None]:
    """``(auc, lo, hi)`` as a JSON-ready dict (NaN -> None); None gives a dict of None."""
    if values is None:
        return {"auc": None, "lo": None, "hi": None}
    auc, lo, hi = values
    return {"auc": json_value(auc), "lo": json_value(lo), "hi": json_value(hi)}
