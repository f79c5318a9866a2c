"""The pixel grid being drawn: a window of level-0 pixel centres at one downsample, and masks on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...io.annotations.raster import fill_polygon
from .data_model import SlideSpec

_STAMP_MAX_PX_UM = 2.01  # pixels up to this size (um) draw nuclei as templates; coarser ones splat them


@dataclass
class Frame:
    """The pixel grid being drawn: centres ys x xs (level-0), downsample, and derived sizes."""

    ys: np.ndarray
    xs: np.ndarray
    ds: float
    mpp: float
    origin: tuple[float, float]  # level-0 (y, x) of the top-left corner: ys[i] = origin[0] + (i + 0.5) * ds

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.ys), len(self.xs))

    @property
    def px_um(self) -> float:
        return self.mpp * self.ds

    @property
    def stamp(self) -> bool:
        return self.px_um <= _STAMP_MAX_PX_UM


Box = tuple[float, float, float, float]  # level-0 (y0, y1, x0, x1)


def mask_box(frame: Frame, mask: np.ndarray) -> Box | None:
    """Level-0 bounds of the pixels of ``mask`` (None when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    half = frame.ds / 2
    return (
        float(frame.ys[rows[0]] - half),
        float(frame.ys[rows[-1]] + half),
        float(frame.xs[cols[0]] - half),
        float(frame.xs[cols[-1]] + half),
    )


def box_meets_frame(frame: Frame, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Whether the level-0 box from ``lo`` to ``hi`` ((y, x) corners) meets the frame's pixels."""
    half = 0.5 * frame.ds
    return bool(
        lo[0] <= frame.ys[-1] + half
        and hi[0] >= frame.ys[0] - half
        and lo[1] <= frame.xs[-1] + half
        and hi[1] >= frame.xs[0] - half
    )


def polygon_mask(poly: np.ndarray, frame: Frame) -> np.ndarray:
    """Which of the frame's pixel centres lie inside ``poly``: exactly ``AnnotationSet.rasterize`` of it."""
    return fill_polygon(poly, frame.shape, frame.ds, frame.origin)


def make_frame(spec: SlideSpec, y0: float, x0: float, h: int, w: int, downsample: float) -> Frame:
    """The h x w frame whose top-left corner is level-0 (y0, x0), at ``downsample``."""
    ds = float(downsample)
    ys = y0 + (np.arange(h) + 0.5) * ds
    xs = x0 + (np.arange(w) + 0.5) * ds
    return Frame(ys, xs, ds, spec.mpp, (float(y0), float(x0)))


def check_window(h: int, w: int, downsample: float) -> None:
    """Raise ValueError unless h, w are positive integers and downsample a finite number >= 1."""
    if int(h) != h or int(w) != w or h <= 0 or w <= 0:
        raise ValueError(f"h and w must be positive integers, got {h} x {w}")
    if not (math.isfinite(downsample) and downsample >= 1):
        raise ValueError(f"downsample must be a finite number >= 1, got {downsample!r}")
