"""Lesion annotations: ASAP / CAMELYON16 XML and QuPath GeoJSON, in and out, and rasterisation.

All geometry is in level-0 pixel coordinates, ordered (row, col) = (y, x). (x, y) appears only inside
the file readers and writers, at the format boundary.

Reading
    :func:`read_annotations` decides the format from the content (first non-space byte ``<`` is XML,
    ``{`` or ``[`` is JSON) and falls back to the extension. XML is parsed with ``defusedxml`` only;
    DTDs, entity declarations and external references are refused, never expanded. Every bad file raises
    :class:`~napari_patchdx.errors.InputFileError` naming the file; recoverable problems (annotations that
    enclose no area, GeoJSON geometries that are not polygons) are skipped with one ``UserWarning`` per file.

Class names
    :func:`canonical_label` maps every source class name onto a label: CAMELYON / ASAP groups ``_0``, ``_1``,
    ``Tumor``, ``metastases`` and QuPath classes ``Tumor``, ``Tumour``, ``Metastasis`` become ``"tumor"``;
    ``_2``, ``Exclusion``, ``Ignore`` / ``Ignore*`` become ``"exclusion"``; anything else is lower-cased. A
    region without any class (no ASAP group or ``PartOfGroup="None"``, no GeoJSON classification) is
    ``"tumor"``: in CAMELYON-style data an outline without a class is a lesion outline.

Writing
    :func:`write_asap_xml` and :func:`write_geojson` write atomically (:func:`napari_patchdx._fsutil.atomic_path`:
    a temporary file in the target's folder, then ``os.replace``): on any error nothing is left behind and an
    existing target is untouched.
    Coordinates are written with ``repr`` precision, so reading a written file gives the same float64 values.

Rasterisation
    :meth:`AnnotationSet.rasterize` and :meth:`AnnotationSet.rasterize_labels` fill polygons directly at the
    target resolution with an even-odd scanline fill evaluated at output pixel centres, one region's bounding
    box window at a time, so memory is the output array plus one window however large the slide.

Polygon helpers
    :func:`points_in_polygon`, :func:`fill_polygon` and :func:`polygon_area` are the single implementation of
    the inside rule and the area used here and by the synthetic slides (:mod:`napari_patchdx.synth.wsi`), so
    whatever is drawn from a polygon is exactly what :meth:`AnnotationSet.rasterize` gives for it.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import quoteattr

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np
from numpy.typing import ArrayLike

from ..._fsutil import atomic_write_text
from ...errors import InputFileError

__all__ = [
    "EXCLUSION",
    "TUMOR",
    "AnnotationSet",
    "Region",
    "canonical_label",
    "fill_polygon",
    "from_layer_data",
    "points_in_polygon",
    "polygon_area",
    "read_annotations",
    "to_layer_data",
    "write_asap_xml",
    "write_geojson",
]

TUMOR = "tumor"
EXCLUSION = "exclusion"

PathLike = str | os.PathLike[str]

#: Lower-cased source class names with a canonical label. "" and "none" mean "no class" (see module doc).
_CLASS_SYNONYMS: dict[str, str] = {
    "": TUMOR,
    "none": TUMOR,
    "_0": TUMOR,
    "_1": TUMOR,
    "tumor": TUMOR,
    "tumour": TUMOR,
    "metastasis": TUMOR,
    "metastases": TUMOR,
    "_2": EXCLUSION,
    "exclusion": EXCLUSION,
    "ignore": EXCLUSION,
    "ignore*": EXCLUSION,
}
_ASAP_POINT_TYPES = frozenset({"dot", "pointset", "measurement"})
_ASAP_CODE = re.compile(r"_\d+")
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d+,\d+\s*")
_XML_INVALID_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
_ELLIPSE_VERTICES = 64
_CROSSINGS_PER_CHUNK = 1 << 18  # scanline crossings handled at once (bounded temporary memory)
_BLOCK_ELEMENTS = 1 << 16  # window elements combined into the output at once

_ASAP_COLORS = {TUMOR: "#F4FA58", EXCLUSION: "#64FE2E"}
_QUPATH_COLORS = {TUMOR: [200, 0, 0], EXCLUSION: [180, 180, 180]}


def canonical_label(name: str) -> str:
    """The canonical label of a source class / group name.

    ``"tumor"`` for CAMELYON tumour groups (``_0``, ``_1``, ``Tumor``, ``metastases``) and the QuPath classes
    ``Tumor`` / ``Tumour`` / ``Metastasis``; ``"exclusion"`` for ``_2``, ``Exclusion`` and ``Ignore*``;
    ``"tumor"`` for no class at all (``""`` or ``"None"``); otherwise the stripped, lower-cased name. A QuPath
    derived class (``"Tumor: Positive"``) takes the label of its base class when that has one.
    """
    low = str(name).strip().lower()
    if low in _CLASS_SYNONYMS:
        return _CLASS_SYNONYMS[low]
    base = low.split(":", 1)[0].strip()
    if base and base in _CLASS_SYNONYMS:
        return _CLASS_SYNONYMS[base]
    return low


# --------------------------------------------------------------------------------------------- geometry


def polygon_area(ring: ArrayLike) -> float:
    """Shoelace area of an open (N, 2) (y, x) ring, unsigned, in squared input units (0 for N < 3)."""
    ring = np.asarray(ring, dtype=np.float64)
    if len(ring) < 3:
        return 0.0
    rel = ring - ring[0]  # relative coordinates keep precision for vertices far from the origin
    y, x = rel[:, 0], rel[:, 1]
    return abs(0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _open_ring(ring: np.ndarray) -> np.ndarray:
    """Drop a closing vertex that repeats the first one."""
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        return ring[:-1]
    return ring


def _is_degenerate(ring: np.ndarray) -> bool:
    """True when a ring has fewer than 3 distinct vertices or (numerically) zero area."""
    if len(ring) < 3 or np.unique(ring, axis=0).shape[0] < 3:
        return True
    extent = float(np.ptp(ring, axis=0).max())
    return polygon_area(ring) <= 1e-12 * extent * extent


def _as_ring(values: ArrayLike, what: str) -> np.ndarray:
    """A read-only float64 (N, 2) copy of ``values``; ValueError unless N >= 3 and every value is finite."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(f"{what}: expected an (N >= 3, 2) array of (y, x) vertices, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: vertices must be finite")
    arr.flags.writeable = False
    return arr


