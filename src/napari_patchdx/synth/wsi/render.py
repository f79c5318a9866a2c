"""Drawing a window of a slide: the label of each pixel and its colour under the Beer–Lambert stain model.

The ``"hard"`` profile's mimics and low-contrast tumours replace the tissue layers where they lie, and its
artefacts (:mod:`.artefacts`) modulate the transmitted light; labels never change with either.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .artefacts import blur_pad, blur_weight, blurred, bubble_factor, fold_factor, ink_over_tissue
from .data_model import PEN_INKS, SlideSpec, SynthSlide
from .frame import Frame, box_meets_frame, check_window, make_frame, mask_box, polygon_mask
from .histology import TissueLayers, infiltrating_tumour, mimic_tissue, normal_tissue, tumour_tissue
from .noise import derive_key, fbm_grid

LABEL_BACKGROUND = 0
"""Label of empty glass in :func:`label_region`."""
LABEL_NORMAL = 1
"""Label of non-tumour tissue (including exclusion regions) in :func:`label_region`."""
LABEL_TUMOR = 2
"""Label of annotated tumour (positives minus exclusions) in :func:`label_region`."""
LABEL_PEN = 3
"""Label of pen marker ink in :func:`label_region`."""


def label_frame(spec: SlideSpec, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8, LABEL_*) and the capsule mask at the frame's pixel centres."""
    labels = np.zeros(frame.shape, dtype=np.uint8)
    capsule = np.zeros(frame.shape, dtype=bool)
    for poly, inner in zip(spec.tissue, spec.tissue_inner, strict=True):
        m = polygon_mask(poly, frame)
        if m.any():
            labels[m] = LABEL_NORMAL
            capsule |= m & ~polygon_mask(inner, frame)
    if spec.tumors and labels.any():
        tum = np.zeros(frame.shape, dtype=bool)
        for poly in spec.tumors:
            tum |= polygon_mask(poly, frame)
        for poly in spec.exclusions:
            tum &= ~polygon_mask(poly, frame)
        labels[tum] = LABEL_TUMOR
    for stroke in spec.strokes:
        m = polygon_mask(stroke.polygon, frame)
        labels[m & (labels == LABEL_BACKGROUND)] = LABEL_PEN
    return labels, capsule


def frame_is_glass(spec: SlideSpec, frame: Frame, labels: np.ndarray) -> bool:
    """Whether the frame is empty glass only: no tissue, no pen and no air bubble (whose rim shows on glass)."""
    if labels.any():
        return False
    return not spec.artefacts.bubbles or bubble_factor(spec, frame) is None


@lru_cache(maxsize=16)
def _background_noise(seed: int, tile: int) -> np.ndarray:
    """(tile, tile, 3) float32 faint glass noise, periodic with the tile."""
    rng = np.random.default_rng(derive_key(seed, "glass"))
    base = rng.normal(0.0, 1.0, (tile, tile, 1)) * 0.8 + rng.normal(0.0, 1.0, (tile, tile, 3)) * 0.5
    return base.astype(np.float32)


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
    check_window(h, w, downsample)
    spec = _as_spec(slide)
    return label_frame(spec, make_frame(spec, y0, x0, int(h), int(w), downsample))[0]


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
    check_window(h, w, downsample)
    spec = _as_spec(slide)
    frame = make_frame(spec, y0, x0, int(h), int(w), downsample)
    return render_frame(spec, frame, None)


