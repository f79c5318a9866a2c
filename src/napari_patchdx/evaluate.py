"""Evaluation: lesion points (Liu et al. NMS), CAMELYON16 lesion-level FROC, slide-level AUC, X-ray metrics.

Coordinates follow :mod:`napari_patchdx.geometry`: continuous level-0 pixel coordinates ordered (y, x). (X, Y)
appears only in the CAMELYON16 CSV and GeoJSON writers / reader, at the format boundary.

Lesion points
    :func:`lesion_points` runs Liu et al.'s non-maximum suppression on a heatmap laid over level 0 by a
    :class:`~napari_patchdx.geometry.Grid`; the result is a :class:`PointsTable` (level-0 (y, x) and
    probability, highest probability first) that writes the CAMELYON16 submission CSV and QuPath GeoJSON.

CAMELYON16 FROC (the official protocol, see ``shared/REFERENCE.md``)
    :func:`evaluation_mask` grows every tumour region by 37.5 um at level 5, fills holes, labels the result with
    8-connectivity and marks isolated tumour cells (major axis below 275 um). :func:`froc` looks every detection
    up in that mask exactly like the official ``Evaluation_FROC.py`` (``mask[int(Y / 2**level), int(X / 2**level)]``)
    and computes the curve like its ``computeFROC`` and the score as the mean sensitivity at 1/4, 1/2, 1, 2, 4 and
    8 false positives per slide (``np.interp`` on the curve sorted by FP rate).

    One deliberate departure: the official code stores each lesion's best probability in a float32 array while
    false-positive probabilities stay float64, so a lesion and a false positive with the same probability (a tie)
    can fall on different sides of a threshold. We keep every probability in float64, so ties are treated alike.

    Bad input is an error, never a silently different number (:func:`froc`):

    * a detection outside the level-0 slide (X or Y negative, ``X >= width`` or ``Y >= height``), or outside the
      supplied mask array, raises :class:`~napari_patchdx.errors.InputFileError` naming the slide and the file;
    * a probability that is not finite or outside [0, 1] raises (the CSV reader already rejects NaN);
    * slide sets: without an explicit ``slides`` list the detection slides and the ground-truth slides must be the
      same names; with one, every detection slide must be listed and every listed slide needs a ground-truth
      entry (``None`` for a normal slide); a listed slide without detections contributes none.

Slide level and chest X-rays
    :func:`slide_score` (maximum, as Liu et al., or mean of the top k), :func:`roc_auc_ci` (bootstrap confidence
    interval), :func:`multilabel_auroc`, :func:`youden_thresholds`, :func:`sensitivity_specificity` and
    :func:`pointing_game` (CAM localisation).

Every writer writes atomically (a temporary file beside the target, then ``os.replace``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._fsutil import atomic_write_bytes
from .errors import ConfigError, InputFileError
from .geometry import Grid
from .io.annotations import AnnotationSet, read_annotations

__all__ = [
    "CAMELYON_LEVEL",
    "CAMELYON_MPP",
    "FROC_FP_RATES",
    "GROWTH_UM",
    "ITC_MAJOR_AXIS_UM",
    "LIU_RADIUS_UM",
    "FrocResult",
    "PointsTable",
    "SlideFroc",
    "evaluation_mask",
    "froc",
    "froc_from_dirs",
    "lesion_points",
    "multilabel_auroc",
    "pointing_game",
    "read_camelyon_csv",
    "roc_auc_ci",
    "sensitivity_specificity",
    "slide_score",
    "youden_thresholds",
]

PathLike = str | os.PathLike[str]

CAMELYON_LEVEL = 5
"""Pyramid level (downsample 2**5 = 32) at which the official evaluation reads the ground-truth mask."""
CAMELYON_MPP = 0.243
"""Level-0 microns per pixel the official evaluation assumes for every slide."""
GROWTH_UM = 75.0
"""Tumour regions are grown by half of this (37.5 um), so regions closer than 75 um merge into one lesion."""
ITC_MAJOR_AXIS_UM = 275.0
"""A labelled region whose major axis (moment ellipse) is below this is an isolated-tumour-cell cluster."""
FROC_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per slide at which the FROC score averages the sensitivity."""
LIU_RADIUS_UM = 187.5
"""Liu et al.'s suppression radius: 6 heatmap cells of 128 px at 0.243 um/px (about 187 um)."""


# ============================================================================================ file helpers


