"""Coordinate frames: the one place that turns artifact geometry into napari transforms.

Conventions (used by every module):

* The canonical frame is **continuous level-0 pixel coordinates**, ordered (y, x) = (row, col). Level-0 pixel
  ``(i, j)`` covers the square ``[i, i + 1) x [j, j + 1)``, so its centre is at ``(i + 0.5, j + 0.5)``.
  Annotation vertices, lesion points and region origins are all in this frame.
* A raster (a pyramid level, a tissue mask, a heatmap) is a :class:`Grid`: its pixel ``(r, c)`` covers the
  level-0 block ``origin + [r, r + 1) * spacing``.
* napari puts the centre of data pixel ``i`` at world coordinate ``i * scale + translate``. We choose the world
  frame so that level-0 pixel ``i`` is centred on world ``i`` (times microns per pixel when known), i.e.
  ``world = (level0 - 0.5) * unit``. Every layer we add uses :func:`napari_transform` so slide, masks,
  heatmaps, points and shapes line up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "level0_to_world", "napari_transform", "vector_transform", "world_to_level0"]


@dataclass(frozen=True)
class Grid:
    """A raster laid over level 0.

    Attributes:
        shape: (rows, cols) of the raster.
        spacing: (sy, sx) level-0 pixels per raster pixel (a level's downsample, a heatmap's stride).
        origin: (y, x) level-0 position of the top-left corner of raster pixel (0, 0).
        mpp: level-0 microns per pixel, or None when unknown.
    """

    shape: tuple[int, int]
    spacing: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float] = (0.0, 0.0)
    mpp: float | None = None

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 (y, x) centres of raster pixels ``(rows, cols)``."""
        y = self.origin[0] + (np.asarray(rows, dtype=np.float64) + 0.5) * self.spacing[0]
        x = self.origin[1] + (np.asarray(cols, dtype=np.float64) + 0.5) * self.spacing[1]
        return y, x

    def index_of(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer raster (row, col) holding level-0 points ``(y, x)`` (may lie outside the raster)."""
        r = np.floor((np.asarray(y, dtype=np.float64) - self.origin[0]) / self.spacing[0]).astype(np.int64)
        c = np.floor((np.asarray(x, dtype=np.float64) - self.origin[1]) / self.spacing[1]).astype(np.int64)
        return r, c

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Level-0 (y0, x0, y1, x1) covered by the raster."""
        y0, x0 = self.origin
        return (y0, x0, y0 + self.shape[0] * self.spacing[0], x0 + self.shape[1] * self.spacing[1])

    def napari(self, physical: bool = True) -> dict[str, tuple[float, float]]:
        """``scale`` / ``translate`` for a napari layer showing this raster (see :func:`napari_transform`)."""
        return napari_transform(self.spacing, self.origin, self.mpp if physical else None)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready geometry (stored beside every raster artifact)."""
        return {
            "shape": [int(v) for v in self.shape],
            "spacing": [float(v) for v in self.spacing],
            "origin": [float(v) for v in self.origin],
            "mpp": None if self.mpp is None else float(self.mpp),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Grid:
        """Inverse of :meth:`to_dict`."""
        shape = tuple(int(v) for v in d["shape"])  # type: ignore[union-attr]
        spacing = tuple(float(v) for v in d.get("spacing", (1.0, 1.0)))  # type: ignore[union-attr]
        origin = tuple(float(v) for v in d.get("origin", (0.0, 0.0)))  # type: ignore[union-attr]
        mpp = d.get("mpp")
        return cls(shape, spacing, origin, None if mpp is None else float(mpp))  # type: ignore[arg-type]


def napari_transform(
    spacing: tuple[float, float] = (1.0, 1.0),
    origin: tuple[float, float] = (0.0, 0.0),
    mpp: float | None = None,
) -> dict[str, tuple[float, float]]:
    """napari ``scale`` and ``translate`` for a raster with the given level-0 ``spacing`` and ``origin``.

    The raster pixel ``(r, c)`` is centred on the level-0 point ``origin + (r + 0.5) * spacing``; in our world
    frame that is ``(origin + (r + 0.5) * spacing - 0.5) * unit`` with ``unit = mpp`` (micrometres) when known,
    else 1 (level-0 pixels). Vector layers (shapes, points) use :func:`vector_transform` instead.
    """
    unit = 1.0 if mpp is None else float(mpp)
    sy, sx = (float(spacing[0]), float(spacing[1]))
    oy, ox = (float(origin[0]), float(origin[1]))
    return {
        "scale": (sy * unit, sx * unit),
        "translate": ((oy + 0.5 * sy - 0.5) * unit, (ox + 0.5 * sx - 0.5) * unit),
    }


def vector_transform(mpp: float | None = None) -> dict[str, tuple[float, float]]:
    """napari ``scale`` / ``translate`` for Shapes or Points whose data are continuous level-0 (y, x)."""
    unit = 1.0 if mpp is None else float(mpp)
    return {"scale": (unit, unit), "translate": (-0.5 * unit, -0.5 * unit)}


def level0_to_world(yx: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """Continuous level-0 (y, x) points -> napari world coordinates."""
    unit = 1.0 if mpp is None else float(mpp)
    return (np.asarray(yx, dtype=np.float64) - 0.5) * unit


def world_to_level0(world: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """napari world coordinates -> continuous level-0 (y, x) points."""
    unit = 1.0 if mpp is None else float(mpp)
    return np.asarray(world, dtype=np.float64) / unit + 0.5
