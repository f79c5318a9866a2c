"""Features of a slide's tumour heatmap for slide-level classification (CAMELYON16 task 2, as the winning entries
did: Wang et al. 2016 fed heatmap features to a random forest).

Every feature is physical where it can be (areas in mm², lengths in micrometres, from the heatmap's
:class:`~napari_patchdx.geometry.Grid` and the slide's mpp), so slides scanned at different resolutions compare.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..geometry import Grid

AREA_THRESHOLDS: tuple[float, ...] = (0.5, 0.7, 0.9)
"""Probabilities above which the tumour area is measured (one feature each)."""

TOP_K: tuple[int, ...] = (5, 20)
"""Sizes of the top-k means (one feature each)."""

REGION_THRESHOLD = 0.5
"""Probability above which connected cells form the lesion regions whose count, size and shape are features."""


def feature_names() -> list[str]:
    """The names of :func:`heatmap_features`' values, in order."""
    return [
        "max",
        *(f"top{k}_mean" for k in TOP_K),
        "mean_tissue",
        *(f"area_mm2_above_{t:g}" for t in AREA_THRESHOLDS),
        "n_regions",
        "largest_area_mm2",
        "largest_major_axis_um",
        "largest_mean_probability",
        "largest_solidity",
        "largest_eccentricity",
    ]


def heatmap_features(heatmap: np.ndarray, grid: Grid) -> dict[str, float]:
    """The features of one slide's heatmap (NaN cells: no tissue, ignored).

    Args:
        heatmap: (rows, cols) tumour probabilities in [0, 1], NaN where not computed.
        grid: where the cells lie on level 0; its ``mpp`` (level-0 micrometres per pixel) must be known.

    Returns:
        :func:`feature_names` -> value: the maximum, top-k means, mean over tissue cells, tumour area (mm²) above each
        of :data:`AREA_THRESHOLDS`, and of the regions of 8-connected cells above :data:`REGION_THRESHOLD`: their
        number and the largest one's area (mm²), major axis (um), mean probability, solidity and eccentricity (0 when
        there is no region).

    Raises:
        ConfigError: no finite cell, a heatmap whose shape is not the grid's, or a grid without mpp.
    """
    from skimage.measure import label, regionprops

    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.shape != tuple(grid.shape):
        raise ConfigError(f"heatmap shape {heat.shape} is not its grid's {tuple(grid.shape)}")
    if grid.mpp is None:
        raise ConfigError("heatmap features need the slide's microns per pixel (grid.mpp)")
    finite = np.isfinite(heat)
    if not finite.any():
        raise ConfigError("the heatmap has no finite cell")
    values = np.sort(heat[finite])[::-1]
    cell_um = (grid.spacing[0] * grid.mpp, grid.spacing[1] * grid.mpp)
    cell_mm2 = cell_um[0] * cell_um[1] / 1e6
    out: dict[str, float] = {"max": float(values[0])}
    for k in TOP_K:
        out[f"top{k}_mean"] = float(values[:k].mean())
    out["mean_tissue"] = float(values.mean())
    for t in AREA_THRESHOLDS:
        out[f"area_mm2_above_{t:g}"] = float(np.count_nonzero(values > t) * cell_mm2)
    regions = regionprops(
        label(np.where(finite, heat, 0.0) > REGION_THRESHOLD, connectivity=2), intensity_image=np.nan_to_num(heat)
    )
    out["n_regions"] = float(len(regions))
    if regions:
        big = max(regions, key=lambda r: r.area)
        out["largest_area_mm2"] = float(big.area * cell_mm2)
        out["largest_major_axis_um"] = float(big.axis_major_length * math.sqrt(cell_um[0] * cell_um[1]))
        out["largest_mean_probability"] = float(big.intensity_mean)
        out["largest_solidity"] = float(big.solidity)
        out["largest_eccentricity"] = float(big.eccentricity)
    else:
        out.update(
            largest_area_mm2=0.0,
            largest_major_axis_um=0.0,
            largest_mean_probability=0.0,
            largest_solidity=0.0,
            largest_eccentricity=0.0,
        )
    return out
