"""Polygon rasterisation: an even-odd scanline fill at output pixel centres, one bounding-box window at a time.

Output pixel (i, j) of a fill at ``downsample`` ds and level-0 ``origin`` is True when its centre
``(origin_y + (i + 0.5) * ds, origin_x + (j + 0.5) * ds)`` is inside by the rule of
:func:`~.polygon.points_in_polygon`; only the output and one polygon's window are ever allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .polygon import edges_low_first

__all__ = ["check_raster_args", "fill_polygon", "fill_window"]

_CROSSINGS_PER_CHUNK = 1 << 18  # scanline crossings handled at once (bounded temporary memory)


def check_raster_args(
    shape: tuple[int, int], downsample: float, origin: tuple[float, float]
) -> tuple[tuple[int, int], float, tuple[float, float]]:
    """Validated fill geometry: ``((rows, cols), downsample, (oy, ox))`` as ints / floats; ValueError if invalid."""
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
    ya, xa, yb, xb, _ = edges_low_first(pixel)
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


def fill_window(
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
    out_shape, ds, org = check_raster_args(shape, downsample, origin)
    arr = np.asarray(ring, dtype=np.float64)
    out = np.zeros(out_shape, dtype=bool)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(f"expected an (N >= 3, 2) array of (y, x) vertices, got shape {arr.shape}")
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    filled = fill_window(arr, (), (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), out_shape, ds, org)
    if filled is not None:
        r0, c0, win = filled
        out[r0 : r0 + win.shape[0], c0 : c0 + win.shape[1]] = win == 1
    return out
