"""The CAMELYON16 evaluation mask (:func:`evaluation_mask`) and the protocol's constants and input checks.

:func:`evaluation_mask` grows every tumour region by 37.5 um at level 5 (:data:`GROWTH_UM`), fills holes, labels
the result with 8-connectivity and marks isolated tumour cells (major axis below :data:`ITC_MAJOR_AXIS_UM`), at
pyramid level :data:`CAMELYON_LEVEL` and :data:`CAMELYON_MPP` microns per level-0 pixel, as the official
``computeEvaluationMask`` / ``computeITCList``. :func:`check_protocol` and :func:`check_level0_shape` check the
protocol's settings and a slide's level-0 shape for every module that evaluates slides.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError
from ..io.annotations.model import AnnotationSet

CAMELYON_LEVEL = 5
"""Pyramid level (downsample 2**5 = 32) at which the official evaluation reads the ground-truth mask."""


CAMELYON_MPP = 0.243
"""Level-0 microns per pixel the official evaluation assumes for every slide."""


GROWTH_UM = 75.0
"""Tumour regions are grown by half of this (37.5 um), so regions closer than 75 um merge into one lesion."""


ITC_MAJOR_AXIS_UM = 275.0
"""A labelled region whose major axis (moment ellipse) is below this is an isolated-tumour-cell cluster."""


def check_protocol(level: int, mpp: float) -> tuple[int, float]:
    """Check the FROC protocol's pyramid level and level-0 microns per pixel; returns them as int, float."""
    if isinstance(level, bool) or int(level) != level or int(level) < 0:
        raise ConfigError(f"level must be a non-negative integer, got {level!r}")
    mpp_f = float(mpp)
    if not (math.isfinite(mpp_f) and mpp_f > 0):
        raise ConfigError(f"mpp (level-0 microns per pixel) must be positive and finite, got {mpp!r}")
    return int(level), mpp_f


def _level_shape(level0_shape: tuple[int, int], ds: int) -> tuple[int, int]:
    h, w = (int(v) for v in level0_shape)
    return (-(-h // ds), -(-w // ds))


def check_level0_shape(level0_shape: Any, what: str) -> tuple[int, int]:
    """Check a level-0 (height, width) of positive integers (``what`` names it in the error)."""
    try:
        h, w = (int(v) for v in level0_shape)
        ok = all(float(v) == int(v) for v in level0_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: level-0 shape must be (height, width), got {level0_shape!r}") from None
    if not ok or h <= 0 or w <= 0:
        raise ConfigError(f"{what}: level-0 shape must be two positive integers (height, width), got {level0_shape!r}")
    return h, w


def evaluation_mask(
    annotations: AnnotationSet | ArrayLike,
    level0_shape: tuple[int, int] | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
) -> tuple[np.ndarray, set[int], int]:
    """The CAMELYON16 evaluation mask: labelled lesions at pyramid level ``level`` and the ITC labels.

    As the official ``computeEvaluationMask`` / ``computeITCList``: the tumour mask at downsample
    ``ds = 2**level`` (shape ``(ceil(h / ds), ceil(w / ds))``) is grown to every pixel whose Euclidean distance
    to tumour (``scipy.ndimage.distance_transform_edt`` of the non-tumour pixels) is below
    ``75 / (mpp * ds * 2)`` pixels (37.5 um), holes are filled (``scipy.ndimage.binary_fill_holes``, so an
    exclusion region inside a tumour becomes part of the lesion), and the result is labelled with 8-connectivity
    (``skimage.measure.label(connectivity=2)``). A label is an isolated-tumour-cell cluster (ITC) when its
    ``regionprops`` major axis length is below ``275 / (mpp * ds)`` pixels (275 um; 35.36 px at level 5 and
    0.243 um/px).

    Args:
        annotations: the slide's annotations (:attr:`~napari_patchdx.io.annotations.AnnotationSet.positives`
            minus holes, exclusion and normal regions, rasterised at ``ds``: a pixel is tumour when its centre is
            inside; a normal region never counts as tumour, though one enclosed by tumour is filled like a hole),
            or a precomputed tumour mask already at level ``level`` (any 2-D array; non-zero is tumour, so 0/1 and
            0/255 masks both work).
        level0_shape: the slide's level-0 (height, width) in pixels; required with annotations, checked against
            the mask's shape when a mask is given.
        level: pyramid level of the evaluation (5 in the challenge).
        mpp: level-0 microns per pixel assumed by the protocol (0.243 in the challenge, for every slide).

    Returns:
        ``(labels, itc_labels, ds)``: int64 label image (0 = no lesion, 1..n lesions), the set of labels that are
        ITCs, and the downsample ``2**level``.

    Raises:
        ConfigError: bad level / mpp / shape; annotations without a level-0 shape; a mask that is not 2-D, holds
            NaN, or does not match ``level0_shape``.
    """
    level, mpp = check_protocol(level, mpp)
    ds = 2**level
    if isinstance(annotations, AnnotationSet):
        if level0_shape is None:
            raise ConfigError("evaluation_mask needs the slide's level-0 (height, width) to rasterise annotations")
        h, w = check_level0_shape(level0_shape, "evaluation_mask")
        tumor = annotations.rasterize(_level_shape((h, w), ds), ds)
    else:
        arr = np.asarray(annotations)
        if arr.ndim != 2:
            raise ConfigError(f"a precomputed tumour mask must be 2-D (rows, cols) at level {level}, got {arr.shape}")
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ConfigError("the precomputed tumour mask contains NaN")
        if level0_shape is not None:
            expected = _level_shape(check_level0_shape(level0_shape, "evaluation_mask"), ds)
            if arr.shape != expected:
                raise ConfigError(
                    f"the tumour mask has shape {arr.shape} but a {tuple(level0_shape)} px slide at level {level} "
                    f"(downsample {ds}) has shape {expected}"
                )
        tumor = arr != 0
    if not tumor.any():
        return np.zeros(tumor.shape, dtype=np.int64), set(), ds

    from scipy import ndimage
    from skimage import measure

    distance = ndimage.distance_transform_edt(~tumor)
    grown = distance < GROWTH_UM / (mpp * ds * 2.0)
    filled = ndimage.binary_fill_holes(grown)
    labels = measure.label(filled, connectivity=2).astype(np.int64, copy=False)
    itc_px = ITC_MAJOR_AXIS_UM / (mpp * ds)
    itc = {int(p.label) for p in measure.regionprops(labels) if p.axis_major_length < itc_px}
    return labels, itc, ds
