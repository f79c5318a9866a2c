"""Where to look next: the model's uncertainty on a heatmap, slides ranked by it, and its most uncertain regions.

A cell is uncertain when its probability lies near the decision threshold (:func:`uncertainty_map`: 1 at the
threshold, 0 at 0 or 1); with several heatmaps of one slide (ensemble members, or a model's orientations) the spread
between them adds to it (:func:`disagreement_map`). A slide's score is the mean of its most uncertain cells
(:func:`slide_uncertainty`), so one doubtful focus ranks a slide high however large its tissue; its regions are the
connected groups of cells above a level (:func:`uncertain_regions`), most uncertain first. Correcting there helps
most (active learning's uncertainty sampling, as MONAI Label offers it).

Heatmaps are (rows, cols) probabilities on a :class:`~napari_patchdx.geometry.Grid` (NaN: not computed, never
uncertain); positions are continuous level-0 (y, x) pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..geometry import Grid

__all__ = [
    "UncertainRegion",
    "disagreement_map",
    "rank_slides",
    "slide_uncertainty",
    "uncertain_regions",
    "uncertainty_map",
]


@dataclass(frozen=True)
class UncertainRegion:
    """A connected group of uncertain heatmap cells.

    Attributes:
        yx: level-0 (y, x) of its most uncertain cell's centre.
        uncertainty: that cell's uncertainty (0..1).
        probability: that cell's probability.
        cells: how many cells the region has.
    """

    yx: tuple[float, float]
    uncertainty: float
    probability: float
    cells: int


def uncertainty_map(heatmap: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-cell uncertainty ``1 - |p - threshold| / max(threshold, 1 - threshold)``: 1 at the threshold, 0 at the
    far end of [0, 1]; NaN cells stay NaN."""
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"the decision threshold must lie in (0, 1), got {threshold!r}")
    p = np.asarray(heatmap, dtype=np.float64)
    return 1.0 - np.abs(p - threshold) / max(threshold, 1.0 - threshold)


def disagreement_map(heatmaps: Sequence[np.ndarray], threshold: float = 0.5) -> np.ndarray:
    """Uncertainty of several heatmaps of one slide (ensemble members, orientations): the uncertainty of their
    mean, raised by their spread (twice the standard deviation, capped at 1)."""
    if not heatmaps:
        raise ConfigError("disagreement needs at least one heatmap")
    stack = np.stack([np.asarray(h, dtype=np.float64) for h in heatmaps])
    if stack.ndim != 3:
        raise ConfigError(f"heatmaps must be 2-D arrays of one shape, got {[np.shape(h) for h in heatmaps]}")
    return np.minimum(1.0, uncertainty_map(stack.mean(axis=0), threshold) + 2.0 * stack.std(axis=0))


def slide_uncertainty(uncertainty: np.ndarray, top_fraction: float = 0.01) -> float:
    """A slide's score: the mean of its most uncertain ``top_fraction`` of computed cells (at least one); NaN when
    no cell was computed."""
    values = np.asarray(uncertainty, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    k = max(1, int(np.ceil(top_fraction * values.size)))
    return float(np.sort(values)[-k:].mean())


def rank_slides(
    heatmaps: Mapping[str, np.ndarray], threshold: float = 0.5, top_fraction: float = 0.01
) -> list[tuple[str, float]]:
    """``(slide, score)`` most uncertain first (:func:`slide_uncertainty` of :func:`uncertainty_map`); slides without
    a computed cell last."""
    scores = [(name, slide_uncertainty(uncertainty_map(h, threshold), top_fraction)) for name, h in heatmaps.items()]
    return sorted(scores, key=lambda item: (not np.isfinite(item[1]), -item[1] if np.isfinite(item[1]) else 0.0))


def uncertain_regions(
    uncertainty: np.ndarray, heatmap: np.ndarray, grid: Grid, level: float = 0.5, max_regions: int = 20
) -> list[UncertainRegion]:
    """The connected groups (8-connectivity) of cells whose uncertainty is at least ``level``, most uncertain first,
    at most ``max_regions``; each is placed at its most uncertain cell."""
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.shape != tuple(grid.shape) or np.shape(heatmap) != u.shape:
        raise ConfigError(f"uncertainty {u.shape}, heatmap {np.shape(heatmap)} and grid {grid.shape} differ in shape")
    mask = np.isfinite(u) & (u >= level)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    regions = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = np.where(labels[box] == k, u[box], -np.inf)
        r, c = np.unravel_index(int(np.argmax(inside)), inside.shape)
        row, col = r + box[0].start, c + box[1].start
        y, x = grid.centres(np.array([row]), np.array([col]))
        regions.append(
            UncertainRegion(
                (float(y[0]), float(x[0])), float(u[row, col]), float(heatmap[row, col]), int((labels == k).sum())
            )
        )
    regions.sort(key=lambda reg: (-reg.uncertainty, -reg.cells))
    return regions[: max(0, int(max_regions))]