def render_frame(spec: SlideSpec, frame: Frame, labels_capsule: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """uint8 RGB (h, w, 3) of a frame; ``labels_capsule`` is :func:`label_frame` of it when already known."""
    labels, capsule = labels_capsule if labels_capsule is not None else label_frame(spec, frame)
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
    if frame_is_glass(spec, frame, labels):
        rgb = bg + noise
    else:
        tissue = (labels == LABEL_NORMAL) | (labels == LABEL_TUMOR)
        rgb = _transmission(spec, frame, labels, capsule, tissue)
        blur = blur_weight(spec, frame) if spec.artefacts.blur_bands and tissue.any() else None
        if blur is not None:  # out of focus: blur the light of a frame padded by the kernel, on tissue only
            weight, sigma = blur
            pad, ds = blur_pad(sigma), frame.ds
            big = make_frame(spec, frame.origin[0] - pad * ds, frame.origin[1] - pad * ds, h + 2 * pad, w + 2 * pad, ds)
            big_labels, big_capsule = label_frame(spec, big)
            big_tissue = (big_labels == LABEL_NORMAL) | (big_labels == LABEL_TUMOR)
            soft = blurred(_transmission(spec, big, big_labels, big_capsule, big_tissue), sigma, pad)
            rgb += (weight * tissue)[..., None] * (soft - rgb)
        rgb *= bg
        rgb += noise * np.where(tissue, np.float32(2.5), np.float32(1.0))[..., None]
    rgb += np.float32(0.5)
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


def _transmission(
    spec: SlideSpec, frame: Frame, labels: np.ndarray, capsule: np.ndarray, tissue: np.ndarray
) -> np.ndarray:
    """(h, w, 3) float32 fraction of the light transmitted: tissue, ink and bubbles (1 on clean glass)."""
    if tissue.any():
        rgb = _tissue_transmission(spec, frame, labels, capsule)
        if spec.artefacts.inks:
            ink_over_tissue(spec, frame, rgb, tissue)
    else:
        rgb = np.ones((*frame.shape, 3), dtype=np.float32)
    pen = labels == LABEL_PEN
    if pen.any():
        rgb[pen] = _pen_transmission(spec, frame)[pen]
    if spec.artefacts.bubbles:
        factor = bubble_factor(spec, frame)
        if factor is not None:
            rgb *= factor
    return rgb


def _tissue_transmission(spec: SlideSpec, frame: Frame, labels: np.ndarray, capsule: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 fraction of light transmitted by the tissue (1 where there is none)."""
    st = spec.stain
    od_h = (st.hematoxylin * st.h_scale).astype(np.float64)
    h_conc = np.zeros(frame.shape, dtype=np.float32)
    e_conc = np.zeros(frame.shape, dtype=np.float32)
    deficit = None if frame.stamp else np.zeros((*frame.shape, 3), dtype=np.float32)
    for value in (LABEL_NORMAL, LABEL_TUMOR):
        mask = labels == value
        box = mask_box(frame, mask)
        if box is None:
            continue
        if value == LABEL_NORMAL:
            layers = normal_tissue(spec, frame, box, capsule, od_h)
            if spec.mimics:
                _draw_mimics(spec, frame, mask & ~capsule, layers, od_h)
        elif spec.tumor_contrast:
            layers = _hard_tumour(spec, frame, mask, od_h)
        else:
            layers = tumour_tissue(spec, frame, box, od_h)
        if mask.all():
            h_conc, e_conc, deficit = layers.h, layers.e, layers.deficit
            break
        np.copyto(h_conc, layers.h, where=mask)
        np.copyto(e_conc, layers.e, where=mask)
        if deficit is not None and layers.deficit is not None:
            np.copyto(deficit, layers.deficit, where=mask[..., None])
    thick = fbm_grid(spec._keys["thick"], frame.ys, frame.xs, 700.0 / spec.mpp, 2, frame.ds)
    thick = (1.0 + 0.10 * thick).astype(np.float32)
    h_conc *= thick
    e_conc *= thick
    od_e = (st.eosin * st.e_scale).astype(np.float32)
    od = h_conc[..., None] * od_h.astype(np.float32)
    od += e_conc[..., None] * od_e
    if deficit is not None:  # coarse levels: splatted nuclei, overlap between independent (1-D) and Poisson
        od += np.float32(1.2) * deficit * thick[..., None]
    if spec.artefacts.folds:
        fold = fold_factor(spec, frame)
        if fold is not None:
            od *= fold[..., None]
    return np.exp(-od, out=od)


def _paste(layers: TissueLayers, part: TissueLayers, where: np.ndarray) -> None:
    np.copyto(layers.h, part.h, where=where)
    np.copyto(layers.e, part.e, where=where)
    if layers.deficit is not None and part.deficit is not None:
        np.copyto(layers.deficit, part.deficit, where=where[..., None])


def _draw_mimics(spec: SlideSpec, frame: Frame, allowed: np.ndarray, layers: TissueLayers, od_h: np.ndarray) -> None:
    """Replace the normal tissue's layers by each tumour mimic's inside it (``allowed``: parenchyma pixels)."""
    for mimic in spec.mimics:
        if not box_meets_frame(frame, mimic.polygon.min(axis=0), mimic.polygon.max(axis=0)):
            continue
        m = polygon_mask(mimic.polygon, frame) & allowed
        box = mask_box(frame, m)
        if box is None:
            continue
        core = polygon_mask(mimic.core, frame) & m if mimic.core is not None else None
        _paste(layers, mimic_tissue(spec, frame, box, od_h, mimic, core), m)


def _hard_tumour(spec: SlideSpec, frame: Frame, mask: np.ndarray, od_h: np.ndarray) -> TissueLayers:
    """Tumour layers where some tumours are low-contrast (``spec.tumor_contrast`` below 1)."""
    low = np.zeros(frame.shape, dtype=bool)
    parts = []
    for poly, contrast in zip(spec.tumors, spec.tumor_contrast, strict=True):
        if contrast >= 1.0 or not box_meets_frame(frame, poly.min(axis=0), poly.max(axis=0)):
            continue
        m = polygon_mask(poly, frame) & mask
        if m.any():
            parts.append((m, contrast))
            low |= m
    cohesive = mask & ~low
    box = mask_box(frame, cohesive)
    layers = tumour_tissue(spec, frame, box, od_h) if box is not None else TissueLayers(frame.shape, frame.stamp)
    for m, contrast in parts:
        box = mask_box(frame, m)
        assert box is not None
        _paste(layers, infiltrating_tumour(spec, frame, box, od_h, contrast), m)
    return layers


def _pen_transmission(spec: SlideSpec, frame: Frame) -> np.ndarray:
    out = np.ones((*frame.shape, 3), dtype=np.float32)
    streak = fbm_grid(spec._keys["pen"], frame.ys, frame.xs, 40.0 / spec.mpp, 3, frame.ds)
    power = (1.0 + 0.18 * streak).astype(np.float32)[..., None]
    for stroke in spec.strokes:
        m = polygon_mask(stroke.polygon, frame)
        if m.any():
            ink = PEN_INKS[stroke.color].astype(np.float32)
            out = np.where(m[..., None], ink[None, None, :] ** power, out)
    return out
