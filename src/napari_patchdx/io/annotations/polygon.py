"""Ring geometry of annotation polygons: area, the inside rule, clipping to the image, ellipses.

A ring is an (N, 2) float64 array of (y, x) vertices, open (first vertex not repeated). :func:`points_in_polygon`
and :func:`polygon_area` are the single implementation of the inside rule and the area used by the annotations
and by the synthetic slides (:mod:`napari_patchdx.synth.wsi`); :mod:`.raster` fills polygons by the same rule.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "clip_ring",
    "edges_low_first",
    "ellipse_polygon",
    "is_degenerate",
    "open_ring",
    "points_in_polygon",
    "points_in_ring",
    "polygon_area",
]

_ELLIPSE_VERTICES = 64


def polygon_area(ring: ArrayLike) -> float:
    """Shoelace area of an open (N, 2) (y, x) ring, unsigned, in squared input units (0 for N < 3)."""
    ring = np.asarray(ring, dtype=np.float64)
    if len(ring) < 3:
        return 0.0
    rel = ring - ring[0]  # relative coordinates keep precision for vertices far from the origin
    y, x = rel[:, 0], rel[:, 1]
    return abs(0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def open_ring(ring: np.ndarray) -> np.ndarray:
    """Drop a closing vertex that repeats the first one."""
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        return ring[:-1]
    return ring


def is_degenerate(ring: np.ndarray) -> bool:
    """True when a ring has fewer than 3 distinct vertices or (numerically) zero area."""
    if len(ring) < 3 or np.unique(ring, axis=0).shape[0] < 3:
        return True
    extent = float(np.ptp(ring, axis=0).max())
    return polygon_area(ring) <= 1e-12 * extent * extent


def edges_low_first(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    ya, xa, yb, xb, crossable = edges_low_first(np.asarray(ring, dtype=np.float64))
    slope = (xb - xa) / np.where(crossable, yb - ya, 1.0)  # horizontal edges are never crossed
    inside = np.zeros(len(pts), dtype=bool)
    step = max(1, (1 << 20) // max(1, len(ya)))  # bounded (points x edges) temporaries
    for s in range(0, len(pts), step):
        py = pts[s : s + step, 0:1]
        px = pts[s : s + step, 1:2]
        crosses = (ya <= py) & (py < yb) & (xa + (py - ya) * slope <= px)
        inside[s : s + step] = (np.count_nonzero(crosses, axis=1) & 1).astype(bool)
    return inside


def points_in_ring(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
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


def clip_ring(ring: np.ndarray, height: float, width: float) -> np.ndarray | None:
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
    return None if is_degenerate(pts) else np.ascontiguousarray(pts)


def ellipse_polygon(corners: np.ndarray) -> np.ndarray:
    """A 64-vertex (y, x) polygon inscribed in the (possibly rotated) box given by its 4 corners in order."""
    centre = corners.mean(axis=0)
    u = (corners[1] + corners[2]) / 2 - centre
    v = (corners[2] + corners[3]) / 2 - centre
    t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
    return centre + np.cos(t)[:, None] * u + np.sin(t)[:, None] * v
