"""Histology of the two tissue compartments: lymph-node parenchyma with its capsule, and carcinoma nests.

Each compartment gives hematoxylin / eosin concentrations (and, at coarse levels, splatted light loss) over a
frame: stroma textures, density and nest fields, lymphocytes, spindle cells and tumour cells with borders.
The ``"hard"`` profile adds tumour mimics drawn over the parenchyma (:func:`mimic_tissue`: follicles with
germinal centres, histiocyte clusters, dense lymphocyte sheets) and low-contrast, infiltrating carcinoma
(:func:`infiltrating_tumour`).
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from .data_model import Mimic, SlideSpec
from .frame import Box, Frame, mask_box
from .noise import fbm_grid, fbm_points, hash2, uniform
from .nuclei import NucleusCanvas, bank, lattice_chunks
from .textures import fibre_texture, grain_texture, sample_periodic

# Cell geometry, micrometres.
_LYMPH_SPACING_UM = 7.3
_TUMOR_SPACING_UM = 16.5
_SPINDLE_SPACING_UM = 20.0
_HISTIO_SPACING_UM = 18.0
_BLAST_SPACING_UM = 13.0


class TissueLayers:
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


def _lymph_nuclei(spec: SlideSpec, frame: Frame, box: Box, od: np.ndarray, where: str) -> np.ndarray:
    """Lymphocytes: dense in the parenchyma (``"normal"``), a few in tumour septa (``"til"``)."""
    canvas = NucleusCanvas("lymph", frame, od)
    n = bank("lymph", round(spec.mpp, 6)).templates.shape[0]
    spacing = _LYMPH_SPACING_UM / spec.mpp
    for cy, cx, hsh in lattice_chunks(spec._keys["lymph"], spacing, 0.42, frame, box, 5.0 / spec.mpp):
        dens = _density_points(spec, cy, cx)
        u = uniform(hsh, 3)
        keep = u < dens if where == "normal" else u < 0.06 * (1.0 - dens)
        variant = (uniform(hsh, 4) * n).astype(np.int64)[keep]
        intensity = (1.28 * (0.85 + 0.3 * uniform(hsh, 5)))[keep]
        canvas.add(cy[keep], cx[keep], variant, intensity)
    return canvas.result()[0]


def _spindle_nuclei(spec: SlideSpec, frame: Frame, box: Box, od: np.ndarray, where: str) -> np.ndarray:
    """Fibroblast / endothelial nuclei: many in capsule and septa (``"capsule"``), few between lymphocytes."""
    canvas = NucleusCanvas("spindle", frame, od)
    n = bank("spindle", round(spec.mpp, 6)).templates.shape[0]
    spacing = _SPINDLE_SPACING_UM / spec.mpp
    for cy, cx, hsh in lattice_chunks(spec._keys["spindle"], spacing, 0.45, frame, box, 7.0 / spec.mpp):
        u = uniform(hsh, 3)
        if where == "capsule":
            keep = u < 0.45
        else:
            keep = u < 0.05 + 0.45 * (1.0 - _density_points(spec, cy, cx))
        variant = (uniform(hsh, 4) * n).astype(np.int64)[keep]
        intensity = (1.7 * (0.85 + 0.3 * uniform(hsh, 5)))[keep]
        canvas.add(cy[keep], cx[keep], variant, intensity)
    return canvas.result()[0]


def _tumour_nuclei(spec: SlideSpec, frame: Frame, box: Box, od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Large vesicular tumour nuclei, one per tumour-lattice cell inside a nest, and their cover."""
    canvas = NucleusCanvas("tumor", frame, od, cover=True)
    n = bank("tumor", round(spec.mpp, 6)).templates.shape[0]
    spacing = _TUMOR_SPACING_UM / spec.mpp
    # a nucleus sits up to 0.15 spacing off its cell centre and reaches 11.5 um beyond its own centre
    for cy, cx, hsh in lattice_chunks(spec._keys["tumor"], spacing, 0.3, frame, box, 15.0 / spec.mpp):
        keep = (_nest_points(spec, cy, cx) > _NEST_THRESHOLD + 0.02) & (uniform(hsh, 3) < 0.96)
        ny = cy + 0.15 * spacing * (2.0 * uniform(hsh, 5) - 1.0)
        nx = cx + 0.15 * spacing * (2.0 * uniform(hsh, 6) - 1.0)
        variant = (uniform(hsh, 4) * n).astype(np.int64)
        intensity = 1.85 * (0.8 + 0.4 * uniform(hsh, 8))
        canvas.add(ny[keep], nx[keep], variant[keep], intensity[keep])
    nuclei, cover = canvas.result()
    assert cover is not None
    return nuclei, cover


