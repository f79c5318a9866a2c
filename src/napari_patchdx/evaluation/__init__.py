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

    :func:`classify_points` gives the outcome of every detection by the very same lookup (hit / false positive /
    ITC-ignored, :class:`PointOutcomes`), for the napari points coloured by outcome and the thumbnails.

Slide level and chest X-rays
    :func:`slide_score` (maximum, as Liu et al., or mean of the top k), :func:`roc_auc_ci` (bootstrap confidence
    interval), :func:`multilabel_auroc`, :func:`youden_thresholds`, :func:`sensitivity_specificity` and
    :func:`pointing_game` (CAM localisation).

Evaluating a run
    :func:`evaluate_slides` (heatmap files -> lesion points, FROC, slide AUC, ``slides.csv``, thumbnails) and
    :func:`evaluate_cxr` (CAM files -> per-class AUROC, operating points, pointing game, ``images.csv``,
    thumbnails) write a run's ``evaluate/`` folder and return its metrics; both have ``*_job`` twins that yield
    progress for the widgets. :func:`evaluate_slide_inputs_job` is the in-memory core (heatmaps, annotations or
    points held by napari layers). Both tracks list suspected label errors (:data:`SUSPECT_RULE`): cases whose
    prediction confidently contradicts their label.

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

from .._fsutil import atomic_write_bytes
from ..errors import ConfigError, InputFileError
from ..geometry import Grid
from ..io.annotations import AnnotationSet, read_annotations
from ..progress import Job, Progress, run_job