def _edges_low_first(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every edge of an open (y, x) ring from its lower-y end: ``ya, xa, yb, xb`` (``ya <= yb``) and ``ya < yb``.

    Interpolating from the lower end makes an edge shared by two polygons give bit-identical crossings.
    """
    nxt = np.concatenate((ring[1:], ring[:1]))
    low_first = (ring[:, 0] <= nxt[:, 0])[:, None]
    a, b = np.where(low_first, ring, nxt), np.where(low_first, nxt, ring)
    return a[:, 0], a[:, 1], b[:, 0], b[:, 1], a[:, 0] < b[:, 0]


def points_in_polygon(points: ArrayLike, ring: ArrayLike) -> np.ndarray:
    """Whether each (y, x) point lies inside the polygon ``ring``, by the rule of :meth:`AnnotationSet.rasterize`.

    Even-odd rule: a horizontal line through the point crosses the edges with ``min(y0, y1) <= y < max(y0, y1)``
    (half-open, horizontal edges never), and a crossing counts when it lies at or left of the point. So a point
    exactly on a left or top edge is inside, one on a right or bottom edge outside, and polygons tiling the
    plane give every point to exactly one of them.

    Args:
        points: (K, 2) (y, x) coordinates (any K, including 0).
        ring: (N, 2) (y, x) open ring (a repeated closing vertex is harmless).

    Returns:
        bool array of shape (K,).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    ya, xa, yb, xb, crossable = _edges_low_first(np.asarray(ring, dtype=np.float64))
    slope = (xb - xa) / np.where(crossable, yb - ya, 1.0)  # horizontal edges are never crossed
    inside = np.zeros(len(pts), dtype=bool)
    step = max(1, (1 << 20) // max(1, len(ya)))  # bounded (points x edges) temporaries
    for s in range(0, len(pts), step):
        py = pts[s : s + step, 0:1]
        px = pts[s : s + step, 1:2]
        crosses = (ya <= py) & (py < yb) & (xa + (py - ya) * slope <= px)
        inside[s : s + step] = (np.count_nonzero(crosses, axis=1) & 1).astype(bool)
    return inside


def _points_in_ring(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """For (K, 2) (y, x) points: inside ``ring`` (:func:`points_in_polygon`) or on its boundary."""
    inside = points_in_polygon(points, ring)
    outside = np.flatnonzero(~inside)
    if outside.size:  # points on the boundary count as inside (a hole may touch its exterior)
        a = ring
        d = np.roll(ring, -1, axis=0) - ring
        dd = np.maximum((d * d).sum(axis=1), np.finfo(float).tiny)
        tol = 1e-9 * max(1.0, float(np.abs(ring).max()))
        step = max(1, (1 << 20) // len(ring))
        for s in range(0, outside.size, step):
            idx = outside[s : s + step]
            p = points[idx][:, None, :]
            t = np.clip(((p - a) * d).sum(axis=2) / dd, 0.0, 1.0)
            dist = np.hypot(*np.moveaxis(p - (a + t[..., None] * d), 2, 0))
            inside[idx] = dist.min(axis=1) <= tol
    return inside


def _clip_half_plane(pts: np.ndarray, axis: int, bound: float, keep_greater: bool) -> np.ndarray:
    """One Sutherland–Hodgman step: keep the part of the ring with ``p[axis] >= bound`` (or ``<=``)."""
    nxt = np.roll(pts, -1, axis=0)
    if keep_greater:
        cin, nin = pts[:, axis] >= bound, nxt[:, axis] >= bound
    else:
        cin, nin = pts[:, axis] <= bound, nxt[:, axis] <= bound
    cross = cin != nin
    inter = pts.copy()
    if cross.any():
        a, b = pts[cross], nxt[cross]
        t = (bound - a[:, axis]) / (b[:, axis] - a[:, axis])
        p = a + t[:, None] * (b - a)
        p[:, axis] = bound
        inter[cross] = p
    both = np.stack([pts, inter], axis=1)  # per edge: its start vertex, then the crossing point
    keep = np.stack([cin, cross], axis=1)
    return both[keep]


def _clip_ring(ring: np.ndarray, height: float, width: float) -> np.ndarray | None:
    """Clip an open (y, x) ring to [0, height] x [0, width]; None when nothing with area remains."""
    pts = ring
    for axis, bound, keep_greater in ((0, 0.0, True), (0, height, False), (1, 0.0, True), (1, width, False)):
        if len(pts) == 0:
            return None
        pts = _clip_half_plane(pts, axis, bound, keep_greater)
    if len(pts) == 0:
        return None
    keep = np.any(pts != np.roll(pts, 1, axis=0), axis=1)  # drop consecutive duplicates (cyclically)
    pts = pts[keep] if keep.any() else pts[:1]
    return None if _is_degenerate(pts) else np.ascontiguousarray(pts)


def _ellipse_polygon(corners: np.ndarray) -> np.ndarray:
    """A 64-vertex (y, x) polygon inscribed in the (possibly rotated) box given by its 4 corners in order."""
    centre = corners.mean(axis=0)
    u = (corners[1] + corners[2]) / 2 - centre
    v = (corners[2] + corners[3]) / 2 - centre
    t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
    return centre + np.cos(t)[:, None] * u + np.sin(t)[:, None] * v


# ------------------------------------------------------------------------------------------- data model


@dataclass(frozen=True, eq=False)
class Region:
    """One annotated polygon.

    Attributes:
        exterior: (N, 2) float64 vertices in level-0 pixels, (y, x), open ring (first vertex not repeated).
        holes: interior rings, each (M, 2) float64 (y, x), open.
        label: canonical class: ``"tumor"`` for CAMELYON tumour groups, ``"exclusion"`` for regions removed
            from the positives (ASAP ``_2`` / ``Exclusion``), otherwise the lower-cased class name.
        name: the annotation's own name in its source file ("" if none).
        group: the group / classification name exactly as written in the source file ("" if none).

    The arrays are copied to read-only float64 on construction; a ValueError is raised unless every ring is
    (N >= 3, 2) and finite.
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    label: str = TUMOR
    name: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "exterior", _as_ring(self.exterior, "exterior"))
        holes = tuple(_as_ring(h, f"hole {k}") for k, h in enumerate(self.holes))
        object.__setattr__(self, "holes", holes)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(ymin, xmin, ymax, xmax) of the exterior, level-0 pixels."""
        lo = self.exterior.min(axis=0)
        hi = self.exterior.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    @property
    def area(self) -> float:
        """Polygon area in level-0 px² (shoelace area of the exterior minus its holes')."""
        return max(0.0, polygon_area(self.exterior) - sum(polygon_area(h) for h in self.holes))


@dataclass(eq=False)
class AnnotationSet:
    """All regions of one file (or made in memory), positives and exclusions together.

    Attributes:
        regions: every region in file order.
        source: the file they came from, or None.
    """

    regions: list[Region] = field(default_factory=list)
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(self.regions)

    @property
    def positives(self) -> list[Region]:
        """Regions whose label is not ``"exclusion"``."""
        return [r for r in self.regions if r.label != EXCLUSION]

    @property
    def exclusions(self) -> list[Region]:
        """Regions labelled ``"exclusion"`` (removed from every positive when rasterised)."""
        return [r for r in self.regions if r.label == EXCLUSION]

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels, in order of first appearance."""
        return tuple(dict.fromkeys(r.label for r in self.regions))

    def area(self) -> np.ndarray:
        """Area of every region (exterior minus holes), level-0 px², float64 of shape (len(self),)."""
        return np.array([r.area for r in self.regions], dtype=np.float64)

    def bounds(self) -> tuple[float, float, float, float]:
        """(ymin, xmin, ymax, xmax) over every region's exterior, level-0 pixels; ValueError when empty."""
        if not self.regions:
            raise ValueError(f"{self._where()}: no regions, so no bounds")
        b = np.array([r.bounds for r in self.regions])
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def rasterize(
        self,
        shape: tuple[int, int],
        downsample: float,
        origin: tuple[float, float] = (0.0, 0.0),
        labels: Iterable[str] | None = None,
    ) -> np.ndarray:
        """Boolean mask of the positive regions at a target resolution.

        Output pixel (i, j) covers level-0 ``[origin_y + i*ds, origin_y + (i+1)*ds) x [origin_x + j*ds, ...)``
        and is True when its centre ``(origin_y + (i + 0.5)*ds, origin_x + (j + 0.5)*ds)`` lies inside (even-odd
        rule; a centre exactly on a left / top edge counts as inside, on a right / bottom edge as outside).

        Args:
            shape: (rows, cols) of the output.
            downsample: level-0 pixels per output pixel (> 0).
            origin: level-0 (y, x) of the output's top-left corner.
            labels: labels counted as positive (case-insensitive class names are accepted); default every label
                except ``"exclusion"``.

        Returns:
            bool array of ``shape``: union of the selected regions minus their holes, minus every exclusion
            region (unless ``"exclusion"`` itself is among ``labels``). Only the output and one region's
            bounding-box window (clipped to the output) are ever allocated.
        """
        out_shape, ds, org = _check_raster_args(shape, downsample, origin)
        if isinstance(labels, str):
            labels = [labels]
        wanted = None if labels is None else {canonical_label(lab) for lab in labels}
        out = np.zeros(out_shape, dtype=bool)
        for region in self.regions:
            selected = region.label != EXCLUSION if wanted is None else region.label in wanted
            if selected:
                for sl, block in _region_blocks(region, out_shape, ds, org):
                    np.logical_or(out[sl], block == 1, out=out[sl])
        if wanted is None or EXCLUSION not in wanted:
            for region in self.exclusions:
                for sl, block in _region_blocks(region, out_shape, ds, org):
                    np.logical_and(out[sl], block != 1, out=out[sl])
        return out

    def rasterize_labels(
        self,
        shape: tuple[int, int],
        downsample: float,
        origin: tuple[float, float] = (0.0, 0.0),
        classes: Sequence[str] = (TUMOR,),
    ) -> np.ndarray:
        """uint8 label image: value k + 1 where a region of ``classes[k]`` covers the pixel centre, else 0.

        Same pixel geometry as :meth:`rasterize` (level-0 ``downsample`` and (y, x) ``origin``). Later classes
        win where regions overlap; holes and exclusion regions are 0 (unless ``"exclusion"`` is itself one of
        ``classes``, in which case it is painted like any other class). At most 255 classes.
        """
        out_shape, ds, org = _check_raster_args(shape, downsample, origin)
        wanted = [canonical_label(c) for c in ([classes] if isinstance(classes, str) else classes)]
        if len(wanted) > 255:
            raise ValueError(f"at most 255 classes fit in uint8, got {len(wanted)}")
        out = np.zeros(out_shape, dtype=np.uint8)
        for value, label in enumerate(wanted, start=1):
            for region in self.regions:
                if region.label == label:
                    for sl, block in _region_blocks(region, out_shape, ds, org):
                        out[sl][block == 1] = value
        if EXCLUSION not in wanted:
            for region in self.exclusions:
                for sl, block in _region_blocks(region, out_shape, ds, org):
                    out[sl][block == 1] = 0
        return out

    def clip(self, height: int, width: int) -> AnnotationSet:
        """Clip every region to the level-0 image rectangle [0, height) x [0, width) (Sutherland–Hodgman).

        Regions entirely inside are kept as the same objects; regions that vanish are dropped, and so are holes
        that vanish. One UserWarning names the file and counts the regions outside or partly outside.
        """
        h, w = float(height), float(width)
        if not (h > 0 and w > 0):
            raise ValueError(f"clip needs a positive height and width, got {height} x {width}")
        kept: list[Region] = []
        clipped = dropped = 0
        for region in self.regions:
            ymin, xmin, ymax, xmax = region.bounds
            if (
                ymin >= 0
                and xmin >= 0
                and ymax <= h
                and xmax <= w
                and all(h_.min() >= 0 and h_[:, 0].max() <= h and h_[:, 1].max() <= w for h_ in region.holes)
            ):
                kept.append(region)
                continue
            exterior = _clip_ring(region.exterior, h, w)
            if exterior is None:
                dropped += 1
                continue
            holes = []
            for hole in region.holes:
                hb = (hole.min(axis=0), hole.max(axis=0))
                if hb[0].min() >= 0 and hb[1][0] <= h and hb[1][1] <= w:
                    holes.append(hole)
                elif (clipped_hole := _clip_ring(hole, h, w)) is not None:
                    holes.append(clipped_hole)
            kept.append(Region(exterior, tuple(holes), region.label, region.name, region.group))
            clipped += 1
        if clipped or dropped:
            _warn(
                f"{self._where()}: {clipped + dropped} of {len(self.regions)} annotation regions lie outside or "
                f"partly outside the {height} x {width} px level-0 image; {clipped} clipped, {dropped} dropped"
            )
        return AnnotationSet(kept, source=self.source)

    def _where(self) -> str:
        return str(self.source) if self.source is not None else "annotations (no file)"


# --------------------------------------------------------------------------------------- rasterisation


def _check_raster_args(
    shape: tuple[int, int], downsample: float, origin: tuple[float, float]
) -> tuple[tuple[int, int], float, tuple[float, float]]:
    if len(shape) != 2 or any(int(s) != s or s < 0 for s in shape):
        raise ValueError(f"shape must be two non-negative integers (rows, cols), got {shape!r}")
    ds = float(downsample)
    if not (math.isfinite(ds) and ds > 0):
        raise ValueError(f"downsample must be a positive finite number, got {downsample!r}")
    oy, ox = (float(v) for v in origin)
    if not (math.isfinite(oy) and math.isfinite(ox)):
        raise ValueError(f"origin must be finite (y, x), got {origin!r}")
    return (int(shape[0]), int(shape[1])), ds, (oy, ox)


def _toggle_crossings(
    win: np.ndarray, ring: np.ndarray, ds: float, origin: tuple[float, float], r0: int, c0: int, bit: int
) -> None:
    """XOR ``bit`` into ``win`` at the first pixel centre right of every scanline crossing of ``ring``.

    A row-wise cumulative XOR afterwards gives the even-odd interior. Pixel centres are integers in the
    converted frame ``(p - origin) / ds - 0.5``; a scanline through row i crosses edges with
    ``min(y0, y1) <= i < max(y0, y1)`` (half-open, so every row crosses a closed ring an even number of times).
    """
    rows_n, cols_n = win.shape
    pixel = np.stack([(ring[:, 0] - origin[0]) / ds - 0.5 - r0, (ring[:, 1] - origin[1]) / ds - 0.5 - c0], axis=1)
    ya, xa, yb, xb, _ = _edges_low_first(pixel)
    start = np.clip(np.ceil(ya), 0, rows_n).astype(np.int64)
    stop = np.clip(np.ceil(yb), 0, rows_n).astype(np.int64)
    counts = stop - start
    keep = counts > 0
    if not keep.any():
        return
    ya, xa, start, counts = ya[keep], xa[keep], start[keep], counts[keep]
    slope = (xb[keep] - xa) / (yb[keep] - ya)
    ends = np.cumsum(counts)
    first = 0
    while first < len(counts):
        base = int(ends[first - 1]) if first else 0
        last = int(np.searchsorted(ends, base + _CROSSINGS_PER_CHUNK, side="right"))
        last = max(last, first + 1)
        c = counts[first:last]
        offsets = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
        rows = np.repeat(start[first:last], c) + offsets
        xs = np.repeat(xa[first:last], c) + (rows - np.repeat(ya[first:last], c)) * np.repeat(slope[first:last], c)
        cols = np.maximum(np.ceil(xs), 0)
        inside = cols < cols_n
        np.bitwise_xor.at(win, (rows[inside], cols[inside].astype(np.intp)), np.uint8(bit))
        first = last


def _fill_window(
    exterior: np.ndarray,
    holes: Sequence[np.ndarray],
    bounds: tuple[float, float, float, float],
    out_shape: tuple[int, int],
    ds: float,
    origin: tuple[float, float],
) -> tuple[int, int, np.ndarray] | None:
    """Fill a polygon in its bounding-box window (clipped to the output): ``(r0, c0, window)`` or None.

    ``window`` is uint8: 1 inside the exterior and outside every hole; other values (0, 2, 3) are outside. Its
    pixel (i, j) is output pixel (r0 + i, c0 + j). None (nothing allocated) when the polygon misses the output.
    """
    ymin, xmin, ymax, xmax = bounds
    r0 = max(0, math.ceil((ymin - origin[0]) / ds - 0.5))
    r1 = min(out_shape[0], math.ceil((ymax - origin[0]) / ds - 0.5))
    c0 = max(0, math.ceil((xmin - origin[1]) / ds - 0.5))
    c1 = min(out_shape[1], math.ceil((xmax - origin[1]) / ds - 0.5))
    if r1 <= r0 or c1 <= c0:
        return None
    win = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
    _toggle_crossings(win, exterior, ds, origin, r0, c0, 1)
    for hole in holes:  # holes in bit 2: exterior AND NOT holes, even for a hole that strays outside
        _toggle_crossings(win, hole, ds, origin, r0, c0, 2)
    np.bitwise_xor.accumulate(win, axis=1, out=win)
    return r0, c0, win


def _region_blocks(
    region: Region, out_shape: tuple[int, int], ds: float, origin: tuple[float, float]
) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """Fill one region (:func:`_fill_window`) and yield ``(output slices, block)`` in row blocks."""
    filled = _fill_window(region.exterior, region.holes, region.bounds, out_shape, ds, origin)
    if filled is None:
        return
    r0, c0, win = filled
    step = max(1, _BLOCK_ELEMENTS // win.shape[1])
    for s in range(0, win.shape[0], step):
        block = win[s : s + step]
        yield (slice(r0 + s, r0 + s + block.shape[0]), slice(c0, c0 + win.shape[1])), block


def fill_polygon(
    ring: ArrayLike, shape: tuple[int, int], downsample: float = 1.0, origin: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Boolean mask of one polygon at a target resolution: :meth:`AnnotationSet.rasterize` of a single region.

    Output pixel (i, j) is True when its centre ``(origin_y + (i + 0.5) * downsample, origin_x + (j + 0.5) *
    downsample)`` is inside ``ring`` by the rule of :func:`points_in_polygon` (left / top edges inside, right /
    bottom edges outside). Only the output and the polygon's bounding-box window are allocated.

    Args:
        ring: (N, 2) (y, x) open ring in level-0 coordinates.
        shape: (rows, cols) of the output.
        downsample: level-0 units per output pixel (> 0).
        origin: level-0 (y, x) of the output's top-left corner.
    """
    out_shape, ds, org = _check_raster_args(shape, downsample, origin)
    arr = np.asarray(ring, dtype=np.float64)
    out = np.zeros(out_shape, dtype=bool)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(f"expected an (N >= 3, 2) array of (y, x) vertices, got shape {arr.shape}")
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    filled = _fill_window(arr, (), (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), out_shape, ds, org)
    if filled is not None:
        r0, c0, win = filled
        out[r0 : r0 + win.shape[0], c0 : c0 + win.shape[1]] = win == 1
    return out


# ---------------------------------------------------------------------------------------------- reading


def _warn(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, UserWarning, stacklevel=stacklevel)


def read_annotations(path: PathLike) -> AnnotationSet:
    """Read an ASAP / CAMELYON16 XML or QuPath GeoJSON annotation file.

    The format is decided by the content (first non-space byte ``<``: XML; ``{`` or ``[``: JSON), else by the
    extension (``.xml``; ``.geojson`` / ``.json``). Regions come back in file order with level-0 (y, x)
    float64 vertices as open rings.

    ASAP: annotations of type Polygon, Rectangle and Spline become regions (a Spline's control points are
    used as polygon vertices); Dot, PointSet, Measurement and any annotation with fewer than 3 distinct
    vertices or zero area are skipped with one warning. Coordinates are sorted by ``Order``. The label
    follows the annotation's group (and the group's parent groups), see :func:`canonical_label`.

    GeoJSON: a FeatureCollection, a single Feature, a bare geometry or a JSON list of Features. Polygon and
    MultiPolygon geometries (each part one Region with the feature's name and class, holes kept) and those
    inside a GeometryCollection are read; other geometries are skipped with one warning. The class comes from
    ``properties.classification.name`` (QuPath), ``properties.classification`` as a string,
    ``properties.class`` or ``properties.label``; a feature without one is ``"tumor"``.

    Raises:
        InputFileError: missing, empty, unreadable, malformed or unsafe file (DTD / entities in XML), invalid
            geometry (ring with fewer than 4 positions, unclosed, non-numeric or non-finite coordinates, zero
            area, hole outside its exterior); the message names the file and the annotation / feature index.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(p, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(p, "is a directory, not an annotation file") from None
    except OSError as exc:
        raise InputFileError(p, f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise InputFileError(p, "empty file (0 bytes); expected ASAP XML or GeoJSON annotations")
    if _sniff_format(data, p) == "xml":
        regions = _parse_asap(data, p)
    else:
        regions = _parse_geojson(data, p)
    return AnnotationSet(regions, source=p)


def _sniff_format(data: bytes, path: Path) -> str:
    head = data[:65536]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        head = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
    first = head.lstrip()[:1]
    if first == b"<":
        return "xml"
    if first in (b"{", b"["):
        return "json"
    if not first and not data.strip():
        raise InputFileError(path, "contains only white space; expected ASAP XML or GeoJSON annotations")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "xml"
    if suffix in (".geojson", ".json"):
        return "json"
    raise InputFileError(
        path, "not an annotation file: expected ASAP / CAMELYON16 XML (.xml) or QuPath GeoJSON (.geojson, .json)"
    )


# ASAP XML


def _parse_asap(data: bytes, path: Path) -> list[Region]:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise InputFileError(
            path,
            f"XML refused: {exc!r}; annotation files may not declare a DTD, entities or external references "
            "(they are never expanded)",
        ) from None
    except ParseError as exc:
        raise InputFileError(path, f"malformed XML: {exc}") from None
    if root.tag != "ASAP_Annotations":
        raise InputFileError(
            path, f"not an ASAP annotation file: root element <{root.tag}>, expected <ASAP_Annotations>"
        )

    parents = {g.get("Name", ""): g.get("PartOfGroup", "None") for g in root.iterfind("AnnotationGroups/Group")}
    regions: list[Region] = []
    skipped = 0
    comma_decimals = False
    for index, ann in enumerate(root.iterfind("Annotations/Annotation")):
        name = ann.get("Name", "")
        group = ann.get("PartOfGroup", "")
        if ann.get("Type", "Polygon").strip().lower() in _ASAP_POINT_TYPES:
            skipped += 1
            continue
        ring, used_comma = _asap_coordinates(ann, index, name, path)
        comma_decimals |= used_comma
        ring = _open_ring(ring)
        if _is_degenerate(ring):
            skipped += 1
            continue
        regions.append(Region(ring, (), _asap_label(group, parents), name, group))
    if skipped:
        _warn(
            f"{path}: skipped {skipped} annotation(s) that enclose no area (Dot / PointSet / Measurement, "
            "fewer than 3 distinct vertices, or zero area)",
            stacklevel=4,
        )
    if comma_decimals:
        _warn(f"{path}: coordinates written with a decimal comma were read with a decimal point", stacklevel=4)
    return regions


def _asap_coordinates(ann: Element, index: int, name: str, path: Path) -> tuple[np.ndarray, bool]:
    """(N, 2) (y, x) vertices of one ASAP annotation sorted by Order, and whether decimal commas were seen."""
    where = f"annotation {index} ({name!r})"
    coords = ann.findall("Coordinates/Coordinate")
    values = np.empty((len(coords), 2), dtype=np.float64)
    orders = np.empty(len(coords), dtype=np.float64)
    have_order = True
    used_comma = False
    for k, c in enumerate(coords):
        for col, attr in ((1, "X"), (0, "Y")):
            text = c.get(attr)
            if text is None:
                raise InputFileError(path, f"{where}: coordinate {k} has no {attr} attribute")
            value, comma = _parse_number(text)
            if value is None:
                raise InputFileError(path, f"{where}: coordinate {k} has a non-numeric {attr}={text!r}")
            if not math.isfinite(value):
                raise InputFileError(path, f"{where}: coordinate {k} has a non-finite {attr}={text!r}")
            values[k, col] = value
            used_comma |= comma
        order_text = c.get("Order")
        if order_text is None:
            have_order = False
            continue
        order, _ = _parse_number(order_text)
        if order is None or not math.isfinite(order):
            raise InputFileError(path, f"{where}: coordinate {k} has a non-numeric Order={order_text!r}")
        orders[k] = order
    if have_order and len(coords):
        values = values[np.argsort(orders, kind="stable")]
    return values, used_comma


def _parse_number(text: str) -> tuple[float | None, bool]:
    """float(text), accepting a decimal comma; (None, False) when not a number."""
    try:
        return float(text), False
    except ValueError:
        if _DECIMAL_COMMA.fullmatch(text):
            return float(text.replace(",", ".")), True
        return None, False


def _asap_label(group: str, parents: Mapping[str, str]) -> str:
    """Label of an ASAP group: the first known class name up its PartOfGroup chain, else its own name."""
    seen: set[str] = set()
    g = group
    while g.strip() and g.strip().lower() != "none" and g not in seen:
        low = g.strip().lower()
        if low in _CLASS_SYNONYMS:
            return _CLASS_SYNONYMS[low]
        seen.add(g)
        g = parents.get(g, "")
    return canonical_label(group)


# GeoJSON


class _GeometryError(Exception):
    """Invalid geometry inside one feature (turned into InputFileError with the feature index)."""


def _parse_geojson(data: bytes, path: Path) -> list[Region]:
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # undecodable bytes, absurd nesting
        raise InputFileError(path, f"invalid JSON: {exc}") from None

    regions: list[Region] = []
    skipped: dict[str, int] = {}
    for index, feature in enumerate(_geojson_features(obj, path)):
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise InputFileError(path, f"feature {index}: properties is not a JSON object")
        group = _geojson_class(props)
        label = canonical_label(group)
        name = props.get("name")
        name = name if isinstance(name, str) else ""
        try:
            for exterior, holes in _geojson_polygons(feature.get("geometry"), skipped):
                regions.append(Region(exterior, holes, label, name, group))
        except _GeometryError as exc:
            raise InputFileError(path, f"feature {index}: {exc}") from None
    if skipped:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(skipped.items()))
        n = sum(skipped.values())
        _warn(f"{path}: skipped {n} non-polygon geometr{'y' if n == 1 else 'ies'} ({kinds})", stacklevel=4)
    return regions


def _geojson_features(obj: Any, path: Path) -> list[Any]:
    def from_item(item: Any, where: str) -> Any:
        if isinstance(item, dict) and item.get("type") == "Feature":
            return item
        if isinstance(item, dict) and item.get("type") in _GEOMETRY_TYPES:
            return {"type": "Feature", "geometry": item, "properties": {}}
        raise InputFileError(path, f"{where} is not a GeoJSON Feature")

    if isinstance(obj, list):
        return [from_item(item, f"feature {i}") for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        kind = obj.get("type")
        if kind == "FeatureCollection":
            features = obj.get("features")
            if not isinstance(features, list):
                raise InputFileError(path, "FeatureCollection without a 'features' list")
            return [from_item(item, f"feature {i}") for i, item in enumerate(features)]
        if kind == "Feature" or kind in _GEOMETRY_TYPES:
            return [from_item(obj, "top-level object")]
    raise InputFileError(path, "not GeoJSON: expected a FeatureCollection, a Feature, a geometry or a list of Features")


def _geojson_class(props: Mapping[str, Any]) -> str:
    """The class name as written: classification.name / .names (QuPath), classification, class or label."""
    cls = props.get("classification")
    if isinstance(cls, dict):
        if isinstance(cls.get("name"), str):
            return cls["name"]
        names = cls.get("names")
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return ": ".join(names)
    elif isinstance(cls, str):
        return cls
    for key in ("class", "label"):
        if isinstance(props.get(key), str):
            return props[key]
    return ""


def _geojson_polygons(
    geometry: Any, skipped: dict[str, int], depth: int = 0
) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
    """Validated (exterior, holes) rings, (y, x) open, of every polygon in a geometry."""
    if geometry is None:
        skipped["null geometry"] = skipped.get("null geometry", 0) + 1
        return
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        raise _GeometryError("geometry is not a GeoJSON geometry object")
    kind = geometry["type"]
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list) or depth > 8:
            raise _GeometryError("GeometryCollection without a 'geometries' list")
        for member in members:
            yield from _geojson_polygons(member, skipped, depth + 1)
        return
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        yield _geojson_polygon(coords, "polygon")
    elif kind == "MultiPolygon":
        if not isinstance(coords, list):
            raise _GeometryError("MultiPolygon coordinates are not a list of polygons")
        if not coords:
            skipped["empty MultiPolygon"] = skipped.get("empty MultiPolygon", 0) + 1
        for part, polygon in enumerate(coords):
            yield _geojson_polygon(polygon, f"polygon {part}")
    else:
        skipped[kind] = skipped.get(kind, 0) + 1


def _geojson_polygon(rings: Any, what: str) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    if not isinstance(rings, list) or not rings:
        raise _GeometryError(f"{what}: coordinates must be a non-empty list of linear rings")
    exterior = _geojson_ring(rings[0], f"{what}, exterior ring")
    holes = []
    for k, ring in enumerate(rings[1:]):
        hole = _geojson_ring(ring, f"{what}, hole {k}")
        if not _points_in_ring(hole, exterior).all():
            raise _GeometryError(f"{what}, hole {k} is not inside its exterior ring (wrong nesting)")
        holes.append(hole)
    return exterior, tuple(holes)


def _geojson_ring(ring: Any, what: str) -> np.ndarray:
    """A GeoJSON linear ring of [x, y] positions as an open (N, 2) (y, x) float64 ring."""
    if not isinstance(ring, list) or not all(isinstance(p, list) for p in ring):
        raise _GeometryError(f"{what} is not a list of [x, y] positions (wrong nesting)")
    if len(ring) < 4:
        raise _GeometryError(f"{what} has {len(ring)} positions; a closed linear ring needs at least 4")
    values = np.empty((len(ring), 2), dtype=np.float64)
    for k, pos in enumerate(ring):
        if len(pos) < 2:
            raise _GeometryError(f"{what}, position {k} has fewer than 2 coordinates")
        x, y = pos[0], pos[1]
        if type(x) not in (int, float) or type(y) not in (int, float):
            raise _GeometryError(f"{what}, position {k} has a non-numeric coordinate {pos[:2]!r}")
        try:
            fx, fy = float(x), float(y)
        except OverflowError:
            fx = fy = math.inf
        if not (math.isfinite(fx) and math.isfinite(fy)):
            raise _GeometryError(f"{what}, position {k} has a non-finite coordinate {pos[:2]!r}")
        values[k] = (fy, fx)
    if not np.array_equal(values[0], values[-1]):
        raise _GeometryError(f"{what} is not closed: its first and last positions differ")
    values = values[:-1]
    if _is_degenerate(values):
        raise _GeometryError(f"{what} has zero area")
    return values


# ---------------------------------------------------------------------------------------------- writing


def _ring_xy(ring: np.ndarray) -> list[list[float]]:
    """Open ring as a list of [x, y] floats (the file-format order)."""
    return ring[:, ::-1].tolist()


def _fmt(value: float) -> str:
    return repr(float(value))


def _xml_text(text: str) -> str:
    return _XML_INVALID_CHARS.sub("\ufffd", text)


def _hash_color(name: str) -> tuple[int, int, int]:
    h = zlib.crc32(name.encode("utf-8"))
    return (64 + (h & 0x7F), 64 + ((h >> 8) & 0x7F), 64 + ((h >> 16) & 0x7F))


def _check_finite(annotations: AnnotationSet) -> None:
    for i, region in enumerate(annotations.regions):
        for ring in (region.exterior, *region.holes):
            if not np.isfinite(ring).all():
                raise ValueError(f"{annotations._where()}: region {i} has non-finite vertices; nothing written")


def _asap_group(region: Region) -> str:
    """The group to write: the region's own when it maps back to its label, else _0 / _2 / the label."""
    if region.group and canonical_label(region.group) == region.label:
        return region.group
    return {TUMOR: "_0", EXCLUSION: "_2"}.get(region.label, region.label)


def write_asap_xml(annotations: AnnotationSet, path: PathLike, *, overwrite: bool = True) -> Path:
    """Write ASAP / CAMELYON16 XML, atomically; returns the path written.

    Every region becomes one ``Type="Polygon"`` annotation (so Rectangle and Spline types are not kept) in
    group ``Region.group`` when set and consistent with its label, else ``_0`` (tumour), ``_2`` (exclusion)
    or the label itself; the ``AnnotationGroups`` section lists every group used. Regions without a name are
    written as ``"Annotation <index>"``. ASAP has no holes: each hole is written as a separate ``_2``
    exclusion annotation named ``"<name> hole <k>"``. (An exclusion removes its area from every positive
    region when rasterised, a hole only from its own region; for non-overlapping regions this is the same.)
    Coordinates are level-0 pixels written as X (column), Y (row) with full float precision.

    Raises:
        FileNotFoundError: the target directory does not exist. FileExistsError: the target exists and
        ``overwrite`` is False. ValueError: a vertex is not finite. Nothing is written in any of these cases.
    """
    _check_finite(annotations)
    entries: list[tuple[str, str, str, np.ndarray]] = []  # name, group, label, ring
    for index, region in enumerate(annotations.regions):
        name = region.name or f"Annotation {index}"
        entries.append((name, _asap_group(region), region.label, region.exterior))
        for k, hole in enumerate(region.holes):
            entries.append((f"{name} hole {k}", "_2", EXCLUSION, hole))
    groups: dict[str, str] = {}
    for _, group, label, _ in entries:
        if group.strip() and group.strip().lower() != "none" and group not in groups:
            groups[group] = _ASAP_COLORS.get(label, "#{:02X}{:02X}{:02X}".format(*_hash_color(group)))

    def write(fh: TextIO) -> None:
        fh.write('<?xml version="1.0"?>\n<ASAP_Annotations>\n\t<Annotations>\n')
        for name, group, label, ring in entries:
            color = _ASAP_COLORS.get(label, groups.get(group, "#F4FA58"))
            fh.write(
                f'\t\t<Annotation Name={quoteattr(_xml_text(name))} Type="Polygon" '
                f'PartOfGroup={quoteattr(_xml_text(group))} Color="{color}">\n\t\t\t<Coordinates>\n'
            )
            for order, (x, y) in enumerate(_ring_xy(ring)):
                fh.write(f'\t\t\t\t<Coordinate Order="{order}" X="{_fmt(x)}" Y="{_fmt(y)}" />\n')
            fh.write("\t\t\t</Coordinates>\n\t\t</Annotation>\n")
        fh.write("\t</Annotations>\n\t<AnnotationGroups>\n")
        for group, color in groups.items():
            fh.write(
                f'\t\t<Group Name={quoteattr(_xml_text(group))} PartOfGroup="None" Color="{color}">\n'
                "\t\t\t<Attributes />\n\t\t</Group>\n"
            )
        fh.write("\t</AnnotationGroups>\n</ASAP_Annotations>\n")

    return atomic_write_text(path, write, overwrite=overwrite)


def _geojson_class_name(region: Region) -> str:
    if region.label == EXCLUSION:
        return "Exclusion"
    group = region.group.strip()
    if group and not _ASAP_CODE.fullmatch(group) and group.lower() != "none" and canonical_label(group) == region.label:
        return region.group
    if region.label == TUMOR:
        return "Tumor"
    return region.label[:1].upper() + region.label[1:]


def write_geojson(annotations: AnnotationSet, path: PathLike, *, overwrite: bool = True) -> Path:
    """Write QuPath-style GeoJSON, atomically; returns the path written.

    A FeatureCollection with one Feature per region: Polygon geometry with closed rings of level-0 [x, y]
    positions (exterior first, then holes; vertex order kept as is, not re-oriented) and properties
    ``{"objectType": "annotation", "name": ..., "classification": {"name": ..., "color": [r, g, b]}}``
    (``name`` only when the region has one). The class name is the region's group when it is a real class
    name consistent with the label, ``"Tumor"`` for tumour regions from ASAP groups (``_0``, ``_1``), and
    ``"Exclusion"`` for every exclusion region. Coordinates keep full float precision.

    Raises:
        FileNotFoundError: the target directory does not exist. FileExistsError: the target exists and
        ``overwrite`` is False. ValueError: a vertex is not finite. Nothing is written in any of these cases.
    """
    _check_finite(annotations)
    regions = list(annotations.regions)

    def write(fh: TextIO) -> None:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for index, region in enumerate(regions):
            cls = _geojson_class_name(region)
            color = _QUPATH_COLORS.get(canonical_label(cls), list(_hash_color(cls)))
            props: dict[str, Any] = {"objectType": "annotation"}
            if region.name:
                props["name"] = region.name
            props["classification"] = {"name": cls, "color": color}
            rings = []
            for ring in (region.exterior, *region.holes):
                xy = _ring_xy(ring)
                rings.append([*xy, xy[0]])
            feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings}, "properties": props}
            fh.write(("" if index == 0 else ",\n") + json.dumps(feature, allow_nan=False))
        fh.write("\n]}\n")

    return atomic_write_text(path, write, overwrite=overwrite)


# ------------------------------------------------------------------------------------- napari Shapes data


def to_layer_data(annotations: AnnotationSet) -> tuple[list[np.ndarray], dict[str, list[Any]]]:
    """Polygons and a features table for a napari Shapes layer (pure numpy; napari is not imported).

    Returns:
        ``(data, features)``: one writable (N, 2) float64 (y, x) level-0 polygon per exterior and per hole,
        region by region, exterior first; ``features`` has one row per polygon with columns ``label``,
        ``name``, ``group``, ``role`` (``"exterior"`` / ``"hole"``) and ``region`` (index into
        ``annotations.regions``). Add them with ``shape_type="polygon"``; give the layer
        ``feature_defaults={"label": "tumor", "name": "", "group": "", "role": "exterior", "region": -1}``
        so shapes the user draws become new tumour regions in :func:`from_layer_data`.
    """
    data: list[np.ndarray] = []
    features: dict[str, list[Any]] = {"label": [], "name": [], "group": [], "role": [], "region": []}
    for index, region in enumerate(annotations.regions):
        for role, ring in (("exterior", region.exterior), *(("hole", h) for h in region.holes)):
            data.append(np.array(ring, dtype=np.float64))
            features["label"].append(region.label)
            features["name"].append(region.name)
            features["group"].append(region.group)
            features["role"].append(role)
            features["region"].append(index)
    return data, features


def _feature_columns(features: Any, n: int) -> dict[str, list[Any]]:
    if features is None:
        return {}
    if hasattr(features, "columns") and hasattr(features, "to_dict"):  # a pandas DataFrame (layer.features)
        columns = {str(k): list(v) for k, v in features.to_dict(orient="list").items()}
    elif isinstance(features, Mapping):
        columns = {str(k): list(v) for k, v in features.items()}
    else:
        raise TypeError(f"features must be a mapping of columns or a DataFrame, got {type(features).__name__}")
    for key, values in columns.items():
        if len(values) != n:
            raise ValueError(f"features column {key!r} has {len(values)} rows for {n} shapes")
    return columns


def _clean_str(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _clean_index(value: Any) -> int | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f) or f < 0 or f != int(f):
        return None
    return int(f)


def from_layer_data(
    data: Sequence[ArrayLike],
    features: Mapping[str, Sequence[Any]] | Any | None = None,
    shape_types: Sequence[str] | str | None = None,
    source: PathLike | None = None,
) -> AnnotationSet:
    """Rebuild an :class:`AnnotationSet` from napari Shapes data (the inverse of :func:`to_layer_data`).

    Args:
        data: shapes as (N, D) arrays of level-0 vertices; the last two columns are (y, x).
        features: columns per shape (a mapping or the layer's DataFrame). ``role`` ``"hole"`` rows become holes
            of the exterior with the same ``region`` value (holes without one are dropped with a warning); an
            exterior whose ``region`` is missing, negative or already used starts a new region. ``label`` (any
            class name, see :func:`canonical_label`), else ``group``, gives the class; ``name`` the name.
            Without features every shape is a ``"tumor"`` region.
        shape_types: napari shape type per shape (or one for all), default ``"polygon"``. ``"rectangle"``,
            ``"polygon"`` and ``"path"`` / ``"line"`` vertices are used as a closed polygon; an ``"ellipse"``
            (its 4 bounding-box corners) becomes a 64-vertex polygon. Shapes with fewer than 3 distinct
            vertices or zero area (every line) are skipped with one warning.
        source: recorded as the set's source (used in warnings).

    Raises:
        ValueError: a shape is not an (N, >= 2) finite array, an ellipse does not have 4 corners, or a column /
            shape type list has the wrong length. TypeError: unsupported ``features`` object.
    """
    n = len(data)
    src = Path(source) if source is not None else None
    where = str(src) if src is not None else "shapes layer"
    columns = _feature_columns(features, n)
    if shape_types is None or isinstance(shape_types, str):
        types = [(shape_types or "polygon").lower()] * n
    else:
        types = [str(t).lower() for t in shape_types]
        if len(types) != n:
            raise ValueError(f"{len(types)} shape types for {n} shapes")

    polygons: list[np.ndarray | None] = []
    skipped = 0
    for i, (shape, kind) in enumerate(zip(data, types, strict=True)):
        arr = np.asarray(shape, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
            raise ValueError(f"{where}: shape {i} is not an (N, 2) array of (y, x) vertices: shape {arr.shape}")
        arr = arr[:, -2:]
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: shape {i} has non-finite vertices")
        if kind == "ellipse":
            if arr.shape[0] != 4:
                raise ValueError(f"{where}: ellipse {i} needs its 4 bounding-box corners, got {arr.shape[0]}")
            arr = _ellipse_polygon(arr)
        elif kind not in ("rectangle", "polygon", "path", "line"):
            raise ValueError(f"{where}: shape {i} has unsupported shape type {kind!r}")
        arr = _open_ring(arr)
        if _is_degenerate(arr):
            polygons.append(None)
            skipped += 1
        else:
            polygons.append(arr)

    def column(key: str, i: int) -> Any:
        return columns[key][i] if key in columns else None

    specs: list[tuple[np.ndarray, list[np.ndarray], str, str, str]] = []
    by_region: dict[int, int] = {}
    pending_holes: list[tuple[int, int | None]] = []
    for i, poly in enumerate(polygons):
        if poly is None:
            continue
        region_id = _clean_index(column("region", i))
        if _clean_str(column("role", i)).strip().lower() == "hole":
            pending_holes.append((i, region_id))
            continue
        label_text = _clean_str(column("label", i)).strip()
        group = _clean_str(column("group", i))
        label = canonical_label(label_text) if label_text else canonical_label(group)
        specs.append((poly, [], label, _clean_str(column("name", i)), group))
        if region_id is not None and region_id not in by_region:
            by_region[region_id] = len(specs) - 1
    orphans = 0
    for i, region_id in pending_holes:
        if region_id is None or region_id not in by_region:
            orphans += 1
            continue
        hole = polygons[i]
        assert hole is not None
        specs[by_region[region_id]][1].append(hole)
    if skipped:
        _warn(f"{where}: skipped {skipped} shape(s) with fewer than 3 distinct vertices or zero area")
    if orphans:
        _warn(f"{where}: dropped {orphans} hole shape(s) whose exterior is missing")
    regions = [Region(ext, tuple(holes), label, name, group) for ext, holes, label, name, group in specs]
    return AnnotationSet(regions, source=src)
