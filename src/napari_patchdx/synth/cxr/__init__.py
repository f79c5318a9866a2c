"""Synthetic chest PA radiographs with exact lesion masks: the chest X-ray demo data and test fixtures.

Model
-----
An image is a projection ("density", a line integral of attenuation; bright = dense) built from analytic
anatomy, then passed through a vendor-like acquisition chain:

* **Anatomy** lives in *anatomy coordinates* (u, v) in [0, 1], u to the image's right (the patient's left, PA
  view), v downwards. A seeded patient pose (rotation of a few degrees, scale, offset) maps them onto pixels, so
  anatomy, lesions and masks are all evaluated at pixel centres of the rotated frame and nothing is resampled.
  Soft tissue of an elliptical trunk with shoulders; two lung fields (apex cap, lateral wall, sharp costophrenic
  angle, diaphragm domes, the right one higher) darker in their middle; mediastinum, aortic knob and a tilted
  elliptical heart extending to the image's right; trachea and main bronchi; vertebral column; posterior ribs
  (arches with cortical rims), fainter anterior ribs running down medially, clavicles; a gastric bubble under
  the left dome and breast shadows on some images; branching pulmonary vessels from the hila, tapering and
  fading towards the periphery.
* **Lesions** (:data:`CXR_CLASSES`) are additive density terms with a compact support inside the lungs:
  nodule (round, lobulated, soft-edged, 5-30 mm), consolidation (fluffy union of blobs, air bronchograms),
  interstitial opacity (reticular / reticulonodular texture over a zone), pleural effusion (homogeneous
  opacity rising to a meniscus at the costophrenic angle, obscuring the dome) and pneumothorax (a vessel-free,
  darker apical/lateral rim bounded by a thin visceral pleural line). Their strength is set per class by
  ``contrast`` (see :data:`DEFAULT_CONTRAST`).
* **Acquisition**: quantum-like noise whose amplitude grows with density, a vendor filter (Gaussian blur or
  unsharp-mask sharpening, or none) applied in the density domain, a heel-effect gradient, then a display curve
  (gain, offset, gamma, S-curve) to float32 in [0, 1].

Anatomy, pose, lesions, vendor and noise draw from separate random streams of the image seed, so the same seed
rendered with ``lesions=[]`` is the identical image without its lesions. A lesion's mask is the support of its
density term dilated by the vendor filter's radius (``info["mask_dilation_px"]``): exactly the pixels it can
change, every pixel outside the union of masks equals the lesion-free rendering.

Geometry is (row, col) = (y, x) in native pixels; boxes are half-open ``(y0, x0, y1, x1)``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..._fsutil import atomic_write_bytes
from ...errors import ConfigError, InputFileError

__all__ = [
    "CXR_CLASSES",
    "DEFAULT_CONTRAST",
    "CxrCohort",
    "Lesion",
    "make_cxr_cohort",
    "render_cxr",
    "write_cxr_dicom",
]

#: The five lesion classes of Park et al. 2019, in label-column and mask-bit order.
CXR_CLASSES: tuple[str, ...] = (
    "nodule",
    "consolidation",
    "interstitial_opacity",
    "pleural_effusion",
    "pneumothorax",
)

#: Per-class lesion strength. Density units are those of the model, where the lungs' air makes a deficit of
#: about 0.45 against the mediastinum and a posterior rib adds about 0.09.
#:
#: * ``nodule``: peak added density of a 15 mm nodule (scaled by sqrt(diameter / 15 mm) and x0.7-1.3).
#: * ``consolidation``: peak added density (x0.75-1.25).
#: * ``interstitial_opacity``: peak added density of the reticular texture (x0.75-1.25).
#: * ``pleural_effusion``: fraction (0-1) of the lung's air deficit replaced by fluid (x0.85-1.1, capped at 1).
#: * ``pneumothorax``: density removed in the vessel-free rim (x0.75-1.25); the pleural line adds 0.7 x this.
#:
#: The defaults are 2.5 times the subtle values first chosen (0.085, 0.15, 0.1, 0.8, 0.07): at those, a small
#: network trained on a CPU-sized cohort (300 images of 128 px) learned no class beyond chance, so neither arm of
#: the curriculum comparison learned anything to compare (benchmarks/curriculum.py, docs/benchmarks.md).
DEFAULT_CONTRAST: dict[str, float] = {
    "nodule": 0.21,
    "consolidation": 0.375,
    "interstitial_opacity": 0.25,
    "pleural_effusion": 1.0,
    "pneumothorax": 0.175,
}

_A_SOFT = 0.55  # soft tissue of the trunk at its thickest
_A_LUNG = 0.32  # air deficit of the lungs at their thickest
_A_HEART = 0.07
_A_ABDOMEN = 0.06
_A_RIB = 0.085
_A_VESSEL = 8.0  # peak density per unit vessel diameter (anatomy units): 0.01 -> 0.08
_MASK_TRUNCATE = 2.5  # Gaussian kernels are cut at 2.5 sigma, so a filter moves nothing further than that


# ==============================================================================================================
# Public data classes
# ==============================================================================================================


@dataclass(eq=False)
class Lesion:
    """One synthetic lesion.

    Attributes:
        cls: its class, one of :data:`CXR_CLASSES`.
        box: half-open bounding box ``(y0, x0, y1, x1)`` of ``mask`` in native pixels.
        mask: bool array of the whole image's shape (rows, cols), True exactly where the lesion changes the
            image (its density support dilated by the vendor filter radius).
    """

    cls: str
    box: tuple[int, int, int, int]
    mask: np.ndarray


@dataclass(frozen=True)
class CxrCohort:
    """A synthetic chest X-ray cohort on disk (see :func:`make_cxr_cohort` for the layout).

    Attributes:
        root: the cohort folder.
        labels_csv: ``labels.csv`` (image, one 0/1 column per class, png, dcm).
        lesions_csv: ``lesions.csv`` (image, lesion, class, y0, x0, y1, x1 in native pixels).
        images: image ids in order; files are ``images/<id>.png``, ``images/<id>.dcm``, ``masks/<id>.png``,
            ``lungs/<id>.png``.
        dicom: whether the DICOM files were written.
    """

    root: Path
    labels_csv: Path
    lesions_csv: Path
    images: tuple[str, ...]
    dicom: bool = True

    def png_path(self, image_id: str) -> Path:
        """The 16-bit grayscale PNG of ``image_id``."""
        return self.root / "images" / f"{image_id}.png"

    def dcm_path(self, image_id: str) -> Path:
        """The DICOM file of ``image_id`` (exists only when the cohort was written with ``dicom=True``)."""
        return self.root / "images" / f"{image_id}.dcm"

    def mask_path(self, image_id: str) -> Path:
        """The uint8 class bitmask PNG of ``image_id`` (bit k = class k of :data:`CXR_CLASSES`)."""
        return self.root / "masks" / f"{image_id}.png"

    def lung_path(self, image_id: str) -> Path:
        """The uint8 lung-field mask PNG of ``image_id`` (255 inside the lungs)."""
        return self.root / "lungs" / f"{image_id}.png"


# ==============================================================================================================
# Geometry: pose and anatomy
# ==============================================================================================================


@dataclass(frozen=True)
class _Pose:
    """Maps anatomy (u, v) to normalised image (x, y) = ((col + 0.5) / n, (row + 0.5) / n) and back."""

    angle: float  # radians; positive turns +u towards +v (clockwise on screen)
    scale: float
    dx: float
    dy: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Pose:
        return cls(
            angle=math.radians(rng.uniform(-3.0, 3.0)),
            scale=rng.uniform(0.95, 1.05),
            dx=rng.uniform(-0.025, 0.025),
            dy=rng.uniform(-0.02, 0.025),
        )

    def grid(self, r0: int, r1: int, c0: int, c1: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy coordinates (u, v), float32 (r1 - r0, c1 - c0), of the pixel centres of a box at size n."""
        x = ((np.arange(c0, c1, dtype=np.float64) + 0.5) / n - 0.5 - self.dx)[None, :]
        y = ((np.arange(r0, r1, dtype=np.float64) + 0.5) / n - 0.5 - self.dy)[:, None]
        c, s = math.cos(self.angle) / self.scale, math.sin(self.angle) / self.scale
        u = (0.5 + c * x + s * y).astype(np.float32)
        v = (0.5 - s * x + c * y).astype(np.float32)
        return u, v

    def to_pixels(self, u: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pixel coordinates (continuous; integer = pixel centre) of anatomy points at size n."""
        c, s = math.cos(self.angle) * self.scale, math.sin(self.angle) * self.scale
        uu, vv = np.asarray(u, dtype=np.float64) - 0.5, np.asarray(v, dtype=np.float64) - 0.5
        x = 0.5 + self.dx + c * uu - s * vv
        y = 0.5 + self.dy + s * uu + c * vv
        return y * n - 0.5, x * n - 0.5

    def box(self, umin: float, umax: float, vmin: float, vmax: float, n: int, margin: int = 2) -> tuple[int, ...]:
        """Pixel box (r0, r1, c0, c1), clipped to the image, that holds an anatomy rectangle."""
        rows, cols = self.to_pixels(np.array([umin, umax, umin, umax]), np.array([vmin, vmin, vmax, vmax]), n)
        r0 = max(0, math.floor(rows.min()) - margin)
        r1 = min(n, math.ceil(rows.max()) + margin + 1)
        c0 = max(0, math.floor(cols.min()) - margin)
        c1 = min(n, math.ceil(cols.max()) + margin + 1)
        return r0, max(r0, r1), c0, max(c0, c1)


@dataclass(frozen=True)
class _Anatomy:
    """Seeded anatomy in (u, v). Index 0 = the image's left (patient's right), 1 = the image's right."""

    xm: float
    hw: np.ndarray  # lateral half-width of each lung at its widest
    v_ap: float  # apex level
    s_ac: float  # lateral offset of the apex cap's centre
    k_ap: float  # curvature of the apex cap
    t_w: float  # fraction of the lung height over which the lateral wall widens
    v_cp: np.ndarray  # costophrenic angle level
    dh: np.ndarray  # dome height above the costophrenic angle
    s_pk: np.ndarray  # lateral offset of the dome's peak
    p_cp: np.ndarray  # exponent of the lateral dome (sharper costophrenic angle when larger)
    w_med: float
    v_ak: float
    a_ak: float
    hx: float
    hy: float
    hrx: float
    hry: float
    tilt: float
    wall: float
    v_sh: float
    hilum_s: np.ndarray
    hilum_v: np.ndarray
    spine_w: float
    spine_period: float
    spine_phase: float
    trachea_w: float
    v_cl: float
    fov_mm: float
    gastric: tuple[float, float, float, float] | None
    breasts: float
    rib_y: np.ndarray  # (2, 10) posterior rib levels at the spine
    rib_h: np.ndarray
    rib_g: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Anatomy:
        xm = 0.5 + rng.uniform(-0.012, 0.012)
        hw0 = rng.uniform(0.33, 0.385)
        hw = np.array([hw0, hw0 + rng.uniform(-0.02, 0.01)])
        v_ap = rng.uniform(0.085, 0.15)
        vcp0 = rng.uniform(0.72, 0.8)
        v_cp = np.array([vcp0, vcp0 + rng.uniform(0.0, 0.03)])
        dh = rng.uniform(0.08, 0.12, 2)
        s_pk = hw * rng.uniform(0.45, 0.55, 2)
        p_cp = rng.uniform(1.7, 2.4, 2)
        hrx = rng.uniform(0.15, 0.18)
        hry = rng.uniform(0.105, 0.13)
        v_pk_l = v_cp[1] - dh[1]
        hilum_v = v_ap + rng.uniform(0.5, 0.58, 2) * (v_cp - v_ap) - np.array([0.0, 0.02])
        ribs_y = np.empty((2, 10))
        ribs_h = np.empty((2, 10))
        ribs_g = np.empty((2, 10))
        for k in range(2):
            top, bottom = v_ap - 0.035, v_cp[k] + 0.01
            frac = (np.arange(10) / 9.0) ** rng.uniform(0.85, 1.0)
            ribs_y[k] = top + (bottom - top) * frac + rng.normal(0, 0.004, 10)
            ribs_h[k] = rng.uniform(0.03, 0.045, 10) * np.linspace(1.4, 1.0, 10)
            ribs_g[k] = rng.uniform(0.09, 0.13, 10)
        gastric = None
        if rng.random() < 0.65:
            gastric = (
                rng.uniform(0.14, 0.24),
                rng.uniform(0.025, 0.05),
                rng.uniform(0.03, 0.06),
                rng.uniform(0.018, 0.03),
            )
        return cls(
            xm=xm,
            hw=hw,
            v_ap=v_ap,
            s_ac=rng.uniform(0.14, 0.18),
            k_ap=rng.uniform(6.0, 10.0),
            t_w=rng.uniform(0.55, 0.72),
            v_cp=v_cp,
            dh=dh,
            s_pk=s_pk,
            p_cp=p_cp,
            w_med=rng.uniform(0.05, 0.065),
            v_ak=v_ap + rng.uniform(0.13, 0.19),
            a_ak=rng.uniform(0.02, 0.04),
            hx=xm + rng.uniform(0.05, 0.075),
            hy=v_pk_l - rng.uniform(0.55, 0.75) * hry,
            hrx=hrx,
            hry=hry,
            tilt=rng.uniform(0.4, 0.65),
            wall=rng.uniform(0.04, 0.08),
            v_sh=v_ap + rng.uniform(-0.01, 0.05),
            hilum_s=np.array([rng.uniform(0.09, 0.12), rng.uniform(0.11, 0.14)]),
            hilum_v=hilum_v,
            spine_w=rng.uniform(0.03, 0.04),
            spine_period=rng.uniform(0.045, 0.058),
            spine_phase=rng.uniform(0, 1),
            trachea_w=rng.uniform(0.012, 0.016),
            v_cl=v_ap + rng.uniform(0.07, 0.11),
            fov_mm=rng.uniform(350.0, 430.0),
            gastric=gastric,
            breasts=rng.uniform(0.04, 0.08) if rng.random() < 0.4 else 0.0,
            rib_y=ribs_y,
            rib_h=ribs_h,
            rib_g=ribs_g,
        )

    # -- lung outline ------------------------------------------------------------------------------------------
    def side(self, u: np.ndarray) -> np.ndarray:
        return (np.asarray(u) > self.xm).astype(np.intp)

    def s_out(self, v: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Lateral lung boundary (distance from the midline) at level v."""
        hw = self.hw[k]
        t = (v - self.v_ap) / (self.v_cp[k] - self.v_ap)
        return self.s_ac + (hw - self.s_ac) * np.sin(np.pi / 2 * np.clip(t / self.t_w, 0.0, 1.0)) ** 0.75

    def apex(self, s: np.ndarray) -> np.ndarray:
        """Upper lung boundary (the apex cap) at lateral distance s."""
        return self.v_ap + self.k_ap * (s - self.s_ac) ** 2

    def dome(self, s: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Diaphragm level at lateral distance s: lungs above, abdomen below."""
        s_pk, dh = self.s_pk[k], self.dh[k]
        v_pk = self.v_cp[k] - dh
        x = s - s_pk
        lateral = v_pk + dh * (np.clip(x, 0.0, None) / (self.hw[k] - s_pk)) ** self.p_cp[k]
        medial = v_pk + 0.6 * dh * (np.clip(-x, 0.0, None) / s_pk) ** 2
        return np.where(x >= 0, lateral, medial)

    def s_in(self, v: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Medial (mediastinal) lung boundary; the aortic knob bulges on the image's right."""
        knob = self.a_ak * np.exp(-(((v - self.v_ak) / 0.035) ** 2))
        return self.w_med + np.where(np.asarray(k) == 1, knob, 0.0)

    def heart_r2(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - self.hx, v - self.hy
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        a = (c * du + s * dv) / self.hrx
        b = (-s * du + c * dv) / self.hry
        return a * a + b * b

    def lung(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Boolean lung fields (both sides) at anatomy points."""
        u = np.asarray(u)
        v = np.asarray(v)
        k = self.side(u)
        s = np.abs(u - self.xm)
        inside = (s < self.s_out(v, k)) & (v > self.apex(s)) & (v < self.dome(s, k)) & (s > self.s_in(v, k))
        return inside & (self.heart_r2(u, v) > 1.0)

    def lung_depth(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Relative lung thickness (0.2-1): thin at the apex and the chest wall, thickest mid-field."""
        k = self.side(u)
        s = np.abs(u - self.xm)
        p = np.clip(s / self.s_out(v, k), 0.0, 1.0)
        lateral = 0.35 + 0.65 * np.clip((1.0 - p) / 0.3, 0.0, 1.0) ** 0.5
        vertical = np.clip((v - self.v_ap) / 0.12, 0.3, 1.0) ** 0.5
        return lateral * vertical

    def mm_per_unit(self, pose: _Pose) -> float:
        return self.fov_mm * pose.scale


# ==============================================================================================================
# Drawing helpers
# ==============================================================================================================


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


def _draw_tubes(
    shape: tuple[int, int],
    origin: tuple[int, int],
    pose: _Pose,
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


def _tube(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], w: float) -> np.ndarray:
    """Projected thickness (0-1) of a cylinder of radius w along the segment p0 -> p1."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    d2 = (u - p0[0] - t * du) ** 2 + (v - p0[1] - t * dv) ** 2
    return np.sqrt(np.clip(1.0 - d2 / (w * w), 0.0, 1.0))


def _rib_profile(d: np.ndarray) -> np.ndarray:
    """Cross-section of a rib at normalised distance d from its centreline: marrow plus cortical rims."""
    ad = np.abs(d)
    body = np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
    cortex = np.exp(-(((ad - 0.86) / 0.14) ** 2)) * (ad < 1.3)
    return 0.5 * body + 0.5 * cortex


def _resample(arr: np.ndarray, n: int, r0: int = 0, r1: int | None = None, c0: int = 0, c1: int | None = None):
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


# ==============================================================================================================
# Anatomy rendering (work resolution)
# ==============================================================================================================


def _vessel_segments(rng: np.random.Generator, anat: _Anatomy) -> np.ndarray:
    """Branching pulmonary vessel trees from both hila: (N, 5) segments (u0, v0, u1, v1, diameter).

    Monopodial branching: at each node the vessel goes on almost straight, slightly thinner, and gives off a
    thinner side branch at 25-55 degrees; trees stop at the lung border or below a diameter of ~0.4 mm.
    """
    segs = []
    for k in (0, 1):
        sgn = 1.0 if k else -1.0
        hx, hy = anat.xm + sgn * anat.hilum_s[k], anat.hilum_v[k]
        trunk_deg = np.array([-100.0, -72.0, -40.0, -8.0, 22.0, 48.0, 74.0, 95.0])
        ang = np.deg2rad(trunk_deg + rng.uniform(-10, 10, trunk_deg.size))
        m = ang.size
        x = hx + sgn * rng.uniform(-0.01, 0.015, m)
        y = hy + 0.06 * np.sin(ang) + rng.uniform(-0.01, 0.01, m)
        d = rng.uniform(0.009, 0.014, m)
        length = rng.uniform(0.035, 0.05, m)
        for g in range(14):
            if x.size == 0:
                break
            ex = x + sgn * np.cos(ang) * length
            ey = y + np.sin(ang) * length
            segs.append(np.stack([x, y, ex, ey, d], axis=1))
            inside = anat.lung(ex, ey) | (g < 2)
            keep = inside & (d * 0.85 >= 0.0011)
            x, y, ang, d, length = ex[keep], ey[keep], ang[keep], d[keep], length[keep]
            n = x.size
            side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
            main_ang = ang + np.deg2rad(rng.normal(0, 7, n))
            branch_ang = ang + side * np.deg2rad(rng.uniform(25, 55, n))
            branch = rng.random(n) < 0.85
            x = np.concatenate([x, x[branch]])
            y = np.concatenate([y, y[branch]])
            ang = np.concatenate([main_ang, branch_ang[branch]])
            d = np.concatenate([d * rng.uniform(0.8, 0.9, n), d[branch] * rng.uniform(0.5, 0.7, branch.sum())])
            length = np.concatenate(
                [length * rng.uniform(0.82, 0.95, n), length[branch] * rng.uniform(0.6, 0.85, branch.sum())]
            )
    return np.concatenate(segs, axis=0) if segs else np.zeros((0, 5))


@dataclass
class _Layers:
    base: np.ndarray  # everything but the lungs' air and the vessels
    lungdef: np.ndarray  # the lungs' air deficit (>= 0, subtracted)
    vessels: np.ndarray  # pulmonary vessels (>= 0, added)
    lung_soft: np.ndarray  # soft-edged lung fields (0-1)
    edge_px: int  # how far (work pixels) the soft edge reaches beyond the lung fields


def _render_anatomy(anat: _Anatomy, pose: _Pose, w: int, rng: np.random.Generator) -> _Layers:
    """Density layers of the anatomy at work resolution w x w (float32)."""
    segs = _vessel_segments(rng, anat)  # before any draw whose size depends on w
    u, v = pose.grid(0, w, 0, w, w)
    k = anat.side(u)
    s = np.abs(u - anat.xm)
    sigma_edge = max(0.6, 0.0022 * w)

    # Soft tissue of the trunk (elliptical cross-section), wider at the shoulders, under a sloping shoulder
    # line that leaves air above the shoulders on either side of the neck.
    bw = anat.hw.max() + anat.wall + 0.16 / (1.0 + np.exp((v - anat.v_sh) / 0.025))
    top = anat.v_sh - 0.2 + 0.5 * np.clip(s - 0.09, 0.0, None) ** 2 / 0.25
    neck = np.clip((v - top) / 0.03, 0.0, 1.0)
    base = _A_SOFT * np.sqrt(np.clip(1.0 - (s / bw) ** 2, 0.0, 1.0)) * (0.35 + 0.65 * neck)

    # Abdomen below the domes, heart above them.
    dome = anat.dome(s, k)
    base += _A_ABDOMEN * np.clip((v - dome) / 0.04, 0.0, 1.0)
    heart = np.sqrt(np.clip(1.0 - anat.heart_r2(u, v), 0.0, 1.0))
    base += _A_HEART * heart * np.clip((dome + 0.015 - v) / 0.03, 0.0, 1.0)

    # Gastric bubble under the left dome (image right), breast shadows over the lower zones.
    if anat.gastric is not None:
        gs, gv, grx, gry = anat.gastric
        gu = anat.xm + gs
        gvv = float(anat.dome(np.array(gs), 1)) + gv
        r2 = ((u - gu) / grx) ** 2 + ((v - gvv) / gry) ** 2
        base -= 0.18 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) * np.clip((v - dome) / 0.01, 0.0, 1.0)
    if anat.breasts > 0:
        for kk in (0, 1):
            sgn = 1.0 if kk else -1.0
            cu, cv = anat.xm + sgn * 0.22, anat.v_cp[kk] - 0.1
            r2 = ((u - cu) / 0.17) ** 2 + ((v - cv) / 0.11) ** 2
            fade_up = np.clip((v - cv + 0.08) / 0.14, 0.0, 1.0)
            base += anat.breasts * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) * fade_up

    # Spine: vertebral bodies separated by discs.
    du = u - anat.xm
    across = np.sqrt(np.clip(1.0 - (du / anat.spine_w) ** 2, 0.0, 1.0))
    bodies = 0.5 * (1 + np.tanh(3.0 * np.cos(2 * np.pi * (v / anat.spine_period + anat.spine_phase))))
    base += 0.09 * across * (0.65 + 0.35 * bodies)

    # Trachea and main bronchi (air, darker).
    car_v = float(anat.hilum_v.min()) - 0.05
    tx = anat.xm - 0.006
    air = _tube(u, v, (tx, -0.1), (tx, car_v), anat.trachea_w)
    for kk in (0, 1):
        sgn = 1.0 if kk else -1.0
        hil = (anat.xm + sgn * anat.hilum_s[kk] * 0.8, anat.hilum_v[kk] - 0.005)
        air = np.maximum(air, _tube(u, v, (tx, car_v), hil, anat.trachea_w * 0.75))
    base -= 0.1 * air * np.clip(1.0 - 3.0 * ndimage.gaussian_filter(anat.lung(u, v).astype(np.float32), 2.0), 0, 1)

    # Bones: posterior ribs, anterior ribs and clavicles, evaluated in their own boxes.
    for kk in (0, 1):
        sgn = 1.0 if kk else -1.0
        hw = anat.hw[kk]
        for j in range(10):
            y0, h, g = anat.rib_y[kk, j], anat.rib_h[kk, j], anat.rib_g[kk, j]
            sv = 0.6 * hw
            umin, umax = sorted((anat.xm + sgn * 0.0, anat.xm + sgn * (hw + 0.06)))
            r0, r1, c0, c1 = pose.box(umin, umax, y0 - h - 0.03, y0 + g + 0.03, w)
            if r1 <= r0 or c1 <= c0:
                continue
            bu, bv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
            ss = sgn * (bu - anat.xm)
            inner = ss <= sv
            vc = np.where(inner, y0 - h * (1 - ((ss - sv) / sv) ** 2), y0 - h + g * ((ss - sv) / (hw - sv)) ** 2)
            slope = np.where(inner, -2 * h * (ss - sv) / sv**2, 2 * g * (ss - sv) / (hw - sv) ** 2)
            half = 0.0105 + 0.005 * np.clip(ss / 0.25, 0.0, 1.0)
            d = (bv - vc) / (half * np.sqrt(1.0 + slope * slope))
            fade = np.clip((anat.s_out(bv, kk) + 0.04 - ss) / 0.03, 0.0, 1.0)
            fade *= np.clip((ss - 0.015) / 0.03, 0.0, 1.0)
            fade *= 1.0 - 0.45 * np.clip((bv - anat.dome(ss, kk)) / 0.03, 0.0, 1.0)  # fainter under the dome
            base[r0:r1, c0:c1] += _A_RIB * _rib_profile(d) * fade
        for j in range(6):
            # Anterior ribs leave the lateral wall near a posterior rib's end and run down medially.
            y_lat = anat.rib_y[kk, j + 1] + 0.02
            m = 0.5 + 0.05 * j
            s_lat = hw + 0.02
            umin, umax = sorted((anat.xm + sgn * 0.05, anat.xm + sgn * (s_lat + 0.02)))
            r0, r1, c0, c1 = pose.box(umin, umax, y_lat - 0.03, y_lat + m * s_lat + 0.05, w)
            if r1 <= r0 or c1 <= c0:
                continue
            bu, bv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
            ss = sgn * (bu - anat.xm)
            q = np.clip(s_lat - ss, 0.0, None)
            vc = y_lat + m * q + 0.35 * q * q
            slope = m + 0.7 * q
            d = (bv - vc) / (0.0135 * np.sqrt(1.0 + slope * slope))
            fade = np.clip((ss - 0.1) / 0.1, 0.0, 1.0) * np.clip((anat.s_out(bv, kk) + 0.03 - ss) / 0.03, 0.0, 1.0)
            fade *= 1.0 - 0.45 * np.clip((bv - anat.dome(ss, kk)) / 0.03, 0.0, 1.0)
            base[r0:r1, c0:c1] += 0.6 * _A_RIB * _rib_profile(d) * fade
        # Clavicle: from the sternal end up and out to the shoulder, with a gentle S.
        s0, s1 = 0.035, 0.31
        umin, umax = sorted((anat.xm + sgn * s0, anat.xm + sgn * s1))
        r0, r1, c0, c1 = pose.box(umin, umax, anat.v_cl - 0.07, anat.v_cl + 0.03, w)
        if r1 > r0 and c1 > c0:
            bu, bv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
            ss = sgn * (bu - anat.xm)
            t = np.clip((ss - s0) / (s1 - s0), 0.0, 1.0)
            vc = anat.v_cl - 0.045 * t + 0.012 * np.sin(2 * np.pi * t)
            slope = (-0.045 + 0.012 * 2 * np.pi * np.cos(2 * np.pi * t)) / (s1 - s0)
            half = 0.011 + 0.004 * (1 - t)
            d = (bv - vc) / (half * np.sqrt(1.0 + slope * slope))
            fade = np.clip((ss - s0) / 0.015, 0.0, 1.0) * np.clip((s1 - ss) / 0.02, 0.0, 1.0)
            base[r0:r1, c0:c1] += 0.14 * _rib_profile(d) * fade

    # Lungs: air deficit, soft-edged, thickest mid-field.
    lung = anat.lung(u, v)
    lung_soft = ndimage.gaussian_filter(lung.astype(np.float32), sigma_edge)
    lungdef = _A_LUNG * ndimage.gaussian_filter(lung * anat.lung_depth(u, v).astype(np.float32), sigma_edge)
    # Parenchymal mottling: faint band-pass texture of a few millimetres.
    grain = rng.standard_normal((w, w), dtype=np.float32)
    sigma_grain = max(0.7, 0.006 * w)
    grain = ndimage.gaussian_filter(grain, sigma_grain) - ndimage.gaussian_filter(grain, 2 * sigma_grain)
    grain /= max(float(grain.std()), 1e-6)
    base += 0.012 * grain * lung_soft

    # Pulmonary vessels, visible inside the lungs only.
    sig = [max(0.5, 0.0014 * w), 0.003 * w, 0.0055 * w]
    thr = [0.0045 * w, 0.009 * w]
    vessels = _draw_tubes((w, w), (0, 0), pose, w, segs, _A_VESSEL, sig, thr).astype(np.float32) * lung_soft
    return _Layers(
        base=base.astype(np.float32),
        lungdef=lungdef.astype(np.float32),
        vessels=vessels,
        lung_soft=lung_soft,
        edge_px=int(4.0 * sigma_edge + 0.5) + 1,
    )


# ==============================================================================================================
# Lesions (full resolution, inside their own boxes)
# ==============================================================================================================


@dataclass
class _Ctx:
    """What a lesion needs to evaluate itself inside its pixel box."""

    anat: _Anatomy
    pose: _Pose
    n: int
    layers: _Layers
    box: tuple[int, int, int, int]
    u: np.ndarray
    v: np.ndarray
    lung_w: np.ndarray  # soft lung weight (0-1)
    lung: np.ndarray  # where lung_w > 0: the lungs and their soft edge
    rng: np.random.Generator  # texture stream of this lesion
    spacing_mm: float

    def lungdef(self) -> np.ndarray:
        r0, r1, c0, c1 = self.box
        return _resample(self.layers.lungdef, self.n, r0, r1, c0, c1)

    def vessels(self) -> np.ndarray:
        r0, r1, c0, c1 = self.box
        return _resample(self.layers.vessels, self.n, r0, r1, c0, c1)


@dataclass
class _LesionSpec:
    cls: str
    bounds: tuple[float, float, float, float]  # umin, umax, vmin, vmax
    field: Callable[[_Ctx], tuple[np.ndarray, np.ndarray]]  # -> (density delta, support)
    side: int | None = None


def _lung_points(
    rng: np.random.Generator,
    anat: _Anatomy,
    *,
    side: int | None = None,
    vfrac: tuple[float, float] = (0.0, 1.0),
    margin: float = 0.0,
) -> tuple[float, float, int]:
    """A random point inside a lung (and at least ``margin`` from its border in 8 directions)."""
    for _ in range(50):
        m = 256
        k = rng.integers(0, 2, m) if side is None else np.full(m, side)
        sgn = np.where(k == 1, 1.0, -1.0)
        s = rng.uniform(0.02, 1.0, m) * anat.hw[k]
        v = anat.v_ap + rng.uniform(*vfrac, m) * (anat.v_cp[k] - anat.v_ap)
        u = anat.xm + sgn * s
        ok = anat.lung(u, v)
        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            ok &= anat.lung(u + margin * np.cos(a), v + margin * np.sin(a))
        idx = np.flatnonzero(ok)
        if idx.size:
            i = int(idx[0])
            return float(u[i]), float(v[i]), int(k[i])
    raise RuntimeError("could not place a lesion inside the lungs")  # pragma: no cover - geometry guarantees it


def _side_lung(ctx: _Ctx, side: int) -> np.ndarray:
    return ctx.lung & ((ctx.u > ctx.anat.xm) == bool(side))


def _spec_nodule(rng: np.random.Generator, anat: _Anatomy, pose: _Pose, c: float) -> _LesionSpec:
    diam_mm = 5.0 + 25.0 * rng.beta(1.2, 1.6)
    radius = diam_mm / 2.0 / anat.mm_per_unit(pose)
    cu, cv, _ = _lung_points(rng, anat, vfrac=(0.08, 0.95), margin=radius * 0.9)
    a3, a5 = rng.uniform(0, 0.08), rng.uniform(0, 0.05)
    p3, p5 = rng.uniform(0, 2 * np.pi, 2)
    q_soft = 1.25
    amp = c * rng.uniform(0.7, 1.3) * math.sqrt(diam_mm / 15.0)
    reach = radius * q_soft * (1 + a3 + a5)

    def field_fn(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        du, dv = ctx.u - cu, ctx.v - cv
        theta = np.arctan2(dv, du)
        r_theta = radius * (1 + a3 * np.cos(3 * theta + p3) + a5 * np.cos(5 * theta + p5))
        q2 = (du * du + dv * dv) / (q_soft * r_theta) ** 2
        p = np.clip(1.0 - q2, 0.0, 1.0) ** 1.3
        support = (p > 0) & ctx.lung
        return amp * p * ctx.lung_w * support, support

    return _LesionSpec("nodule", (cu - reach, cu + reach, cv - reach, cv + reach), field_fn)


def _spec_consolidation(rng: np.random.Generator, anat: _Anatomy, pose: _Pose, c: float) -> _LesionSpec:
    rc = rng.uniform(0.05, 0.1)
    cu, cv, side = _lung_points(rng, anat, vfrac=(0.15, 0.95), margin=0.02)
    # A few large lobules make the shape, many small acinar ones its fluffy, patchy texture and margin.
    big, small = int(rng.integers(4, 8)), int(rng.integers(14, 28))
    m = big + small
    rad = rc * np.concatenate([0.5 * np.sqrt(rng.random(big)), 0.85 * np.sqrt(rng.random(small))])
    ang = rng.uniform(0, 2 * np.pi, m)
    bu, bv = cu + rad * np.cos(ang), cv + rad * np.sin(ang)
    br = rc * np.concatenate([rng.uniform(0.3, 0.5, big), rng.uniform(0.1, 0.2, small)])
    ba = np.concatenate([rng.uniform(0.6, 1.0, big), rng.uniform(0.3, 0.7, small)])
    t0 = 0.35
    reach = float(np.max(rad + br * np.sqrt(2 * np.log(np.maximum(ba * m / t0, 1.0001)))))
    amp = c * rng.uniform(0.75, 1.25)
    bronch = None
    if rng.random() < 0.6:
        hx = anat.xm + (1 if side else -1) * anat.hilum_s[side]
        base_ang = math.atan2(cv - anat.hilum_v[side], cu - hx)
        rows = []
        for _ in range(int(rng.integers(2, 4))):
            a = base_ang + rng.uniform(-0.5, 0.5)
            su, sv = cu - 0.5 * rc * math.cos(a), cv - 0.5 * rc * math.sin(a)
            ln = rc * rng.uniform(0.5, 0.9)
            eu, ev = su + ln * math.cos(a), sv + ln * math.sin(a)
            rows.append((su, sv, eu, ev, 1.0))
            for sgn in (-1, 1):
                b = a + sgn * rng.uniform(0.3, 0.6)
                fl = ln * rng.uniform(0.4, 0.7)
                rows.append((eu, ev, eu + fl * math.cos(b), ev + fl * math.sin(b), 0.7))
        bronch = np.array(rows)

    def field_fn(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        f = np.zeros(ctx.u.shape, dtype=np.float32)
        for i in range(m):
            f += ba[i] * np.exp(-((ctx.u - bu[i]) ** 2 + (ctx.v - bv[i]) ** 2) / (2 * br[i] ** 2))
        p = 1.0 - np.exp(-np.clip(f - t0, 0.0, None) / 0.45)
        support = (p > 0) & ctx.lung
        air = np.zeros_like(p)
        if bronch is not None:
            sigma = max(0.7, 1.0 / ctx.spacing_mm)
            segs = bronch.copy()
            r0, _, c0, _ = ctx.box
            tubes = _draw_tubes(p.shape, (r0, c0), ctx.pose, ctx.n, segs, 1.0, [sigma], [])
            if tubes.max() > 0:
                air = (tubes / tubes.max()).astype(np.float32)
        delta = (amp * p * (1.0 - 0.6 * air) * ctx.lung_w - 0.5 * p * ctx.vessels()) * support
        return delta, support

    return _LesionSpec("consolidation", (cu - reach, cu + reach, cv - reach, cv + reach), field_fn, side)


def _spec_interstitial(rng: np.random.Generator, anat: _Anatomy, pose: _Pose, c: float) -> _LesionSpec:
    side = int(rng.integers(0, 2))
    sgn = 1.0 if side else -1.0
    zone = rng.choice(4, p=[0.55, 0.2, 0.1, 0.15])
    lo, hi = [(0.45, 1.03), (0.3, 0.78), (0.0, 0.5), (0.12, 1.03)][zone]
    height = anat.v_cp[side] - anat.v_ap
    va, vb = anat.v_ap + lo * height, anat.v_ap + hi * height
    cell_mm = rng.uniform(3.0, 6.0)
    dots = rng.random() < 0.5
    amp = c * rng.uniform(0.75, 1.25)
    umin, umax = sorted((anat.xm + sgn * 0.03, anat.xm + sgn * (anat.hw[side] + 0.01)))

    def field_fn(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        lung = _side_lung(ctx, side)
        sigma = max(0.8, cell_mm / ctx.spacing_mm / 2.5)
        white = ctx.rng.standard_normal(ctx.u.shape, dtype=np.float32)
        band = ndimage.gaussian_filter(white, sigma) - ndimage.gaussian_filter(white, 2 * sigma)
        band /= max(float(band.std()), 1e-6)
        texture = np.exp(-((band / 0.45) ** 2))
        if dots:
            pts = (ctx.rng.random(ctx.u.shape) < 0.25 / (sigma * sigma)).astype(np.float32)
            blob = ndimage.gaussian_filter(pts, 0.6 * sigma)
            texture = 0.5 * texture + 0.3 * blob / max(float(blob.max()), 1e-6) + 0.2
        else:
            texture = 0.65 * texture + 0.35
        tv = np.clip((ctx.v - va) / (vb - va), 0.0, 1.0)
        env = np.sin(np.pi * tv) ** 0.6
        s = np.abs(ctx.u - ctx.anat.xm)
        periph = 0.6 + 0.4 * np.clip(s / ctx.anat.s_out(ctx.v, side), 0.0, 1.0)
        support = (env > 0) & lung
        return amp * env * periph * texture * ctx.lung_w * support, support

    return _LesionSpec("interstitial_opacity", (umin, umax, va, vb), field_fn, side)


def _spec_effusion(rng: np.random.Generator, anat: _Anatomy, pose: _Pose, c: float) -> _LesionSpec:
    side = int(rng.integers(0, 2))
    sgn = 1.0 if side else -1.0
    h = rng.uniform(0.05, 0.16)
    tau = rng.uniform(0.012, 0.03)
    frac = min(1.0, c * rng.uniform(0.85, 1.1))
    hw, vcp = anat.hw[side], anat.v_cp[side]
    umin, umax = sorted((anat.xm + sgn * 0.02, anat.xm + sgn * (hw + 0.01)))

    def field_fn(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        lung = _side_lung(ctx, side)
        s = np.abs(ctx.u - ctx.anat.xm)
        meniscus = vcp - h * (0.3 + 0.7 * np.clip(s / hw, 0.0, 1.0) ** 2)
        p = np.clip((ctx.v - meniscus) / tau, 0.0, 1.0) ** 0.8
        support = (p > 0) & lung
        delta = frac * p * (ctx.lungdef() - ctx.vessels()) * support
        return delta, support

    return _LesionSpec("pleural_effusion", (umin, umax, vcp - h - 0.01, vcp + 0.01), field_fn, side)


def _spec_pneumothorax(rng: np.random.Generator, anat: _Anatomy, pose: _Pose, c: float) -> _LesionSpec:
    side = int(rng.integers(0, 2))
    sgn = 1.0 if side else -1.0
    v_lim = anat.v_ap + rng.uniform(0.3, 0.75) * (anat.v_cp[side] - anat.v_ap)
    rim = rng.uniform(0.025, 0.07)
    amp = c * rng.uniform(0.75, 1.25)
    umin, umax = sorted((anat.xm + sgn * 0.02, anat.xm + sgn * (anat.hw[side] + 0.01)))

    def field_fn(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        a = ctx.anat
        lung = _side_lung(ctx, side)
        s = np.abs(ctx.u - a.xm)
        d = np.minimum(a.s_out(ctx.v, side) - s, (ctx.v - a.apex(s)) * 0.7)
        width = rim * np.clip((v_lim - ctx.v) / (v_lim - a.v_ap), 0.0, 1.0) ** 0.5
        zone = lung & (d < width) & (width > 0)
        wl = max(0.7 / (ctx.n * ctx.pose.scale), 0.3 / a.mm_per_unit(ctx.pose))
        near = lung & (width > 0) & (np.abs(d - width) < 3 * wl)
        line = np.exp(-(((d - width) / wl) ** 2)) * near
        delta = (-amp * ctx.lung_w - ctx.vessels()) * zone + 0.7 * amp * line * ctx.lung_w
        return delta.astype(np.float32), zone | near

    return _LesionSpec("pneumothorax", (umin, umax, anat.v_ap - 0.02, v_lim + 0.01), field_fn, side)


_SPECS = {
    "nodule": _spec_nodule,
    "consolidation": _spec_consolidation,
    "interstitial_opacity": _spec_interstitial,
    "pleural_effusion": _spec_effusion,
    "pneumothorax": _spec_pneumothorax,
}


# ==============================================================================================================
# Rendering
# ==============================================================================================================


@dataclass(frozen=True)
class _Vendor:
    gain: float
    offset: float
    gamma: float
    s_curve: float
    filter: str  # "blur", "sharpen" or "none"
    sigma_px: float
    amount: float
    noise: float
    noise_corr_px: float
    heel: tuple[float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> _Vendor:
        scale = size / 1024.0
        kind = str(rng.choice(["blur", "sharpen", "none"], p=[0.4, 0.4, 0.2]))
        sigma = rng.uniform(0.5, 1.1) * scale if kind == "blur" else rng.uniform(1.5, 3.0) * scale
        amount = rng.uniform(0.3, 0.9)
        if sigma < 0.3:
            kind = "none"
        return cls(
            gain=rng.uniform(0.92, 1.03),
            offset=rng.uniform(-0.03, 0.02),
            gamma=rng.uniform(0.75, 1.35),
            s_curve=rng.uniform(0.0, 0.5),
            filter=kind,
            sigma_px=float(sigma) if kind != "none" else 0.0,
            amount=float(amount) if kind == "sharpen" else 0.0,
            noise=rng.uniform(0.006, 0.02),
            noise_corr_px=rng.uniform(0.4, 0.8),
            heel=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        )

    @property
    def radius(self) -> int:
        """How far (pixels, Chebyshev) the filter moves a change."""
        return int(_MASK_TRUNCATE * self.sigma_px + 0.5) if self.filter != "none" else 0

    def apply_filter(self, d: np.ndarray) -> np.ndarray:
        if self.filter == "none":
            return d
        smooth = ndimage.gaussian_filter(d, self.sigma_px, truncate=_MASK_TRUNCATE)
        return smooth if self.filter == "blur" else d + self.amount * (d - smooth)

    def curve(self, x: np.ndarray) -> np.ndarray:
        y = np.clip(x * self.gain + self.offset, 0.0, 1.0) ** self.gamma
        return (1 - self.s_curve) * y + self.s_curve * y * y * (3 - 2 * y)


def _check_contrast(contrast: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(DEFAULT_CONTRAST)
    for key, value in (contrast or {}).items():
        if key not in DEFAULT_CONTRAST:
            raise ConfigError(f"unknown lesion class {key!r} in contrast; expected one of {CXR_CLASSES}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"contrast[{key!r}] must be a finite number >= 0, got {value}")
        out[key] = value
    return out


def _choose_classes(rng: np.random.Generator, lesions: Sequence[str] | None, p_normal: float) -> list[str]:
    if lesions is not None:
        if isinstance(lesions, str):
            lesions = [lesions]
        bad = [c for c in lesions if c not in CXR_CLASSES]
        if bad:
            raise ConfigError(f"unknown lesion class(es) {bad}; expected some of {CXR_CLASSES}")
        return list(lesions)
    if rng.random() < p_normal:
        return []
    k = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    return [CXR_CLASSES[i] for i in sorted(rng.choice(len(CXR_CLASSES), size=k, replace=False))]


def render_cxr(
    seed: int,
    size: int = 1024,
    *,
    lesions: Sequence[str] | None = None,
    contrast: Mapping[str, float] | None = None,
    p_normal: float = 0.5,
) -> tuple[np.ndarray, list[Lesion], dict[str, Any]]:
    """Render one synthetic chest PA radiograph.

    Args:
        seed: any non-negative integer; the image is a pure function of (seed, size, lesions, contrast).
        size: side in pixels (the image is size x size); the field of view is 350-430 mm, so the pixel
            spacing is ``info["spacing_mm"]``.
        lesions: None draws the findings at random (normal with probability ``p_normal``, else 1-3 distinct
            classes); a sequence of class names (repeats allowed) places exactly those; ``[]`` renders the
            same patient without lesions (identical pixels outside the lesion masks).
        contrast: per-class strength overriding :data:`DEFAULT_CONTRAST` (same keys and units).
        p_normal: probability of a normal image when ``lesions`` is None.

    Returns:
        ``(image, lesions, info)``: float32 (size, size) image in [0, 1], bright = dense; the :class:`Lesion`
        list (full-size masks, half-open (y0, x0, y1, x1) boxes in pixels); and ``info`` with ``spacing_mm``
        ((row, col) mm/pixel), ``fov_mm``, ``labels`` ({class: 0/1}), ``normal``, ``lung_mask`` (bool, size x
        size), ``mask_dilation_px`` (how far the vendor filter spreads a lesion's change), ``lung_edge_px`` (how
        far the lungs' soft edge, which lesions may touch, reaches beyond ``lung_mask``), ``pose``, ``vendor``
        and ``contrast``.

    Raises:
        ConfigError: unknown class, bad contrast, size out of [64, 8192] or negative seed.
    """
    seed = int(seed)
    size = int(size)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if not 64 <= size <= 8192:
        raise ConfigError(f"size must be between 64 and 8192 pixels, got {size}")
    if not 0.0 <= p_normal <= 1.0:
        raise ConfigError(f"p_normal must be in [0, 1], got {p_normal}")
    strength = _check_contrast(contrast)

    rng_anat = np.random.default_rng([seed, 1])
    rng_les = np.random.default_rng([seed, 2])
    rng_vendor = np.random.default_rng([seed, 3])
    rng_noise = np.random.default_rng([seed, 4])

    anat = _Anatomy.draw(rng_anat)
    pose = _Pose.draw(rng_anat)
    vendor = _Vendor.draw(rng_vendor, size)
    classes = _choose_classes(rng_les, lesions, p_normal)
    specs = [_SPECS[c](rng_les, anat, pose, strength[c]) for c in classes]

    work = size // 2 if size >= 512 else size
    layers = _render_anatomy(anat, pose, work, rng_anat)
    anatomy_density = layers.base - layers.lungdef + layers.vessels
    d_lo, d_hi = (float(x) for x in np.percentile(anatomy_density[::2, ::2], [0.3, 99.9]))
    d_hi += 0.05 * (d_hi - d_lo)
    d_span = max(d_hi - d_lo, 1e-3)

    density = _resample(anatomy_density, size)
    spacing = anat.mm_per_unit(pose) / pose.scale / size  # fov_mm / size
    supports: list[tuple[str, tuple[int, int, int, int], np.ndarray]] = []
    for i, spec in enumerate(specs):
        umin, umax, vmin, vmax = spec.bounds
        r0, r1, c0, c1 = pose.box(umin, umax, vmin, vmax, size)
        if r1 <= r0 or c1 <= c0:
            continue
        bu, bv = pose.grid(r0, r1, c0, c1, size)
        lung_w = _resample(layers.lung_soft, size, r0, r1, c0, c1)
        lung_w[lung_w < 0.01] = 0.0  # keeps masks tight: the far tail of the soft edge is left alone
        ctx = _Ctx(
            anat=anat,
            pose=pose,
            n=size,
            layers=layers,
            box=(r0, r1, c0, c1),
            u=bu,
            v=bv,
            lung_w=lung_w,
            lung=lung_w > 0,
            rng=np.random.default_rng([seed, 100 + i]),
            spacing_mm=spacing,
        )
        delta, support = spec.field(ctx)
        density[r0:r1, c0:c1] += delta.astype(np.float32)
        supports.append((spec.cls, (r0, r1, c0, c1), support))

    # Acquisition: heel effect, quantum-like noise (stronger where dense), vendor filter, display curve.
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    density += vendor.heel[0] * ramp[None, :] + vendor.heel[1] * ramp[:, None]
    white = rng_noise.standard_normal((size, size), dtype=np.float32)
    white = ndimage.gaussian_filter(white, vendor.noise_corr_px, truncate=_MASK_TRUNCATE)
    white /= max(float(white.std()), 1e-6)
    level = np.clip((density - d_lo) / d_span, 0.0, 1.5)
    density += (vendor.noise * d_span) * (0.5 + level) * white
    density = vendor.apply_filter(density)
    image = vendor.curve((density - d_lo) / d_span).astype(np.float32)

    radius = vendor.radius
    out_lesions: list[Lesion] = []
    for cls_name, (r0, r1, c0, c1), support in supports:
        mask = np.zeros((size, size), dtype=bool)
        mask[r0:r1, c0:c1] = support
        if radius:
            a0, a1 = max(0, r0 - radius), min(size, r1 + radius)
            b0, b1 = max(0, c0 - radius), min(size, c1 + radius)
            mask[a0:a1, b0:b1] = ndimage.maximum_filter(mask[a0:a1, b0:b1], size=2 * radius + 1)
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        out_lesions.append(Lesion(cls=cls_name, box=box, mask=mask))

    fu, fv = pose.grid(0, size, 0, size, size)
    present = {les.cls for les in out_lesions}
    info: dict[str, Any] = {
        "seed": seed,
        "size": size,
        "spacing_mm": (spacing, spacing),
        "fov_mm": anat.fov_mm,
        "normal": not out_lesions,
        "labels": {c: int(c in present) for c in CXR_CLASSES},
        "lung_mask": anat.lung(fu, fv),
        "mask_dilation_px": radius,
        "lung_edge_px": math.ceil(layers.edge_px * size / work),
        "pose": {
            "angle_deg": math.degrees(pose.angle),
            "scale": pose.scale,
            "offset": (pose.dy * size, pose.dx * size),
        },
        "vendor": {
            "filter": vendor.filter,
            "sigma_px": vendor.sigma_px,
            "amount": vendor.amount,
            "gamma": vendor.gamma,
            "s_curve": vendor.s_curve,
            "noise": vendor.noise,
        },
        "contrast": strength,
    }
    return image, out_lesions, info


# ==============================================================================================================
# Files
# ==============================================================================================================


def _png_bytes(arr: np.ndarray, spacing_mm: float | None = None) -> bytes:
    """Encode a 2-D uint8/uint16 array as grayscale PNG, with a pHYs chunk (pixels per metre) if spacing given."""
    import imagecodecs

    data = bytes(imagecodecs.png_encode(np.ascontiguousarray(arr), level=6))
    if spacing_mm is None:
        return data
    ppm = max(1, round(1000.0 / spacing_mm))
    payload = struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + b"pHYs" + payload + struct.pack(">I", zlib.crc32(b"pHYs" + payload))
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def _ds(value: float) -> str:
    """A Decimal String (VR DS, at most 16 characters) as precise as it fits."""
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DICOM decimal string")  # pragma: no cover


_VENDORS = (
    ("Synthetic Radiography Co.", "SynthDR 3000"),
    ("Phantom Imaging", "PX-CR 12"),
    ("Imaginary Medical Systems", "Imagina DX"),
)


def write_cxr_dicom(
    path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    spacing_mm: float,
    uid_entropy: Sequence[str],
    modality: str = "DX",
    bits_stored: int = 12,
    monochrome1: bool = False,
    rescale: tuple[float, float] | None = None,
    spacing_tag: str = "PixelSpacing",
    magnification: float = 1.1,
    window: str = "LINEAR",
    vendor: int = 0,
    instance: int = 1,
    patient_id: str = "SYNTH",
) -> Path:
    """Write a float image (rows, cols) in [0, 1], bright = dense, as a DICOM Part-10 CR or DX radiograph.

    The window centre/width written covers the whole modality output range, so
    :func:`napari_patchdx.io.cxr.read_cxr` returns ``image`` back within one quantisation step of
    ``bits_stored``.

    Args:
        path: the target file (written atomically).
        image: float (rows, cols) in [0, 1].
        spacing_mm: the true (isotropic) pixel spacing in millimetres at the patient.
        uid_entropy: strings that seed the deterministic UIDs (study, series, instance).
        modality: "CR" (Computed Radiography Image Storage) or "DX" (Digital X-Ray Image Storage - For
            Presentation).
        bits_stored: 12 to 16; stored values are unsigned 16-bit words.
        monochrome1: store inverted (high values dark) as MONOCHROME1 (DX adds Presentation LUT Shape INVERSE).
        rescale: (slope, intercept) of the Modality LUT, or None to leave it out.
        spacing_tag: "PixelSpacing" (plus ImagerPixelSpacing at the detector for DX), "ImagerPixelSpacing/ERMF"
            (detector spacing and the magnification factor ``magnification``) or "ImagerPixelSpacing".
        window: "LINEAR", "LINEAR_EXACT" or "MULTI" (two LINEAR windows, the first exact).
        vendor: index into a small list of fictitious manufacturers.
        instance: Instance Number.
        patient_id: Patient ID (and the patient name's family part).

    Returns:
        The path written.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    if not 12 <= bits_stored <= 16:
        raise ConfigError(f"bits_stored must be 12 to 16, got {bits_stored}")
    if modality not in ("CR", "DX"):
        raise ConfigError(f"modality must be 'CR' or 'DX', got {modality!r}")
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim != 2:
        raise ConfigError(f"image must be 2-D, got shape {img.shape}")
    top = 2**bits_stored - 1
    values = 1.0 - img if monochrome1 else img
    stored = np.rint(values * top).astype("<u2")

    sop_class = "1.2.840.10008.5.1.4.1.1.1" if modality == "CR" else "1.2.840.10008.5.1.4.1.1.1.1"
    entropy = ["napari-patchdx synth_cxr", *map(str, uid_entropy)]
    study = generate_uid(entropy_srcs=[*entropy, "study"])
    series = generate_uid(entropy_srcs=[*entropy, "series"])
    instance_uid = generate_uid(entropy_srcs=[*entropy, "instance"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer, ds.ManufacturerModelName = _VENDORS[vendor % len(_VENDORS)]
    ds.ReferringPhysicianName = ""
    ds.PatientName = f"{patient_id}^SYNTHETIC"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(instance)
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0

    sp = _ds(spacing_mm)
    if spacing_tag == "PixelSpacing":
        ds.PixelSpacing = [sp, sp]
        if modality == "DX":
            ds.ImagerPixelSpacing = [_ds(spacing_mm * magnification)] * 2
    elif spacing_tag == "ImagerPixelSpacing/ERMF":
        ds.ImagerPixelSpacing = [_ds(spacing_mm * magnification)] * 2
        ds.EstimatedRadiographicMagnificationFactor = _ds(magnification)
    elif spacing_tag == "ImagerPixelSpacing":
        ds.ImagerPixelSpacing = [sp, sp]
    else:
        raise ConfigError(f"unknown spacing_tag {spacing_tag!r}")

    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    if rescale is not None:
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "US"
    m_lo, m_hi = sorted((intercept, top * slope + intercept))
    if window == "LINEAR_EXACT":
        ds.WindowCenter = _ds((m_lo + m_hi) / 2)
        ds.WindowWidth = _ds(m_hi - m_lo)
        ds.VOILUTFunction = "LINEAR_EXACT"
    elif window in ("LINEAR", "MULTI"):
        centre, width = (m_lo + m_hi) / 2 + 0.5, m_hi - m_lo + 1
        if window == "MULTI":
            ds.WindowCenter = [_ds(centre), _ds(centre)]
            ds.WindowWidth = [_ds(width), _ds(width / 2)]
            ds.WindowCenterWidthExplanation = ["FULL", "NARROW"]
        else:
            ds.WindowCenter = _ds(centre)
            ds.WindowWidth = _ds(width)
    else:
        raise ConfigError(f"unknown window {window!r}")
    ds.PixelData = stored.tobytes()

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue(), mkdir=True)
    return path


def _image_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index), 0xC5]).generate_state(1, np.uint32)[0])


def _cohort_plan(n: int, seed: int) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Per image: the classes to draw and the DICOM variant, balanced over the cohort."""
    rng = np.random.default_rng([int(seed), 0xC0])
    normal = set(rng.permutation(n)[: n // 2].tolist())
    used = np.zeros(len(CXR_CLASSES))
    plan: list[list[str]] = []
    for i in range(n):
        if i in normal:
            plan.append([])
            continue
        k = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        weights = 1.0 / (1.0 + used)
        picks = rng.choice(len(CXR_CLASSES), size=k, replace=False, p=weights / weights.sum())
        used[picks] += 1
        plan.append([CXR_CLASSES[j] for j in sorted(picks)])
    mono = rng.permutation(n)
    spacing_mode = rng.permutation(n)
    rescale_mode = rng.permutation(n)
    variants = []
    for i in range(n):
        modality = "CR" if rng.random() < 0.5 else "DX"
        rescale = None
        if rescale_mode[i] % 3 == 0:
            rescale = [(1.0, -1024.0), (0.5, 0.0), (2.0, -4096.0), (1.0, 100.0)][int(rng.integers(0, 4))]
        variants.append(
            {
                "modality": modality,
                "bits_stored": int(rng.choice([12, 14, 15, 16])),
                "monochrome1": bool(mono[i] % 3 == 0),
                "rescale": rescale,
                "spacing_tag": ("PixelSpacing", "ImagerPixelSpacing/ERMF", "ImagerPixelSpacing")[
                    int(spacing_mode[i] % 3)
                ],
                "magnification": float(rng.uniform(1.05, 1.2)),
                "window": str(rng.choice(["LINEAR", "LINEAR", "LINEAR_EXACT", "MULTI"])),
                "vendor": int(rng.integers(0, len(_VENDORS))),
            }
        )
    return plan, variants


def _csv_text(rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def make_cxr_cohort(
    out_dir: str | os.PathLike[str],
    n: int = 40,
    seed: int = 0,
    size: int = 1024,
    dicom: bool = True,
    *,
    contrast: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> CxrCohort:
    """Write a synthetic chest X-ray cohort: half normal images, half with 1-3 lesions, classes balanced.

    Layout under ``out_dir``:

    * ``images/<id>.png``: 16-bit grayscale PNG, bright = dense, with the pixel spacing in its pHYs chunk;
    * ``images/<id>.dcm`` (when ``dicom``): the same image as a DICOM Part-10 CR or DX file with varied
      bits stored (12-16), rescale slope/intercept on about a third, window centre/width (LINEAR,
      LINEAR_EXACT or two windows), MONOCHROME1 on about a third (stored inverted), and the spacing given as
      PixelSpacing, ImagerPixelSpacing with EstimatedRadiographicMagnificationFactor, or ImagerPixelSpacing;
    * ``masks/<id>.png``: uint8 bitmask, bit k set where a lesion of class ``CXR_CLASSES[k]`` is;
    * ``lungs/<id>.png``: uint8 lung-field mask (255 = lung), where negative "normal lung" patches come from;
    * ``labels.csv``: ``image``, one 0/1 column per class in :data:`CXR_CLASSES` order, ``png``, ``dcm``
      (paths relative to ``out_dir``; ``dcm`` empty without DICOM);
    * ``lesions.csv``: ``image, lesion, class, y0, x0, y1, x1`` (half-open native-pixel boxes);
    * ``cohort.json``: the parameters (n, seed, size, dicom, classes, contrast, spacing per image).

    Every file is written atomically, the CSVs and ``cohort.json`` last; the same arguments give the same
    bytes.

    Args:
        out_dir: the cohort folder (created).
        n: number of images (>= 1).
        seed: cohort seed (>= 0).
        size: image side in pixels.
        dicom: also write the DICOM files.
        contrast: per-class lesion strength overriding :data:`DEFAULT_CONTRAST`.
        overwrite: replace a cohort already in ``out_dir`` that was made with other parameters (one made with
            the same parameters is always rewritten, identically).

    Returns:
        The :class:`CxrCohort`.

    Raises:
        ConfigError: bad n, seed, size or contrast.
        InputFileError: ``out_dir`` holds a different cohort and ``overwrite`` is False.
    """
    n, seed, size = int(n), int(seed), int(size)
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    strength = _check_contrast(contrast)
    root = Path(out_dir)
    params = {
        "generator": "napari_patchdx.synth.cxr",
        "format": 2,
        "n": n,
        "seed": seed,
        "size": size,
        "dicom": bool(dicom),
        "classes": list(CXR_CLASSES),
        "contrast": strength,
    }
    manifest = root / "cohort.json"
    if root.exists() and not root.is_dir():
        raise InputFileError(root, "exists and is not a folder")
    if manifest.exists() and not overwrite:
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        same = isinstance(old, dict) and {k: old.get(k) for k in params} == params
        if not same:
            raise InputFileError(
                root, "already holds a synthetic cohort made with other parameters; pass overwrite=True"
            )
    elif (root / "labels.csv").exists() and not manifest.exists() and not overwrite:
        raise InputFileError(root, "already holds a labels.csv that is not ours; pass overwrite=True")

    plan, variants = _cohort_plan(n, seed)
    ids = [f"cxr_{i:04d}" for i in range(n)]
    label_rows: list[list[Any]] = [["image", *CXR_CLASSES, "png", "dcm"]]
    lesion_rows: list[list[Any]] = [["image", "lesion", "class", "y0", "x0", "y1", "x1"]]
    spacings: dict[str, float] = {}
    for i, image_id in enumerate(ids):
        image, lesions, info = render_cxr(_image_seed(seed, i), size, lesions=plan[i], contrast=strength)
        spacing = float(info["spacing_mm"][0])
        spacings[image_id] = round(spacing, 6)
        png_rel = f"images/{image_id}.png"
        atomic_write_bytes(root / png_rel, _png_bytes(np.rint(image * 65535.0).astype(np.uint16), spacing), mkdir=True)
        dcm_rel = ""
        if dicom:
            dcm_rel = f"images/{image_id}.dcm"
            write_cxr_dicom(
                root / dcm_rel,
                image,
                spacing_mm=spacing,
                uid_entropy=[str(seed), image_id],
                instance=i + 1,
                patient_id=f"SYNTH{seed:04d}{i:04d}",
                **variants[i],
            )
        bits = np.zeros((size, size), dtype=np.uint8)
        for j, les in enumerate(lesions):
            bits[les.mask] |= np.uint8(1 << CXR_CLASSES.index(les.cls))
            lesion_rows.append([image_id, j, les.cls, *les.box])
        atomic_write_bytes(root / "masks" / f"{image_id}.png", _png_bytes(bits), mkdir=True)
        lungs = np.where(info["lung_mask"], np.uint8(255), np.uint8(0))
        atomic_write_bytes(root / "lungs" / f"{image_id}.png", _png_bytes(lungs), mkdir=True)
        label_rows.append([image_id, *(info["labels"][c] for c in CXR_CLASSES), png_rel, dcm_rel])

    atomic_write_bytes(root / "lesions.csv", _csv_text(lesion_rows), mkdir=True)
    atomic_write_bytes(root / "labels.csv", _csv_text(label_rows), mkdir=True)
    manifest_data = {**params, "images": ids, "spacing_mm": spacings}
    atomic_write_bytes(manifest, (json.dumps(manifest_data, indent=2) + "\n").encode("utf-8"), mkdir=True)
    return CxrCohort(
        root=root,
        labels_csv=root / "labels.csv",
        lesions_csv=root / "lesions.csv",
        images=tuple(ids),
        dicom=bool(dicom),
    )
