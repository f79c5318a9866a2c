"""Liu et al.'s non-maximum suppression: :func:`lesion_points` turns a heatmap into lesion points (the detector).

The heatmap is laid over level 0 by a :class:`~napari_patchdx.geometry.Grid`; the result is a
:class:`~napari_patchdx.evaluation.points.PointsTable`. :data:`LIU_RADIUS_UM` is Liu et al.'s suppression radius.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError
from ..geometry import Grid
from .points import PointsTable

LIU_RADIUS_UM = 187.5
"""Liu et al.'s suppression radius: 6 heatmap cells of 128 px at 0.243 um/px (about 187 um)."""

LIU_THRESHOLD = 0.5
"""Liu et al.'s lesion-point threshold: heatmap maxima above this tumour probability become lesion points."""


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
    threshold: float = LIU_THRESHOLD,
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
