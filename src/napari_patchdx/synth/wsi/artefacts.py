"""Drawing the ``"hard"`` profile's artefacts over a frame: folds, air bubbles, ink over tissue, blur bands.

Every factor is a pure function of the level-0 position of a pixel's centre (and, for the blur, of the
unblurred pixels around it), so tiles still join exactly. None of them changes a label: a fold, a bubble or ink
over a tumour is still tumour.
"""

from __future__ import annotations

import math

import numpy as np

from .data_model import PEN_INKS, SlideSpec
from .frame import Frame, box_meets_frame, polygon_mask
from .noise import fbm_grid

_MIN_BLUR_PX = 0.35  # a blur below this many output pixels (sigma) is not drawn


def fold_factor(spec: SlideSpec, frame: Frame) -> np.ndarray | None:
    """(h, w) float32 optical-density multiplier of the folds (1 outside them), or None when none is here."""
    out = None
    for fold in spec.artefacts.folds:
        if not box_meets_frame(frame, fold.polygon.min(axis=0), fold.polygon.max(axis=0)):
            continue
        m = polygon_mask(fold.polygon, frame)
        if m.any():
            out = np.ones(frame.shape, dtype=np.float32) if out is None else out
            out[m] *= np.float32(fold.thickness)
    return out


def ink_over_tissue(spec: SlideSpec, frame: Frame, transmission: np.ndarray, tissue: np.ndarray) -> None:
    """Multiply the tissue's transmission (h, w, 3) by the ink of marker lines drawn across it (in place)."""
    power = None
    for stroke in spec.artefacts.inks:
        if not box_meets_frame(frame, stroke.polygon.min(axis=0), stroke.polygon.max(axis=0)):
            continue
        m = polygon_mask(stroke.polygon, frame) & tissue
        if not m.any():
            continue
        if power is None:
            streak = fbm_grid(spec._keys["pen"], frame.ys, frame.xs, 40.0 / spec.mpp, 3, frame.ds)
            power = (1.0 + 0.18 * streak).astype(np.float32)
        ink = PEN_INKS[stroke.color].astype(np.float32)
        transmission[m] *= ink[None, :] ** power[m][:, None]


def bubble_factor(spec: SlideSpec, frame: Frame) -> np.ndarray | None:
    """(h, w, 3) float32 transmission multiplier of the air bubbles, or None when none reaches the frame.

    A bubble darkens a refractive rim (a grey ring ``rim_px`` wide, with a thin bright line inside it) and lets a
    little more light through its disc.
    """
    out = None
    for b in spec.artefacts.bubbles:
        c = np.asarray(b.centre)
        if not box_meets_frame(frame, c - b.reach_px, c + b.reach_px):
            continue
        dy = (frame.ys - c[0])[:, None]
        dx = (frame.xs - c[1])[None, :]
        r = np.sqrt(dy * dy + dx * dx)
        rim_w = max(b.rim_px, 0.6 * frame.ds)  # a rim of at least about a pixel at coarse levels
        near = np.abs(r - b.radius_px) < b.reach_px - b.radius_px  # the support: nothing changes beyond the reach
        dark = 0.5 * np.exp(-np.square((r - b.radius_px) / rim_w))
        bright = 0.12 * np.exp(-np.square((r - b.radius_px + 1.6 * rim_w) / (0.5 * rim_w)))
        inside = (r < b.radius_px).astype(np.float64)
        factor = np.where(near, 1.0 - dark + bright, 1.0) * (1.0 + 0.06 * inside)
        out = np.ones(frame.shape, dtype=np.float32) if out is None else out
        out *= factor.astype(np.float32)
    return None if out is None else out[..., None]


def blur_weight(spec: SlideSpec, frame: Frame) -> tuple[np.ndarray, float] | None:
    """(h, w) float32 weight of the blurred image (0..1) and the blur sigma in output pixels, or None.

    The weight is 1 inside a band, fades to 0 over its ramp; with several bands the largest weight and sigma
    are used. None when no band reaches the frame or its blur is below a third of an output pixel.
    """
    weight = None
    sigma = 0.0
    for band in spec.artefacts.blur_bands:
        s_px = band.sigma_um / frame.px_um
        if s_px < _MIN_BLUR_PX:
            continue
        d = np.abs(
            (frame.ys[:, None] - band.point[0]) * band.normal[0] + (frame.xs[None, :] - band.point[1]) * band.normal[1]
        )
        w = np.clip((band.half_width_px - d) / band.ramp_px, 0.0, 1.0)
        if not w.any():
            continue
        weight = w if weight is None else np.maximum(weight, w)
        sigma = max(sigma, s_px)
    if weight is None:
        return None
    return weight.astype(np.float32), sigma


def blur_pad(sigma: float) -> int:
    """Output pixels to draw around a frame so a Gaussian of ``sigma`` px is exact inside it."""
    return math.ceil(3.0 * sigma) + 1


def blurred(image: np.ndarray, sigma: float, pad: int) -> np.ndarray:
    """Gaussian blur (``sigma`` px) of a (h + 2 pad, w + 2 pad, 3) image, cropped to its (h, w, 3) centre."""
    from scipy import ndimage

    out = ndimage.gaussian_filter(image, (sigma, sigma, 0.0), mode="nearest", radius=(pad, pad, 0))
    return out[pad:-pad, pad:-pad]