__all__ = [
    "CAMELYON_LEVEL",
    "CAMELYON_MPP",
    "FROC_FP_RATES",
    "GROWTH_UM",
    "ITC_MAJOR_AXIS_UM",
    "LIU_RADIUS_UM",
    "OUTCOMES",
    "OUTCOME_COLORS",
    "OUTCOME_FALSE_POSITIVE",
    "OUTCOME_HIT",
    "OUTCOME_ITC",
    "SLIDES_CSV_COLUMNS",
    "SUSPECT_HIGH",
    "SUSPECT_LOW",
    "SUSPECT_RULE",
    "FrocResult",
    "PointOutcomes",
    "PointingPair",
    "PointsTable",
    "SlideFroc",
    "SlideInput",
    "SlidesEvaluation",
    "classify_points",
    "cxr_thumbnail",
    "draw_froc",
    "draw_roc",
    "evaluate_cxr",
    "evaluate_cxr_job",
    "evaluate_slide_inputs",
    "evaluate_slide_inputs_job",
    "evaluate_slides",
    "evaluate_slides_job",
    "evaluation_mask",
    "froc",
    "froc_from_dirs",
    "lesion_points",
    "multilabel_auroc",
    "pointing_game",
    "pointing_game_pairs",
    "read_camelyon_csv",
    "roc_auc_ci",
    "sensitivity_specificity",
    "slide_score",
    "slide_thumbnail",
    "suspected_label_errors",
    "thresholds_from_checkpoint",
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
        fig = _new_figure((6.0, 4.5))
        draw_froc(fig.add_subplot(1, 1, 1), self)
        return _save_figure(fig, path, overwrite)


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


OUTCOME_HIT = "hit"
"""Outcome of a detection inside a (non-ITC) lesion of the evaluation mask."""
OUTCOME_FALSE_POSITIVE = "false_positive"
"""Outcome of a detection on a non-tumour pixel of the evaluation mask (every detection of a normal slide)."""
OUTCOME_ITC = "itc_ignored"
"""Outcome of a detection on an isolated-tumour-cell cluster: neither hit nor false positive."""
OUTCOMES = (OUTCOME_HIT, OUTCOME_FALSE_POSITIVE, OUTCOME_ITC)
"""Every detection outcome, in display order."""


@dataclass(frozen=True, eq=False)
class PointOutcomes:
    """How the CAMELYON16 protocol counts each detection of one slide (same order as its :class:`PointsTable`).

    Attributes:
        outcome: (n,) str, one of :data:`OUTCOMES`: ``"hit"`` (in a lesion), ``"false_positive"`` (on a
            non-tumour pixel of the evaluation mask, or anywhere on a normal slide), ``"itc_ignored"`` (on an
            isolated-tumour-cell cluster).
        lesion: (n,) int64 label of the evaluation-mask region the detection falls in (0 = none); detections
            with the same label are in the same lesion.
        first_hit: (n,) bool, True for the detection that gives its lesion its probability (the most probable
            one; the first in table order on ties). The other hits on that lesion count neither as hits again
            nor as false positives.
    """

    outcome: np.ndarray
    lesion: np.ndarray
    first_hit: np.ndarray

    def __len__(self) -> int:
        return int(self.outcome.shape[0])

    def counts(self) -> dict[str, int]:
        """Number of detections of every outcome (keys :data:`OUTCOMES`)."""
        return {name: int(np.count_nonzero(self.outcome == name)) for name in OUTCOMES}


@dataclass(frozen=True)
class _SlideLookup:
    """One slide's detections looked up in its evaluation mask (internal to :func:`froc`)."""

    row: SlideFroc
    outcomes: PointOutcomes
    fp_probs: np.ndarray
    tp_probs: np.ndarray  # best probability per evaluation-mask label (0 for missed lesions and ITCs)
    unchecked: bool  # no level-0 shape known: the outside-the-slide check was off


def _lookup_slide(
    name: str,
    det: PointsTable | None,
    truth: AnnotationSet | ArrayLike | None,
    shape: tuple[int, int] | None,
    level: int,
    mpp: float,
) -> _SlideLookup:
    """Look one slide's detections up in its evaluation mask exactly as the official ``Evaluation_FROC.py``."""
    ds = 2**level
    if det is None:
        det = PointsTable.empty()
    elif not isinstance(det, PointsTable):
        raise ConfigError(f"slide {name!r}: detections must be a PointsTable, got {type(det).__name__}")
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
    unchecked = False
    if shape is not None:
        extent: tuple[int, int] | None = _check_shape(shape, f"slide {name!r}")
    elif mask_array is not None:
        extent = (mask_array.shape[0] * ds, mask_array.shape[1] * ds)
    else:
        extent = None
        unchecked = len(det) > 0
    if extent is not None and len(det):
        outside = np.flatnonzero((det.y < 0) | (det.x < 0) | (det.y >= extent[0]) | (det.x >= extent[1]))
        if outside.size:
            k = int(outside[0])
            raise InputFileError(
                det.source,
                f"slide {name!r}: {outside.size} detection(s) lie outside the {extent[0]} x {extent[1]} px "
                f"level-0 slide (height x width), e.g. X={det.x[k]:g}, Y={det.y[k]:g}",
            )
    n = len(det)
    if truth is None:
        outcomes = PointOutcomes(
            outcome=np.full(n, OUTCOME_FALSE_POSITIVE, dtype=object),
            lesion=np.zeros(n, dtype=np.int64),
            first_hit=np.zeros(n, dtype=bool),
        )
        row = SlideFroc(name, False, 0, 0, n, 0, n, 0)
        return _SlideLookup(row, outcomes, prob, np.empty(0), unchecked)
    if isinstance(truth, AnnotationSet):
        if extent is None:
            ymax = xmax = 1.0
            if truth.regions:
                _, _, by, bx = truth.bounds()
                ymax, xmax = max(ymax, by), max(xmax, bx)
            if n:
                ymax, xmax = max(ymax, float(det.y.max()) + 1), max(xmax, float(det.x.max()) + 1)
            extent = (math.ceil(ymax), math.ceil(xmax))
        labels, itc, _ = evaluation_mask(truth, extent, level, mpp)
    else:
        assert mask_array is not None
        labels, itc, _ = evaluation_mask(mask_array, shape, level, mpp)
    r = (det.y / ds).astype(np.int64)  # int() truncation, as the official code (coordinates are >= 0)
    c = (det.x / ds).astype(np.int64)
    if n and (r.max() >= labels.shape[0] or c.max() >= labels.shape[1] or r.min() < 0 or c.min() < 0):
        raise InputFileError(det.source, f"slide {name!r}: detections fall outside the {labels.shape} evaluation mask")
    hit = labels[r, c]
    n_labels = int(labels.max())
    is_itc = np.zeros(n_labels + 1, dtype=bool)
    is_itc[list(itc)] = True
    on_itc = is_itc[hit]
    fp = hit == 0
    lesion = ~fp & ~on_itc
    best = np.zeros(n_labels, dtype=np.float64)
    np.maximum.at(best, hit[lesion] - 1, prob[lesion])
    outcome = np.full(n, OUTCOME_HIT, dtype=object)
    outcome[fp] = OUTCOME_FALSE_POSITIVE
    outcome[on_itc] = OUTCOME_ITC
    first_hit = np.zeros(n, dtype=bool)
    seen: set[int] = set()
    for k in np.flatnonzero(lesion).tolist():  # table order is decreasing probability: the first is the best
        if int(hit[k]) not in seen:
            seen.add(int(hit[k]))
            first_hit[k] = True
    lesion_ids = np.setdiff1d(np.arange(1, n_labels + 1), np.fromiter(itc, dtype=np.int64, count=len(itc)))
    row = SlideFroc(
        slide=name,
        is_tumor=True,
        n_lesions=int(lesion_ids.size),
        n_itc=len(itc),
        n_detections=n,
        hits=int(np.count_nonzero(best[lesion_ids - 1] > 0)),
        false_positives=int(np.count_nonzero(fp)),
        ignored=int(np.count_nonzero(on_itc)),
    )
    outcomes = PointOutcomes(outcome=outcome, lesion=hit.astype(np.int64), first_hit=first_hit)
    return _SlideLookup(row, outcomes, prob[fp], best, unchecked)


def _warn_unchecked(unchecked: Sequence[str], stacklevel: int = 3) -> None:
    if unchecked:
        warnings.warn(
            f"no level-0 shape for {len(unchecked)} slide(s) ({_names(unchecked)}): the check that their "
            "detections lie on the slide is off (annotated slides are rasterised over the extent of their "
            "annotations and detections)",
            UserWarning,
            stacklevel=stacklevel,
        )


def _froc_lookups(
    detections: Mapping[str, PointsTable],
    truths: Mapping[str, AnnotationSet | ArrayLike | None],
    level0_shapes: Mapping[str, tuple[int, int]] | None,
    level: int,
    mpp: float,
    slides: Sequence[str] | None,
) -> list[_SlideLookup]:
    level, mpp = _check_protocol(level, mpp)
    order = _resolve_slides(detections, truths, slides)
    if not order:
        raise ConfigError("no slides to evaluate")
    shapes = level0_shapes or {}
    return [_lookup_slide(name, detections.get(name), truths[name], shapes.get(name), level, mpp) for name in order]


def _froc_result(lookups: Sequence[_SlideLookup], level: int, mpp: float) -> FrocResult:
    rows = [lk.row for lk in lookups]
    n_lesions = sum(row.n_lesions for row in rows)
    if n_lesions == 0:
        raise ConfigError(
            f"no lesion to find in the {len(rows)} slide(s) (no tumour slide, or only isolated tumour cells): "
            "lesion sensitivity and the FROC score are undefined"
        )
    fp_probs = np.concatenate([lk.fp_probs for lk in lookups]) if lookups else np.empty(0)
    tp_probs = np.concatenate([lk.tp_probs for lk in lookups]) if lookups else np.empty(0)
    fps, sens, thresholds = _froc_curve(fp_probs, tp_probs, len(rows), n_lesions)
    at = _froc_score(fps, sens)
    return FrocResult(
        score=float(np.mean(list(at.values()))),
        sensitivity_at=at,
        fps_per_slide=fps,
        sensitivity=sens,
        thresholds=thresholds,
        slides=rows,
        level=int(level),
        mpp=float(mpp),
    )


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
    mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 FPs per slide. :func:`classify_points` gives the outcome of
    every detection by the same lookup.

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
    lookups = _froc_lookups(detections, truths, level0_shapes, level, mpp, slides)
    _warn_unchecked([lk.row.slide for lk in lookups if lk.unchecked])
    return _froc_result(lookups, level, mpp)


def classify_points(
    points: PointsTable,
    truth: AnnotationSet | ArrayLike | None,
    level0_shape: tuple[int, int] | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
    *,
    name: str = "slide",
) -> PointOutcomes:
    """The outcome of every detection of one slide under the CAMELYON16 protocol (as :func:`froc` counts it).

    Args:
        points: the slide's detections (level-0 (y, x), probability in [0, 1]).
        truth: an :class:`AnnotationSet`, a tumour mask at level ``level`` (non-zero is tumour), or None for a
            normal slide (every detection is then a false positive).
        level0_shape: the slide's level-0 (height, width); see :func:`froc` for what happens without it.
        level, mpp: the protocol's pyramid level and level-0 microns per pixel (5 and 0.243 in the challenge).
        name: the slide's name, used in error messages.

    Returns:
        A :class:`PointOutcomes` aligned with ``points`` (hit / false positive / ITC-ignored, lesion label and
        whether the detection is its lesion's best).

    Raises:
        InputFileError: a detection outside the slide or a probability outside [0, 1].
        ConfigError: bad level / mpp / shape / mask.
    """
    level, mpp = _check_protocol(level, mpp)
    lookup = _lookup_slide(str(name), points, truth, level0_shape, level, mpp)
    _warn_unchecked([str(name)] if lookup.unchecked else [])
    return lookup.outcomes


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
        InputFileError: a missing folder, a bad CSV / slide list / shapes file, a detection off the slide, an
            annotated slide without a CSV (when no slide list is given).
        ConfigError: no lesion to find.
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
            raise InputFileError(
                det_dir,
                f"annotated slides without a detection CSV here: {_names(missing)}; add empty CSVs or list every "
                "slide with --slides so they count as slides without detections",
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


@dataclass(frozen=True)
class PointingPair:
    """One (image, class) pair of the pointing game.

    Attributes:
        image: index of the image in the inputs.
        class_index: index of the class.
        hit: the CAM's peak lies inside one of the class's boxes on that image.
        peak: (y, x) centre of the CAM's argmax cell, in the boxes' frame (native pixels when ``image_shapes``
            are given).
    """

    image: int
    class_index: int
    hit: bool
    peak: tuple[float, float]


def pointing_game_pairs(
    cams: ArrayLike | Sequence[ArrayLike],
    boxes: Sequence[Sequence[tuple[int, float, float, float, float]]],
    image_shapes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
) -> list[PointingPair]:
    """Every (image, class) pair with at least one lesion box, and whether the class CAM's peak falls in one.

    The rule and the arguments are those of :func:`pointing_game` (which averages these pairs per class); pairs
    come image by image, classes in increasing index.
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
    if image_shapes is None:
        frames: list[tuple[int, int] | None] = [None] * len(maps)
    elif len(image_shapes) == 2 and np.ndim(image_shapes[0]) == 0:
        frames = [tuple(image_shapes)] * len(maps)  # type: ignore[list-item]
    else:
        frames = [tuple(fs) for fs in image_shapes]  # type: ignore[misc]
        if len(frames) != len(maps):
            raise ConfigError(f"{len(frames)} image shapes for {len(maps)} images")
    pairs: list[PointingPair] = []
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
        for ci in sorted(by_class):
            plane = np.where(np.isnan(cam[ci]), -np.inf, cam[ci])
            r, c = divmod(int(np.argmax(plane)), w_cam)
            cy, cx = (r + 0.5) * sy, (c + 0.5) * sx
            hit = any(y0 <= cy < y1 and x0 <= cx < x1 for y0, x0, y1, x1 in by_class[ci])
            pairs.append(PointingPair(i, ci, bool(hit), (float(cy), float(cx))))
    return pairs


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
    pairs = pointing_game_pairs(cams, boxes, image_shapes)
    first = np.asarray(cams[0])  # type: ignore[index]
    n_classes = first.shape[0]
    names = _class_names(classes, n_classes)
    hits = np.zeros(n_classes, dtype=np.int64)
    total = np.zeros(n_classes, dtype=np.int64)
    for pair in pairs:
        total[pair.class_index] += 1
        hits[pair.class_index] += int(pair.hit)
    return {name: (float(hits[c] / total[c]) if total[c] else math.nan) for c, name in enumerate(names)}


# ============================================================================================ figures

#: Colours of detection outcomes (points layers, thumbnails): hit green, false positive red, ITC-ignored orange.
OUTCOME_COLORS = {OUTCOME_HIT: "#34c759", OUTCOME_FALSE_POSITIVE: "#ff3b30", OUTCOME_ITC: "#ff9500"}
#: Colour of ground-truth outlines in thumbnails (as the ground-truth layers: tumour cyan, exclusion yellow).
TRUTH_COLOR, EXCLUSION_COLOR = "#00e5ff", "#ffd400"


def _new_figure(size: tuple[float, float], dpi: int = 100) -> Any:
    """A matplotlib Figure drawn with Agg (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Any, path: PathLike, overwrite: bool = True) -> Path:
    """Write a Figure as PNG, atomically; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _atomic_write(path, buf.getvalue(), overwrite)


def draw_froc(
    ax: Any, froc_result: FrocResult | Mapping[str, Any], *, label: str = "FROC", color: str = "tab:blue"
) -> None:
    """Draw a FROC curve (lesion sensitivity against false positives per slide) into a matplotlib Axes.

    Args:
        ax: the Axes.
        froc_result: a :class:`FrocResult` or its :meth:`FrocResult.to_dict` (as in ``froc.json``).
        label, color: legend label and colour of the curve.
    """
    if isinstance(froc_result, FrocResult):
        fps, sens = froc_result.fps_per_slide, froc_result.sensitivity
        at = {float(k): float(v) for k, v in froc_result.sensitivity_at.items()}
        score, n_slides, n_lesions = froc_result.score, froc_result.n_slides, froc_result.n_lesions
    else:
        fps = np.asarray(froc_result["fps_per_slide"], dtype=np.float64)
        sens = np.asarray(froc_result["sensitivity"], dtype=np.float64)
        at = {float(k): float(v) for k, v in froc_result["sensitivity_at"].items()}
        score = float(froc_result["score"])
        n_slides, n_lesions = froc_result.get("n_slides", "?"), froc_result.get("n_lesions", "?")
    order = np.lexsort((sens, fps))  # by FPs per slide, then sensitivity: a monotone staircase
    ax.plot(fps[order], sens[order], "-", color=color, label=label)
    ax.plot(list(at), list(at.values()), "o", color="tab:red", label="scored points")
    right = max(8.5, float(np.max(fps)) * 1.05 if len(fps) else 8.5)
    ax.set_xlim(0.0, right)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("average false positives per slide")
    ax.set_ylabel("lesion sensitivity")
    ax.set_title(f"CAMELYON16 FROC: score {score:.4f} ({n_slides} slides, {n_lesions} lesions)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def draw_roc(
    ax: Any,
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    title: str = "ROC",
) -> dict[str, float]:
    """Draw ROC curves (true against false positive rate) into a matplotlib Axes; returns each curve's AUC.

    Args:
        ax: the Axes.
        curves: legend name -> ``(labels, scores)``, 0 / 1 labels and finite scores of the same length. A curve
            whose labels are all one class is skipped (its AUC is NaN).
        title: the Axes title.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    aucs: dict[str, float] = {}
    for name, (labels, scores) in curves.items():
        y = np.asarray(labels).astype(bool).reshape(-1)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if y.all() or not y.any():
            aucs[name] = math.nan
            continue
        fpr, tpr, _ = roc_curve(y, s)
        aucs[name] = float(roc_auc_score(y, s))
        ax.plot(fpr, tpr, "-", drawstyle="steps-post", label=f"{name} (AUC {aucs[name]:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.02)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if any(math.isfinite(v) for v in aucs.values()):
        ax.legend(loc="lower right", fontsize=7)
    return aucs


# ============================================================================================ suspected label errors

SUSPECT_HIGH = 0.9
"""A case labelled negative whose score is at least this is a suspected label error (missed positive)."""
SUSPECT_LOW = 0.1
"""A case labelled positive whose score is at most this is a suspected label error (false label or empty mask)."""

SUSPECT_RULE = (
    "A case is a suspected label error when the model confidently contradicts its label: labelled negative "
    "(a normal slide, or an X-ray without that class) with a score >= {high}, or labelled positive with a score "
    "<= {low}. Slides are scored by their slide score (by default the heatmap maximum, Liu et al.), X-rays by the "
    "class probability. Suspects are listed most contradictory first (by the score for negatives, 1 - score for "
    "positives); they are candidates to re-read, not errors: Liu et al. found two CAMELYON16 training slides "
    "labelled normal that held tumour this way."
)


def _check_suspect_limits(high: float, low: float) -> tuple[float, float]:
    high, low = float(high), float(low)
    if not (0.0 <= low < high <= 1.0):
        raise ConfigError(f"suspect limits must satisfy 0 <= low < high <= 1, got low={low!r}, high={high!r}")
    return high, low


def suspected_label_errors(
    names: Sequence[str],
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    classes: Sequence[str] | None = None,
    high: float = SUSPECT_HIGH,
    low: float = SUSPECT_LOW,
) -> list[dict[str, Any]]:
    """Cases whose prediction confidently contradicts their label (see :data:`SUSPECT_RULE`).

    Args:
        names: one name per case (slide or image).
        labels: (n,) or (n, n_classes) 0 / 1 labels.
        scores: scores of the same shape, probabilities in [0, 1]; NaN scores are skipped (no prediction).
        classes: class names of the columns (default ``"0"``, ``"1"``, ...; ``"tumor"`` for 1-D labels).
        high: a negative with a score >= this is suspect.
        low: a positive with a score <= this is suspect.

    Returns:
        One dict per suspect, most contradictory first (ties in input order): ``name``, ``class``, ``label``
        (0 / 1), ``score``, ``reason`` (a sentence) and ``contradiction`` (the score for a negative, 1 - score for
        a positive).
    """
    high, low = _check_suspect_limits(high, low)
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    one_d = y.ndim == 1
    if one_d:
        y, s = y[:, None], s.reshape(-1, 1)
    if y.shape != s.shape or y.ndim != 2:
        raise ConfigError(f"labels of shape {np.shape(labels)} and scores of shape {np.shape(scores)} differ")
    if len(names) != y.shape[0]:
        raise ConfigError(f"{len(names)} names for {y.shape[0]} cases")
    y = _binary_labels(y, "labels")
    cls = ["tumor"] if one_d and classes is None else _class_names(classes, y.shape[1])
    found: list[tuple[float, int, dict[str, Any]]] = []
    for i, name in enumerate(names):
        for c, cname in enumerate(cls):
            p = float(s[i, c])
            if not math.isfinite(p):
                continue
            if not y[i, c] and p >= high:
                reason = f"labelled without {cname} but predicted {cname} with {p:.3f} >= {high:g}"
                contradiction = p
            elif y[i, c] and p <= low:
                reason = f"labelled {cname} but predicted {p:.3f} <= {low:g}"
                contradiction = 1.0 - p
            else:
                continue
            entry = {
                "name": str(name),
                "class": cname,
                "label": int(y[i, c]),
                "score": p,
                "reason": reason,
                "contradiction": contradiction,
            }
            found.append((-contradiction, len(found), entry))
    return [entry for _, _, entry in sorted(found, key=lambda t: (t[0], t[1]))]


def _suspects_document(suspects: list[dict[str, Any]], high: float, low: float, score: str) -> dict[str, Any]:
    return {
        "rule": SUSPECT_RULE.format(high=f"{high:g}", low=f"{low:g}"),
        "high": high,
        "low": low,
        "score": score,
        "suspects": suspects,
    }


# ============================================================================================ JSON / CSV output


def _json_value(value: Any) -> Any:
    """NaN / inf -> None, numpy scalars and arrays -> Python, tuples -> lists, Paths -> str (strict JSON)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: PathLike, payload: Any) -> Path:
    text = json.dumps(_json_value(payload), indent=2, allow_nan=False)
    return _atomic_write(path, (text + "\n").encode("utf-8"))


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(float(value)) else repr(float(value))
    return str(value)


def _write_csv(path: PathLike, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return _atomic_write(path, buf.getvalue().encode("utf-8"))


def _interval(values: tuple[float, float, float] | None) -> dict[str, float | None]:
    if values is None:
        return {"auc": None, "lo": None, "hi": None}
    auc, lo, hi = values
    return {"auc": _json_value(auc), "lo": _json_value(lo), "hi": _json_value(hi)}


# ============================================================================================ slides: evaluation


@dataclass(eq=False)
class SlideInput:
    """One slide to evaluate in memory (:func:`evaluate_slide_inputs_job`).

    Attributes:
        name: the slide's name (file stem); names must be distinct.
        heatmap: float (rows, cols) tumour probabilities laid over level 0 by ``grid`` (NaN = not evaluated),
            or None when only ``points`` are given.
        grid: where the heatmap's cells lie in level 0 (:class:`~napari_patchdx.geometry.Grid`).
        truth: the ground truth: an :class:`AnnotationSet` (a tumour slide), a tumour mask at the evaluation
            level (non-zero is tumour), or None (a normal slide).
        level0_shape: the slide's level-0 (height, width) in pixels (None: unknown; see :func:`froc`).
        points: lesion points to evaluate instead of those found in ``heatmap`` by non-maximum suppression.
        source: the heatmap (or points) file, named in error messages.
    """

    name: str
    heatmap: np.ndarray | None = None
    grid: Grid | None = None
    truth: AnnotationSet | np.ndarray | None = None
    level0_shape: tuple[int, int] | None = None
    points: PointsTable | None = None
    source: Path | None = None


@dataclass(eq=False)
class SlidesEvaluation:
    """The evaluation of a set of slides (:func:`evaluate_slide_inputs_job`).

    Attributes:
        names: slide names, in input order.
        is_tumor: (n,) bool, True for slides with ground truth (the CAMELYON16 convention).
        scores: (n,) float64 slide scores (NaN when a slide has no heatmap).
        points: slide -> its lesion points (level-0 (y, x), probability).
        outcomes: slide -> the outcome of each of its points (:class:`PointOutcomes`, same order).
        per_slide: slide -> its :class:`SlideFroc` counts (lesions, hits, ITCs, false positives).
        froc: the FROC result, or None when it is undefined (``froc_note`` says why).
        auc: ``(auc, lo, hi)`` slide-level ROC AUC with its bootstrap interval, or None (``auc_note`` says why).
        suspects: suspected label errors (:func:`suspected_label_errors`).
        settings: the parameters used (JSON-ready).
        moved_points: points of edge cells moved onto the slide (see :func:`evaluate_slide_inputs_job`).
    """

    names: list[str]
    is_tumor: np.ndarray
    scores: np.ndarray
    points: dict[str, PointsTable]
    outcomes: dict[str, PointOutcomes]
    per_slide: dict[str, SlideFroc]
    froc: FrocResult | None
    froc_note: str
    auc: tuple[float, float, float] | None
    auc_note: str
    suspects: list[dict[str, Any]]
    settings: dict[str, Any]
    moved_points: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """The per-slide table (the columns of :data:`SLIDES_CSV_COLUMNS`), in slide order."""
        suspect = {s["name"] for s in self.suspects}
        out = []
        for name, tumour, score in zip(self.names, self.is_tumor, self.scores, strict=True):
            row = self.per_slide[name]
            out.append(
                {
                    "slide": name,
                    "label": "tumor" if tumour else "normal",
                    "score": float(score),
                    "detections": row.n_detections,
                    "lesions": row.n_lesions,
                    "lesions_detected": row.hits,
                    "itc_lesions": row.n_itc,
                    "itc_detections": row.ignored,
                    "false_positives": row.false_positives,
                    "suspect": name in suspect,
                }
            )
        return out

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary: counts, FROC score and sensitivities, slide AUC with its interval, settings."""
        froc_part: dict[str, Any]
        if self.froc is not None:
            d = self.froc.to_dict()
            froc_part = {k: d[k] for k in ("score", "sensitivity_at", "n_slides", "n_lesions", "n_itc", "level", "mpp")}
        else:
            froc_part = {"score": None, "skipped": self.froc_note}
        auc_part: dict[str, Any] = _interval(self.auc)
        auc_part.update(
            confidence=0.95,
            n_boot=self.settings.get("n_boot"),
            n_tumor=int(np.count_nonzero(self.is_tumor & np.isfinite(self.scores))),
            n_normal=int(np.count_nonzero(~self.is_tumor & np.isfinite(self.scores))),
        )
        if self.auc is None:
            auc_part["skipped"] = self.auc_note
        elif self.auc_note:
            auc_part["note"] = self.auc_note
        n_points = sum(len(p) for p in self.points.values())
        counts = {k: sum(o.counts()[k] for o in self.outcomes.values()) for k in OUTCOMES}
        return {
            "track": "slides",
            "n_slides": len(self.names),
            "n_tumor": int(np.count_nonzero(self.is_tumor)),
            "n_normal": int(np.count_nonzero(~self.is_tumor)),
            "froc": froc_part,
            "slide_auc": auc_part,
            "points": {"total": n_points, "moved_onto_slide": self.moved_points, **counts},
            "suspects": len(self.suspects),
            "settings": self.settings,
        }


SLIDES_CSV_COLUMNS = (
    "slide",
    "label",
    "score",
    "detections",
    "lesions",
    "lesions_detected",
    "itc_lesions",
    "itc_detections",
    "false_positives",
    "suspect",
)
"""Columns of ``slides.csv``: slide (name), label (tumor / normal), score (slide score), detections (lesion
points, all with probability above the NMS threshold), lesions (non-ITC lesions of the evaluation mask),
lesions_detected (lesions with at least one point), itc_lesions, itc_detections (points on ITCs, ignored),
false_positives (points outside every lesion; every point on a normal slide), suspect (1 = suspected label
error)."""


def _parse_score(score: str) -> tuple[str, int]:
    """``"max"`` -> ("max", 1); ``"topk_mean"`` -> top 10 mean; ``"top<k>"`` / ``"top<k>_mean"`` -> top k mean."""
    text = str(score).strip().lower()
    if text == "max":
        return "max", 1
    if text == "topk_mean":
        return "topk_mean", 10
    if text.startswith("top"):
        digits = text[3:].removesuffix("_mean")
        if digits.isdigit() and int(digits) >= 1:
            return "topk_mean", int(digits)
    raise ConfigError(f"unknown slide score {score!r}; use 'max' (Liu et al.) or 'top<k>' (mean of the k largest)")


def _check_heatmap(inp: SlideInput) -> np.ndarray:
    heat = np.asarray(inp.heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise InputFileError(inp.source, f"slide {inp.name!r}: the heatmap must be 2-D, got shape {heat.shape}")
    if inp.grid is None:
        raise ConfigError(f"slide {inp.name!r}: a heatmap needs its grid (where its cells lie in level 0)")
    if tuple(heat.shape) != tuple(int(v) for v in inp.grid.shape):
        raise InputFileError(
            inp.source,
            f"slide {inp.name!r}: heatmap shape {heat.shape} does not match its grid {tuple(inp.grid.shape)}",
        )
    finite = heat[np.isfinite(heat)]
    if finite.size == 0:
        raise InputFileError(
            inp.source,
            f"slide {inp.name!r}: the heatmap has no evaluated cell (all NaN), so the slide has no score; was its "
            "tissue mask empty?",
        )
    if np.isinf(heat).any() or finite.min() < 0 or finite.max() > 1:
        raise InputFileError(
            inp.source,
            f"slide {inp.name!r}: heatmap values span {finite.min():g} .. {finite.max():g} (or are infinite); "
            "they must be probabilities in [0, 1] (NaN = not evaluated)",
        )
    if inp.level0_shape is not None:
        h, w = _check_shape(inp.level0_shape, f"slide {inp.name!r}")
        g = inp.grid
        need = (
            math.ceil((h - g.origin[0]) / g.spacing[0]),
            math.ceil((w - g.origin[1]) / g.spacing[1]),
        )
        if abs(need[0] - g.shape[0]) > 1 or abs(need[1] - g.shape[1]) > 1 or g.origin[0] >= h or g.origin[1] >= w:
            raise InputFileError(
                inp.source,
                f"slide {inp.name!r}: the heatmap's {g.shape[0]} x {g.shape[1]} cells of {g.spacing[0]:g} px do not "
                f"cover the {h} x {w} px level-0 slide (about {need[0]} x {need[1]} cells expected); is it another "
                "slide's heatmap?",
            )
    return heat


def _onto_slide(
    points: PointsTable, grid: Grid, shape: tuple[int, int], source: Path | None
) -> tuple[PointsTable, int]:
    """Move points whose cell centre lies off the slide to the centre of the part of their cell on the slide.

    A heatmap's last row / column of cells may extend past the slide's edge (the grid has ``ceil(h / stride)``
    rows), so such a cell's centre can fall outside the level-0 image, where the FROC protocol refuses it; the
    cell's patch looked at the slide's edge, so its point goes to the middle of the cell's on-slide part.
    """
    if not len(points):
        return points, 0
    y, x = points.y.copy(), points.x.copy()
    rows, cols = grid.index_of(y, x)
    moved = np.zeros(len(points), dtype=bool)
    for coord, idx, axis in ((y, rows, 0), (x, cols, 1)):
        lo = grid.origin[axis] + idx * grid.spacing[axis]
        hi = lo + grid.spacing[axis]
        lo_in, hi_in = np.maximum(lo, 0.0), np.minimum(hi, float(shape[axis]))
        off = (coord < 0) | (coord >= shape[axis])
        if (off & (lo_in >= hi_in)).any():
            raise InputFileError(source, "lesion points fall in heatmap cells that lie entirely off the slide")
        coord[off] = (lo_in[off] + hi_in[off]) / 2.0
        moved |= off
    return PointsTable(y=y, x=x, probability=points.probability, source=source), int(np.count_nonzero(moved))


def evaluate_slide_inputs_job(
    inputs: Sequence[SlideInput],
    *,
    nms_threshold: float = 0.5,
    nms_radius_um: float = LIU_RADIUS_UM,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
    score: str = "max",
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
) -> Job[SlidesEvaluation]:
    """Evaluate slides held in memory: lesion points, FROC, per-point outcomes, slide scores and ROC AUC.

    Per slide: lesion points come from ``points`` when given, else from the heatmap by :func:`lesion_points`
    (Liu et al.'s NMS with ``nms_threshold`` and ``nms_radius_um``; the radius is converted to cells with the
    grid's mpp, or ``mpp`` when the grid has none). A point whose cell centre lies past the slide's edge (the
    last row / column of cells may overhang it) is moved to the centre of the cell's on-slide part (counted in
    ``moved_points``). The slide score is :func:`slide_score` of the heatmap (``"max"``, or ``"top<k>"`` for
    the mean of the k largest values). Then the CAMELYON16 FROC over all slides (:func:`froc`; skipped with a
    note when no slide has a lesion to find), the outcome of every point (:func:`classify_points`, the same
    lookup), the slide-level ROC AUC with a stratified bootstrap 95 % interval (:func:`roc_auc_ci`; skipped
    with a note unless both tumour and normal slides have scores) and the suspected label errors
    (:func:`suspected_label_errors` on the slide scores).

    Args:
        inputs: the slides (:class:`SlideInput`), names distinct.
        nms_threshold, nms_radius_um: NMS threshold (probability) and radius (micrometres).
        level, mpp: the FROC protocol's pyramid level and level-0 microns per pixel.
        score: slide score, ``"max"`` or ``"top<k>"``.
        n_boot, seed: bootstrap resamples and seed of the AUC interval.
        suspect_high, suspect_low: limits of the suspected-label-error rule (:data:`SUSPECT_RULE`).

    Yields :class:`~napari_patchdx.progress.Progress` once per slide; returns a :class:`SlidesEvaluation`.

    Raises:
        ConfigError: no slide, repeated names, bad parameters, a slide with neither heatmap nor points.
        InputFileError: a heatmap that is not probabilities, has no evaluated cell, or does not fit its slide; a
            point off the slide.
    """
    level, mpp = _check_protocol(level, mpp)
    method, k = _parse_score(score)
    high, low = _check_suspect_limits(suspect_high, suspect_low)
    if not (math.isfinite(float(nms_threshold)) and 0.0 <= float(nms_threshold) < 1.0):
        raise ConfigError(f"nms_threshold must be a probability in [0, 1), got {nms_threshold!r}")
    if not (math.isfinite(float(nms_radius_um)) and float(nms_radius_um) >= 0):
        raise ConfigError(f"nms_radius_um must be >= 0 micrometres, got {nms_radius_um!r}")
    _check_boot(n_boot, 0.05)
    items = list(inputs)
    if not items:
        raise ConfigError("no slides to evaluate")
    names = [str(inp.name) for inp in items]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"slide names must be distinct; repeated: {_names(dupes)}")
    points: dict[str, PointsTable] = {}
    truths: dict[str, AnnotationSet | np.ndarray | None] = {}
    shapes: dict[str, tuple[int, int]] = {}
    scores = np.full(len(items), np.nan)
    moved_total = 0
    for i, inp in enumerate(items):
        yield Progress(i, len(items) + 1, f"{inp.name}: lesion points")
        if inp.level0_shape is not None:
            shapes[inp.name] = _check_shape(inp.level0_shape, f"slide {inp.name!r}")
        truths[inp.name] = inp.truth
        if inp.heatmap is not None:
            heat = _check_heatmap(inp)
            assert inp.grid is not None
            scores[i] = slide_score(heat, method, k)
        elif inp.points is None:
            raise ConfigError(f"slide {inp.name!r} has neither a heatmap nor lesion points")
        if inp.points is not None:
            pts = inp.points
        else:
            assert inp.grid is not None
            grid = inp.grid
            if grid.mpp is None:
                grid = Grid(grid.shape, grid.spacing, grid.origin, float(mpp))
            found = lesion_points(heat, grid, float(nms_threshold), float(nms_radius_um))
            pts = PointsTable(found.y, found.x, found.probability, source=inp.source)
            if inp.name in shapes:
                pts, moved = _onto_slide(pts, grid, shapes[inp.name], inp.source)
                moved_total += moved
        points[inp.name] = pts
    yield Progress(len(items), len(items) + 1, "FROC and slide AUC")
    lookups = _froc_lookups(points, truths, shapes, level, mpp, names)
    _warn_unchecked([lk.row.slide for lk in lookups if lk.unchecked], stacklevel=2)
    froc_result: FrocResult | None = None
    froc_note = ""
    try:
        froc_result = _froc_result(lookups, level, mpp)
    except ConfigError as exc:
        froc_note = str(exc)
    is_tumor = np.array([truths[n] is not None for n in names], dtype=bool)
    valid = np.isfinite(scores)
    auc: tuple[float, float, float] | None = None
    auc_note = ""
    if not valid.all():
        unscored = [n for n, v in zip(names, valid, strict=True) if not v]
        auc_note = f"slides without a heatmap have no score and are left out: {_names(unscored)}"
    y, s = is_tumor[valid], scores[valid]
    if y.any() and not y.all():
        auc = roc_auc_ci(y, s, n_boot=int(n_boot), seed=int(seed))
    else:
        auc_note = (
            "slide-level ROC AUC needs tumour and normal slides with scores; "
            f"have {int(y.sum())} tumour and {int((~y).sum())} normal" + (f"; {auc_note}" if auc_note else "")
        )
    suspects = suspected_label_errors([n for n, v in zip(names, valid, strict=True) if v], y, s, high=high, low=low)
    settings = {
        "nms_threshold": float(nms_threshold),
        "nms_radius_um": float(nms_radius_um),
        "level": level,
        "mpp": mpp,
        "score": str(score),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "suspect_high": high,
        "suspect_low": low,
    }
    result = SlidesEvaluation(
        names=names,
        is_tumor=is_tumor,
        scores=scores,
        points=points,
        outcomes={lk.row.slide: lk.outcomes for lk in lookups},
        per_slide={lk.row.slide: lk.row for lk in lookups},
        froc=froc_result,
        froc_note=froc_note,
        auc=auc,
        auc_note=auc_note,
        suspects=suspects,
        settings=settings,
        moved_points=moved_total,
    )
    yield Progress(len(items) + 1, len(items) + 1, "evaluated")
    return result


def evaluate_slide_inputs(inputs: Sequence[SlideInput], **kwargs: Any) -> SlidesEvaluation:
    """:func:`evaluate_slide_inputs_job` run to the end (same arguments)."""
    return run_job(evaluate_slide_inputs_job(inputs, **kwargs))


# ============================================================================================ slides: files


def _slide_stem(path: Path) -> str:
    """A slide's name: its file name without the suffix (``x.ome.tif`` -> ``x``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _remove_stale(*paths: Path) -> None:
    """Remove outputs of an earlier evaluation that this one does not produce (so no stale figure survives)."""
    for p in paths:
        p.unlink(missing_ok=True)


def _draw_truth(ax: Any, truth: AnnotationSet | np.ndarray | None, ds: int) -> None:
    """Ground-truth outlines in level-0 (x, y) axes: annotation rings, or the contour of a level-``ds`` mask."""
    from ..io.annotations import EXCLUSION

    if truth is None:
        return
    if isinstance(truth, AnnotationSet):
        for region in truth.regions:
            color = EXCLUSION_COLOR if region.label == EXCLUSION else TRUTH_COLOR
            for k, ring in enumerate((region.exterior, *region.holes)):
                closed = np.vstack([ring, ring[:1]])
                ax.plot(closed[:, 1], closed[:, 0], "-" if k == 0 else "--", color=color, lw=1.0)
        return
    mask = np.asarray(truth) != 0
    if mask.any():
        ys = (np.arange(mask.shape[0]) + 0.5) * ds
        xs = (np.arange(mask.shape[1]) + 0.5) * ds
        ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors=[TRUTH_COLOR], linewidths=1.0)


def _draw_points(ax: Any, points: PointsTable, outcomes: PointOutcomes | None, limit: int = 300) -> None:
    """The ``limit`` most probable points as open circles coloured by outcome (level-0 (x, y) axes)."""
    n = min(len(points), limit)
    if n == 0:
        return
    kinds = outcomes.outcome[:n] if outcomes is not None else np.full(n, OUTCOME_FALSE_POSITIVE, dtype=object)
    for kind in OUTCOMES:
        sel = np.flatnonzero(kinds == kind)
        if sel.size:
            ax.scatter(
                points.x[sel],
                points.y[sel],
                s=28,
                facecolors="none",
                edgecolors=OUTCOME_COLORS[kind],
                linewidths=1.3,
                label=kind.replace("_", " "),
            )


def slide_thumbnail(
    path: PathLike,
    image: np.ndarray,
    level0_shape: tuple[int, int],
    *,
    heatmap: np.ndarray | None = None,
    grid: Grid | None = None,
    truth: AnnotationSet | np.ndarray | None = None,
    points: PointsTable | None = None,
    outcomes: PointOutcomes | None = None,
    title: str = "",
    level: int = CAMELYON_LEVEL,
) -> Path:
    """Save a slide thumbnail PNG with the heatmap, the ground-truth outlines and the points by outcome, atomically.

    Args:
        path: the PNG to write.
        image: (h, w, 3) uint8 thumbnail of the whole slide (e.g. :meth:`Slide.thumbnail`).
        level0_shape: the slide's level-0 (height, width); the thumbnail is stretched over it.
        heatmap, grid: tumour probabilities (NaN transparent) and where they lie, drawn with ``inferno``, alpha 0.5.
        truth: annotations (tumour cyan, exclusions yellow, holes dashed) or a tumour mask at level ``level``.
        points, outcomes: lesion points as circles coloured by outcome (:data:`OUTCOME_COLORS`).
        title: text above the image.
        level: the pyramid level of a mask ``truth``.
    """
    h0, w0 = (int(v) for v in level0_shape)
    width_in = 4.0
    fig = _new_figure((width_in, max(1.2, width_in * h0 / w0) + 0.35))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))
    ax.imshow(np.asarray(image), extent=(0, w0, h0, 0), interpolation="bilinear")
    if heatmap is not None and grid is not None:
        y0, x0, y1, x1 = grid.extent
        ax.imshow(
            np.ma.masked_invalid(np.asarray(heatmap, dtype=np.float32)),
            extent=(x0, x1, y1, y0),
            cmap="inferno",
            vmin=0.0,
            vmax=1.0,
            alpha=0.5,
            interpolation="nearest",
        )
    _draw_truth(ax, truth, 2**level)
    if points is not None and len(points):
        _draw_points(ax, points, outcomes)
        ax.legend(loc="lower right", fontsize=6, framealpha=0.6)
    ax.set_xlim(0, w0)
    ax.set_ylim(h0, 0)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8, y=0.995, va="top")
    return _save_figure(fig, path)


def evaluate_slides_job(
    slides: Sequence[PathLike],
    heatmap_dir: PathLike,
    out_dir: PathLike,
    *,
    annotations: Mapping[str, PathLike | None] | None = None,
    nms_threshold: float = 0.5,
    nms_radius_um: float = LIU_RADIUS_UM,
    level: int = CAMELYON_LEVEL,
    mpp: float | None = None,
    score: str = "max",
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> Job[dict[str, Any]]:
    """:func:`evaluate_slides` as a job yielding :class:`~napari_patchdx.progress.Progress`; returns the metrics."""
    from ..inference import heatmap_paths, read_heatmap
    from ..io.detect import annotations_beside
    from ..io.slides import open_slide

    paths = [Path(s) for s in slides]
    if not paths:
        raise ConfigError("evaluate_slides: no slides given")
    stems = [_slide_stem(p) for p in paths]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise ConfigError(f"slides must have distinct names; repeated: {_names(dupes)}")
    if annotations is None:
        ann: dict[str, Path | None] = {stem: annotations_beside(p) for stem, p in zip(stems, paths, strict=True)}
    else:
        ann = {str(k): (None if v is None else Path(v)) for k, v in annotations.items()}
        missing = set(stems) - set(ann)
        if missing:
            raise ConfigError(
                f"no ground-truth entry for slides {_names(missing)} in annotations (give None for a normal slide)"
            )
        extra = set(ann) - set(stems)
        if extra:
            raise ConfigError(
                f"annotations name slides that are not evaluated: {_names(extra)} (a tumour slide would drop out of "
                "the FROC); evaluate them too or leave them out of the mapping"
            )
    heat_dir = Path(heatmap_dir)
    if not heat_dir.is_dir():
        raise InputFileError(heat_dir, "the heatmap folder does not exist or is not a folder")
    lacking = [s for s in stems if not heatmap_paths(heat_dir, s)["final"].is_file()]
    if lacking:
        raise InputFileError(
            heat_dir, f"no heatmap (<slide>.heatmap.ome.tif with its .heatmap.json) for slides: {_names(lacking)}"
        )
    out = Path(out_dir)
    n = len(paths)
    inputs: list[SlideInput] = []
    slide_mpps: dict[str, float | None] = {}
    for i, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        yield Progress(i, n, f"{stem}: reading slide, heatmap and ground truth")
        with open_slide(path) as slide:
            shape = (int(slide.shape[0]), int(slide.shape[1]))
            slide_mpps[stem] = slide.mpp
        heat_path = heatmap_paths(heat_dir, stem)["final"]
        heat, grid, side = read_heatmap(heat_path)
        made_for = ((side.get("key") or {}).get("slide") or {}).get("shape")
        if made_for is not None and tuple(int(v) for v in made_for) != shape:
            raise InputFileError(
                heat_path,
                f"was computed for a {made_for[0]} x {made_for[1]} px slide, but {path.name} is {shape[0]} x "
                f"{shape[1]} px: not this slide's heatmap",
            )
        truth = read_annotations(ann[stem]) if ann[stem] is not None else None
        other = sorted(set(truth.labels) - {"tumor", "exclusion"}) if truth is not None else []
        if other:
            warnings.warn(
                f"{ann[stem]}: regions of classes {', '.join(other)} count as tumour in the FROC evaluation mask "
                "(every class but exclusion does, as in CAMELYON16's _0 / _1 groups)",
                UserWarning,
                stacklevel=2,
            )
        if truth is not None and not truth.positives:
            warnings.warn(
                f"{ann[stem]}: the annotation file has no tumour region, so slide {stem!r} counts as a tumour "
                "slide without lesions",
                UserWarning,
                stacklevel=2,
            )
        inputs.append(SlideInput(stem, heat, grid, truth, shape, None, heat_path))
    if mpp is None:
        unknown = [s for s, m in slide_mpps.items() if m is None]
        if unknown:
            raise ConfigError(
                f"level-0 microns per pixel unknown for slides {_names(unknown)}; pass mpp= (the CAMELYON16 "
                f"protocol assumes {CAMELYON_MPP})"
            )
        known = np.array([m for m in slide_mpps.values() if m is not None], dtype=np.float64)
        if known.max() > known.min() * 1.01:
            raise ConfigError(
                f"the slides' microns per pixel differ ({known.min():g} .. {known.max():g}) but the FROC protocol "
                f"uses one value; pass mpp= (the CAMELYON16 protocol uses {CAMELYON_MPP} for every slide)"
            )
        protocol_mpp = float(known.mean())
    else:
        protocol_mpp = float(mpp)
    evaluation = yield from evaluate_slide_inputs_job(
        inputs,
        nms_threshold=nms_threshold,
        nms_radius_um=nms_radius_um,
        level=level,
        mpp=protocol_mpp,
        score=score,
        n_boot=n_boot,
        seed=seed,
        suspect_high=suspect_high,
        suspect_low=suspect_low,
    )
    metrics = yield from _write_slide_outputs(evaluation, inputs, paths, out, thumbnails)
    metrics["settings"]["mpp_source"] = "argument" if mpp is not None else "slides"
    metrics["inputs"] = {
        "slides": [str(p) for p in paths],
        "heatmap_dir": str(heat_dir),
        "annotations": {k: (None if v is None else str(v)) for k, v in ann.items()},
    }
    _write_json(out / "metrics.json", metrics)
    return metrics


def _write_slide_outputs(
    evaluation: SlidesEvaluation, inputs: Sequence[SlideInput], paths: Sequence[Path], out: Path, thumbnails: bool
) -> Job[dict[str, Any]]:
    """Write points/, froc.json, froc.png, roc.png, slides.csv, thumbs/, suspects.json; returns the metrics."""
    from ..io.slides import open_slide

    (out / "points").mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"slides_csv": "slides.csv", "suspects": "suspects.json", "points": {}}
    for name in evaluation.names:
        evaluation.points[name].to_camelyon_csv(out / "points" / f"{name}.csv")
        files["points"][name] = f"points/{name}.csv"
    if evaluation.froc is not None:
        evaluation.froc.to_json(out / "froc.json")
        evaluation.froc.plot(out / "froc.png")
        files.update(froc_json="froc.json", froc_png="froc.png")
    else:
        _remove_stale(out / "froc.json", out / "froc.png")
    if evaluation.auc is not None:
        valid = np.isfinite(evaluation.scores)
        fig = _new_figure((5.0, 4.5))
        auc, lo, hi = evaluation.auc
        draw_roc(
            fig.add_subplot(1, 1, 1),
            {"slides": (evaluation.is_tumor[valid], evaluation.scores[valid])},
            title=f"slide-level ROC: AUC {auc:.3f} (95% CI {lo:.3f} - {hi:.3f})",
        )
        fig.tight_layout()
        _save_figure(fig, out / "roc.png")
        files["roc_png"] = "roc.png"
    else:
        _remove_stale(out / "roc.png")
    rows = evaluation.rows()
    _write_csv(out / "slides.csv", SLIDES_CSV_COLUMNS, rows)
    if thumbnails:
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
        files["thumbs"] = {}
        for i, (inp, path, row) in enumerate(zip(inputs, paths, rows, strict=True)):
            yield Progress(i, len(inputs), f"{inp.name}: thumbnail")
            with open_slide(path) as slide:
                image = slide.thumbnail(512)
            slide_thumbnail(
                out / "thumbs" / f"{inp.name}.png",
                image,
                inp.level0_shape or (image.shape[0], image.shape[1]),
                heatmap=inp.heatmap,
                grid=inp.grid,
                truth=inp.truth,
                points=evaluation.points[inp.name],
                outcomes=evaluation.outcomes[inp.name],
                title=f"{inp.name} ({row['label']}), score {row['score']:.3f}",
                level=int(evaluation.settings["level"]),
            )
            files["thumbs"][inp.name] = f"thumbs/{inp.name}.png"
    suspects = [
        {**s, "thumbnail": files.get("thumbs", {}).get(s["name"]), "label": "tumor" if s["label"] else "normal"}
        for s in evaluation.suspects
    ]
    _write_json(
        out / "suspects.json",
        _suspects_document(
            suspects, evaluation.settings["suspect_high"], evaluation.settings["suspect_low"], "slide score"
        ),
    )
    metrics = evaluation.metrics()
    metrics["files"] = files
    return metrics


def evaluate_slides(
    slides: Sequence[PathLike],
    heatmap_dir: PathLike,
    out_dir: PathLike,
    *,
    annotations: Mapping[str, PathLike | None] | None = None,
    nms_threshold: float = 0.5,
    nms_radius_um: float = LIU_RADIUS_UM,
    level: int = CAMELYON_LEVEL,
    mpp: float | None = None,
    score: str = "max",
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> dict[str, Any]:
    """Evaluate slide heatmaps: lesion points, CAMELYON16 FROC, slide AUC, per-slide table, thumbnails, suspects.

    Args:
        slides: the slide files; a slide's name is its file stem.
        heatmap_dir: folder of ``<name>.heatmap.ome.tif`` + ``<name>.heatmap.json`` (as
            :func:`napari_patchdx.inference.slide_heatmap_job` writes them).
        out_dir: where to write (created); see "Files" below.
        annotations: slide name -> its ground-truth file (ASAP XML or GeoJSON), or None for a normal slide; must
            name exactly the evaluated slides. Default: the file beside each slide
            (:func:`napari_patchdx.io.detect.annotations_beside`). Tumour slides are those with annotations
            (the CAMELYON16 convention).
        nms_threshold, nms_radius_um: Liu et al.'s NMS threshold (probability) and radius (micrometres) for the
            lesion points (:func:`lesion_points`).
        level: pyramid level of the FROC evaluation mask (5 in CAMELYON16).
        mpp: level-0 microns per pixel assumed by the FROC protocol (37.5 um growth, 275 um ITC axis). None: the
            slides' own, which must be known and agree within 1 %; the CAMELYON16 challenge uses 0.243 for every
            slide.
        score: slide score: ``"max"`` (the heatmap's maximum, Liu et al.) or ``"top<k>"`` (mean of the k largest).
        n_boot, seed: bootstrap resamples and seed of the AUC's 95 % interval.
        suspect_high, suspect_low: the suspected-label-error rule's limits (:data:`SUSPECT_RULE`).
        thumbnails: write ``thumbs/``.

    Files (under ``out_dir``, each written atomically):
        ``points/<name>.csv`` (CAMELYON16 ``probability,X,Y``, level-0 pixels), ``froc.json`` and ``froc.png``
        (when some slide has a lesion to find), ``roc.png`` (when both tumour and normal slides are present),
        ``slides.csv`` (:data:`SLIDES_CSV_COLUMNS`), ``thumbs/<name>.png``, ``suspects.json`` (the rule and the
        suspects) and ``metrics.json`` (the returned dict).

    Returns:
        The metrics: ``track`` ("slides"), counts, ``froc`` (score, sensitivity_at, ... or ``skipped`` with the
        reason), ``slide_auc`` (auc, lo, hi, ... or ``skipped``), ``points``, ``suspects``, ``settings``,
        ``files`` (relative paths) and ``inputs``.

    Raises:
        ConfigError: no slides, repeated names, an annotations mapping that does not name exactly the slides,
            unknown or differing microns per pixel without ``mpp``, bad parameters.
        InputFileError: a missing heatmap (all are listed), a heatmap that is not this slide's or holds no
            probabilities, an unreadable slide or annotation file.
    """
    return run_job(
        evaluate_slides_job(
            slides,
            heatmap_dir,
            out_dir,
            annotations=annotations,
            nms_threshold=nms_threshold,
            nms_radius_um=nms_radius_um,
            level=level,
            mpp=mpp,
            score=score,
            n_boot=n_boot,
            seed=seed,
            suspect_high=suspect_high,
            suspect_low=suspect_low,
            thumbnails=thumbnails,
        )
    )


# ============================================================================================ chest X-rays: files


def thresholds_from_checkpoint(path: PathLike) -> dict[str, float | None]:
    """The per-class operating thresholds stored in a checkpoint's sidecar (Youden on the validation split).

    Args:
        path: the checkpoint (``.json``, ``.safetensors``, stem or folder; see
            :func:`napari_patchdx.models.read_checkpoint_meta`).

    Returns:
        class name -> threshold, None for a class whose threshold was undefined at validation (or when the
        checkpoint has none); pass it to :func:`evaluate_cxr`.
    """
    from ..models import checkpoint_paths, read_checkpoint_meta

    meta = read_checkpoint_meta(path)
    classes = [str(c) for c in meta["classes"]]
    values = meta.get("thresholds")
    if values is None:
        return dict.fromkeys(classes)
    if isinstance(values, Mapping):
        return {c: (None if values.get(c) is None else float(values[c])) for c in classes}
    if not isinstance(values, list) or len(values) != len(classes):
        raise InputFileError(checkpoint_paths(path)[1], f"thresholds {values!r} are not one per class {classes}")
    return {c: (None if v is None else float(v)) for c, v in zip(classes, values, strict=True)}


def _read_lesion_boxes(path: Path, classes: Sequence[str]) -> dict[str, list[tuple[int, float, float, float, float]]]:
    """``lesions.csv`` (image, class, y0, x0, y1, x1: half-open native-pixel boxes) as per-image box lists."""
    text = _read_text(path, "a lesion table (image, class, y0, x0, y1, x1)")
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    missing = [c for c in ("image", "class", "y0", "x0", "y1", "x1") if c not in fields]
    if missing:
        raise InputFileError(path, f"missing columns {', '.join(missing)} (has {', '.join(fields) or 'none'})")
    out: dict[str, list[tuple[int, float, float, float, float]]] = {}
    for lineno, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        cls = row["class"]
        if cls not in classes:
            raise InputFileError(path, f"line {lineno}: unknown class {cls!r} (the labels have {', '.join(classes)})")
        try:
            y0, x0, y1, x1 = (float(row[k]) for k in ("y0", "x0", "y1", "x1"))
        except ValueError:
            raise InputFileError(path, f"line {lineno}: box coordinates must be numbers") from None
        if not all(math.isfinite(v) for v in (y0, x0, y1, x1)) or y1 <= y0 or x1 <= x0:
            raise InputFileError(path, f"line {lineno}: box ({y0:g}, {x0:g}, {y1:g}, {x1:g}) is empty or not finite")
        out.setdefault(row["image"], []).append((list(classes).index(cls), y0, x0, y1, x1))
    return out


def _class_colors(n: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10"]
    return [to_hex(cmap(k % 10)) for k in range(n)]


def cxr_thumbnail(
    path: PathLike,
    image: np.ndarray,
    *,
    cam: np.ndarray | None = None,
    boxes: Sequence[tuple[str, float, float, float, float]] = (),
    peak: tuple[float, float] | None = None,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    max_side: int = 256,
) -> Path:
    """Save an X-ray thumbnail PNG with a CAM overlay, the ground-truth lesion boxes and the CAM peak, atomically.

    Args:
        path: the PNG to write.
        image: (H, W) grey image (any range; shown min to max).
        cam: (H, W) class activation map at the image's native size (shown min-max normalised, ``jet``, alpha
            0.35), or None.
        boxes: ``(class, y0, x0, y1, x1)`` half-open native-pixel boxes, drawn as rectangles with the class name.
        peak: (y, x) native-pixel position marked with a white cross (the CAM's maximum).
        title: text above the image.
        colors: class -> colour of its boxes (default tab10 in order of appearance).
        max_side: the image is subsampled to at most about this many pixels across.
    """
    from matplotlib.patches import Rectangle

    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    step = max(1, math.ceil(max(h, w) / max(1, int(max_side))))
    fig = _new_figure((3.0, 3.0 * h / w + 0.35))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))
    ax.imshow(img[::step, ::step], cmap="gray", extent=(0, w, h, 0), interpolation="bilinear")
    if cam is not None:
        c = np.asarray(cam, dtype=np.float32)[::step, ::step]
        finite = c[np.isfinite(c)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            c = (c - lo) / (hi - lo) if hi > lo else np.zeros_like(c)
            ax.imshow(np.ma.masked_invalid(c), cmap="jet", alpha=0.35, vmin=0, vmax=1, extent=(0, w, h, 0))
    palette = dict(colors or {})
    defaults = iter(_class_colors(10))
    for cls, y0, x0, y1, x1 in boxes:
        if cls not in palette:
            palette[cls] = next(defaults)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=palette[cls], lw=1.3))
        ax.text(x0, y0, str(cls), color=palette[cls], fontsize=6, va="bottom", ha="left")
    if peak is not None:
        ax.plot([peak[1]], [peak[0]], "x", color="white", ms=8, mew=2)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=7, y=0.995, va="top")
    return _save_figure(fig, path)


def _cam_peak(cam: np.ndarray) -> tuple[float, float]:
    """(y, x) centre of a native-size CAM's argmax pixel (first in row-major order; NaN never wins)."""
    plane = np.where(np.isnan(cam), -np.inf, cam)
    r, c = divmod(int(np.argmax(plane)), plane.shape[1])
    return (r + 0.5, c + 0.5)


def evaluate_cxr_job(
    infer_dir: PathLike,
    cohort_dir: PathLike,
    out_dir: PathLike,
    *,
    images: Sequence[str] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> Job[dict[str, Any]]:
    """:func:`evaluate_cxr` as a job yielding :class:`~napari_patchdx.progress.Progress`; returns the metrics."""
    from ..inference import cam_paths, read_cxr_prediction
    from ..io.cxr import read_cxr
    from ..sampling.balanced import read_cohort_labels

    high, low = _check_suspect_limits(suspect_high, suspect_low)
    _check_boot(n_boot, 0.05)
    pred_dir, root, out = Path(infer_dir), Path(cohort_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise InputFileError(pred_dir, "the predictions folder does not exist or is not a folder")
    table, class_tuple = read_cohort_labels(root)
    classes = list(class_tuple)
    labels_csv = root / "labels.csv"
    ids = table["image"].astype(str).tolist()
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise InputFileError(labels_csv, f"images listed more than once: {_names(dupes)}")
    suffix = ".cam.json"
    preds = {p.name[: -len(suffix)]: p for p in sorted(pred_dir.glob(f"*{suffix}")) if p.is_file()}
    if images is None:
        unknown = set(preds) - set(ids)
        if unknown:
            raise ConfigError(
                f"predictions in {pred_dir} for images that are not in {labels_csv}: {_names(unknown)}; pass images= "
                "to evaluate a subset"
            )
        chosen = [i for i in ids if i in preds]
        if not chosen:
            raise InputFileError(
                pred_dir, "no X-ray predictions (<image>.cam.ome.tif + <image>.cam.json) in the folder"
            )
    else:
        chosen = [str(i) for i in images]
        if not chosen:
            raise ConfigError("evaluate_cxr: images= is empty")
        repeated = {i for i in chosen if chosen.count(i) > 1}
        if repeated:
            raise ConfigError(f"images= names some images more than once: {_names(repeated)}")
        unlabelled = set(chosen) - set(ids)
        if unlabelled:
            raise ConfigError(f"images without a row in {labels_csv}: {_names(unlabelled)}")
        unpredicted = [i for i in chosen if i not in preds]
        if unpredicted:
            raise InputFileError(pred_dir, f"no prediction (<image>.cam.json) for images: {_names(unpredicted)}")
    if thresholds is not None:
        strange = set(map(str, thresholds)) - set(classes)
        if strange:
            raise ConfigError(
                f"thresholds for classes {_names(strange)} that {labels_csv} does not have ({', '.join(classes)}); "
                "was the checkpoint trained on other classes?"
            )
    boxes_path = root / "lesions.csv"
    all_boxes = _read_lesion_boxes(boxes_path, classes) if boxes_path.is_file() else None
    by_id = table.set_index(table["image"].astype(str))
    y = by_id.loc[chosen, classes].to_numpy(dtype=np.int64).astype(bool)
    s = np.zeros(y.shape, dtype=np.float64)
    colors = dict(zip(classes, _class_colors(len(classes)), strict=True))
    pairs: list[PointingPair] = []
    inconsistent: list[str] = []
    if thumbnails:
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    thumbs: dict[str, str] = {}
    extra_classes: set[str] = set()
    for i, image_id in enumerate(chosen):
        yield Progress(i, len(chosen), f"{image_id}: prediction")
        pred = read_cxr_prediction(preds[image_id])
        sidecar = cam_paths(pred_dir, image_id)["sidecar"]
        lacking = [c for c in classes if c not in pred.classes]
        if lacking:
            raise InputFileError(
                sidecar, f"has no prediction for classes {', '.join(lacking)} (it has {', '.join(pred.classes)})"
            )
        extra_classes |= set(pred.classes) - set(classes)
        order = [pred.classes.index(c) for c in classes]
        probs = np.asarray(pred.probabilities, dtype=np.float64)[order]
        bad = [c for c, p in zip(classes, probs, strict=True) if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
        if bad:
            raise InputFileError(
                sidecar, f"probability of {', '.join(bad)} is NaN, infinite or outside [0, 1]: not a usable prediction"
            )
        s[i] = probs
        cams = np.asarray(pred.cams, dtype=np.float32)[order]
        image_boxes = (all_boxes or {}).get(image_id, [])
        for ci, *_ in image_boxes:
            if not y[i, ci]:
                inconsistent.append(f"{image_id}/{classes[ci]}")
        for pair in pointing_game_pairs([cams], [image_boxes], [tuple(pred.shape)]):
            pairs.append(PointingPair(i, pair.class_index, pair.hit, pair.peak))
        if thumbnails:
            positives = np.flatnonzero(y[i])
            shown = int(positives[np.argmax(probs[positives])]) if positives.size else int(np.argmax(probs))
            row = by_id.loc[image_id]
            try:
                grey = read_cxr(root / str(row["png"])).image
            except (InputFileError, OSError) as exc:
                warnings.warn(f"{image_id}: no thumbnail, the image is unreadable ({exc})", UserWarning, stacklevel=2)
            else:
                named = ", ".join(classes[k] for k in positives) or "normal"
                cxr_thumbnail(
                    out / "thumbs" / f"{image_id}.png",
                    grey,
                    cam=cams[shown],
                    boxes=[(classes[ci], y0, x0, y1, x1) for ci, y0, x0, y1, x1 in image_boxes],
                    peak=_cam_peak(cams[shown]),
                    title=f"{image_id} [{named}]: CAM {classes[shown]} p={probs[shown]:.2f}",
                    colors=colors,
                )
                thumbs[image_id] = f"thumbs/{image_id}.png"
        del cams, pred
    if extra_classes:
        warnings.warn(
            f"the predictions have classes that {labels_csv} lacks, left out: {_names(extra_classes)}",
            UserWarning,
            stacklevel=2,
        )
    if inconsistent:
        warnings.warn(
            f"{boxes_path}: lesion boxes of classes the image is not labelled with (labels.csv says 0), scored in the "
            f"pointing game anyway: {_names(inconsistent)}",
            UserWarning,
            stacklevel=2,
        )
    yield Progress(len(chosen), len(chosen), "AUROC, thresholds, pointing game")

    auroc: dict[str, tuple[float, float, float]] | None = None
    auroc_note = ""
    try:
        auroc = multilabel_auroc(y, s, classes=classes, n_boot=int(n_boot), seed=int(seed))
    except ConfigError as exc:
        auroc_note = str(exc)
    youden = youden_thresholds(y, s)
    thr = np.full(len(classes), np.nan)
    source: dict[str, str] = {}
    for c, name in enumerate(classes):
        given = None if thresholds is None else thresholds.get(name)
        if given is not None and math.isfinite(float(given)):
            thr[c], source[name] = float(given), "given"
        elif math.isfinite(youden[c]):
            thr[c], source[name] = youden[c], "youden on the evaluated images"
        else:
            source[name] = "undefined (one label only)"
    sens, spec = sensitivity_specificity(y, s, np.where(np.isfinite(thr), thr, 0.0))
    sens = np.where(np.isfinite(thr), sens, np.nan)
    spec = np.where(np.isfinite(thr), spec, np.nan)
    if thresholds is None:
        thresholds_note = (
            "no thresholds given: chosen by Youden's J on the evaluated images themselves, so sensitivity and "
            "specificity are optimistic (pass the checkpoint's validation thresholds)"
        )
    elif any(v.startswith("youden") for v in source.values()):
        thresholds_note = "given thresholds used; classes without one: Youden's J on the evaluated images (optimistic)"
    else:
        thresholds_note = "given thresholds (e.g. Youden's J on the validation split, from the checkpoint)"
    hits = np.zeros(len(classes), dtype=np.int64)
    total = np.zeros(len(classes), dtype=np.int64)
    hit_of: dict[tuple[int, int], bool] = {}
    for pair in pairs:
        total[pair.class_index] += 1
        hits[pair.class_index] += int(pair.hit)
        hit_of[(pair.image, pair.class_index)] = pair.hit
    pointing = {name: (float(hits[c] / total[c]) if total[c] else math.nan) for c, name in enumerate(classes)}
    unboxed = {
        name: int(sum(1 for i in range(len(chosen)) if y[i, c] and (i, c) not in hit_of))
        for c, name in enumerate(classes)
    }
    suspects = suspected_label_errors(chosen, y, s, classes=classes, high=high, low=low)
    suspect_ids = {x["name"] for x in suspects}

    columns = ["image", "labels"]
    for name in classes:
        columns += [f"{name}_label", f"{name}_probability", f"{name}_predicted", f"{name}_peak_in_box"]
    columns.append("suspect")
    rows = []
    for i, image_id in enumerate(chosen):
        row: dict[str, Any] = {
            "image": image_id,
            "labels": ";".join(classes[c] for c in np.flatnonzero(y[i])) or "normal",
            "suspect": image_id in suspect_ids,
        }
        for c, name in enumerate(classes):
            row[f"{name}_label"] = int(y[i, c])
            row[f"{name}_probability"] = float(s[i, c])
            row[f"{name}_predicted"] = "" if not math.isfinite(thr[c]) else int(s[i, c] >= thr[c])
            row[f"{name}_peak_in_box"] = "" if (i, c) not in hit_of else int(hit_of[(i, c)])
        rows.append(row)
    _write_csv(out / "images.csv", columns, rows)

    files: dict[str, Any] = {"images_csv": "images.csv", "auroc_json": "auroc.json", "suspects": "suspects.json"}
    if thumbnails:
        files["thumbs"] = thumbs
    fig = _new_figure((5.5, 4.8))
    mean_txt = f"mean AUROC {auroc['mean'][0]:.3f}" if auroc is not None else "AUROC undefined"
    draw_roc(
        fig.add_subplot(1, 1, 1),
        {name: (y[:, c], s[:, c]) for c, name in enumerate(classes)},
        title=f"X-ray ROC per class ({len(chosen)} images): {mean_txt}",
    )
    fig.tight_layout()
    _save_figure(fig, out / "roc.png")
    files["roc_png"] = "roc.png"

    auroc_part = {name: _interval(auroc[name] if auroc is not None else None) for name in classes}
    mean_part = _interval(auroc["mean"] if auroc is not None else None)
    if auroc is None:
        mean_part["skipped"] = auroc_note
    summary = {
        "classes": classes,
        "n_images": len(chosen),
        "n_positive": {name: int(y[:, c].sum()) for c, name in enumerate(classes)},
        "auroc": auroc_part,
        "mean_auroc": mean_part,
        "confidence": 0.95,
        "thresholds": {name: float(thr[c]) for c, name in enumerate(classes)},
        "threshold_source": source,
        "thresholds_note": thresholds_note,
        "sensitivity": {name: float(sens[c]) for c, name in enumerate(classes)},
        "specificity": {name: float(spec[c]) for c, name in enumerate(classes)},
        "pointing_game": pointing,
        "pointing_pairs": {name: int(total[c]) for c, name in enumerate(classes)},
        "pointing_unboxed_positives": unboxed,
        "pointing_note": (
            "share of (image, class) pairs with a lesion box whose class CAM peaks inside one of the class's boxes"
            if all_boxes is not None
            else f"no {boxes_path.name} beside labels.csv: pointing game not computed"
        ),
    }
    _write_json(out / "auroc.json", summary)
    suspects_out = [{**x, "thumbnail": thumbs.get(x["name"])} for x in suspects]
    _write_json(out / "suspects.json", _suspects_document(suspects_out, high, low, "class probability"))
    metrics = {
        "track": "cxr",
        **summary,
        "suspects": len(suspects),
        "settings": {"n_boot": int(n_boot), "seed": int(seed), "suspect_high": high, "suspect_low": low},
        "files": files,
        "inputs": {"infer_dir": str(pred_dir), "cohort_dir": str(root), "images": chosen},
    }
    _write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_cxr(
    infer_dir: PathLike,
    cohort_dir: PathLike,
    out_dir: PathLike,
    *,
    images: Sequence[str] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> dict[str, Any]:
    """Evaluate chest X-ray predictions: per-class and mean AUROC, operating points, pointing game, suspects.

    Args:
        infer_dir: folder of ``<image>.cam.ome.tif`` + ``<image>.cam.json``
            (:func:`napari_patchdx.inference.save_cxr_prediction`).
        cohort_dir: the cohort: ``labels.csv`` (:func:`napari_patchdx.sampling.balanced.read_cohort_labels`: image,
            png, one 0 / 1 column per class) and, for the pointing game, ``lesions.csv`` (image, class, y0, x0,
            y1, x1: half-open native-pixel boxes), as :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes.
        out_dir: where to write (created); see "Files".
        images: the image ids to evaluate (default: every prediction in ``infer_dir``, which must all be in
            ``labels.csv``).
        thresholds: class -> operating threshold (a score >= it is called positive), e.g.
            :func:`thresholds_from_checkpoint` (Youden's J on the validation split). None, or a class given None:
            Youden's J on the evaluated images, which is optimistic; ``metrics["threshold_source"]`` and
            ``thresholds_note`` say which was used.
        n_boot, seed: bootstrap resamples (images, the same resample for every class) and seed of the 95 %
            intervals (:func:`multilabel_auroc`).
        suspect_high, suspect_low: the suspected-label-error rule's limits (:data:`SUSPECT_RULE`), per class.
        thumbnails: write ``thumbs/<image>.png``: the X-ray with the CAM of its most probable labelled class (or
            its most probable class when it has no label), the lesion boxes and the CAM's peak.

    Pointing game: for every (image, class) pair with at least one box in ``lesions.csv``, a hit when the class
    CAM's maximum (at native resolution) lies inside one of that class's boxes on the image
    (:func:`pointing_game_pairs`); the rate per class is hits / pairs (NaN without pairs).

    Files (under ``out_dir``, each written atomically): ``images.csv`` (image, labels, then per class
    ``<class>_label``, ``_probability``, ``_predicted`` (at the threshold), ``_peak_in_box`` (empty without a
    box), and ``suspect``), ``auroc.json`` (the per-class summary), ``roc.png`` (a curve per class),
    ``thumbs/``, ``suspects.json`` and ``metrics.json`` (the returned dict).

    Returns:
        The metrics: ``track`` ("cxr"), ``classes``, ``n_images``, ``n_positive``, ``auroc`` (class -> auc, lo,
        hi), ``mean_auroc``, ``thresholds``, ``threshold_source``, ``thresholds_note``, ``sensitivity``,
        ``specificity``, ``pointing_game``, ``pointing_pairs``, ``suspects``, ``settings``, ``files``, ``inputs``.

    Raises:
        ConfigError: predictions for images missing from ``labels.csv`` (or ``images`` naming such images),
            thresholds for unknown classes, bad parameters.
        InputFileError: no predictions, a missing prediction for a listed image, a prediction lacking a class or
            with a NaN / out-of-range probability, a bad ``labels.csv`` / ``lesions.csv``.
    """
    return run_job(
        evaluate_cxr_job(
            infer_dir,
            cohort_dir,
            out_dir,
            images=images,
            thresholds=thresholds,
            n_boot=n_boot,
            seed=seed,
            suspect_high=suspect_high,
            suspect_low=suspect_low,
            thumbnails=thumbnails,
        )
    )
