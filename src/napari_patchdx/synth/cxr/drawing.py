"""Drawing helpers: splatted and blurred tubes (vessels, bronchi), cylinders, rib cross-sections, resampling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .pose import Pose


def _splat(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Accumulate weighted points into an array with bilinear weights (float64)."""
    h, w = shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr, fc = rows - r0, cols - c0
    out = np.zeros(h * w, dtype=np.float64)
    for dr, dc, ww in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        out += np.bincount(rr[ok] * w + cc[ok], weights=(weights * ww)[ok], minlength=h * w)
    return out.reshape(h, w)


def draw_tubes(
    shape: tuple[int, int],
    origin: tuple[int, int],
    pose: Pose,
    n: int,
    segs: np.ndarray,
    amplitude: float,
    sigmas_px: Sequence[float],
    thresholds_px: Sequence[float],
) -> np.ndarray:
    """Render tubes (segments u0, v0, u1, v1, diameter in anatomy units) as blurred lines of peak
    ``amplitude * diameter``; each diameter class (split by ``thresholds_px``) gets its own blur sigma."""
    out = np.zeros(shape, dtype=np.float64)
    if len(segs) == 0:
        return out
    r0, c0 = pose.to_pixels(segs[:, 0], segs[:, 1], n)
    r1, c1 = pose.to_pixels(segs[:, 2], segs[:, 3], n)
    r0, r1 = r0 - origin[0], r1 - origin[0]
    c0, c1 = c0 - origin[1], c1 - origin[1]
    dia_px = segs[:, 4] * n * pose.scale
    cls = np.searchsorted(np.asarray(thresholds_px), dia_px)
    step = 0.5
    length = np.hypot(r1 - r0, c1 - c0)
    count = np.maximum(np.ceil(length / step).astype(np.int64), 1)
    for j, sigma in enumerate(sigmas_px):
        sel = cls == j
        if not sel.any():
            continue
        k = count[sel]
        idx = np.repeat(np.arange(k.size), k)
        t = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k) + 0.5) / np.repeat(k, k)
        rr = r0[sel][idx] + t * (r1 - r0)[sel][idx]
        cc = c0[sel][idx] + t * (c1 - c0)[sel][idx]
        per_px = amplitude * segs[sel, 4] * math.sqrt(2 * math.pi) * sigma
        wts = (per_px * length[sel] / k)[idx]
        layer = _splat(shape, rr, cc, wts)
        out += ndimage.gaussian_filter(layer, sigma, truncate=3.0)
    return out


def tube(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], w: float) -> np.ndarray:
    """Projected thickness (0-1) of a cylinder of radius w along the segment p0 -> p1."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    d2 = (u - p0[0] - t * du) ** 2 + (v - p0[1] - t * dv) ** 2
    return np.sqrt(np.clip(1.0 - d2 / (w * w), 0.0, 1.0))


def rib_profile(d: np.ndarray) -> np.ndarray:
    """Cross-section of a rib at normalised distance d from its centreline: marrow plus cortical rims."""
    ad = np.abs(d)
    body = np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
    cortex = np.exp(-(((ad - 0.86) / 0.14) ** 2)) * (ad < 1.3)
    return 0.5 * body + 0.5 * cortex


def resample(
    arr: np.ndarray, n: int, r0: int = 0, r1: int | None = None, c0: int = 0, c1: int | None = None
) -> np.ndarray:
    """Bilinear upsampling of a square work-resolution array onto the pixel centres of box [r0:r1, c0:c1] at
    size n (pixel-centre aligned, edges clamped)."""
    w = arr.shape[0]
    r1 = n if r1 is None else r1
    c1 = n if c1 is None else c1
    if w == n:
        return arr[r0:r1, c0:c1].astype(np.float32, copy=True)
    f = w / n

    def axis(a0: int, a1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip((np.arange(a0, a1) + 0.5) * f - 0.5, 0.0, w - 1.0)
        i0 = np.minimum(np.floor(x).astype(np.intp), w - 2)
        return i0, i0 + 1, (x - i0).astype(np.float32)

    ri0, ri1, rw = axis(r0, r1)
    ci0, ci1, cw = axis(c0, c1)
    rows = arr[ri0] * (1 - rw)[:, None] + arr[ri1] * rw[:, None]
    return rows[:, ci0] * (1 - cw)[None, :] + rows[:, ci1] * cw[None, :]
