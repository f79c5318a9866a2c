"""Synthetic H&E lymph-node whole-slide images with exact tumour annotations.

The demo data and the test fixtures of the whole project. A slide is described by a small, seeded
:class:`SlideSpec` (tissue sections, tumour and exclusion polygons, pen strokes, stain parameters) and every
pixel at every resolution is a pure function of that spec: :func:`render_region` draws any window at any
power-of-two downsample, and the TIFF writer calls it tile by tile, so memory stays bounded and tiles join
without seams.

Geometry is in level-0 pixels, ordered (y, x) = (row, col), like the rest of napari-patchdx. A level-k pixel
(i, j) covers level-0 ``[i * ds, (i + 1) * ds) x [j * ds, (j + 1) * ds)`` with ``ds = 2**k``; every decision
(background / tissue / tumour / pen) is taken at the pixel's centre with the same even-odd rule as
:meth:`AnnotationSet.rasterize`, so the tumour drawn is exactly the tumour annotated.

Rendering is a Beer–Lambert stain model: optical density ``OD = c_H * h + c_E * e`` from hematoxylin and
eosin concentrations and per-slide jittered stain vectors, transmitted light ``RGB = I0 * exp(-OD)`` with
``I0`` the slide's near-white background. Normal lymph node is a dense sheet of small dark round lymphocyte
nuclei (about 6-8 um) over pale pink fibrous stroma, under a fibrous capsule; metastatic carcinoma forms nests
of large (10-18 um), pleomorphic, elliptical, vesicular nuclei (dark rim, pale chromatin, nucleolus) in
pink-purple cytoplasm with cell borders, separated by stromal septa. Tumour and normal tissue differ in texture
and nuclear morphology; their mean colours are close. Nuclei are placed on jittered lattices whose cells are
keyed by a counter-based hash of (slide seed, lattice index), so any window regenerates exactly the nuclei
that overlap it, at every level.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..._fsutil import atomic_path, atomic_write_text
from ...io.annotations import (
    EXCLUSION,
    TUMOR,
    AnnotationSet,
    Region,
    fill_polygon,
    points_in_polygon,
    polygon_area,
    write_asap_xml,
)

__all__ = [
    "ITC_MAX_EXTENT_UM",
    "LABEL_BACKGROUND",
    "LABEL_NORMAL",
    "LABEL_PEN",
    "LABEL_TUMOR",
    "MERGE_DISTANCE_UM",
    "Lesion",
    "PenStroke",
    "SlideSpec",
    "StainParams",
    "SynthSlide",
    "WsiCohort",
    "label_region",
    "level_shapes",
    "make_slide",
    "make_slide_spec",
    "make_wsi_cohort",
    "render_region",
]

LABEL_BACKGROUND = 0
"""Label of empty glass in :func:`label_region`."""
LABEL_NORMAL = 1
"""Label of non-tumour tissue (including exclusion regions) in :func:`label_region`."""
LABEL_TUMOR = 2
"""Label of annotated tumour (positives minus exclusions) in :func:`label_region`."""
LABEL_PEN = 3
"""Label of pen marker ink in :func:`label_region`."""

ITC_MAX_EXTENT_UM = 200.0
"""A tumour whose longest extent is below this (micrometres) is an isolated-tumour-cell cluster."""
MERGE_DISTANCE_UM = 75.0
"""Tumours whose edges are closer than this (micrometres) form one lesion in the CAMELYON16 protocol."""

_GENERATOR_VERSION = 1  # bump whenever the pixels or the layout for given arguments change
_MIN_PYRAMID_SIDE = 512
_STAMP_MAX_PX_UM = 2.01  # pixels up to this size (um) draw nuclei as templates; coarser ones splat them

# Cell geometry, micrometres.
_LYMPH_SPACING_UM = 7.3
_TUMOR_SPACING_UM = 16.5
_SPINDLE_SPACING_UM = 20.0
_CAPSULE_UM = 30.0
_NUCLEUS_RADIUS_UM = {"lymph": 3.5, "tumor": 7.0, "spindle": 2.5}

# Reference stain vectors (optical density per unit concentration, R, G, B), after Macenko et al. 2009.
_H_REF = np.array([0.5626, 0.7201, 0.4062])
_E_REF = np.array([0.2159, 0.8012, 0.5581])

_PEN_INKS = {
    "green": np.array([0.30, 0.62, 0.42]),
    "blue": np.array([0.28, 0.38, 0.78]),
    "black": np.array([0.16, 0.16, 0.19]),
}


# ================================================================================================ data model


@dataclass(frozen=True, eq=False)
class StainParams:
    """Per-slide stain appearance.

    Attributes:
        hematoxylin: (3,) unit optical-density vector of hematoxylin, (R, G, B).
        eosin: (3,) unit optical-density vector of eosin, (R, G, B).
        h_scale: multiplier of every hematoxylin concentration (staining intensity).
        e_scale: multiplier of every eosin concentration.
        background: (3,) float RGB of empty glass (the incident light ``I0``), about 235-245.
    """

    hematoxylin: np.ndarray
    eosin: np.ndarray
    h_scale: float
    e_scale: float
    background: np.ndarray


@dataclass(frozen=True, eq=False)
class PenStroke:
    """One marker stroke on the glass.

    Attributes:
        polygon: (N, 2) float64 outline of the inked area, level-0 pixels, (y, x), open ring.
        centreline: (M, 2) float64 path of the pen tip, level-0 pixels, (y, x).
        width_px: stroke width in level-0 pixels.
        color: ink name: ``"green"``, ``"blue"`` or ``"black"``.
    """

    polygon: np.ndarray
    centreline: np.ndarray
    width_px: float
    color: str


@dataclass(frozen=True)
class Lesion:
    """One annotated tumour polygon and its size.

    Attributes:
        name: its annotation name in the XML (``"Annotation <k>"``).
        kind: ``"macro"`` (the largest, carries the exclusion region), ``"pair"`` (one of two tumours closer
            than :data:`MERGE_DISTANCE_UM`), ``"itc"`` (isolated tumour cells) or ``"micro"``.
        centre: (y, x) mean of the vertices, level-0 pixels.
        bbox: (ymin, xmin, ymax, xmax), level-0 pixels.
        extent_um: longest extent (largest vertex-to-vertex distance), micrometres.
        area_um2: polygon area (exclusion not subtracted), square micrometres.
        is_itc: ``extent_um < ITC_MAX_EXTENT_UM``.
        merge_group: index shared by tumours whose edges are closer than :data:`MERGE_DISTANCE_UM` (the
            CAMELYON16 protocol scores them as one lesion); distinct otherwise.
        has_exclusion: an exclusion (``_2``) region lies inside it.
    """

    name: str
    kind: str
    centre: tuple[float, float]
    bbox: tuple[float, float, float, float]
    extent_um: float
    area_um2: float
    is_itc: bool
    merge_group: int
    has_exclusion: bool


@dataclass(frozen=True, eq=False)
class SlideSpec:
    """Everything that determines a synthetic slide's pixels (see :func:`make_slide_spec`).

    Attributes:
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel.
        seed: the slide seed; all texture and nuclei derive from it.
        tile: tile side in pixels; the background noise repeats with this period, so every background tile of
            every level is identical.
        stain: per-slide stain parameters.
        tissue: tissue-section outlines, each (N, 2) float64 (y, x) level-0 open ring.
        tissue_inner: the same sections shrunk by the capsule thickness (the capsule lies between the two).
        tumors: tumour polygons (annotation group ``_0``), (y, x) level-0.
        tumor_kinds: kind of each tumour (see :class:`Lesion`).
        exclusions: exclusion polygons (group ``_2``), each inside a tumour; drawn as normal tissue.
        pens: pen strokes on the glass, outside the tissue.
    """

    height: int
    width: int
    mpp: float
    seed: int
    tile: int
    stain: StainParams
    tissue: tuple[np.ndarray, ...]
    tissue_inner: tuple[np.ndarray, ...]
    tumors: tuple[np.ndarray, ...] = ()
    tumor_kinds: tuple[str, ...] = ()
    exclusions: tuple[np.ndarray, ...] = ()
    pens: tuple[PenStroke, ...] = ()

    @cached_property
    def _bboxes(self) -> dict[str, list[tuple[float, float, float, float]]]:
        def bb(p: np.ndarray) -> tuple[float, float, float, float]:
            lo, hi = p.min(axis=0), p.max(axis=0)
            return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

        return {
            "tissue": [bb(p) for p in self.tissue],
            "pen": [bb(s.polygon) for s in self.pens],
        }

    @cached_property
    def _keys(self) -> dict[str, int]:
        names = ("density", "nest", "thick", "lymph", "tumor", "spindle", "pen")
        return {n: _derive_key(self.seed, n) for n in names}

    @cached_property
    def _tex_offset(self) -> tuple[int, int]:
        rng = np.random.default_rng(_derive_key(self.seed, "texture-offset"))
        return int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20))

    def intersects_content(self, y0: float, x0: float, y1: float, x1: float) -> bool:
        """Whether the level-0 box [y0, y1) x [x0, x1) meets the bounding box of any tissue or pen stroke."""
        for by0, bx0, by1, bx1 in (*self._bboxes["tissue"], *self._bboxes["pen"]):
            if by0 < y1 and y0 <= by1 and bx0 < x1 and x0 <= bx1:
                return True
        return False


@dataclass(eq=False)
class SynthSlide:
    """One written synthetic slide.

    Attributes:
        path: the pyramidal TIFF.
        annotation_path: its ASAP XML ground truth, or None for a normal slide.
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel.
        label: ``"tumor"`` or ``"normal"``.
        regions: the annotations (tumours ``_0``, exclusions ``_2``), geometry in level-0 (y, x) pixels; empty
            for a normal slide.
        tissue: tissue-section outlines, (N, 2) (y, x) level-0 pixels.
        lesions: one entry per tumour polygon, in annotation order.
        seed: the slide seed.
        spec: the full description; ``render_region(slide, ...)`` redraws any window.
        pen_marks: outlines of the pen strokes, (N, 2) (y, x) level-0 pixels (empty unless asked for).
        level_shapes: (rows, cols) of every pyramid level, level 0 first.
    """

    path: Path
    annotation_path: Path | None
    height: int
    width: int
    mpp: float
    label: str
    regions: AnnotationSet
    tissue: list[np.ndarray]
    lesions: list[Lesion]
    seed: int
    spec: SlideSpec
    pen_marks: list[np.ndarray] = field(default_factory=list)
    level_shapes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_itc(self) -> int:
        """Number of tumour polygons that are isolated-tumour-cell clusters."""
        return sum(les.is_itc for les in self.lesions)


@dataclass(eq=False)
class WsiCohort:
    """A written synthetic cohort.

    Attributes:
        root: the directory holding the slides, their XML and ``slides.csv``.
        slides: every slide, tumour slides first.
        csv: path of ``slides.csv`` (columns slide, label, file, annotation, height, width, mpp, n_lesions,
            n_itc; file and annotation relative to ``root``, annotation empty for normal slides).
    """

    root: Path
    slides: list[SynthSlide]
    csv: Path

    @property
    def tumor_slides(self) -> list[SynthSlide]:
        """The slides labelled ``"tumor"``."""
        return [s for s in self.slides if s.label == TUMOR]

    @property
    def normal_slides(self) -> list[SynthSlide]:
        """The slides labelled ``"normal"``."""
        return [s for s in self.slides if s.label != TUMOR]


# ======================================================================================== hashing and noise

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_MASK64 = (1 << 64) - 1


def _derive_key(seed: int, name: str) -> int:
    """A 64-bit key from a seed and a name, stable across runs and platforms."""
    digest = hashlib.blake2b(f"{int(seed)}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _S30)
    x = x * _C1
    x = x ^ (x >> _S27)
    x = x * _C2
    return x ^ (x >> _S31)


def _hash2(key: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint64 hash of (key, a, b) for integer arrays a, b (broadcast)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    h = _mix64(a.astype(np.uint64) * _GOLD + np.uint64(key & _MASK64))
    h = _mix64(h ^ (b.astype(np.uint64) * _C1 + _GOLD))
    return np.atleast_1d(h)


def _uniform(h: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) float64 from a base hash and a salt."""
    x = _mix64(h + np.uint64((salt * 0x9E3779B97F4A7C15) & _MASK64))
    return (x >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def _smooth(f: np.ndarray) -> np.ndarray:
    return f * f * (3.0 - 2.0 * f)


def _noise_axis(coord: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    t = coord / scale
    i = np.floor(t).astype(np.int64)
    f = _smooth(t - i)
    lo = int(i.min())
    return i - lo, f, lo, int(i.max()) - lo + 2


def _noise_grid(key: int, ys: np.ndarray, xs: np.ndarray, scale: float) -> np.ndarray:
    """Value noise in [-1, 1] on the grid ys x xs (level-0 coordinates), lattice spacing ``scale``.

    Separable evaluation (element-wise only, so any window gives bit-identical values).
    """
    iy, fy, ly, ny = _noise_axis(ys, scale)
    ix, fx, lx, nx = _noise_axis(xs, scale)
    lat = _uniform(_hash2(key, np.arange(ly, ly + ny)[:, None], np.arange(lx, lx + nx)[None, :]), 0)
    lat = lat * 2.0 - 1.0
    rows = lat[iy] * (1.0 - fy)[:, None] + lat[iy + 1] * fy[:, None]
    return rows[:, ix] * (1.0 - fx)[None, :] + rows[:, ix + 1] * fx[None, :]


def _noise_points(key: int, py: np.ndarray, px: np.ndarray, scale: float) -> np.ndarray:
    """The same value noise as :func:`_noise_grid`, at scattered points."""
    ty, tx = py / scale, px / scale
    iy, ix = np.floor(ty).astype(np.int64), np.floor(tx).astype(np.int64)
    fy, fx = _smooth(ty - iy), _smooth(tx - ix)

    def lat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _uniform(_hash2(key, a, b), 0) * 2.0 - 1.0

    top = lat(iy, ix) * (1.0 - fx) + lat(iy, ix + 1) * fx
    bottom = lat(iy + 1, ix) * (1.0 - fx) + lat(iy + 1, ix + 1) * fx
    return top * (1.0 - fy) + bottom * fy


def _fbm_direct(key: int, ys: np.ndarray, xs: np.ndarray, scale: float, octaves: int, ds: float) -> np.ndarray:
    out = np.zeros((len(ys), len(xs)))
    total = 0.0
    for o in range(octaves):
        s, amp = scale / 2**o, 0.5**o
        total += amp
        weight = min(1.0, max(0.0, s / ds - 1.0))  # fade an octave out as its lattice nears pixel size
        if weight > 0:
            out += (amp * weight) * _noise_grid(key + o, ys, xs, s)
    return out / total


def _coarse_axis(coord: np.ndarray, ds: float, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = (coord / ds - 0.5) / step
    k = np.floor(t).astype(np.int64)
    lo = int(k.min())
    nodes = (np.arange(lo, int(k.max()) + 2) * step + 0.5) * ds
    return k - lo, (t - k).astype(np.float32), nodes


def _fbm_grid(key: int, ys: np.ndarray, xs: np.ndarray, scale: float, octaves: int, ds: float) -> np.ndarray:
    """Fractal value noise on a grid, normalised to about [-1, 1]; octaves finer than a pixel are left out.

    Smooth fields are evaluated on an absolute coarse grid (every 4th pixel of the level) and interpolated,
    so any window gives bit-identical values.
    """
    step = 4
    if scale / 2 ** (octaves - 1) < 16 * ds:
        return _fbm_direct(key, ys, xs, scale, octaves, ds).astype(np.float32)
    iy, fy, qy = _coarse_axis(ys, ds, step)
    ix, fx, qx = _coarse_axis(xs, ds, step)
    coarse = _fbm_direct(key, qy, qx, scale, octaves, ds).astype(np.float32)
    rows = coarse[iy] * (1.0 - fy)[:, None] + coarse[iy + 1] * fy[:, None]
    return rows[:, ix] * (1.0 - fx)[None, :] + rows[:, ix + 1] * fx[None, :]


def _fbm_points(key: int, py: np.ndarray, px: np.ndarray, scale: float, octaves: int) -> np.ndarray:
    """Fractal value noise at points, all octaves (independent of the level being drawn)."""
    out = np.zeros(py.shape)
    total = 0.0
    for o in range(octaves):
        s, amp = scale / 2**o, 0.5**o
        total += amp
        out += amp * _noise_points(key + o, py, px, s)
    return out / total


# =================================================================================== periodic textures


def _pyramid(tex: np.ndarray) -> tuple[np.ndarray, ...]:
    levels = [tex.astype(np.float32)]
    while levels[-1].shape[0] > 1:
        t = levels[-1]
        levels.append(t.reshape(t.shape[0] // 2, 2, t.shape[1] // 2, 2).mean(axis=(1, 3)))
    return tuple(levels)


def _periodic_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Periodic Gaussian-filtered white noise (sigma in px), unit deviation."""
    k2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2.0 * math.pi**2 * k2 * sigma**2))
    return f.real / f.real.std()


@lru_cache(maxsize=8)
def _fibre_texture(mpp: float) -> tuple[np.ndarray, ...]:
    """Periodic (1024 px) wavy collagen-fibre texture at level-0 resolution, zero mean, and its pyramid.

    Fibres about 1.5 um wide and tens of um long, bent by a smooth periodic displacement field.
    """
    from scipy import ndimage

    size = 1024
    rng = np.random.default_rng(20170308)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.fftfreq(size)[None, :]
    along, across = 9.0 / mpp, 0.7 / mpp
    g = np.exp(-2.0 * math.pi**2 * (ky**2 * across**2 + kx**2 * along**2))
    straight = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * g).real
    straight /= straight.std()
    amp = 45.0 / mpp
    dy = _periodic_field(rng, size, 70.0 / mpp) * amp
    dx = _periodic_field(rng, size, 70.0 / mpp) * amp
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    warped = ndimage.map_coordinates(straight, [yy + dy, xx + dx], order=1, mode="grid-wrap")
    fib = np.tanh(1.4 * warped)
    fib -= fib.mean()
    return _pyramid(fib / fib.std())


@lru_cache(maxsize=8)
def _grain_texture(mpp: float) -> tuple[np.ndarray, ...]:
    """Periodic (512 px) isotropic fine granular texture (about 1 um), zero mean, unit deviation."""
    size = 512
    rng = np.random.default_rng(20190101)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.fftfreq(size)[None, :]
    sigma = 0.5 / mpp
    g = np.exp(-2.0 * math.pi**2 * (kx**2 + ky**2) * sigma**2)
    tex = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * g).real
    tex -= tex.mean()
    return _pyramid(tex / tex.std())


def _sample_periodic(
    pyr: tuple[np.ndarray, ...], ys: np.ndarray, xs: np.ndarray, ds: float, offset: tuple[int, int]
) -> np.ndarray:
    """Sample a periodic texture pyramid at level-0 pixel centres ys x xs drawn at downsample ``ds``."""
    k = max(0, math.floor(math.log2(ds) + 1e-9))
    if k >= len(pyr) - 1:
        return np.zeros((len(ys), len(xs)), dtype=np.float32)
    tex = pyr[k]
    n = tex.shape[0]
    step = 2**k
    iy = (np.floor(ys / step).astype(np.int64) + offset[0] // step) % n
    ix = (np.floor(xs / step).astype(np.int64) + offset[1] // step) % n
    return tex[np.ix_(iy, ix)]


# ========================================================================================= polygon tools


def _dist_to_boundary(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance (level-0 px) from each (y, x) point to the nearest polygon edge."""
    a = poly
    ab = np.roll(poly, -1, axis=0) - a
    len2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    out = np.empty(len(points))
    for s in range(0, len(points), 512):
        p = points[s : s + 512]
        ap = p[:, None, :] - a[None, :, :]
        t = np.clip((ap * ab[None]).sum(axis=2) / len2[None], 0.0, 1.0)
        d = ap - t[..., None] * ab[None]
        out[s : s + 512] = np.sqrt((d**2).sum(axis=2)).min(axis=1)
    return out


def _extent(poly: np.ndarray) -> float:
    """Largest vertex-to-vertex distance (level-0 px)."""
    d = poly[:, None, :] - poly[None, :, :]
    return float(np.sqrt((d**2).sum(axis=2)).max())


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest edge-to-edge distance of two polygons (0 when they touch or overlap)."""
    if points_in_polygon(a, b).any() or points_in_polygon(b, a).any():
        return 0.0
    return float(min(_dist_to_boundary(a, b).min(), _dist_to_boundary(b, a).min()))


def _gap_at_least(a: np.ndarray, b: np.ndarray, distance: float) -> bool:
    """Whether two star-shaped polygons (about their vertex means) are at least ``distance`` apart."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    ra, rb = np.hypot(*(a - ca).T), np.hypot(*(b - cb).T)
    d = float(np.hypot(*(ca - cb)))
    if d - ra.max() - rb.max() >= distance:
        return True
    if d < ra.min() + rb.min():
        return False
    return _gap(a, b) >= distance


def _inside_with_margin(poly: np.ndarray, container: np.ndarray, margin: float) -> bool:
    """Whether a star-shaped polygon lies inside ``container`` at least ``margin`` from its edge."""
    c = poly.mean(axis=0)
    if not points_in_polygon(c[None], container)[0]:
        return False
    r = np.hypot(*(poly - c).T)
    d = float(_dist_to_boundary(c[None], container)[0])
    if d >= r.max() + margin:
        return True
    if d < r.min() + margin:
        return False
    return bool(points_in_polygon(poly, container).all() and _dist_to_boundary(poly, container).min() >= margin)


def _blob(
    rng: np.random.Generator,
    n: int,
    *,
    aspect: float,
    roughness: float,
    harmonics: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Radial profile of a smooth irregular blob of unit mean radius: (angles, radii)."""
    th = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    angle = rng.uniform(0.0, math.pi)
    a, b = math.sqrt(aspect), 1.0 / math.sqrt(aspect)
    ell = 1.0 / np.sqrt((np.cos(th - angle) / a) ** 2 + (np.sin(th - angle) / b) ** 2)
    wobble = np.ones(n)
    for k in range(2, harmonics + 1):
        wobble += roughness * rng.normal() / k**1.1 * np.cos(k * th + rng.uniform(0, 2 * math.pi))
    r = ell * np.clip(wobble, 0.55, None)
    return th, r


def _ring(centre: tuple[float, float], th: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.stack([centre[0] + r * np.sin(th), centre[1] + r * np.cos(th)], axis=1)


# ================================================================================================== layout


class _LayoutError(RuntimeError):
    pass


def _random_stain(rng: np.random.Generator) -> StainParams:
    def jitter(v: np.ndarray, s: float) -> np.ndarray:
        w = np.clip(v + rng.normal(0.0, s, 3), 0.05, None)
        return w / np.linalg.norm(w)

    base = 240.0 + rng.normal(0.0, 2.0)
    background = np.clip(base + rng.normal(0.0, 1.5, 3), 234.0, 246.0)
    return StainParams(
        hematoxylin=jitter(_H_REF, 0.04),
        eosin=jitter(_E_REF, 0.04),
        h_scale=float(rng.uniform(0.85, 1.15)),
        e_scale=float(rng.uniform(0.8, 1.2)),
        background=background,
    )


def _place_tissue(
    rng: np.random.Generator, height: int, width: int, mpp: float, fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    target = fraction * height * width
    margin = 0.04 * min(height, width)
    area_mm2 = target * mpp**2 * 1e-6
    n_max = int(rng.choice([1, 2, 2, 3]))
    n_max = min(n_max, 1 if area_mm2 < 2.0 else 2 if area_mm2 < 6.0 else 3)
    capsule = _CAPSULE_UM / mpp
    for n in range(n_max, 0, -1):
        shares = rng.uniform(0.4, 1.0, n)
        shares /= shares.sum()
        for _attempt in range(60):
            sections: list[np.ndarray] = []
            inners: list[np.ndarray] = []
            for share in sorted(shares, reverse=True):
                aspect = rng.uniform(1.1, 1.7) if fraction < 0.5 else rng.uniform(1.0, 1.25)
                th, r = _blob(rng, 256, aspect=aspect, roughness=0.12, harmonics=7)
                area1 = 0.5 * float(np.sum(r**2)) * (2 * math.pi / len(r))
                r = r * math.sqrt(share * target / area1)
                ok = False
                for _try in range(80):
                    ry, rx = float(np.abs(r * np.sin(th)).max()), float(np.abs(r * np.cos(th)).max())
                    if 2 * (ry + margin) > height or 2 * (rx + margin) > width:
                        break
                    centre = (
                        rng.uniform(ry + margin, height - ry - margin),
                        rng.uniform(rx + margin, width - rx - margin),
                    )
                    poly = _ring(centre, th, r)
                    gap = 0.08 * math.sqrt(target)
                    # separation checked on every 4th vertex (chord error << gap)
                    if all(_gap_at_least(poly[::4], other[::4], 1.05 * gap) for other in sections):
                        sections.append(poly)
                        inners.append(_ring(centre, th, np.maximum(r - capsule, 0.3 * r)))
                        ok = True
                        break
                if not ok:
                    break
            if len(sections) == n:
                return sections, inners
    raise _LayoutError(f"cannot fit tissue covering {fraction:.3f} of a {height} x {width} slide")


class _TumourPlacer:
    """Places tumour polygons inside tissue sections, clear of each other (level-0 px throughout)."""

    def __init__(self, rng: np.random.Generator, sections: list[np.ndarray], mpp: float, sep_um: float) -> None:
        self.rng = rng
        self.sections = sections
        self.um = 1.0 / mpp  # level-0 px per micrometre
        self.margin = 20.0 * self.um  # from the tissue edge
        self.sep = sep_um * self.um  # between unrelated tumours
        areas = np.array([polygon_area(sec) for sec in sections])
        self.probs = areas / areas.sum()
        self.tumours: list[np.ndarray] = []
        self.kinds: list[str] = []

    def shape(self, extent_um: float, roughness: float, n: int, aspect_max: float) -> np.ndarray:
        """A blob centred on (0, 0) whose longest extent is ``extent_um``."""
        aspect = self.rng.uniform(1.0, aspect_max)
        th, r = _blob(self.rng, n, aspect=aspect, roughness=roughness, harmonics=6)
        poly = _ring((0.0, 0.0), th, r)
        return poly * (extent_um * self.um / _extent(poly))

    def fits(self, poly: np.ndarray, section: np.ndarray) -> bool:
        if not _inside_with_margin(poly, section, self.margin):
            return False
        return all(_gap_at_least(poly, t, self.sep) for t in self.tumours)

    def section(self) -> np.ndarray:
        return self.sections[int(self.rng.choice(len(self.sections), p=self.probs))]

    def place(self, poly0: np.ndarray, section: np.ndarray, tries: int) -> np.ndarray | None:
        lo, hi = section.min(axis=0), section.max(axis=0)
        for _ in range(tries):
            c = self.rng.uniform(lo, hi)
            if points_in_polygon(c[None], section)[0] and self.fits(poly0 + c, section):
                return poly0 + c
        return None

    def add(self, poly: np.ndarray, kind: str) -> None:
        self.tumours.append(poly)
        self.kinds.append(kind)

    def pair(self, extent_um: float, gap_um: float, tries: int) -> bool:
        """Two tumours whose edges are ``gap_um`` apart (one lesion in the CAMELYON16 protocol)."""
        gap = gap_um * self.um
        for _ in range(tries):
            section = self.section()
            a = self.place(self.shape(extent_um, 0.12, 128, 1.4), section, tries=40)
            if a is None:
                continue
            b0 = self.shape(extent_um * self.rng.uniform(0.7, 1.0), 0.12, 128, 1.4) + a.mean(axis=0)
            phi = self.rng.uniform(0.0, 2 * math.pi)
            direction = np.array([math.sin(phi), math.cos(phi)])
            near, far = 0.0, 2.5 * extent_um * self.um + gap
            for _it in range(40):  # bisect the centre distance for the wanted edge gap
                mid = 0.5 * (near + far)
                if _gap(a, b0 + mid * direction) < gap:
                    near = mid
                else:
                    far = mid
            b = b0 + far * direction
            if self.fits(b, section) and 0 < _gap(a, b) < 0.9 * MERGE_DISTANCE_UM * self.um:
                self.add(a, "pair")
                self.add(b, "pair")
                return True
        return False


def _tumour_layout(
    rng: np.random.Generator, sections: list[np.ndarray], mpp: float
) -> tuple[list[np.ndarray], list[str], list[np.ndarray]]:
    """Tumour polygons, their kinds, and the exclusion polygons (inside the first, the macro-metastasis).

    Sizes scale with the largest tissue section (a macro-metastasis of up to 2 mm on big slides) and shrink
    step by step until everything fits: the macro-metastasis holding an exclusion region, a pair 25-60 um
    apart, one or two isolated-tumour-cell clusters (55-140 um), and up to two micro-metastases.
    """
    areas = [polygon_area(sec) for sec in sections]
    main = sections[int(np.argmax(areas))]
    size_um = math.sqrt(max(areas)) * mpp
    for shrink in (1.0, 0.85, 0.7, 0.55, 0.45, 0.35):
        placer = _TumourPlacer(rng, sections, mpp, sep_um=max(90.0, 150.0 * shrink))
        um = placer.um
        macro_um = float(np.clip(0.42 * size_um * shrink, 150.0, 2000.0))
        macro = placer.place(placer.shape(macro_um, 0.16, 192, 1.5), main, tries=200)
        if macro is None:
            continue
        placer.add(macro, "macro")
        exclusion = None
        for _ in range(100):
            ex = placer.shape(0.28 * macro_um, 0.1, 64, 1.4) + macro.mean(axis=0)
            ex = ex + rng.normal(0.0, 0.08 * macro_um * um, 2)
            if _inside_with_margin(ex, macro, 25.0 * um):
                exclusion = ex
                break
        pair_um = float(np.clip(0.2 * size_um * shrink, 110.0, 700.0))
        if exclusion is None or not placer.pair(pair_um, rng.uniform(25.0, 60.0), tries=60):
            continue
        n_itc = 0
        for _ in range(2):
            for _try in range(40):
                poly = placer.place(placer.shape(rng.uniform(55.0, 140.0), 0.1, 48, 1.5), placer.section(), 20)
                if poly is not None:
                    placer.add(poly, "itc")
                    n_itc += 1
                    break
        if n_itc == 0:
            continue
        for _ in range(int(rng.integers(0, 3))):
            extent = rng.uniform(220.0, max(260.0, 0.25 * size_um * shrink))
            poly = placer.place(placer.shape(extent, 0.14, 128, 1.6), placer.section(), tries=30)
            if poly is not None:
                placer.add(poly, "micro")
        return placer.tumours, placer.kinds, [exclusion]
    raise _LayoutError("the tissue is too small for the tumour layout (make the slide larger or mpp coarser)")


def _pen_layout(
    rng: np.random.Generator, height: int, width: int, mpp: float, sections: list[np.ndarray]
) -> list[PenStroke]:
    side = min(height, width)
    strokes: list[PenStroke] = []
    n_strokes = int(rng.integers(2, 4))
    colours = list(_PEN_INKS)
    for s in range(n_strokes):
        width_px = float(np.clip(0.025 * side * rng.uniform(0.7, 1.3), 12.0, 1600.0))
        clearance = 0.5 * width_px + max(60.0 / mpp, 0.02 * side)
        for _attempt in range(200):
            p = rng.uniform([width_px, width_px], [height - width_px, width - width_px])
            if min(_dist_to_boundary(p[None], sec)[0] for sec in sections) < clearance or any(
                points_in_polygon(p[None], sec)[0] for sec in sections
            ):
                continue
            heading = rng.uniform(0, 2 * math.pi)
            turn = rng.normal(0.0, 0.04)
            step = 0.4 * width_px
            length = rng.uniform(0.15, 0.35) * side
            path = [p]
            for _ in range(int(length / step)):
                turn = 0.8 * turn + rng.normal(0.0, 0.03)
                heading += float(np.clip(turn, -0.12, 0.12))
                q = path[-1] + step * np.array([math.sin(heading), math.cos(heading)])
                if not (width_px <= q[0] <= height - width_px and width_px <= q[1] <= width - width_px):
                    break
                if (
                    any(points_in_polygon(q[None], sec)[0] for sec in sections)
                    or min(_dist_to_boundary(q[None], sec)[0] for sec in sections) < clearance
                ):
                    break
                path.append(q)
            if len(path) < 6:
                continue
            line = np.array(path)
            tangent = np.gradient(line, axis=0)
            tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
            normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
            hw = 0.5 * width_px
            left, right = line + hw * normal, line - hw * normal
            cap_t = np.linspace(0.0, math.pi, 9)[1:-1]
            end_cap = line[-1] + hw * (np.cos(cap_t)[:, None] * normal[-1] + np.sin(cap_t)[:, None] * tangent[-1])
            start_cap = line[0] + hw * (np.cos(cap_t)[:, None] * (-normal[0]) - np.sin(cap_t)[:, None] * tangent[0])
            polygon = np.concatenate([left, end_cap, right[::-1], start_cap])
            if min(_dist_to_boundary(polygon, sec).min() for sec in sections) < 0.5 * clearance:
                continue
            strokes.append(PenStroke(polygon, line, width_px, colours[(s + int(rng.integers(0, 3))) % 3]))
            break
    if not strokes:
        raise _LayoutError("no room on the glass for pen marks")
    return strokes


def make_slide_spec(
    *,
    height: int,
    width: int,
    mpp: float = 0.5,
    seed: int = 0,
    tumor: bool = True,
    tissue_fraction: float = 0.4,
    pen_marks: bool = False,
    tile: int = 256,
) -> SlideSpec:
    """Lay out one synthetic slide (no pixels are drawn; see :func:`render_region`).

    Args:
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel (nuclei and lesions are sized in micrometres, so they scale with it).
        seed: everything derives from it; the same arguments give the same spec.
        tumor: lay out metastases (a macro-metastasis holding an exclusion region, a pair of tumours closer
            than 75 um, isolated-tumour-cell clusters, sometimes micro-metastases), all inside tissue.
        tissue_fraction: fraction of the slide area covered by tissue, in (0, 0.6].
        pen_marks: add two or three marker strokes on the glass, outside the tissue.
        tile: tile side in pixels, a multiple of 16 (the period of the background noise).

    Raises:
        ValueError: an argument is out of range, or the slide is too small for the tumour layout.
    """
    if int(height) != height or int(width) != width or height < 256 or width < 256:
        raise ValueError(f"height and width must be integers >= 256, got {height} x {width}")
    if not (math.isfinite(mpp) and 0.05 <= mpp <= 16.0):
        raise ValueError(f"mpp must be within [0.05, 16] microns per pixel, got {mpp!r}")
    if not (0.0 < tissue_fraction <= 0.6):
        raise ValueError(f"tissue_fraction must be in (0, 0.6], got {tissue_fraction!r}")
    if int(tile) != tile or tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile!r}")
    height, width, tile = int(height), int(width), int(tile)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & _MASK64, 0x5EED]))
    stain = _random_stain(rng)
    tumours: list[np.ndarray] = []
    kinds: list[str] = []
    exclusions: list[np.ndarray] = []
    pens: list[PenStroke] = []
    for _attempt in range(4):
        try:
            sections, inners = _place_tissue(rng, height, width, mpp, tissue_fraction)
            if tumor:
                tumours, kinds, exclusions = _tumour_layout(rng, sections, mpp)
            if pen_marks:
                pens = _pen_layout(rng, height, width, mpp, sections)
            break
        except _LayoutError as err:
            last = err
    else:
        raise ValueError(f"{height} x {width} px at {mpp} um/px: {last}")
    return SlideSpec(
        height=height,
        width=width,
        mpp=float(mpp),
        seed=int(seed),
        tile=tile,
        stain=stain,
        tissue=tuple(sections),
        tissue_inner=tuple(inners),
        tumors=tuple(tumours),
        tumor_kinds=tuple(kinds),
        exclusions=tuple(exclusions),
        pens=tuple(pens),
    )


def _lesions(spec: SlideSpec, kinds: Sequence[str]) -> list[Lesion]:
    um = 1.0 / spec.mpp
    n = len(spec.tumors)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if _gap(spec.tumors[i], spec.tumors[j]) < MERGE_DISTANCE_UM * um:
                parent[find(i)] = find(j)
    roots: dict[int, int] = {}
    out = []
    for i, poly in enumerate(spec.tumors):
        group = roots.setdefault(find(i), len(roots))
        extent = _extent(poly) * spec.mpp
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        out.append(
            Lesion(
                name=f"Annotation {i}",
                kind=kinds[i],
                centre=(float(poly[:, 0].mean()), float(poly[:, 1].mean())),
                bbox=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                extent_um=extent,
                area_um2=polygon_area(poly) * spec.mpp**2,
                is_itc=extent < ITC_MAX_EXTENT_UM,
                merge_group=group,
                has_exclusion=any(points_in_polygon(e, poly).all() for e in spec.exclusions),
            )
        )
    return out


def _annotations(spec: SlideSpec) -> AnnotationSet:
    regions = [Region(p, label=TUMOR, name=f"Annotation {i}", group="_0") for i, p in enumerate(spec.tumors)]
    k = len(regions)
    regions += [
        Region(p, label=EXCLUSION, name=f"Annotation {k + i}", group="_2") for i, p in enumerate(spec.exclusions)
    ]
    return AnnotationSet(regions)


# ========================================================================================= nucleus banks


@dataclass(frozen=True)
class _Bank:
    """Pre-drawn nuclei (or cells) at one pixel size: concentration templates centred in an odd box."""

    templates: np.ndarray  # (n, S, S) float32 hematoxylin concentration (peak about 1)
    body: np.ndarray  # (n, S, S) float32 fraction of the pixel the nucleus covers (0..1)
    half: int  # S // 2


def _render_templates(kind: str, px_um: float, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng({"lymph": 11, "tumor": 12, "spindle": 13}[kind])
    max_r = {"lymph": 4.6, "tumor": 11.5, "spindle": 5.5}[kind]
    half = math.ceil(max_r / px_um) + 1
    size = 2 * half + 1
    ss = max(1, min(4, math.ceil(px_um / 0.2)))  # supersampling: drawing grid of <= 0.2 um (0.5 coarse)
    fine = (np.arange(size * ss) + 0.5) / ss - size / 2.0  # in pixels, centre at 0
    yy, xx = np.meshgrid(fine * px_um, fine * px_um, indexing="ij")  # micrometres
    out = np.zeros((n, size, size), dtype=np.float32)
    cover = np.zeros((n, size, size), dtype=np.float32)
    k_eff = 1.2  # transmission-preserving average: c = -log(mean(exp(-k c_fine))) / k
    for i in range(n):
        ang = rng.uniform(0, math.pi)
        u = xx * math.cos(ang) + yy * math.sin(ang)
        v = -xx * math.sin(ang) + yy * math.cos(ang)
        th = np.arctan2(v, u)
        if kind == "lymph":
            a = rng.uniform(3.0, 4.0)
            b = a * rng.uniform(0.85, 1.0)
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.06))
            clumps = np.zeros_like(u)
            for _ in range(6):
                cy, cx = rng.uniform(-0.6, 0.6, 2) * a
                clumps += np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * 0.7**2))
            c = body * (0.78 + 0.18 * np.tanh(clumps) + 0.12 * np.clip(rho, 0, 1) ** 4)
        elif kind == "spindle":
            a = rng.uniform(4.0, 5.5)
            b = rng.uniform(1.1, 1.8)
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.08))
            c = 0.85 * body
        else:
            a = rng.uniform(5.0, 9.0)
            b = a * rng.uniform(0.6, 0.95)
            wob = np.ones_like(th)
            for k in range(2, 6):
                wob += rng.uniform(0.0, 0.07) * np.cos(k * th + rng.uniform(0, 2 * math.pi))
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wob
            body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.035))
            rim_w = rng.uniform(0.6, 1.0) / a
            rim = np.exp(-(((rho - 1.0 + rim_w) / rim_w) ** 2))
            inner = rng.uniform(0.26, 0.44)
            gran = np.zeros_like(u)
            for _ in range(int(rng.integers(10, 22))):
                cy, cx = rng.uniform(-0.75, 0.75, 2) * np.array([b, a])
                gran += np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * rng.uniform(0.35, 0.6) ** 2))
            nucleolus = np.zeros_like(u)
            for _ in range(int(rng.choice([1, 1, 1, 2]))):
                cy, cx = rng.uniform(-0.35, 0.35, 2) * np.array([b, a])
                rn = rng.uniform(0.7, 1.2)
                nucleolus += 1.0 / (1.0 + np.exp((np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - rn) / 0.12))
            c = body * (inner + 0.32 * np.tanh(gran) + rng.uniform(0.4, 0.65) * rim + 0.85 * np.clip(nucleolus, 0, 1))
        t = np.exp(-k_eff * c).reshape(size, ss, size, ss).mean(axis=(1, 3))
        out[i] = (-np.log(t) / k_eff).astype(np.float32)
        cover[i] = body.reshape(size, ss, size, ss).mean(axis=(1, 3))
    return out, cover, half


@lru_cache(maxsize=48)
def _bank(kind: str, px_um: float) -> _Bank:
    n = {"lymph": 48, "tumor": 96, "spindle": 24}[kind]
    templates, body, half = _render_templates(kind, px_um, n)
    return _Bank(templates, body, half)


@lru_cache(maxsize=64)
def _deficit_table(kind: str, mpp: float, od: tuple[float, float, float]) -> np.ndarray:
    """(n, 3) light lost per template at level 0, in level-0 px² per channel, for per-unit intensity OD."""
    t = _bank(kind, mpp).templates.astype(np.float64)
    odv = np.array(od)
    return (1.0 - np.exp(-t[..., None] * odv)).sum(axis=(1, 2))


# =============================================================================================== rendering


@dataclass
class _Frame:
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


_Box = tuple[float, float, float, float]  # level-0 (y0, y1, x0, x1)
_LATTICE_ROWS_PER_CHUNK = 64


def _mask_box(frame: _Frame, mask: np.ndarray) -> _Box | None:
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


def _lattice_chunks(
    key: int, spacing: float, jitter: float, frame: _Frame, box: _Box, margin: float
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Jittered lattice points that may reach into ``box``: chunks of (cy, cx, base hash), row-major.

    Lattice site (gy, gx) holds one point at ``(g + 0.5 + jitter * U(-1, 1)) * spacing`` (level-0 px), keyed by
    a hash of (key, gy, gx), so every window sees the same points. ``margin`` (level-0 px) is how far a nucleus
    reaches; at least 4 output pixels are added (the blur of splatted nuclei). Chunks are blocks of
    ``_LATTICE_ROWS_PER_CHUNK`` absolute lattice rows, so memory is bounded and sums keep their order.
    """
    margin = max(margin, 4.0 * frame.ds)
    y_lo, y_hi = box[0] - margin, box[1] + margin
    x_lo, x_hi = box[2] - margin, box[3] + margin
    gy0, gy1 = math.floor(y_lo / spacing) - 1, math.floor(y_hi / spacing) + 1
    gx = np.arange(math.floor(x_lo / spacing) - 1, math.floor(x_hi / spacing) + 1)
    block = _LATTICE_ROWS_PER_CHUNK
    for start in range(gy0 - gy0 % block, gy1, block):
        gy = np.arange(max(start, gy0), min(start + block, gy1))
        if gy.size == 0:
            continue
        gyy, gxx = np.meshgrid(gy, gx, indexing="ij")
        gyy, gxx = gyy.ravel(), gxx.ravel()
        h = _hash2(key, gyy, gxx)
        cy = (gyy + 0.5 + jitter * (2.0 * _uniform(h, 1) - 1.0)) * spacing
        cx = (gxx + 0.5 + jitter * (2.0 * _uniform(h, 2) - 1.0)) * spacing
        inside = (cy >= y_lo) & (cy < y_hi) & (cx >= x_lo) & (cx < x_hi)
        if inside.any():
            yield cy[inside], cx[inside], h[inside]


class _NucleusCanvas:
    """Accumulates nuclei of one kind over a frame.

    Fine levels stamp pre-drawn templates (hematoxylin concentration); coarse levels (pixels over
    ``_STAMP_MAX_PX_UM``) splat each nucleus's light loss into its pixel and blur it over the footprint.
    With ``cover`` it also records the fraction of each pixel the nuclei cover.
    """

    _SPLAT_MARGIN = 3

    def __init__(self, kind: str, frame: _Frame, od: np.ndarray, cover: bool = False) -> None:
        self.kind, self.frame, self.cover = kind, frame, cover
        h, w = frame.shape
        if frame.stamp:
            self.bank = _bank(kind, round(frame.px_um, 6))
            s = self.bank.half
            self.pad = 2 * s  # canvas = output + 2s on every side; a template's corner lands at +s
            size = 2 * s + 1
            self.canvas_shape = (h + 4 * s, w + 4 * s)
            oy, ox = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            self.offsets = (oy * self.canvas_shape[1] + ox).ravel()
            n_channels = 2 if cover else 1
        else:
            m = self._SPLAT_MARGIN
            self.pad = m
            self.canvas_shape = (h + 2 * m, w + 2 * m)
            base = _bank(kind, round(frame.mpp, 6))
            table = _deficit_table(kind, round(frame.mpp, 6), tuple(float(v) for v in od))
            if cover:
                table = np.concatenate([table, base.body.sum(axis=(1, 2), dtype=np.float64)[:, None]], axis=1)
            self.table = table / frame.ds**2
            n_channels = self.table.shape[1]
        self.acc = np.zeros((n_channels, self.canvas_shape[0] * self.canvas_shape[1]))

    def add(self, cy: np.ndarray, cx: np.ndarray, variant: np.ndarray, intensity: np.ndarray) -> None:
        """Add nuclei centred at level-0 (cy, cx) with template index ``variant`` and ``intensity``."""
        frame = self.frame
        h, w = frame.shape
        y0 = frame.ys[0] - frame.ds / 2
        x0 = frame.xs[0] - frame.ds / 2
        pi = np.rint((cy - y0) / frame.ds - 0.5).astype(np.int64)
        pj = np.rint((cx - x0) / frame.ds - 0.5).astype(np.int64)
        wc = self.canvas_shape[1]
        n = self.acc.shape[1]
        if frame.stamp:
            s = self.bank.half
            keep = (pi >= -s) & (pi < h + s) & (pj >= -s) & (pj < w + s)
            if not keep.any():
                return
            pi, pj, variant, intensity = pi[keep], pj[keep], variant[keep], intensity[keep]
            idx = (((pi + s) * wc + (pj + s))[:, None] + self.offsets[None, :]).ravel()
            weights = self.bank.templates[variant].reshape(len(variant), -1) * intensity[:, None]
            self.acc[0] += np.bincount(idx, weights.ravel(), minlength=n)
            if self.cover:
                self.acc[1] += np.bincount(idx, self.bank.body[variant].ravel(), minlength=n)
            return
        m = self._SPLAT_MARGIN
        keep = (pi >= -m) & (pi < h + m) & (pj >= -m) & (pj < w + m)
        if not keep.any():
            return
        flat = (pi[keep] + m) * wc + pj[keep] + m
        per_nucleus = self.table[variant[keep]]
        per_nucleus[:, :3] *= intensity[keep, None]
        for ch in range(self.acc.shape[0]):
            self.acc[ch] += np.bincount(flat, per_nucleus[:, ch], minlength=n)

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(h, w) hematoxylin concentration (stamped) or (h, w, 3) light lost (splatted), and the cover."""
        h, w = self.frame.shape
        p = self.pad
        planes = self.acc.reshape(-1, *self.canvas_shape)
        if not self.frame.stamp:
            from scipy import ndimage

            sigma = min(0.7, 0.6 * _NUCLEUS_RADIUS_UM[self.kind] / self.frame.px_um)
            planes = np.stack(
                [ndimage.gaussian_filter(c, sigma, truncate=(p - 0.01) / sigma, mode="constant") for c in planes]
            )
        planes = planes[:, p : p + h, p : p + w].astype(np.float32)
        cover = planes[-1] if self.cover else None
        if self.frame.stamp:
            return planes[0], cover
        return np.moveaxis(planes[:3], 0, -1).copy(), cover


class _Layers:
    """Hematoxylin / eosin concentrations and splatted light loss of one tissue compartment over a frame."""

    def __init__(self, shape: tuple[int, int], stamp: bool) -> None:
        self.h = np.zeros(shape, dtype=np.float32)
        self.e = np.zeros(shape, dtype=np.float32)
        self.deficit = None if stamp else np.zeros((*shape, 3), dtype=np.float32)

    def add_nuclei(self, layer: np.ndarray) -> None:
        if layer.ndim == 2:
            self.h += layer
        else:
            assert self.deficit is not None
            self.deficit += layer


def _lymph_nuclei(spec: SlideSpec, frame: _Frame, box: _Box, od: np.ndarray, where: str) -> np.ndarray:
    """Lymphocytes: dense in the parenchyma (``"normal"``), a few in tumour septa (``"til"``)."""
    canvas = _NucleusCanvas("lymph", frame, od)
    n = _bank("lymph", round(spec.mpp, 6)).templates.shape[0]
    spacing = _LYMPH_SPACING_UM / spec.mpp
    for cy, cx, hsh in _lattice_chunks(spec._keys["lymph"], spacing, 0.42, frame, box, 5.0 / spec.mpp):
        dens = _density_points(spec, cy, cx)
        u = _uniform(hsh, 3)
        keep = u < dens if where == "normal" else u < 0.06 * (1.0 - dens)
        variant = (_uniform(hsh, 4) * n).astype(np.int64)[keep]
        intensity = (1.28 * (0.85 + 0.3 * _uniform(hsh, 5)))[keep]
        canvas.add(cy[keep], cx[keep], variant, intensity)
    return canvas.result()[0]


def _spindle_nuclei(spec: SlideSpec, frame: _Frame, box: _Box, od: np.ndarray, where: str) -> np.ndarray:
    """Fibroblast / endothelial nuclei: many in capsule and septa (``"capsule"``), few between lymphocytes."""
    canvas = _NucleusCanvas("spindle", frame, od)
    n = _bank("spindle", round(spec.mpp, 6)).templates.shape[0]
    spacing = _SPINDLE_SPACING_UM / spec.mpp
    for cy, cx, hsh in _lattice_chunks(spec._keys["spindle"], spacing, 0.45, frame, box, 7.0 / spec.mpp):
        u = _uniform(hsh, 3)
        if where == "capsule":
            keep = u < 0.45
        else:
            keep = u < 0.05 + 0.45 * (1.0 - _density_points(spec, cy, cx))
        variant = (_uniform(hsh, 4) * n).astype(np.int64)[keep]
        intensity = (1.7 * (0.85 + 0.3 * _uniform(hsh, 5)))[keep]
        canvas.add(cy[keep], cx[keep], variant, intensity)
    return canvas.result()[0]


def _tumour_nuclei(spec: SlideSpec, frame: _Frame, box: _Box, od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Large vesicular tumour nuclei, one per tumour-lattice cell inside a nest, and their cover."""
    canvas = _NucleusCanvas("tumor", frame, od, cover=True)
    n = _bank("tumor", round(spec.mpp, 6)).templates.shape[0]
    spacing = _TUMOR_SPACING_UM / spec.mpp
    # a nucleus sits up to 0.15 spacing off its cell centre and reaches 11.5 um beyond its own centre
    for cy, cx, hsh in _lattice_chunks(spec._keys["tumor"], spacing, 0.3, frame, box, 15.0 / spec.mpp):
        keep = (_nest_points(spec, cy, cx) > _NEST_THRESHOLD + 0.02) & (_uniform(hsh, 3) < 0.96)
        ny = cy + 0.15 * spacing * (2.0 * _uniform(hsh, 5) - 1.0)
        nx = cx + 0.15 * spacing * (2.0 * _uniform(hsh, 6) - 1.0)
        variant = (_uniform(hsh, 4) * n).astype(np.int64)
        intensity = 1.85 * (0.8 + 0.4 * _uniform(hsh, 8))
        canvas.add(ny[keep], nx[keep], variant[keep], intensity[keep])
    nuclei, cover = canvas.result()
    assert cover is not None
    return nuclei, cover


def _density_points(spec: SlideSpec, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Probability that a lymphocyte lattice site holds a cell (follicles dense, sinuses sparse)."""
    d = _fbm_points(spec._keys["density"], py, px, 260.0 / spec.mpp, 4)
    return np.clip(0.84 + 0.95 * d, 0.12, 0.98)


def _density_grid(spec: SlideSpec, frame: _Frame) -> np.ndarray:
    d = _fbm_grid(spec._keys["density"], frame.ys, frame.xs, 260.0 / spec.mpp, 4, frame.ds)
    return np.clip(0.84 + 0.95 * d, 0.12, 0.98).astype(np.float32)


_NEST_THRESHOLD = -0.3
_CLEFT_WIDTH = 0.025


def _nest_points(spec: SlideSpec, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    return _fbm_points(spec._keys["nest"], py, px, 110.0 / spec.mpp, 3)


def _nest_grid(spec: SlideSpec, frame: _Frame) -> np.ndarray:
    return _fbm_grid(spec._keys["nest"], frame.ys, frame.xs, 110.0 / spec.mpp, 3, frame.ds)


def _normal_tissue(spec: SlideSpec, frame: _Frame, box: _Box, capsule: np.ndarray, od_h: np.ndarray) -> _Layers:
    """Lymph-node parenchyma (lymphocyte sheets over pale stroma) and, where ``capsule``, fibrous capsule.

    Only pixels inside ``box`` (level-0 bounds of the normal tissue in the frame) are complete.
    """
    out = _Layers(frame.shape, frame.stamp)
    fib = _sample_periodic(_fibre_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    grain = _sample_periodic(_grain_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    dens = _density_grid(spec, frame)
    sparse = 1.0 - dens
    paren_e = 0.32 + 0.34 * sparse + (0.03 + 0.16 * sparse) * fib + 0.04 * grain
    paren_h = 0.12 + 0.04 * grain
    lymph = _lymph_nuclei(spec, frame, box, od_h, "normal")
    spindle = _spindle_nuclei(spec, frame, box, od_h, "stroma")
    capsule_box = _mask_box(frame, capsule)
    if capsule_box is not None:
        caps_e = 0.58 + 0.17 * fib + 0.03 * grain
        caps_h = np.float32(0.07)
        out.e[:] = np.where(capsule, caps_e, paren_e)
        out.h[:] = np.where(capsule, caps_h, paren_h)
        caps_spindle = _spindle_nuclei(spec, frame, capsule_box, od_h, "capsule")
        m = capsule if lymph.ndim == 2 else capsule[..., None]
        out.add_nuclei(np.where(m, caps_spindle, lymph + spindle))
    else:
        out.e[:] = paren_e
        out.h[:] = paren_h
        out.add_nuclei(lymph + spindle)
    return out


def _voronoi(spec: SlideSpec, frame: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """Cell borders (0..1, 1 on a border) and a per-cell tint (-1..1) of the tumour cell lattice at pixels.

    The cells are the Voronoi regions of the jittered tumour lattice; with jitter <= 0.3 of the spacing the
    nearest and second-nearest centres of a point are among the 3 x 3 lattice sites around it.
    """
    spacing = _TUMOR_SPACING_UM / spec.mpp
    key = spec._keys["tumor"]
    gy = np.floor(frame.ys / spacing).astype(np.int64)
    gx = np.floor(frame.xs / spacing).astype(np.int64)
    ly, lx = int(gy.min()) - 1, int(gx.min()) - 1
    ny, nx = int(gy.max()) - ly + 2, int(gx.max()) - lx + 2
    gyy, gxx = np.meshgrid(np.arange(ly, ly + ny), np.arange(lx, lx + nx), indexing="ij")
    h = _hash2(key, gyy.ravel(), gxx.ravel())
    cyl = ((gyy.ravel() + 0.5 + 0.3 * (2.0 * _uniform(h, 1) - 1.0)) * spacing).reshape(ny, nx)
    cxl = ((gxx.ravel() + 0.5 + 0.3 * (2.0 * _uniform(h, 2) - 1.0)) * spacing).reshape(ny, nx)
    tint_l = (2.0 * _uniform(h, 7) - 1.0).reshape(ny, nx).astype(np.float32)
    iy0, ix0 = gy - ly, gx - lx
    first = np.full(frame.shape, np.inf, dtype=np.float32)
    second = np.full(frame.shape, np.inf, dtype=np.float32)
    nearest = np.zeros(frame.shape, dtype=np.int8)
    ys32 = frame.ys.astype(np.float64)[:, None]
    xs32 = frame.xs.astype(np.float64)[None, :]
    k = 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ddy = (np.take(cyl, iy0 + dy, axis=0) - ys32).astype(np.float32).take(ix0 + dx, axis=1)
            ddx = (np.take(cxl, ix0 + dx, axis=1) - xs32).astype(np.float32).take(iy0 + dy, axis=0)
            d = ddy * ddy + ddx * ddx
            np.minimum(second, np.maximum(first, d), out=second)
            closer = d < first
            nearest[closer] = k
            np.minimum(first, d, out=first)
            k += 1
    d1, d2 = np.sqrt(first), np.sqrt(second)
    tint = tint_l[iy0[:, None] + nearest // 3 - 1, ix0[None, :] + nearest % 3 - 1]
    width = max(0.45 / spec.mpp, 0.5 * frame.ds)
    border = np.exp(-np.square((d2 - d1) / np.float32(width))) * np.float32(
        min(1.0, 0.45 / (spec.mpp * frame.ds * 0.5))
    )
    return border, tint


def _tumour_tissue(spec: SlideSpec, frame: _Frame, box: _Box, od_h: np.ndarray) -> _Layers:
    """Carcinoma: nests of large vesicular cells with cytoplasm and borders, stromal septa, retraction clefts.

    Only pixels inside ``box`` (level-0 bounds of the tumour in the frame) are complete.
    """
    out = _Layers(frame.shape, frame.stamp)
    fib = _sample_periodic(_fibre_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    grain = _sample_periodic(_grain_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    nest_f = _nest_grid(spec, frame)
    nest = nest_f > _NEST_THRESHOLD
    cleft = (~nest) & (nest_f > _NEST_THRESHOLD - _CLEFT_WIDTH)
    if frame.stamp:
        border, tint = _voronoi(spec, frame)
    else:
        border, tint = np.float32(0.0), np.float32(0.0)
    cyto_e = 0.50 * (1.0 + 0.12 * tint) + 0.30 * border + 0.06 * grain
    cyto_h = 0.56 * (1.0 - 0.1 * tint) + 0.10 * border + 0.03 * grain
    septa_e = 0.50 + 0.17 * fib + 0.03 * grain
    out.e[:] = np.where(nest, cyto_e, np.where(cleft, 0.05, septa_e))
    out.h[:] = np.where(nest, cyto_h, np.where(cleft, 0.02, 0.12))
    cells, covered = _tumour_nuclei(spec, frame, box, od_h)
    covered = np.minimum(covered, 1.0)  # nuclei displace the cytoplasm they cover
    out.e[:] = np.where(nest, out.e * (1.0 - 0.85 * covered), out.e)
    out.h[:] = np.where(nest, out.h * (1.0 - covered), out.h)
    lymph = _lymph_nuclei(spec, frame, box, od_h, "til")
    spindle = _spindle_nuclei(spec, frame, box, od_h, "capsule")
    m = nest if cells.ndim == 2 else nest[..., None]
    out.add_nuclei(np.where(m, cells, lymph + spindle))
    return out


def _polygon_mask(poly: np.ndarray, frame: _Frame) -> np.ndarray:
    """Which of the frame's pixel centres lie inside ``poly``: exactly ``AnnotationSet.rasterize`` of it."""
    return fill_polygon(poly, frame.shape, frame.ds, frame.origin)


def _label_frame(spec: SlideSpec, frame: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8, LABEL_*) and the capsule mask at the frame's pixel centres."""
    labels = np.zeros(frame.shape, dtype=np.uint8)
    capsule = np.zeros(frame.shape, dtype=bool)
    for poly, inner in zip(spec.tissue, spec.tissue_inner, strict=True):
        m = _polygon_mask(poly, frame)
        if m.any():
            labels[m] = LABEL_NORMAL
            capsule |= m & ~_polygon_mask(inner, frame)
    if spec.tumors and labels.any():
        tum = np.zeros(frame.shape, dtype=bool)
        for poly in spec.tumors:
            tum |= _polygon_mask(poly, frame)
        for poly in spec.exclusions:
            tum &= ~_polygon_mask(poly, frame)
        labels[tum] = LABEL_TUMOR
    for stroke in spec.pens:
        m = _polygon_mask(stroke.polygon, frame)
        labels[m & (labels == LABEL_BACKGROUND)] = LABEL_PEN
    return labels, capsule


@lru_cache(maxsize=16)
def _background_noise(seed: int, tile: int) -> np.ndarray:
    """(tile, tile, 3) float32 faint glass noise, periodic with the tile."""
    rng = np.random.default_rng(_derive_key(seed, "glass"))
    base = rng.normal(0.0, 1.0, (tile, tile, 1)) * 0.8 + rng.normal(0.0, 1.0, (tile, tile, 3)) * 0.5
    return base.astype(np.float32)


def _frame(spec: SlideSpec, y0: float, x0: float, h: int, w: int, downsample: float) -> _Frame:
    ds = float(downsample)
    ys = y0 + (np.arange(h) + 0.5) * ds
    xs = x0 + (np.arange(w) + 0.5) * ds
    return _Frame(ys, xs, ds, spec.mpp, (float(y0), float(x0)))


def _check_window(h: int, w: int, downsample: float) -> None:
    if int(h) != h or int(w) != w or h <= 0 or w <= 0:
        raise ValueError(f"h and w must be positive integers, got {h} x {w}")
    if not (math.isfinite(downsample) and downsample >= 1):
        raise ValueError(f"downsample must be a finite number >= 1, got {downsample!r}")


def _as_spec(slide: SlideSpec | SynthSlide) -> SlideSpec:
    return slide.spec if isinstance(slide, SynthSlide) else slide


def label_region(
    slide: SlideSpec | SynthSlide, y0: float, x0: float, h: int, w: int, downsample: float = 1
) -> np.ndarray:
    """What each pixel of a window is: LABEL_BACKGROUND, LABEL_NORMAL, LABEL_TUMOR or LABEL_PEN (uint8).

    Args:
        slide: a spec or a written slide.
        y0, x0: level-0 (row, col) of the window's top-left corner.
        h, w: window size in output pixels (rows, cols).
        downsample: level-0 pixels per output pixel; output pixel (i, j) is decided at its centre
            ``(y0 + (i + 0.5) * downsample, x0 + (j + 0.5) * downsample)``.

    The tumour label equals ``slide.regions.rasterize((h, w), downsample, origin=(y0, x0))`` pixel for pixel.
    """
    _check_window(h, w, downsample)
    spec = _as_spec(slide)
    return _label_frame(spec, _frame(spec, y0, x0, int(h), int(w), downsample))[0]


def render_region(
    slide: SlideSpec | SynthSlide, y0: float, x0: float, h: int, w: int, downsample: float = 1
) -> np.ndarray:
    """Draw a window of the slide: uint8 RGB array of shape (h, w, 3).

    Args:
        slide: a spec or a written slide.
        y0, x0: level-0 (row, col) of the window's top-left corner.
        h, w: window size in output pixels (rows, cols).
        downsample: level-0 pixels per output pixel (1 = level 0; the pyramid uses 2, 4, 8, ...). Output pixel
            (i, j) covers level-0 ``[y0 + i*ds, y0 + (i+1)*ds) x [x0 + j*ds, x0 + (j+1)*ds)``.

    The same pixel comes out whatever window it is drawn in, so tiles join without seams. Level-k tile
    (ty, tx) of the written TIFF is ``render_region(slide, ty*T*2**k, tx*T*2**k, T, T, 2**k)`` before JPEG.
    """
    _check_window(h, w, downsample)
    spec = _as_spec(slide)
    frame = _frame(spec, y0, x0, int(h), int(w), downsample)
    return _render_frame(spec, frame, None)


def _render_frame(spec: SlideSpec, frame: _Frame, labels_capsule: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    labels, capsule = labels_capsule if labels_capsule is not None else _label_frame(spec, frame)
    h, w = frame.shape
    noise_tex = _background_noise(spec.seed, spec.tile)
    t = spec.tile
    step = 2 ** math.floor(max(0.0, math.log2(frame.ds)) + 1e-9)
    iy = np.floor(frame.ys / step).astype(np.int64) % t
    ix = np.floor(frame.xs / step).astype(np.int64) % t
    if h == t and w == t and iy[0] == 0 and ix[0] == 0 and iy[-1] == t - 1 and ix[-1] == t - 1:
        noise = noise_tex  # a whole, aligned tile
    else:
        noise = noise_tex[np.ix_(iy, ix)]
    bg = spec.stain.background.astype(np.float32)
    if not labels.any():
        rgb = bg + noise
    else:
        tissue = (labels == LABEL_NORMAL) | (labels == LABEL_TUMOR)
        if tissue.any():
            rgb = _tissue_transmission(spec, frame, labels, capsule)
        else:
            rgb = np.ones((h, w, 3), dtype=np.float32)
        pen = labels == LABEL_PEN
        if pen.any():
            rgb[pen] = _pen_transmission(spec, frame)[pen]
        rgb *= bg
        rgb += noise * np.where(tissue, np.float32(2.5), np.float32(1.0))[..., None]
    rgb += np.float32(0.5)
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


def _tissue_transmission(spec: SlideSpec, frame: _Frame, labels: np.ndarray, capsule: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 fraction of light transmitted by the tissue (1 where there is none)."""
    st = spec.stain
    od_h = (st.hematoxylin * st.h_scale).astype(np.float64)
    h_conc = np.zeros(frame.shape, dtype=np.float32)
    e_conc = np.zeros(frame.shape, dtype=np.float32)
    deficit = None if frame.stamp else np.zeros((*frame.shape, 3), dtype=np.float32)
    for value in (LABEL_NORMAL, LABEL_TUMOR):
        mask = labels == value
        box = _mask_box(frame, mask)
        if box is None:
            continue
        if value == LABEL_NORMAL:
            layers = _normal_tissue(spec, frame, box, capsule, od_h)
        else:
            layers = _tumour_tissue(spec, frame, box, od_h)
        if mask.all():
            h_conc, e_conc, deficit = layers.h, layers.e, layers.deficit
            break
        np.copyto(h_conc, layers.h, where=mask)
        np.copyto(e_conc, layers.e, where=mask)
        if deficit is not None and layers.deficit is not None:
            np.copyto(deficit, layers.deficit, where=mask[..., None])
    thick = _fbm_grid(spec._keys["thick"], frame.ys, frame.xs, 700.0 / spec.mpp, 2, frame.ds)
    thick = (1.0 + 0.10 * thick).astype(np.float32)
    h_conc *= thick
    e_conc *= thick
    od_e = (st.eosin * st.e_scale).astype(np.float32)
    od = h_conc[..., None] * od_h.astype(np.float32)
    od += e_conc[..., None] * od_e
    if deficit is not None:  # coarse levels: splatted nuclei, overlap between independent (1-D) and Poisson
        od += np.float32(1.2) * deficit * thick[..., None]
    return np.exp(-od, out=od)


def _pen_transmission(spec: SlideSpec, frame: _Frame) -> np.ndarray:
    out = np.ones((*frame.shape, 3), dtype=np.float32)
    streak = _fbm_grid(spec._keys["pen"], frame.ys, frame.xs, 40.0 / spec.mpp, 3, frame.ds)
    power = (1.0 + 0.18 * streak).astype(np.float32)[..., None]
    for stroke in spec.pens:
        m = _polygon_mask(stroke.polygon, frame)
        if m.any():
            ink = _PEN_INKS[stroke.color].astype(np.float32)
            out = np.where(m[..., None], ink[None, None, :] ** power, out)
    return out


# ================================================================================================= writing


def level_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(rows, cols) of every pyramid level: halved (rounding up) until the smaller side is <= 512."""
    shapes = [(int(height), int(width))]
    while min(shapes[-1]) > _MIN_PYRAMID_SIDE:
        k = len(shapes)
        shapes.append((-(-height // 2**k), -(-width // 2**k)))
    return shapes


def _encode(tile: np.ndarray, quality: int) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg8_encode(tile, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2))


def _level_tiles(spec: SlideSpec, level: int, shape: tuple[int, int], quality: int, bg: bytes) -> Iterator[bytes]:
    t = spec.tile
    ds = 2**level
    for ty in range(-(-shape[0] // t)):
        for tx in range(-(-shape[1] // t)):
            y0, x0 = ty * t * ds, tx * t * ds
            if not spec.intersects_content(y0, x0, y0 + t * ds, x0 + t * ds):
                yield bg
                continue
            frame = _frame(spec, y0, x0, t, t, ds)
            labels, capsule = _label_frame(spec, frame)
            if not labels.any():
                yield bg
                continue
            yield _encode(_render_frame(spec, frame, (labels, capsule)), quality)


def _description(spec: SlideSpec, tumor: bool, tissue_fraction: float, pen_marks: bool, quality: int) -> str:
    """ImageDescription of a synthetic slide: every argument that determines its bytes."""
    return (
        f"napari-patchdx synthetic slide v{_GENERATOR_VERSION}; seed={spec.seed}; height={spec.height}; "
        f"width={spec.width}; mpp={spec.mpp!r}; tumor={bool(tumor)}; tissue_fraction={float(tissue_fraction)!r}; "
        f"pen_marks={bool(pen_marks)}; tile={spec.tile}; quality={int(quality)}"
    )


def _read_description(path: Path) -> str | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            return tf.pages[0].description
    except Exception:  # not a TIFF, truncated, unreadable: not ours
        return None


def _write_tiff(spec: SlideSpec, path: Path, quality: int, description: str) -> list[tuple[int, int]]:
    import tifffile

    shapes = level_shapes(spec.height, spec.width)
    bg = _encode(_render_frame(spec, _frame(spec, 0, 0, spec.tile, spec.tile, 1), None), quality)
    raw = sum(h * w * 3 for h, w in shapes)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=raw > 2**31) as tw:
        for level, shape in enumerate(shapes):
            ds_y, ds_x = spec.height / shape[0], spec.width / shape[1]
            tw.write(
                _level_tiles(spec, level, shape, quality, bg),
                shape=(*shape, 3),
                dtype=np.uint8,
                tile=(spec.tile, spec.tile),
                compression="jpeg",
                photometric="rgb",
                subsampling=(2, 2),
                resolution=(1e4 / (spec.mpp * ds_x), 1e4 / (spec.mpp * ds_y)),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                description=description if level == 0 else None,
                metadata=None,
                software="napari-patchdx",
            )
    return shapes


def make_slide(
    path: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    mpp: float = 0.5,
    seed: int = 0,
    tumor: bool = True,
    tissue_fraction: float = 0.4,
    pen_marks: bool = False,
    tile: int = 256,
    quality: int = 85,
    overwrite: bool = False,
) -> SynthSlide:
    """Write one synthetic slide: a pyramidal, tiled, JPEG-compressed RGB TIFF, and its ASAP XML if tumour.

    The TIFF opens in OpenSlide as a generic tiled TIFF: one top-level page per level (reduced levels marked
    subfiletype 1), each half the size of the one before (rounding up) until the smaller side is <= 512,
    tiles of ``tile`` x ``tile`` px, XResolution / YResolution = 10000 / mpp px per centimetre (so
    ``openslide.mpp-x`` equals ``mpp``). Background-only tiles are one pre-encoded JPEG reused, so large,
    mostly empty slides are cheap; the rest is drawn tile by tile with :func:`render_region`, so memory does
    not grow with the slide.

    Files are written under temporary names and renamed into place, the XML (``path.with_suffix(".xml")``)
    before the TIFF, so a TIFF that exists is complete and its ground truth is already there.

    Args:
        path: the TIFF to write (conventionally ``.tif``).
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel.
        seed: the same seed and arguments give pixel- and byte-identical files.
        tumor: draw metastases and write the ground-truth XML; False draws a normal slide and writes no XML.
        tissue_fraction: fraction of the slide area covered by tissue, in (0, 0.6].
        pen_marks: add marker strokes (green / blue / black) on the glass, outside the tissue.
        tile: tile side in pixels (multiple of 16).
        quality: JPEG quality, 1-100.
        overwrite: replace whatever is at ``path`` and its XML. Without it, files this very call would write
            (same arguments, same generator version, recorded in the TIFF's ImageDescription) are kept and
            reused, so an interrupted cohort resumes; any other file in the way raises FileExistsError.

    Returns:
        The :class:`SynthSlide` describing what was written (or found). The parent directory is created.
    """
    if not (1 <= int(quality) <= 100):
        raise ValueError(f"quality must be within 1..100, got {quality!r}")
    path = Path(path)
    xml = path.with_suffix(".xml")
    if xml == path:
        raise ValueError(f"{path}: the slide path must not end in .xml")
    spec = make_slide_spec(
        height=height,
        width=width,
        mpp=mpp,
        seed=seed,
        tumor=tumor,
        tissue_fraction=tissue_fraction,
        pen_marks=pen_marks,
        tile=tile,
    )
    description = _description(spec, tumor, tissue_fraction, pen_marks, quality)
    regions = _annotations(spec)
    reuse = False
    if not overwrite:
        reuse = _check_existing(path, xml, description, regions if tumor else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    annotation_path: Path | None = None
    if tumor:
        annotation_path = xml if reuse else write_asap_xml(regions, xml, overwrite=True)
        regions.source = annotation_path
    elif xml.exists():
        xml.unlink()  # only reached with overwrite: a stale ground truth would make this a tumour slide
    shapes = level_shapes(spec.height, spec.width) if reuse else _write_tiff(spec, path, int(quality), description)
    return SynthSlide(
        path=path,
        annotation_path=annotation_path,
        height=spec.height,
        width=spec.width,
        mpp=spec.mpp,
        label=TUMOR if tumor else "normal",
        regions=regions,
        tissue=list(spec.tissue),
        lesions=_lesions(spec, spec.tumor_kinds),
        seed=spec.seed,
        spec=spec,
        pen_marks=[s.polygon for s in spec.pens],
        level_shapes=shapes,
    )


def _same_regions(path: Path, expected: AnnotationSet) -> bool:
    from ...io.annotations import read_annotations

    try:
        found = read_annotations(path)
    except Exception:  # unreadable or not annotations: not ours
        return False
    if len(found.regions) != len(expected.regions):
        return False
    return all(
        a.label == b.label
        and a.exterior.shape == b.exterior.shape
        and np.allclose(a.exterior, b.exterior, rtol=0, atol=1e-6)
        for a, b in zip(found.regions, expected.regions, strict=True)
    )


def _check_existing(path: Path, xml: Path, description: str, regions: AnnotationSet | None) -> bool:
    """Without overwrite: True if ``path`` already holds this very slide (reuse it), False if nothing is there.

    Raises FileExistsError when a file is in the way that this call would not have written identically.
    """
    if path.exists():
        if _read_description(path) != description:
            raise FileExistsError(f"{path}: already exists and is not this slide (pass overwrite=True to replace it)")
        if regions is None:
            if xml.exists():
                raise FileExistsError(f"{xml}: a normal slide must have no annotation file (pass overwrite=True)")
            return True
        if xml.exists() and _same_regions(xml, regions):
            return True
        if xml.exists():
            raise FileExistsError(f"{xml}: already exists and differs (pass overwrite=True to replace it)")
        return False  # the ground truth went missing: write both again
    if xml.exists() and (regions is None or not _same_regions(xml, regions)):
        raise FileExistsError(f"{xml}: already exists and is not this slide's ground truth (pass overwrite=True)")
    return False


_CSV_COLUMNS = ("slide", "label", "file", "annotation", "height", "width", "mpp", "n_lesions", "n_itc")


def _slide_seed(seed: int, label: str, index: int) -> int:
    return _derive_key(seed, f"cohort:{label}:{index}") & 0x7FFFFFFF


def make_wsi_cohort(
    out_dir: str | os.PathLike[str],
    *,
    n_tumor: int = 4,
    n_normal: int = 4,
    seed: int = 0,
    height: int = 8192,
    width: int = 8192,
    mpp: float = 0.5,
    tissue_fraction: float = 0.4,
    pen_marks: bool = False,
    overwrite: bool = False,
) -> WsiCohort:
    """Write a cohort: ``tumor_000.tif``... (with ``.xml``), ``normal_000.tif``..., and ``slides.csv``.

    Each slide gets its own seed derived from ``seed``, its label and its index, so the same arguments give
    byte-identical files. ``slides.csv`` (written last, atomically) has one row per slide: slide (file stem),
    label (``tumor`` / ``normal``), file and annotation (relative to ``out_dir``; annotation empty for normal
    slides), height, width (level-0 px), mpp, n_lesions (tumour polygons) and n_itc (those under 200 um).

    Args:
        out_dir: directory to write into (created if missing).
        n_tumor, n_normal: number of tumour and normal slides.
        seed: cohort seed.
        height, width: level-0 size of every slide, pixels (rows, cols).
        mpp: microns per level-0 pixel.
        tissue_fraction: fraction of each slide covered by tissue.
        pen_marks: draw marker strokes on every slide.
        overwrite: replace existing files. Without it, slides already written by the same arguments are
            reused (an interrupted cohort resumes where it stopped) and any other file in the way raises
            FileExistsError.
    """
    if n_tumor < 0 or n_normal < 0 or n_tumor + n_normal == 0:
        raise ValueError(f"need a non-negative number of slides and at least one, got {n_tumor} + {n_normal}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "slides.csv"
    plan = [(TUMOR, i) for i in range(n_tumor)] + [("normal", i) for i in range(n_normal)]
    slides = []
    for label, i in plan:
        slides.append(
            make_slide(
                root / f"{label}_{i:03d}.tif",
                height=height,
                width=width,
                mpp=mpp,
                seed=_slide_seed(seed, label, i),
                tumor=label == TUMOR,
                tissue_fraction=tissue_fraction,
                pen_marks=pen_marks,
                overwrite=overwrite,
            )
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for s in slides:
        writer.writerow(
            [
                s.path.stem,
                s.label,
                s.path.name,
                s.annotation_path.name if s.annotation_path is not None else "",
                s.height,
                s.width,
                repr(s.mpp),
                len(s.lesions),
                s.n_itc,
            ]
        )
    text = buf.getvalue()
    if csv_path.exists() and not overwrite:
        if csv_path.read_text(encoding="utf-8") != text:
            raise FileExistsError(f"{csv_path}: already exists and differs (pass overwrite=True to replace it)")
        return WsiCohort(root=root, slides=slides, csv=csv_path)
    atomic_write_text(csv_path, text)
    return WsiCohort(root=root, slides=slides, csv=csv_path)
