"""Tissue detection: a low-resolution mask of where a slide holds tissue worth cutting patches from.

The mask is computed at a coarse resolution chosen in micrometres per pixel (``TissueConfig.target_mpp``,
8 um/px by default), never by pyramid level number, so it means the same thing for a 0.25 um/px and a
1.0 um/px scan. The algorithm (:func:`tissue_from_rgb`) works on an RGB overview at a known pixel size:

1. HSV (the numbers of ``skimage.color.rgb2hsv``). Stained tissue is coloured (H&E pink / purple, IHC brown /
   blue); empty glass, the white fill outside the scanned area, dust and shadows are grey: low saturation.
2. Marker ink is not tissue: green / blue ink (a hue range plus saturation and value floors; H&E and IHC-DAB
   colours are outside them) and black ink or black fill (dark and unsaturated) are found, grown by
   ``pen_margin_um`` so a stroke's blurred rim goes too, and excluded from everything below.
3. Saturation threshold: Otsu's over the non-ink pixels, floored by ``min_saturation`` and by the glass's own
   saturation plus ``glass_margin`` (the glass: bright pixels below Otsu's split), so that neither a blank
   slide nor tinted glass becomes tissue by splitting its noise in two.
4. Pale tissue (``grow_pale``): pixels above the floor, or darker than the glass by an optical density of
   ``pale_od`` (pale IHC stroma is grey, not coloured), join the tissue where they are connected to it and
   broader than the closing disk; thin grey lines (coverslip edges, bubble rims) do not.
5. Morphology with sizes in micrometres converted at the overview's pixel size: a closing (a disk of diameter
   ``closing_um``) bridges gaps between cells and fibres, holes below ``min_hole_um2`` are filled (fat,
   small lumens, cracks), pieces below ``min_object_um2`` are removed (dust, debris, specks).

:func:`detect_tissue` reads a slide's overview with bounded memory (``Slide.thumbnail`` reads the smallest
pyramid level at least as large, band by band) and returns a :class:`TissueMask`: the boolean mask plus its
:class:`~napari_patchdx.geometry.Grid` (level-0 pixels per mask pixel), the threshold used and the config.

The mask itself, its O(1) box fractions and its files are :mod:`napari_patchdx.sampling.tissue_mask`; the settings
are :mod:`napari_patchdx.sampling.tissue_config`.

Coordinates follow the project's convention: level-0 pixels, ordered (y, x) = (row, col).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from ..errors import ConfigError
from ..geometry import Grid
from ..io.slides.base import Slide
from ..io.slides.open import open_slide
from .tissue_config import TissueConfig
from .tissue_mask import TissueMask

__all__ = ["NoTissueWarning", "detect_tissue", "tissue_from_rgb"]

_MAX_MASK_SIDE = 16384  # a mask is an overview: 16384 px at 8 um/px is 131 mm, longer than any glass slide
_GLASS_MIN_VALUE = 0.7  # pixels at least this bright (HSV value) and below the Otsu threshold sample the glass
_GLASS_SAMPLE = 1 << 18  # glass pixels sampled for its median saturation and colour
_BAND_PIXELS = 1 << 20  # HSV is computed in bands of about this many pixels (bounded float temporaries)


class NoTissueWarning(UserWarning):
    """A slide has no tissue at all by the current settings (so no patches will come from it)."""


# ================================================================================================ algorithm


def _disk(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(bool)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, [0, 360)), saturation and value ([0, 1]) of a uint8 RGB image, as float32.

    The same numbers as ``skimage.color.rgb2hsv`` (hue x 360), computed band by band in float32 so the
    temporaries stay small; several times faster on a large overview.
    """
    rows, cols = rgb.shape[:2]
    hue = np.empty((rows, cols), dtype=np.float32)
    sat = np.empty((rows, cols), dtype=np.float32)
    val = np.empty((rows, cols), dtype=np.float32)
    step = max(1, _BAND_PIXELS // max(cols, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for r0 in range(0, rows, step):
            band = rgb[r0 : r0 + step]
            r, g, b = (band[..., k].astype(np.float32) for k in range(3))
            mx = np.maximum(np.maximum(r, g), b)
            delta = mx - np.minimum(np.minimum(r, g), b)
            val[r0 : r0 + step] = mx / np.float32(255.0)
            sat[r0 : r0 + step] = np.where(mx > 0, delta / mx, np.float32(0.0))
            h = np.where(b == mx, 4.0 + (r - g) / delta, np.where(g == mx, 2.0 + (b - r) / delta, (g - b) / delta))
            h = np.mod(h * np.float32(60.0), np.float32(360.0))
            hue[r0 : r0 + step] = np.where(delta > 0, h, np.float32(0.0))
    return hue, sat, val


def _ink(hue: np.ndarray, sat: np.ndarray, val: np.ndarray, config: TissueConfig) -> np.ndarray:
    """Marker ink (green, blue, black) and black fill, before growing by the margin."""
    g0, g1 = config.green_hue
    b0, b1 = config.blue_hue
    green = (hue >= g0) & (hue < g1) & (sat >= config.green_min_saturation)
    blue = (hue >= b0) & (hue < b1) & (sat >= config.blue_min_saturation) & (val >= config.blue_min_value)
    black = (val < config.black_max_value) & (sat < config.black_max_saturation)
    return green | blue | black


def _otsu(values: np.ndarray) -> float | None:
    """Otsu's threshold of values in [0, 1] (256-bin histogram), or None when they take a single value."""
    from skimage.filters import threshold_otsu

    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    if np.count_nonzero(counts) < 2:
        return None
    centres = (edges[:-1] + edges[1:]) / 2
    return float(threshold_otsu(hist=(counts, centres)))


def _optical_density(rgb: np.ndarray, glass_rgb: np.ndarray) -> np.ndarray:
    """Mean optical density over R, G, B relative to the glass colour (Beer-Lambert, log10), float32."""
    levels = np.maximum(np.arange(256, dtype=np.float64), 1.0)
    out = np.zeros(rgb.shape[:2], dtype=np.float32)
    for c in range(3):
        lut = (-np.log10(levels / max(float(glass_rgb[c]), 1.0)) / 3.0).astype(np.float32)
        out += lut[rgb[..., c]]
    return out


def _grow(core: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The connected components (8-connected) of ``candidates | core`` that contain a pixel of ``core``."""
    from scipy import ndimage

    labels, n = ndimage.label(candidates | core, structure=np.ones((3, 3), dtype=bool))
    keep = np.zeros(n + 1, dtype=bool)
    keep[labels[core]] = True
    keep[0] = False
    return keep[labels]


def _closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing by a disk; outside the image counts as neither tissue nor gap (no shrinking at edges)."""
    from scipy import ndimage

    fp = _disk(radius)
    grown = ndimage.binary_dilation(mask, structure=fp, border_value=0)
    return ndimage.binary_erosion(grown, structure=fp, border_value=1)


def _opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening by a disk (removes parts narrower than the disk); the image edge does not erode."""
    from scipy import ndimage

    fp = _disk(radius)
    shrunk = ndimage.binary_erosion(mask, structure=fp, border_value=1)
    return ndimage.binary_dilation(shrunk, structure=fp, border_value=0)


def _fill_small_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill background components (4-connected) not touching the border whose area is below ``max_area_px``."""
    from scipy import ndimage

    if max_area_px <= 0:
        return mask
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask
    area = np.bincount(labels.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = area < max_area_px
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def _remove_small_objects(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    """Drop tissue components (8-connected) whose area is below ``min_area_px``."""
    from scipy import ndimage

    if min_area_px <= 0 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = area >= min_area_px
    keep[0] = False
    return keep[labels]


def tissue_from_rgb(rgb: np.ndarray, um_per_px: float, config: TissueConfig | None = None) -> tuple[np.ndarray, float]:
    """Tissue mask of an RGB overview whose pixels are ``um_per_px`` micrometres wide.

    Steps (see the module docstring): marker ink and its margin are excluded; the saturation threshold is
    Otsu's over the non-ink pixels, at least ``min_saturation`` and at least the glass's saturation plus
    ``glass_margin`` (the glass being the bright pixels below Otsu's threshold); with ``grow_pale``, pale
    tissue (saturation above that floor, or optical density above ``pale_od`` relative to the glass colour)
    that is connected to tissue above the threshold and broader than the closing disk joins it; then closing,
    hole filling and small-object removal with sizes converted from micrometres at ``um_per_px``.

    Args:
        rgb: uint8 (rows, cols, 3) image (an RGBA image is composited over white first).
        um_per_px: size of one pixel of ``rgb`` in micrometres; every size in ``config`` is converted with it.
        config: settings (defaults: :class:`TissueConfig`).

    Returns:
        ``(mask, threshold)``: bool (rows, cols), True on tissue, and the saturation threshold above which a
        pixel is tissue on its own.
    """
    from scipy import ndimage

    config = config if config is not None else TissueConfig()
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or 0 in rgb.shape[:2]:
        raise ValueError(f"expected a non-empty uint8 RGB image (rows, cols, 3), got {rgb.dtype} {rgb.shape}")
    if isinstance(um_per_px, bool) or not isinstance(um_per_px, int | float | np.integer | np.floating):
        raise ValueError(f"um_per_px must be a positive number, got {um_per_px!r}")
    if not (math.isfinite(um_per_px) and um_per_px > 0):
        raise ValueError(f"um_per_px must be a positive number, got {um_per_px!r}")
    if rgb.shape[2] == 4:
        alpha = rgb[..., 3:].astype(np.float32) / 255.0
        rgb = (rgb[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)

    hue, sat, val = _hsv(rgb)
    excluded = np.zeros(sat.shape, dtype=bool)
    if config.reject_pen:
        ink = _ink(hue, sat, val, config)
        if ink.any():
            margin = round(config.pen_margin_um / um_per_px)
            excluded = ndimage.binary_dilation(ink, structure=_disk(margin)) if margin >= 1 else ink
    del hue
    valid = ~excluded

    # Thresholds. The glass sample: bright pixels on the low side of Otsu's split.
    otsu = _otsu(sat[valid]) if valid.any() else None
    glass = valid & (val >= _GLASS_MIN_VALUE) & (sat <= (otsu if otsu is not None else config.min_saturation))
    del val
    glass_px = np.flatnonzero(glass)
    glass_px = glass_px[:: max(1, glass_px.size // _GLASS_SAMPLE)]  # a regular sample is plenty for medians
    floor = config.min_saturation
    if glass_px.size:
        floor = max(floor, float(np.median(sat.ravel()[glass_px])) + config.glass_margin)
    if config.threshold is not None:
        threshold = config.threshold
    else:
        threshold = floor if otsu is None else max(otsu, floor)

    mask = (sat > threshold) & valid
    radius = round(config.closing_um / (2.0 * um_per_px))
    if config.grow_pale and mask.any():
        pale = sat > min(floor, threshold)
        if config.pale_od > 0 and glass_px.size:
            glass_rgb = np.median(rgb.reshape(-1, 3)[glass_px], axis=0)
            pale |= _optical_density(rgb, glass_rgb) > config.pale_od
        pale &= valid
        if radius >= 1:
            pale = _opening(_closing(pale, radius), radius)  # lacy stroma stays, thin lines (coverslip edges) go
        mask = _grow(mask, pale)
    del sat, glass, glass_px

    px_area = float(um_per_px) ** 2
    if radius >= 1 and mask.any():
        mask = _closing(mask, radius)
    mask = _fill_small_holes(mask, config.min_hole_um2 / px_area)
    mask &= valid
    mask = _remove_small_objects(mask, config.min_object_um2 / px_area)
    return mask, float(threshold)


def detect_tissue(slide: Slide | str | os.PathLike[str], config: TissueConfig | None = None) -> TissueMask:
    """Find the tissue on a slide, at about ``config.target_mpp`` micrometres per mask pixel.

    The overview is read with :meth:`Slide.thumbnail`, which decodes the smallest pyramid level at least as
    large as the mask, band by band: level 0 of a large slide is never read whole. The mask's grid spacing is
    the exact level-0 pixels per mask pixel along y and x.

    Args:
        slide: an open :class:`~napari_patchdx.io.slides.Slide` (or a path, opened and closed here).
        config: settings (defaults: :class:`TissueConfig`).

    Returns:
        The :class:`TissueMask`, with ``source`` the slide's path.

    Raises:
        MissingMetadataError: the slide's microns per pixel are unknown (pass ``mpp=`` to ``open_slide``).

    Warns:
        NoTissueWarning: no tissue at all was found (so no patches will come from this slide).
    """
    config = config if config is not None else TissueConfig()
    if isinstance(slide, Slide):
        result = _detect(slide, config)
    else:
        with open_slide(slide) as opened:
            result = _detect(opened, config)
    if not result.mask.any():
        warnings.warn(
            f"{result.source}: no tissue found (saturation threshold {result.threshold:.3f}); no patches will be "
            "taken from this slide",
            NoTissueWarning,
            stacklevel=2,
        )
    return result


def _detect(slide: Slide, config: TissueConfig) -> TissueMask:
    mpp = slide.require_mpp("tissue detection")
    h0, w0 = slide.shape
    side = max(1, math.ceil(max(h0, w0) * mpp / config.target_mpp))
    side = min(side, max(h0, w0))  # never upsample past level 0
    if side > _MAX_MASK_SIDE:
        raise ConfigError(
            f"tissue.target_mpp: {config.target_mpp} um/px would make a {side} px mask of {slide.path}; "
            f"a tissue mask is an overview, use a coarser target_mpp (at most {_MAX_MASK_SIDE} px per side)"
        )
    rgb = slide.thumbnail(max_size=side)
    rows, cols = rgb.shape[:2]
    spacing = (h0 / rows, w0 / cols)
    um_per_px = mpp * math.sqrt(spacing[0] * spacing[1])
    mask, threshold = tissue_from_rgb(rgb, um_per_px, config)
    return TissueMask(mask, Grid((rows, cols), spacing, (0.0, 0.0), mpp), threshold, config, slide.path)