def _density_points(spec: SlideSpec, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Probability that a lymphocyte lattice site holds a cell (follicles dense, sinuses sparse)."""
    d = fbm_points(spec._keys["density"], py, px, 260.0 / spec.mpp, 4)
    return np.clip(0.84 + 0.95 * d, 0.12, 0.98)


def _density_grid(spec: SlideSpec, frame: Frame) -> np.ndarray:
    d = fbm_grid(spec._keys["density"], frame.ys, frame.xs, 260.0 / spec.mpp, 4, frame.ds)
    return np.clip(0.84 + 0.95 * d, 0.12, 0.98).astype(np.float32)


_NEST_THRESHOLD = -0.3
_CLEFT_WIDTH = 0.025


def _nest_points(spec: SlideSpec, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    return fbm_points(spec._keys["nest"], py, px, 110.0 / spec.mpp, 3)


def _nest_grid(spec: SlideSpec, frame: Frame) -> np.ndarray:
    return fbm_grid(spec._keys["nest"], frame.ys, frame.xs, 110.0 / spec.mpp, 3, frame.ds)


def normal_tissue(spec: SlideSpec, frame: Frame, box: Box, capsule: np.ndarray, od_h: np.ndarray) -> TissueLayers:
    """Lymph-node parenchyma (lymphocyte sheets over pale stroma) and, where ``capsule``, fibrous capsule.

    Only pixels inside ``box`` (level-0 bounds of the normal tissue in the frame) are complete.
    """
    out = TissueLayers(frame.shape, frame.stamp)
    fib = sample_periodic(fibre_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    grain = sample_periodic(grain_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    dens = _density_grid(spec, frame)
    sparse = 1.0 - dens
    paren_e = 0.32 + 0.34 * sparse + (0.03 + 0.16 * sparse) * fib + 0.04 * grain
    paren_h = 0.12 + 0.04 * grain
    lymph = _lymph_nuclei(spec, frame, box, od_h, "normal")
    spindle = _spindle_nuclei(spec, frame, box, od_h, "stroma")
    capsule_box = mask_box(frame, capsule)
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


def _voronoi(
    spec: SlideSpec, frame: Frame, spacing_um: float = _TUMOR_SPACING_UM, lattice: str = "tumor"
) -> tuple[np.ndarray, np.ndarray]:
    """Cell borders (0..1, 1 on a border) and a per-cell tint (-1..1) of a cell lattice at pixels.

    The cells are the Voronoi regions of the jittered lattice (the tumour's by default, jitter 0.3); with jitter
    <= 0.3 of the spacing the nearest and second-nearest centres of a point are among the 3 x 3 lattice sites
    around it.
    """
    spacing = spacing_um / spec.mpp
    key = spec._keys[lattice]
    gy = np.floor(frame.ys / spacing).astype(np.int64)
    gx = np.floor(frame.xs / spacing).astype(np.int64)
    ly, lx = int(gy.min()) - 1, int(gx.min()) - 1
    ny, nx = int(gy.max()) - ly + 2, int(gx.max()) - lx + 2
    gyy, gxx = np.meshgrid(np.arange(ly, ly + ny), np.arange(lx, lx + nx), indexing="ij")
    h = hash2(key, gyy.ravel(), gxx.ravel())
    cyl = ((gyy.ravel() + 0.5 + 0.3 * (2.0 * uniform(h, 1) - 1.0)) * spacing).reshape(ny, nx)
    cxl = ((gxx.ravel() + 0.5 + 0.3 * (2.0 * uniform(h, 2) - 1.0)) * spacing).reshape(ny, nx)
    tint_l = (2.0 * uniform(h, 7) - 1.0).reshape(ny, nx).astype(np.float32)
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


def tumour_tissue(spec: SlideSpec, frame: Frame, box: Box, od_h: np.ndarray) -> TissueLayers:
    """Carcinoma: nests of large vesicular cells with cytoplasm and borders, stromal septa, retraction clefts.

    Only pixels inside ``box`` (level-0 bounds of the tumour in the frame) are complete.
    """
    out = TissueLayers(frame.shape, frame.stamp)
    fib = sample_periodic(fibre_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    grain = sample_periodic(grain_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
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


# ------------------------------------------------------------------------------------- "hard" profile


def _nuclei(
    spec: SlideSpec,
    frame: Frame,
    box: Box,
    od: np.ndarray,
    kind: str,
    spacing_um: float,
    jitter: float,
    keep: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    intensity: float,
    shift: float = 0.0,
    cover: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Nuclei of ``kind`` on its own lattice (key ``kind``) where ``keep(cy, cx, hash)``, and their cover.

    ``shift`` moves each nucleus up to that fraction of the spacing off its site; intensities vary +-15 %.
    """
    canvas = NucleusCanvas(kind, frame, od, cover=cover)
    n = bank(kind, round(spec.mpp, 6)).templates.shape[0]
    spacing = spacing_um / spec.mpp
    reach = (shift * spacing_um + {"lymph": 5.0, "tumor": 12.0, "histio": 9.0, "blast": 8.0}[kind]) / spec.mpp
    for cy, cx, hsh in lattice_chunks(spec._keys[kind], spacing, jitter, frame, box, reach):
        k = keep(cy, cx, hsh)
        ny = cy + shift * spacing * (2.0 * uniform(hsh, 5) - 1.0)
        nx = cx + shift * spacing * (2.0 * uniform(hsh, 6) - 1.0)
        variant = (uniform(hsh, 4) * n).astype(np.int64)[k]
        strength = (intensity * (0.85 + 0.3 * uniform(hsh, 8)))[k]
        canvas.add(ny[k], nx[k], variant, strength)
    return canvas.result()


def _lymph_at(density: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda cy, cx, hsh: uniform(hsh, 3) < density


def _lymphocytes(
    spec: SlideSpec, frame: Frame, box: Box, od: np.ndarray, density: float, strength: float
) -> np.ndarray:
    """Small lymphocytes on the parenchyma's own lattice, a fixed fraction ``density`` of its sites."""
    return _nuclei(spec, frame, box, od, "lymph", _LYMPH_SPACING_UM, 0.42, _lymph_at(density), strength)[0]


def _stroma(spec: SlideSpec, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    fib = sample_periodic(fibre_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    grain = sample_periodic(grain_texture(spec.mpp), frame.ys, frame.xs, frame.ds, spec._tex_offset)
    return fib, grain


def _histiocytes(spec: SlideSpec, frame: Frame, box: Box, od_h: np.ndarray, out: TissueLayers) -> None:
    """Sinus histiocytes: abundant pale pink-purple cytoplasm with borders, large oval pale nuclei."""
    _, grain = _stroma(spec, frame)
    if frame.stamp:
        border, tint = _voronoi(spec, frame, _HISTIO_SPACING_UM, "histio")
    else:
        border, tint = np.float32(0.0), np.float32(0.0)
    out.e[:] = 0.46 * (1.0 + 0.12 * tint) + 0.28 * border + 0.08 * grain
    out.h[:] = 0.48 * (1.0 - 0.1 * tint) + 0.08 * border + 0.03 * grain
    cells, covered = _nuclei(
        spec,
        frame,
        box,
        od_h,
        "histio",
        _HISTIO_SPACING_UM,
        0.3,
        lambda cy, cx, h: uniform(h, 3) < 0.92,
        1.9,
        shift=0.12,
        cover=True,
    )
    assert covered is not None
    covered = np.minimum(covered, 1.0)
    out.e *= 1.0 - 0.85 * covered
    out.h *= 1.0 - covered
    out.add_nuclei(cells + _lymphocytes(spec, frame, box, od_h, 0.06, 1.28))


def _germinal_centre(spec: SlideSpec, frame: Frame, box: Box, od_h: np.ndarray, out: TissueLayers) -> None:
    """A germinal centre: pale, centroblasts with nucleoli, centrocytes and tingible-body macrophages."""
    _, grain = _stroma(spec, frame)
    out.e[:] = 0.46 + 0.06 * grain
    out.h[:] = 0.38 + 0.04 * grain
    blasts, covered = _nuclei(
        spec,
        frame,
        box,
        od_h,
        "blast",
        _BLAST_SPACING_UM,
        0.35,
        lambda cy, cx, h: uniform(h, 3) < 0.9,
        1.7,
        cover=True,
    )
    assert covered is not None
    covered = np.minimum(covered, 1.0)
    out.e *= 1.0 - 0.8 * covered
    out.h *= 1.0 - covered
    macrophages = _nuclei(
        spec, frame, box, od_h, "histio", _HISTIO_SPACING_UM, 0.3, lambda cy, cx, h: uniform(h, 3) < 0.15, 1.4
    )[0]
    out.add_nuclei(blasts + macrophages + _lymphocytes(spec, frame, box, od_h, 0.2, 1.2))


def _lymph_sheet(spec: SlideSpec, frame: Frame, box: Box, od_h: np.ndarray, out: TissueLayers, blasts: float) -> None:
    """Crowded lymphocytes over little stroma (a follicle's mantle, or a sheet with ``blasts`` immunoblasts)."""
    fib, grain = _stroma(spec, frame)
    out.e[:] = 0.24 + 0.2 * blasts + 0.04 * fib + 0.04 * grain
    out.h[:] = 0.13 + 0.35 * blasts + 0.04 * grain
    nuclei = _lymphocytes(spec, frame, box, od_h, 0.985 - 0.7 * blasts, 1.42)
    if blasts > 0:
        keep = lambda cy, cx, h: uniform(h, 3) < blasts  # noqa: E731
        nuclei = nuclei + _nuclei(spec, frame, box, od_h, "blast", _BLAST_SPACING_UM, 0.35, keep, 1.8)[0]
    out.add_nuclei(nuclei)


def mimic_tissue(
    spec: SlideSpec, frame: Frame, box: Box, od_h: np.ndarray, mimic: Mimic, core: np.ndarray | None
) -> TissueLayers:
    """The layers of a tumour mimic over a frame (complete inside ``box``, the mimic's level-0 bounds there).

    ``core`` is the germinal-centre mask of a follicle (pixels of the frame), None otherwise.
    """
    out = TissueLayers(frame.shape, frame.stamp)
    if mimic.kind == "histiocytes":
        _histiocytes(spec, frame, box, od_h, out)
    elif mimic.kind == "sheet":
        _lymph_sheet(spec, frame, box, od_h, out, blasts=0.5)
    elif mimic.kind == "follicle":
        _lymph_sheet(spec, frame, box, od_h, out, blasts=0.0)
        if core is not None and core.any():
            centre = TissueLayers(frame.shape, frame.stamp)
            core_box = mask_box(frame, core)
            assert core_box is not None
            _germinal_centre(spec, frame, core_box, od_h, centre)
            np.copyto(out.h, centre.h, where=core)
            np.copyto(out.e, centre.e, where=core)
            if out.deficit is not None and centre.deficit is not None:
                np.copyto(out.deficit, centre.deficit, where=core[..., None])
    else:
        raise ValueError(f"unknown mimic kind {mimic.kind!r}")
    return out


_MIX_SD = 0.28  # standard deviation of the 3-octave mixing noise


def infiltrating_tumour(spec: SlideSpec, frame: Frame, box: Box, od_h: np.ndarray, contrast: float) -> TissueLayers:
    """Low-contrast carcinoma: discohesive tumour cells in small groups among lymphocytes, no nests or septa.

    A smooth mixing field decides, nucleus by nucleus, tumour cell or lymphocyte; about ``contrast`` of the area
    holds tumour cells (paler than in the cohesive nests). Complete inside ``box``.
    """
    out = TissueLayers(frame.shape, frame.stamp)
    t = _MIX_SD * NormalDist().inv_cdf(1.0 - float(np.clip(contrast, 0.02, 0.98)))
    key, scale = spec._keys["infiltrate"], 45.0 / spec.mpp
    mix = fbm_grid(key, frame.ys, frame.xs, scale, 3, frame.ds)
    w = np.clip((mix - t) / 0.06 + 0.5, 0.0, 1.0).astype(np.float32)
    fib, grain = _stroma(spec, frame)
    sparse = 1.0 - _density_grid(spec, frame)
    paren_e = 0.32 + 0.34 * sparse + (0.03 + 0.16 * sparse) * fib + 0.04 * grain
    paren_h = 0.12 + 0.04 * grain
    out.e[:] = w * (0.44 + 0.06 * grain) + (1.0 - w) * paren_e
    out.h[:] = w * (0.40 + 0.03 * grain) + (1.0 - w) * paren_h

    def tumour_site(cy: np.ndarray, cx: np.ndarray, h: np.ndarray) -> np.ndarray:
        return (fbm_points(key, cy, cx, scale, 3) > t) & (uniform(h, 3) < 0.85)

    def lymph_site(cy: np.ndarray, cx: np.ndarray, h: np.ndarray) -> np.ndarray:
        return (fbm_points(key, cy, cx, scale, 3) < t - 0.03) & (uniform(h, 3) < _density_points(spec, cy, cx))

    cells, covered = _nuclei(
        spec, frame, box, od_h, "tumor", _TUMOR_SPACING_UM, 0.3, tumour_site, 1.5, shift=0.15, cover=True
    )
    assert covered is not None
    covered = np.minimum(covered, 1.0)
    out.e *= 1.0 - 0.85 * covered
    out.h *= 1.0 - covered
    lymph = _nuclei(spec, frame, box, od_h, "lymph", _LYMPH_SPACING_UM, 0.42, lymph_site, 1.28)[0]
    out.add_nuclei(cells + lymph)
    return out
