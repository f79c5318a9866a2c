"""Lesion points: :class:`PointsTable` and its file formats.

A :class:`PointsTable` holds level-0 (y, x) positions and probabilities, highest probability first. It writes the
CAMELYON16 submission CSV (:meth:`PointsTable.to_camelyon_csv`) and QuPath GeoJSON detections
(:meth:`PointsTable.to_geojson`); :func:`read_camelyon_csv` reads the CSV back. These two methods are the one writer
of each format: the evaluate stage (``points/<name>.csv`` and ``.geojson``) and the napari plugin's Points-layer
writers both call them. (X, Y) appears only here, at the format boundary.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .files import PathLike, atomic_write, read_text


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(value))


@dataclass(frozen=True, eq=False)
class PointsTable:
    """Lesion points: level-0 positions and probabilities, highest probability first.

    Attributes:
        y, x: float64 (n,) continuous level-0 pixel coordinates (row, col) of each point.
        probability: float64 (n,) tumour probability of each point; sorted in decreasing order (stable, so
            equal probabilities keep their input order).
        source: the file the points came from, or None (named in error messages).

    The arrays are copied to read-only float64 on construction; an
    :class:`~napari_patchdx.errors.InputFileError` (a ValueError) is raised unless they are 1-D, of one length
    and finite.
    """

    y: np.ndarray
    x: np.ndarray
    probability: np.ndarray
    source: Path | None = None

    def __post_init__(self) -> None:
        arrays = []
        for name in ("y", "x", "probability"):
            arr = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            if np.ndim(getattr(self, name)) > 1:
                raise InputFileError(
                    self.source, f"points: {name} must be 1-D, got shape {np.shape(getattr(self, name))}"
                )
            arrays.append(arr)
        y, x, p = arrays
        if not (len(y) == len(x) == len(p)):
            raise InputFileError(
                self.source, f"points: y, x and probability differ in length ({len(y)}, {len(x)}, {len(p)})"
            )
        for name, arr in (("probability", p), ("y", y), ("x", x)):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise InputFileError(
                    self.source, f"points: {bad.size} {name} value(s) are not finite (first at index {int(bad[0])})"
                )
        order = np.argsort(-p, kind="stable")
        for name, arr in (("y", y), ("x", x), ("probability", p)):
            arr = np.ascontiguousarray(arr[order])
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if self.source is not None:
            object.__setattr__(self, "source", Path(self.source))

    def __len__(self) -> int:
        return int(self.probability.shape[0])

    @classmethod
    def empty(cls, source: PathLike | None = None) -> PointsTable:
        """A table with no points."""
        return cls(np.empty(0), np.empty(0), np.empty(0), None if source is None else Path(source))

    @property
    def yx(self) -> np.ndarray:
        """(n, 2) float64 level-0 (y, x) positions, e.g. for a napari Points layer (with its vector transform)."""
        return np.stack([self.y, self.x], axis=1)

    def to_camelyon_csv(self, path: PathLike, *, integer: bool = True, overwrite: bool = True) -> Path:
        """Write the CAMELYON16 submission CSV, atomically; returns the path written.

        One row ``probability,X,Y`` per point, no header, X = column and Y = row in level-0 pixels. With
        ``integer`` (the default) X and Y are the level-0 pixel holding the point, ``floor(x)`` and ``floor(y)``,
        written as integers, which the official evaluation script requires (it reads them with ``int()``); the
        FROC lookup ``int(Y / 2**level)`` gives the same cell for the integer as for the exact point. With
        ``integer=False`` they are written with full float precision (our reader accepts both).
        Probabilities are written with full float precision.
        """
        buf = io.StringIO()
        for p, x, y in zip(self.probability, self.x, self.y, strict=True):
            if integer:
                buf.write(f"{_fmt(p)},{math.floor(x)},{math.floor(y)}\n")
            else:
                buf.write(f"{_fmt(p)},{_fmt(x)},{_fmt(y)}\n")
        return atomic_write(path, buf.getvalue().encode("utf-8"), overwrite)

    def to_geojson(self, path: PathLike, *, class_name: str = "Tumor", overwrite: bool = True) -> Path:
        """Write QuPath GeoJSON detections, atomically; returns the path written.

        A FeatureCollection with one ``Point`` feature per lesion point, most probable first, coordinates ``[x, y]``
        in continuous level-0 pixels (QuPath's frame: (0, 0) is the top-left corner of the first level-0 pixel, so
        the centre of pixel (row 3, col 7) is ``[7.5, 3.5]``). Each feature's properties are what QuPath (0.4 and
        later) reads back through *File > Import objects from file*: ``objectType`` ``"detection"``,
        ``classification`` ``{"name": class_name, "color": [200, 0, 0]}`` and ``measurements``
        ``{"probability": p}`` (a column of the detection measurement table); ``probability`` is also a plain
        property for readers other than QuPath.
        """
        features = []
        for p, x, y in zip(self.probability, self.x, self.y, strict=True):
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                    "properties": {
                        "objectType": "detection",
                        "classification": {"name": class_name, "color": [200, 0, 0]},
                        "probability": float(p),
                        "measurements": {"probability": float(p)},
                    },
                }
            )
        text = json.dumps({"type": "FeatureCollection", "features": features}, allow_nan=False)
        return atomic_write(path, (text + "\n").encode("utf-8"), overwrite)


_CSV_COLUMNS = ("probability", "X", "Y")


def read_camelyon_csv(path: PathLike) -> PointsTable:
    """Read a CAMELYON16 detection CSV: rows ``probability,X,Y`` (level-0 pixels), no header.

    Blank lines are skipped; an empty file is a slide with no detections. X and Y may be integers (the
    challenge format) or decimals; they are taken as continuous level-0 coordinates x = X, y = Y.

    Raises:
        InputFileError: the file is missing or not UTF-8 text, a row has a header or other non-numeric text,
            fewer or more than 3 values, or a value that is NaN or infinite; the message names the file and the
            line number.
    """
    p = Path(path)
    text = read_text(p, "a CAMELYON16 detection CSV (rows of probability,X,Y)")
    rows: list[tuple[float, float, float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        shown = stripped if len(stripped) <= 80 else stripped[:77] + "..."
        fields = [f.strip() for f in stripped.split(",")]
        if len(fields) != 3:
            raise InputFileError(
                p, f"line {lineno}: expected 3 comma-separated values probability,X,Y, got {len(fields)}: {shown!r}"
            )
        values: list[float] = []
        for column, value in zip(_CSV_COLUMNS, fields, strict=True):
            if not value:
                raise InputFileError(p, f"line {lineno}: {column} is missing in {shown!r}")
            try:
                values.append(float(value))
            except ValueError:
                if not rows:
                    raise InputFileError(
                        p,
                        f"line {lineno}: looks like a header row ({shown!r}); CAMELYON16 detection files have no "
                        "header, only rows of probability,X,Y",
                    ) from None
                raise InputFileError(p, f"line {lineno}: {column} is not a number: {value!r}") from None
            if not math.isfinite(values[-1]):
                raise InputFileError(p, f"line {lineno}: {column} is {value}; every value must be a finite number")
        rows.append((values[0], values[1], values[2]))
    if not rows:
        return PointsTable.empty(p)
    arr = np.array(rows, dtype=np.float64)
    return PointsTable(y=arr[:, 2], x=arr[:, 1], probability=arr[:, 0], source=p)