def _atomic_write(path: PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`napari_patchdx._fsutil.atomic_path`)."""
    return atomic_write_bytes(path, data, overwrite=overwrite)


def _read_text(path: Path, what: str) -> str:
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


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(value))


# ============================================================================================ lesion points


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
        return _atomic_write(path, buf.getvalue().encode("utf-8"), overwrite)

    def to_geojson(self, path: PathLike, *, class_name: str = "Tumor", overwrite: bool = True) -> Path:
        """Write QuPath-style GeoJSON, atomically; returns the path written.

        A FeatureCollection with one ``Point`` feature per lesion point, coordinates ``[x, y]`` in continuous
        level-0 pixels (QuPath's frame: (0, 0) is the top-left corner of the first pixel), and properties
        ``objectType`` ``"annotation"``, ``classification`` ``{"name": class_name}``, ``probability`` and
        ``measurements`` ``{"probability": ...}`` (shown in QuPath's measurement table).
        """
        features = []
        for p, x, y in zip(self.probability, self.x, self.y, strict=True):
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                    "properties": {
                        "objectType": "annotation",
                        "classification": {"name": class_name, "color": [200, 0, 0]},
                        "probability": float(p),
                        "measurements": {"probability": float(p)},
                    },
                }
            )
        text = json.dumps({"type": "FeatureCollection", "features": features}, allow_nan=False)
        return _atomic_write(path, (text + "\n").encode("utf-8"), overwrite)


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
    text = _read_text(p, "a CAMELYON16 detection CSV (rows of probability,X,Y)")
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


def _disk_footprint(ry: float, rx: float) -> np.ndarray:
    """Boolean (2ky+1, 2kx+1) footprint of cells whose centre lies within the ellipse of radii (ry, rx) cells."""
    ky, kx = math.floor(ry + 1e-9), math.floor(rx + 1e-9)
    dy = np.arange(-ky, ky + 1, dtype=np.float64)[:, None]
    dx = np.arange(-kx, kx + 1, dtype=np.float64)[None, :]
    ty = (dy / ry) ** 2 if ry > 0 else np.zeros_like(dy)
    tx = (dx / rx) ** 2 if rx > 0 else np.zeros_like(dx)
    return (ty + tx) <= 1.0 + 1e-9


def lesion_points(
    heatmap: ArrayLike,
    grid: Grid,
    threshold: float = 0.5,
    radius_um: float = LIU_RADIUS_UM,
    max_points: int | None = None,
    *,
    radius_cells: float | None = None,
) -> PointsTable:
    """Lesion points from a probability heatmap by Liu et al.'s non-maximum suppression.

    Repeat until no remaining cell exceeds ``threshold`` (strictly): report the maximum and its position, then
    suppress every cell within the radius of it. Suppressed cells are never reported again (Liu et al. set them
    to zero, which is the same for ``threshold >= 0``). NaN cells (no tissue, not computed) are never reported and
    suppress nothing. Equal maxima are taken in row-major order (as ``np.argmax``).

    A cell is within the radius when its centre lies within ``radius`` of the reported cell's centre (boundary
    included); with anisotropic spacing the disk is an ellipse in cells. Each reported point costs a
    footprint-sized window only, so large heatmaps (800 x 800 cells and more) with many points stay fast.

    Args:
        heatmap: 2-D probabilities, shape ``grid.shape``.
        grid: where the heatmap lies in level 0; a point is reported at its cell's centre (:meth:`Grid.centres`).
        threshold: report only cells whose value exceeds this (t = 0.5 in Liu et al.).
        radius_um: suppression radius in micrometres, converted to cells with ``grid.mpp`` and ``grid.spacing``
            (Liu et al.: 6 cells of 128 px at 0.243 um/px, 187.5 um).
        max_points: stop after this many points (None: no limit).
        radius_cells: suppression radius in heatmap cells; when given it is used instead of ``radius_um``.

    Returns:
        A :class:`PointsTable` of level-0 (y, x) cell centres and their heatmap values, highest first.

    Raises:
        ConfigError: the heatmap is not 2-D or not of ``grid.shape``; the radius is given in micrometres but the
            grid's microns per pixel are unknown; a negative / non-finite radius, threshold or ``max_points``.
    """
    values = np.asarray(heatmap)
    if values.ndim != 2:
        raise ConfigError(f"lesion_points needs a 2-D heatmap, got shape {values.shape}")
    if tuple(int(s) for s in values.shape) != tuple(int(s) for s in grid.shape):
        raise ConfigError(f"heatmap shape {values.shape} does not match its grid's shape {tuple(grid.shape)}")
    if not math.isfinite(float(threshold)):
        raise ConfigError(f"threshold must be finite, got {threshold!r}")
    if max_points is not None and int(max_points) < 0:
        raise ConfigError(f"max_points must be >= 0 or None, got {max_points!r}")
    if radius_cells is not None:
        ry = rx = float(radius_cells)
    else:
        if grid.mpp is None:
            raise ConfigError(
                f"the suppression radius is given in micrometres ({radius_um} um) but the heatmap's grid has no "
                "microns per pixel (grid.mpp is None); give the slide's mpp or pass radius_cells="
            )
        ry = float(radius_um) / (float(grid.mpp) * float(grid.spacing[0]))
        rx = float(radius_um) / (float(grid.mpp) * float(grid.spacing[1]))
    if not (math.isfinite(ry) and math.isfinite(rx) and ry >= 0 and rx >= 0):
        raise ConfigError(f"the suppression radius must be finite and >= 0, got {ry} x {rx} cells")
    foot = _disk_footprint(ry, rx)
    ky, kx = foot.shape[0] // 2, foot.shape[1] // 2
    nrows, ncols = values.shape
    flat = values.reshape(-1).astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        candidates = np.flatnonzero(flat > float(threshold))
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    alive = np.ones((nrows, ncols), dtype=bool)
    alive_flat = alive.reshape(-1)
    limit = len(order) if max_points is None else int(max_points)
    picked: list[int] = []
    for idx in order.tolist():
        if len(picked) >= limit:
            break
        if not alive_flat[idx]:
            continue
        picked.append(idx)
        r, c = divmod(idx, ncols)
        r0, r1 = max(0, r - ky), min(nrows, r + ky + 1)
        c0, c1 = max(0, c - kx), min(ncols, c + kx + 1)
        window = foot[r0 - (r - ky) : r1 - (r - ky), c0 - (c - kx) : c1 - (c - kx)]
        alive[r0:r1, c0:c1] &= ~window
    idx_arr = np.asarray(picked, dtype=np.int64)
    rows, cols = np.divmod(idx_arr, ncols)
    y, x = grid.centres(rows, cols)
    return PointsTable(y=y, x=x, probability=flat[idx_arr])


# ========================================================================================= CAMELYON16 FROC


def _check_protocol(level: int, mpp: float) -> tuple[int, float]:
    if isinstance(level, bool) or int(level) != level or int(level) < 0:
        raise ConfigError(f"level must be a non-negative integer, got {level!r}")
    mpp_f = float(mpp)
    if not (math.isfinite(mpp_f) and mpp_f > 0):
        raise ConfigError(f"mpp (level-0 microns per pixel) must be positive and finite, got {mpp!r}")
    return int(level), mpp_f


def _level_shape(level0_shape: tuple[int, int], ds: int) -> tuple[int, int]:
    h, w = (int(v) for v in level0_shape)
    return (-(-h // ds), -(-w // ds))


def _check_shape(level0_shape: Any, what: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in level0_shape)
        ok = all(float(v) == int(v) for v in level0_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: level-0 shape must be (height, width), got {level0_shape!r}") from None
    if not ok or h <= 0 or w <= 0:
        raise ConfigError(f"{what}: level-0 shape must be two positive integers (height, width), got {level0_shape!r}")
    return h, w


def evaluation_mask(
    annotations: AnnotationSet | ArrayLike,
    level0_shape: tuple[int, int] | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
) -> tuple[np.ndarray, set[int], int]:
    """The CAMELYON16 evaluation mask: labelled lesions at pyramid level ``level`` and the ITC labels.

    As the official ``computeEvaluationMask`` / ``computeITCList``: the tumour mask at downsample
    ``ds = 2**level`` (shape ``(ceil(h / ds), ceil(w / ds))``) is grown to every pixel whose Euclidean distance
    to tumour (``scipy.ndimage.distance_transform_edt`` of the non-tumour pixels) is below
    ``75 / (mpp * ds * 2)`` pixels (37.5 um), holes are filled (``scipy.ndimage.binary_fill_holes``, so an
    exclusion region inside a tumour becomes part of the lesion), and the result is labelled with 8-connectivity
    (``skimage.measure.label(connectivity=2)``). A label is an isolated-tumour-cell cluster (ITC) when its
    ``regionprops`` major axis length is below ``275 / (mpp * ds)`` pixels (275 um; 35.36 px at level 5 and
    0.243 um/px).

    Args:
        annotations: the slide's annotations (tumour minus holes and exclusion regions, rasterised at ``ds``:
            a pixel is tumour when its centre is inside), or a precomputed tumour mask already at level
            ``level`` (any 2-D array; non-zero is tumour, so 0/1 and 0/255 masks both work).
        level0_shape: the slide's level-0 (height, width) in pixels; required with annotations, checked against
            the mask's shape when a mask is given.
        level: pyramid level of the evaluation (5 in the challenge).
        mpp: level-0 microns per pixel assumed by the protocol (0.243 in the challenge, for every slide).

    Returns:
        ``(labels, itc_labels, ds)``: int64 label image (0 = no lesion, 1..n lesions), the set of labels that are
        ITCs, and the downsample ``2**level``.

    Raises:
        ConfigError: bad level / mpp / shape; annotations without a level-0 shape; a mask that is not 2-D, holds
            NaN, or does not match ``level0_shape``.
    """
    level, mpp = _check_protocol(level, mpp)
    ds = 2**level
    if isinstance(annotations, AnnotationSet):
        if level0_shape is None:
            raise ConfigError("evaluation_mask needs the slide's level-0 (height, width) to rasterise annotations")
        h, w = _check_shape(level0_shape, "evaluation_mask")
        tumor = annotations.rasterize(_level_shape((h, w), ds), ds)
    else:
        arr = np.asarray(annotations)
        if arr.ndim != 2:
            raise ConfigError(f"a precomputed tumour mask must be 2-D (rows, cols) at level {level}, got {arr.shape}")
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ConfigError("the precomputed tumour mask contains NaN")
        if level0_shape is not None:
            expected = _level_shape(_check_shape(level0_shape, "evaluation_mask"), ds)
            if arr.shape != expected:
                raise ConfigError(
                    f"the tumour mask has shape {arr.shape} but a {tuple(level0_shape)} px slide at level {level} "
                    f"(downsample {ds}) has shape {expected}"
                )
        tumor = arr != 0
    if not tumor.any():
        return np.zeros(tumor.shape, dtype=np.int64), set(), ds

    from scipy import ndimage
    from skimage import measure

    distance = ndimage.distance_transform_edt(~tumor)
    grown = distance < GROWTH_UM / (mpp * ds * 2.0)
    filled = ndimage.binary_fill_holes(grown)
    labels = measure.label(filled, connectivity=2).astype(np.int64, copy=False)
    itc_px = ITC_MAJOR_AXIS_UM / (mpp * ds)
    itc = {int(p.label) for p in measure.regionprops(labels) if p.axis_major_length < itc_px}
    return labels, itc, ds


@dataclass(frozen=True)
class SlideFroc:
    """Per-slide counts of a FROC evaluation.

    Attributes:
        slide: the slide name.
        is_tumor: whether the slide has ground truth (False: a normal slide, every detection a false positive).
        n_lesions: lesions to find (labels of the evaluation mask that are not ITCs).
        n_itc: ITC labels (neither to find nor false positives).
        n_detections: detections on the slide.
        hits: lesions hit by at least one detection with probability > 0 (at any threshold).
        false_positives: detections on non-tumour pixels (all of them on a normal slide), at any threshold.
        ignored: detections on an ITC (neither hit nor false positive).
    """

    slide: str
    is_tumor: bool
    n_lesions: int
    n_itc: int
    n_detections: int
    hits: int
    false_positives: int
    ignored: int


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


@dataclass(frozen=True, eq=False)
class FrocResult:
    """A CAMELYON16 FROC evaluation.

    Attributes:
        score: mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false positives per slide.
        sensitivity_at: false positives per slide -> sensitivity read off the curve (linear interpolation).
        fps_per_slide: float64 (m,) false positives per slide of each curve point, in the official order:
            thresholds increasing, then the closing (0, 0) point.
        sensitivity: float64 (m,) lesion sensitivity of each curve point.
        thresholds: float64 (m,) probability threshold of each point (a detection counts when its probability
            is >= it); ``inf`` for the closing (0, 0) point.
        slides: per-slide counts, in slide order.
        level: pyramid level of the evaluation mask.
        mpp: level-0 microns per pixel assumed by the protocol.
    """

    score: float
    sensitivity_at: dict[float, float]
    fps_per_slide: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    slides: list[SlideFroc] = field(default_factory=list)
    level: int = CAMELYON_LEVEL
    mpp: float = CAMELYON_MPP

    @property
    def n_slides(self) -> int:
        """Number of slides evaluated (the FPs-per-slide denominator)."""
        return len(self.slides)

    @property
    def n_lesions(self) -> int:
        """Number of non-ITC lesions over all slides (the sensitivity denominator)."""
        return sum(s.n_lesions for s in self.slides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: score, sensitivity_at, the curve (lists), counts and per-slide rows."""
        return {
            "score": float(self.score),
            "sensitivity_at": {_rate_key(k): float(v) for k, v in self.sensitivity_at.items()},
            "fps_per_slide": [float(v) for v in self.fps_per_slide],
            "sensitivity": [float(v) for v in self.sensitivity],
            "thresholds": [None if not math.isfinite(v) else float(v) for v in self.thresholds],
            "n_slides": self.n_slides,
            "n_lesions": self.n_lesions,
            "n_itc": sum(s.n_itc for s in self.slides),
            "level": int(self.level),
            "mpp": float(self.mpp),
            "slides": [
                {
                    "slide": s.slide,
                    "is_tumor": s.is_tumor,
                    "n_lesions": s.n_lesions,
                    "n_itc": s.n_itc,
                    "n_detections": s.n_detections,
                    "hits": s.hits,
                    "false_positives": s.false_positives,
                    "ignored": s.ignored,
                }
                for s in self.slides
            ],
        }

    def to_json(self, path: PathLike, *, overwrite: bool = True) -> Path:
        """Write :meth:`to_dict` as JSON, atomically; returns the path written."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        return _atomic_write(path, (text + "\n").encode("utf-8"), overwrite)

    def plot(self, path: PathLike, *, overwrite: bool = True) -> Path:
        """Save the FROC curve as a PNG (matplotlib, Agg; no display needed), atomically; returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.0, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        order = np.argsort(self.fps_per_slide, kind="stable")
        ax.plot(self.fps_per_slide[order], self.sensitivity[order], "-", color="tab:blue", label="FROC")
        rates = np.array(list(self.sensitivity_at.keys()))
        ax.plot(rates, list(self.sensitivity_at.values()), "o", color="tab:red", label="scored points")
        right = max(8.5, float(np.max(self.fps_per_slide)) * 1.05 if len(self.fps_per_slide) else 8.5)
        ax.set_xlim(0.0, right)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("average false positives per slide")
        ax.set_ylabel("lesion sensitivity")
        ax.set_title(f"CAMELYON16 FROC: score {self.score:.4f} ({self.n_slides} slides, {self.n_lesions} lesions)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return _atomic_write(path, buf.getvalue(), overwrite)


def _froc_curve(
    fp_probs: np.ndarray, tp_probs: np.ndarray, n_slides: int, n_lesions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official ``computeFROC``: (FPs per slide, sensitivity, thresholds), closing point last.

    ``tp_probs`` holds one value per label of every evaluation mask (ITCs and missed lesions 0), as the official
    ``TP_probs`` array; thresholds are every distinct value of both lists except the smallest.
    """
    pool = np.unique(np.concatenate([fp_probs, tp_probs]))
    thresholds = pool[1:]
    fp_sorted = np.sort(fp_probs)
    tp_sorted = np.sort(tp_probs)
    # counts of values >= t for every threshold t
    total_fps = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    total_tps = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    fps = np.append(total_fps, 0).astype(np.float64) / float(n_slides)
    sens = np.append(total_tps, 0).astype(np.float64) / float(n_lesions)
    return fps, sens, np.append(thresholds, np.inf)


def _froc_score(fps: np.ndarray, sens: np.ndarray) -> dict[float, float]:
    """Sensitivity at :data:`FROC_FP_RATES` by ``np.interp`` on the reversed official curve."""
    values = np.interp(np.asarray(FROC_FP_RATES), fps[::-1], sens[::-1])
    return {float(r): float(v) for r, v in zip(FROC_FP_RATES, values, strict=True)}


def _names(names: Sequence[str] | set[str], limit: int = 20) -> str:
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _resolve_slides(
    detections: Mapping[str, PointsTable], truths: Mapping[str, Any], slides: Sequence[str] | None
) -> list[str]:
    det, gt = set(detections), set(truths)
    if slides is None:
        if det != gt:
            problems = []
            if det - gt:
                problems.append(f"detections for slides without ground truth: {_names(det - gt)}")
            if gt - det:
                problems.append(f"slides with ground truth but no detections: {_names(gt - det)}")
            raise ConfigError(
                "the detection slides and the ground-truth slides differ; "
                + "; ".join(problems)
                + " (pass an explicit slide list to evaluate listed slides without detections)"
            )
        return list(truths)
    order = [str(s) for s in slides]
    listed = set(order)
    if len(listed) != len(order):
        dupes = {s for s in order if order.count(s) > 1}
        raise ConfigError(f"the slide list names some slides more than once: {_names(dupes)}")
    if det - listed:
        raise ConfigError(f"detections for slides that are not in the slide list: {_names(det - listed)}")
    if listed - gt:
        raise ConfigError(
            f"listed slides without a ground-truth entry (use None for a normal slide): {_names(listed - gt)}"
        )
    return order


def froc(
    detections: Mapping[str, PointsTable],
    truths: Mapping[str, AnnotationSet | ArrayLike | None],
    level0_shapes: Mapping[str, tuple[int, int]] | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
    *,
    slides: Sequence[str] | None = None,
) -> FrocResult:
    """Lesion-level FROC of the CAMELYON16 challenge (official protocol, see the module docstring).

    Per slide, each detection is looked up in the :func:`evaluation_mask` at
    ``(int(Y / 2**level), int(X / 2**level))``: label 0 is a false positive, an ITC label is ignored, a lesion
    label is a hit (each lesion keeps its highest probability; extra detections in it are not false positives).
    On a normal slide (truth None) every detection is a false positive. The curve (:func:`_froc_curve`) counts,
    for each threshold t (every distinct probability except the smallest, including the 0 of each missed lesion
    and ITC, as the official code), false positives with probability >= t over the number of slides, and lesions
    whose best probability is >= t over the number of non-ITC lesions; a (0, 0) point closes it. The score is the
    mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 FPs per slide.

    Args:
        detections: slide name -> its lesion points (level-0 (y, x) and probability in [0, 1]).
        truths: slide name -> its ground truth: an :class:`AnnotationSet` (tumour slide), a precomputed tumour
            mask at level ``level`` (non-zero is tumour), or None (normal slide).
        level0_shapes: slide name -> level-0 (height, width) in pixels. Needed to rasterise annotations and to
            check that detections lie on the slide. For a slide without one: a mask's extent (shape times
            ``2**level``) is used; for annotations, the extent of the annotations and the detections, with a
            warning that the outside-the-slide check is off for it (likewise for a normal slide).
        level: pyramid level of the evaluation mask (5).
        mpp: level-0 microns per pixel assumed by the protocol (0.243).
        slides: the explicit slide set (its order is the per-slide table's order). Without it, the detection and
            ground-truth slides must be the same names.

    Raises:
        ConfigError: slide-set mismatch (the message lists the names), no lesion to find in any slide, no slide,
            bad level / mpp / shapes / masks.
        InputFileError: a detection outside the slide (or the mask), or a probability outside [0, 1]; the message
            names the slide and the detection file when known.
    """
    level, mpp = _check_protocol(level, mpp)
    ds = 2**level
    order = _resolve_slides(detections, truths, slides)
    if not order:
        raise ConfigError("no slides to evaluate")
    shapes = level0_shapes or {}
    fp_list: list[np.ndarray] = []
    tp_list: list[np.ndarray] = []
    rows: list[SlideFroc] = []
    unchecked: list[str] = []
    for name in order:
        det = detections.get(name)
        if det is None:
            det = PointsTable.empty()
        elif not isinstance(det, PointsTable):
            raise ConfigError(f"slide {name!r}: detections must be a PointsTable, got {type(det).__name__}")
        truth = truths[name]
        prob = det.probability
        bad = np.flatnonzero((prob < 0) | (prob > 1))
        if bad.size:
            raise InputFileError(
                det.source,
                f"slide {name!r}: {bad.size} probabilities lie outside [0, 1] (e.g. {prob[bad[0]]!r}); "
                "FROC needs probabilities",
            )
        mask_array: np.ndarray | None = None
        if truth is not None and not isinstance(truth, AnnotationSet):
            mask_array = np.asarray(truth)
            if mask_array.ndim != 2:
                raise ConfigError(f"slide {name!r}: a tumour mask must be 2-D, got shape {mask_array.shape}")
        if name in shapes:
            extent: tuple[int, int] | None = _check_shape(shapes[name], f"slide {name!r}")
        elif mask_array is not None:
            extent = (mask_array.shape[0] * ds, mask_array.shape[1] * ds)
        else:
            extent = None
            if len(det):
                unchecked.append(name)
        if extent is not None and len(det):
            outside = np.flatnonzero((det.y < 0) | (det.x < 0) | (det.y >= extent[0]) | (det.x >= extent[1]))
            if outside.size:
                k = int(outside[0])
                raise InputFileError(
                    det.source,
                    f"slide {name!r}: {outside.size} detection(s) lie outside the {extent[0]} x {extent[1]} px "
                    f"level-0 slide (height x width), e.g. X={det.x[k]:g}, Y={det.y[k]:g}",
                )
        if truth is None:
            fp_list.append(prob)
            rows.append(SlideFroc(name, False, 0, 0, len(det), 0, len(det), 0))
            continue
        if isinstance(truth, AnnotationSet):
            if extent is None:
                ymax = xmax = 1.0
                if truth.regions:
                    _, _, by, bx = truth.bounds()
                    ymax, xmax = max(ymax, by), max(xmax, bx)
                if len(det):
                    ymax, xmax = max(ymax, float(det.y.max()) + 1), max(xmax, float(det.x.max()) + 1)
                extent = (math.ceil(ymax), math.ceil(xmax))
            labels, itc, _ = evaluation_mask(truth, extent, level, mpp)
        else:
            assert mask_array is not None
            labels, itc, _ = evaluation_mask(mask_array, shapes.get(name), level, mpp)
        r = (det.y / ds).astype(np.int64)  # int() truncation, as the official code (coordinates are >= 0)
        c = (det.x / ds).astype(np.int64)
        if len(det) and (r.max() >= labels.shape[0] or c.max() >= labels.shape[1] or r.min() < 0 or c.min() < 0):
            raise InputFileError(
                det.source, f"slide {name!r}: detections fall outside the {labels.shape} evaluation mask"
            )
        hit = labels[r, c]
        n_labels = int(labels.max())
        is_itc = np.zeros(n_labels + 1, dtype=bool)
        is_itc[list(itc)] = True
        on_itc = is_itc[hit]
        fp = hit == 0
        lesion = ~fp & ~on_itc
        best = np.zeros(n_labels, dtype=np.float64)
        np.maximum.at(best, hit[lesion] - 1, prob[lesion])
        fp_list.append(prob[fp])
        tp_list.append(best)
        lesion_ids = np.setdiff1d(np.arange(1, n_labels + 1), np.fromiter(itc, dtype=np.int64, count=len(itc)))
        rows.append(
            SlideFroc(
                slide=name,
                is_tumor=True,
                n_lesions=int(lesion_ids.size),
                n_itc=len(itc),
                n_detections=len(det),
                hits=int(np.count_nonzero(best[lesion_ids - 1] > 0)),
                false_positives=int(np.count_nonzero(fp)),
                ignored=int(np.count_nonzero(on_itc)),
            )
        )
    if unchecked:
        warnings.warn(
            f"no level-0 shape for {len(unchecked)} slide(s) ({_names(unchecked)}): the check that their "
            "detections lie on the slide is off (annotated slides are rasterised over the extent of their "
            "annotations and detections)",
            UserWarning,
            stacklevel=2,
        )
    n_lesions = sum(row.n_lesions for row in rows)
    if n_lesions == 0:
        raise ConfigError(
            f"no lesion to find in the {len(rows)} slide(s) (no tumour slide, or only isolated tumour cells): "
            "lesion sensitivity and the FROC score are undefined"
        )
    fp_probs = np.concatenate(fp_list) if fp_list else np.empty(0)
    tp_probs = np.concatenate(tp_list) if tp_list else np.empty(0)
    fps, sens, thresholds = _froc_curve(fp_probs, tp_probs, len(rows), n_lesions)
    at = _froc_score(fps, sens)
    return FrocResult(
        score=float(np.mean(list(at.values()))),
        sensitivity_at=at,
        fps_per_slide=fps,
        sensitivity=sens,
        thresholds=thresholds,
        slides=rows,
        level=level,
        mpp=mpp,
    )


# ------------------------------------------------------------------------------------ FROC from folders


def _read_slide_list(path: Path) -> list[str]:
    """Slide names from a text file (one per line, ``#`` comments) or a CSV with a ``slide`` column."""
    text = _read_text(path, "a slide list (one name per line, or a CSV with a 'slide' column)")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, "the slide list is empty")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "slide" in header and (len(header) > 1 or path.suffix.lower() == ".csv"):
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        key = next(k for k in reader.fieldnames or [] if k.strip().lower() == "slide")
        names = []
        for lineno, row in enumerate(reader, start=2):
            value = (row.get(key) or "").strip()
            if not value:
                raise InputFileError(path, f"line {lineno}: empty slide name")
            names.append(value)
    else:
        names = [ln.strip() for ln in lines]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InputFileError(path, f"slides listed more than once: {_names(dupes)}")
    if not names:
        raise InputFileError(path, "the slide list is empty")
    return names


def _read_shapes(path: Path) -> dict[str, tuple[int, int]] | None:
    """slide -> (height, width) from a CSV with columns slide, height, width; None when it lacks them."""
    text = _read_text(path, "a CSV with columns slide, height, width")
    reader = csv.DictReader(io.StringIO(text))
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    if not {"slide", "height", "width"} <= set(fields):
        return None
    shapes: dict[str, tuple[int, int]] = {}
    for lineno, row in enumerate(reader, start=2):
        name = (row.get(fields["slide"]) or "").strip()
        if not name:
            continue
        try:
            h = float(row.get(fields["height"]) or "")
            w = float(row.get(fields["width"]) or "")
        except ValueError:
            raise InputFileError(path, f"line {lineno}: height and width of {name!r} must be numbers") from None
        if not (h > 0 and w > 0 and h == int(h) and w == int(w)):
            raise InputFileError(path, f"line {lineno}: height and width of {name!r} must be positive integers")
        shapes[name] = (int(h), int(w))
    return shapes


def _annotation_file(folder: Path, name: str) -> Path | None:
    found = [p for p in (folder / f"{name}.xml", folder / f"{name}.geojson") if p.is_file()]
    if len(found) > 1:
        raise InputFileError(folder, f"slide {name!r} has two annotation files ({found[0].name}, {found[1].name})")
    return found[0] if found else None


def froc_from_dirs(
    detections_dir: PathLike,
    annotations_dir: PathLike,
    *,
    slides_file: PathLike | None = None,
    shapes_csv: PathLike | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
) -> FrocResult:
    """FROC of a folder of CAMELYON16 detection CSVs against a folder of annotations (the ``froc`` command).

    Rules:

    * Detections: one ``<slide>.csv`` per slide in ``detections_dir`` (:func:`read_camelyon_csv`).
    * Ground truth: a slide is a tumour slide when ``<slide>.xml`` or ``<slide>.geojson`` is in
      ``annotations_dir``, otherwise normal.
    * Slide set: the names listed in ``slides_file`` (one per line, or a CSV with a ``slide`` column) when given,
      else the detection CSV names. With a list, a listed slide without a CSV has no detections, annotation files
      of unlisted slides are ignored, and a CSV of an unlisted slide is an error. Without one, an annotation file
      whose slide has no CSV is an error (a tumour slide would silently drop out).
    * Level-0 shapes: ``shapes_csv`` (columns slide, height, width) when given, else ``slides.csv`` in
      ``annotations_dir`` when it has those columns (our synthetic cohorts write one); either must cover every
      slide. Failing both, the extent of annotations and detections is used and detections are not checked
      against the slide (a warning says so).

    Raises:
        InputFileError: a missing folder, a bad CSV / slide list / shapes file, a detection off the slide.
        ConfigError: slide-set mismatches (the message lists the names), no lesion to find.
    """
    det_dir, ann_dir = Path(detections_dir), Path(annotations_dir)
    for folder, what in ((det_dir, "detections"), (ann_dir, "annotations")):
        if not folder.is_dir():
            raise InputFileError(folder, f"the {what} folder does not exist or is not a folder")
    csvs = {p.stem: p for p in sorted(det_dir.glob("*.csv")) if p.is_file()}
    if slides_file is not None:
        slide_list: list[str] = _read_slide_list(Path(slides_file))
        unlisted = set(csvs) - set(slide_list)
        if unlisted:
            raise InputFileError(
                det_dir, f"detection CSVs of slides not in the slide list {slides_file}: {_names(unlisted)}"
            )
    else:
        if not csvs:
            raise InputFileError(det_dir, "no detection CSVs (<slide>.csv) in the folder")
        slide_list = list(csvs)
        annotated = {p.stem for p in ann_dir.iterdir() if p.suffix.lower() in (".xml", ".geojson") and p.is_file()}
        missing = annotated - set(slide_list)
        if missing:
            raise ConfigError(
                f"annotated slides without a detection CSV in {det_dir}: {_names(missing)}; add empty CSVs or list "
                "every slide with --slides so they count as slides without detections"
            )
    shapes: dict[str, tuple[int, int]] | None = None
    shapes_path = Path(shapes_csv) if shapes_csv is not None else None
    if shapes_path is not None:
        shapes = _read_shapes(shapes_path)
        if shapes is None:
            raise InputFileError(shapes_path, "needs the columns slide, height, width (level-0 pixels)")
    elif (ann_dir / "slides.csv").is_file():
        shapes_path = ann_dir / "slides.csv"
        shapes = _read_shapes(shapes_path)
    if shapes is not None:
        assert shapes_path is not None
        lacking = set(slide_list) - set(shapes)
        if lacking:
            raise InputFileError(shapes_path, f"no level-0 height and width for slides: {_names(lacking)}")
    detections = {name: read_camelyon_csv(csvs[name]) for name in slide_list if name in csvs}
    truths: dict[str, AnnotationSet | None] = {}
    for name in slide_list:
        ann = _annotation_file(ann_dir, name)
        truths[name] = read_annotations(ann) if ann is not None else None
    return froc(detections, truths, shapes, level, mpp, slides=slide_list)


# ============================================================================================ slide level


def slide_score(heatmap: ArrayLike, method: str = "max", k: int = 10) -> float:
    """One tumour score per slide from its heatmap, ignoring NaN cells.

    Args:
        heatmap: probabilities of any shape (NaN = not computed / no tissue).
        method: ``"max"`` (Liu et al.: the heatmap's maximum) or ``"topk_mean"`` (mean of the k largest values;
            of all values when fewer than k).
        k: number of values averaged by ``"topk_mean"``.

    Raises:
        ConfigError: unknown method, k < 1, or a heatmap with no finite value.
    """
    values = np.asarray(heatmap, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ConfigError("slide_score: the heatmap has no finite value")
    if method == "max":
        return float(values.max())
    if method == "topk_mean":
        if int(k) < 1:
            raise ConfigError(f"slide_score: k must be >= 1, got {k!r}")
        kk = min(int(k), values.size)
        return float(np.partition(values, values.size - kk)[values.size - kk :].mean())
    raise ConfigError(f"slide_score: unknown method {method!r}; use 'max' or 'topk_mean'")


def _binary_labels(labels: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr
    with np.errstate(invalid="ignore"):
        ok = np.isin(arr, (0, 1))
    if not ok.all():
        raise ConfigError(f"{what} must be 0 / 1 (or bool)")
    return arr.astype(bool)


def _finite_scores(scores: ArrayLike, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != shape:
        raise ConfigError(f"{what} has shape {arr.shape}, the labels {shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} contains NaN or infinite values")
    return arr


def _auc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every row (Mann–Whitney with mid-ranks for ties, equal to ``roc_auc_score``); NaN if one class."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1).astype(np.float64)
    n_neg = labels.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def _percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _check_boot(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot!r}")
    if not (0 < float(alpha) < 1):
        raise ConfigError(f"alpha must be within (0, 1), got {alpha!r}")


def roc_auc_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    stratified: bool = True,
) -> tuple[float, float, float]:
    """ROC AUC (``sklearn.metrics.roc_auc_score``) and its percentile bootstrap confidence interval.

    Args:
        labels: (n,) 0 / 1 (or bool) truth, both classes present.
        scores: (n,) finite scores, higher meaning more likely positive.
        n_boot: bootstrap resamples (0: no interval, lo = hi = NaN).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.
        alpha: 1 - confidence level (0.05: a 95 % interval from the 2.5th and 97.5th percentiles).
        stratified: resample positives and negatives separately (each keeps its count, so every resample has
            both classes); otherwise resample all cases together and skip resamples with one class.

    Returns:
        ``(auc, lo, hi)``.

    Raises:
        ConfigError: labels not binary, one class only, shapes differ, non-finite scores, bad n_boot / alpha.
    """
    from sklearn.metrics import roc_auc_score

    y = _binary_labels(labels, "labels").reshape(-1)
    s = _finite_scores(scores, np.shape(labels), "scores").reshape(-1)
    if y.all() or not y.any():
        raise ConfigError("roc_auc_ci needs both positive and negative cases")
    _check_boot(n_boot, alpha)
    auc = float(roc_auc_score(y, s))
    if int(n_boot) == 0:
        return auc, math.nan, math.nan
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    if stratified:
        pos, neg = s[y], s[~y]
        boot_scores = np.concatenate(
            [pos[rng.integers(0, pos.size, (n_boot, pos.size))], neg[rng.integers(0, neg.size, (n_boot, neg.size))]],
            axis=1,
        )
        boot_labels = np.zeros_like(boot_scores, dtype=bool)
        boot_labels[:, : pos.size] = True
    else:
        idx = rng.integers(0, s.size, (n_boot, s.size))
        boot_scores, boot_labels = s[idx], y[idx]
    lo, hi = _percentile_ci(_auc_rows(boot_scores, boot_labels), float(alpha))
    return auc, lo, hi


# ============================================================================================ chest X-rays


def _multilabel(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    yt = np.asarray(y_true)
    if yt.ndim == 1:
        yt = yt[:, None]
        ys = np.asarray(y_score, dtype=np.float64).reshape(-1, 1) if np.ndim(y_score) == 1 else np.asarray(y_score)
    else:
        ys = np.asarray(y_score)
    if yt.ndim != 2:
        raise ConfigError(f"y_true must be (n_images, n_classes), got shape {yt.shape}")
    y = _binary_labels(yt, "y_true")
    s = _finite_scores(ys, y.shape, "y_score")
    return y, s


def _class_names(classes: Sequence[str] | None, n: int) -> list[str]:
    if classes is None:
        return [str(c) for c in range(n)]
    names = [str(c) for c in classes]
    if len(names) != n:
        raise ConfigError(f"{len(names)} class names for {n} classes")
    if len(set(names)) != len(names):
        raise ConfigError("class names must be distinct")
    return names


def multilabel_auroc(
    y_true: ArrayLike,
    y_score: ArrayLike,
    classes: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float, float]]:
    """Per-class ROC AUC with bootstrap intervals for multi-label images (one sigmoid per class), and their mean.

    The bootstrap resamples images (the same resample for every class, so the mean's interval keeps the classes'
    correlation); for a class, resamples with one class only are skipped, and for the mean, resamples where any
    evaluable class has one class only.

    Args:
        y_true: (n_images, n_classes) 0 / 1 labels.
        y_score: (n_images, n_classes) finite scores.
        classes: class names (default ``"0"``, ``"1"``, ...); ``"mean"`` is reserved.
        n_boot, seed, alpha: as :func:`roc_auc_ci` (plain, unstratified bootstrap).

    Returns:
        class name -> ``(auc, lo, hi)``, plus ``"mean"`` -> the macro average over the classes that have both
        positives and negatives. A class with one label only gets ``(nan, nan, nan)`` and a warning.
    """
    from sklearn.metrics import roc_auc_score

    y, s = _multilabel(y_true, y_score)
    names = _class_names(classes, y.shape[1])
    if "mean" in names:
        raise ConfigError("'mean' is reserved for the macro average; rename that class")
    _check_boot(n_boot, alpha)
    ok = y.any(axis=0) & ~y.all(axis=0)
    if not ok.any():
        raise ConfigError("multilabel_auroc: no class has both positive and negative images")
    if not ok.all():
        lacking = [n for n, good in zip(names, ok, strict=True) if not good]
        warnings.warn(
            f"classes with one label only (AUC undefined): {_names(lacking)}",
            UserWarning,
            stacklevel=2,
        )
    aucs = np.full(y.shape[1], np.nan)
    for c in np.flatnonzero(ok):
        aucs[c] = roc_auc_score(y[:, c], s[:, c])
    boot = np.full((int(n_boot), y.shape[1]), np.nan)
    if int(n_boot) > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, y.shape[0], (int(n_boot), y.shape[0]))
        for c in np.flatnonzero(ok):
            boot[:, c] = _auc_rows(s[idx, c], y[idx, c])
    out: dict[str, tuple[float, float, float]] = {}
    for c, name in enumerate(names):
        lo, hi = _percentile_ci(boot[:, c], float(alpha)) if ok[c] else (math.nan, math.nan)
        out[name] = (float(aucs[c]), lo, hi)
    mean_boot = boot[:, ok].mean(axis=1) if int(n_boot) > 0 else np.empty(0)
    out["mean"] = (float(aucs[ok].mean()), *_percentile_ci(mean_boot, float(alpha)))
    return out


def youden_thresholds(y_true: ArrayLike, y_score: ArrayLike) -> np.ndarray:
    """Per-class threshold maximising Youden's J = sensitivity + specificity - 1 (``sklearn.metrics.roc_curve``).

    A case is called positive when its score is >= the threshold. Among equal J the highest threshold wins.

    Args:
        y_true: (n_images, n_classes) 0 / 1 labels (or (n,) for one class).
        y_score: scores of the same shape.

    Returns:
        float64 (n_classes,) thresholds; NaN for a class with one label only.
    """
    from sklearn.metrics import roc_curve

    y, s = _multilabel(y_true, y_score)
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        if y[:, c].all() or not y[:, c].any():
            continue
        fpr, tpr, thr = roc_curve(y[:, c], s[:, c], drop_intermediate=False)
        youden = tpr - fpr
        best = np.flatnonzero(youden >= youden.max() - 1e-12)  # equal J up to rounding (1 - 1/3 vs 2/3 - 0)
        out[c] = float(thr[int(best[0])])
    return out


def sensitivity_specificity(
    y_true: ArrayLike, y_score: ArrayLike, thresholds: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sensitivity and specificity when a score >= its class threshold is called positive.

    Args:
        y_true: (n_images, n_classes) 0 / 1 labels (or (n,) for one class).
        y_score: scores of the same shape.
        thresholds: (n_classes,) thresholds (e.g. from :func:`youden_thresholds`) or one for all classes.

    Returns:
        ``(sensitivity, specificity)``, each float64 (n_classes,); NaN where a class has no positive (for
        sensitivity) or no negative (for specificity) image.
    """
    y, s = _multilabel(y_true, y_score)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64).reshape(-1), (y.shape[1],))
    pred = s >= t[None, :]
    n_pos = y.sum(axis=0)
    n_neg = (~y).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (pred & y).sum(axis=0) / n_pos
        spec = (~pred & ~y).sum(axis=0) / n_neg
    return np.where(n_pos > 0, sens, np.nan), np.where(n_neg > 0, spec, np.nan)


def pointing_game(
    cams: ArrayLike | Sequence[ArrayLike],
    boxes: Sequence[Sequence[tuple[int, float, float, float, float]]],
    classes: Sequence[str] | None = None,
    image_shapes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
) -> dict[str, float]:
    """Pointing-game hit rate per class: does the maximum of the class activation map fall in the lesion?

    For each image and each class with at least one box on that image, the CAM's argmax cell (first in
    row-major order on ties; NaN never wins) is a hit when its centre lies inside any of the class's boxes,
    half-open: ``y0 <= y < y1`` and ``x0 <= x < x1``.

    Args:
        cams: (n_images, n_classes, H, W) array, or a list of (n_classes, H_i, W_i) arrays.
        boxes: per image, a list of ``(class_index, y0, x0, y1, x1)`` lesion boxes, (row, col) order.
        classes: class names (default ``"0"``, ``"1"``, ...).
        image_shapes: the (height, width) of the frame the boxes are given in, per image or one for all; the
            CAM cell (r, c) is then centred at ``((r + 0.5) * height / H, (c + 0.5) * width / W)``. None: boxes
            are in CAM cells, the centre is ``(r + 0.5, c + 0.5)``.

    Returns:
        class name -> hits / (image, class) pairs with a box; NaN for a class without any box.
    """
    maps = list(cams) if not isinstance(cams, np.ndarray) else [cams[i] for i in range(cams.shape[0])]
    if len(maps) != len(boxes):
        raise ConfigError(f"{len(maps)} CAMs for {len(boxes)} box lists")
    if not maps:
        raise ConfigError("pointing_game needs at least one image")
    first = np.asarray(maps[0])
    if first.ndim != 3:
        raise ConfigError(f"each CAM must be (n_classes, H, W), got shape {first.shape}")
    n_classes = first.shape[0]
    names = _class_names(classes, n_classes)
    if image_shapes is None:
        frames: list[tuple[int, int] | None] = [None] * len(maps)
    elif len(image_shapes) == 2 and np.ndim(image_shapes[0]) == 0:
        frames = [tuple(image_shapes)] * len(maps)  # type: ignore[list-item]
    else:
        frames = [tuple(fs) for fs in image_shapes]  # type: ignore[misc]
        if len(frames) != len(maps):
            raise ConfigError(f"{len(frames)} image shapes for {len(maps)} images")
    hits = np.zeros(n_classes, dtype=np.int64)
    total = np.zeros(n_classes, dtype=np.int64)
    for i, (cam_like, image_boxes, frame) in enumerate(zip(maps, boxes, frames, strict=True)):
        cam = np.asarray(cam_like, dtype=np.float64)
        if cam.ndim != 3 or cam.shape[0] != n_classes:
            raise ConfigError(f"image {i}: CAM must be ({n_classes}, H, W), got shape {cam.shape}")
        by_class: dict[int, list[tuple[float, float, float, float]]] = {}
        for box in image_boxes:
            if len(box) != 5:
                raise ConfigError(f"image {i}: a box must be (class_index, y0, x0, y1, x1), got {box!r}")
            ci = int(box[0])
            if not 0 <= ci < n_classes:
                raise ConfigError(f"image {i}: class index {ci} out of range 0..{n_classes - 1}")
            by_class.setdefault(ci, []).append(tuple(float(v) for v in box[1:]))  # type: ignore[arg-type]
        h_cam, w_cam = cam.shape[1:]
        sy, sx = (1.0, 1.0) if frame is None else (frame[0] / h_cam, frame[1] / w_cam)
        for ci, class_boxes in by_class.items():
            plane = np.where(np.isnan(cam[ci]), -np.inf, cam[ci])
            r, c = divmod(int(np.argmax(plane)), w_cam)
            cy, cx = (r + 0.5) * sy, (c + 0.5) * sx
            total[ci] += 1
            if any(y0 <= cy < y1 and x0 <= cx < x1 for y0, x0, y1, x1 in class_boxes):
                hits[ci] += 1
    return {name: (float(hits[c] / total[c]) if total[c] else math.nan) for c, name in enumerate(names)}
