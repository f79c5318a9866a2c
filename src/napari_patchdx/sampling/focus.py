"""Training patches drawn more often from chosen regions: hard-negative mining (Wang et al. 2016, the CAMELYON16
winner: a second round adds patches from the first model's false-positive regions) and "review, correct, retrain"
(patches from regions a user corrected) are one mechanism.

A :class:`FocusRegion` is a boolean mask over a slide on any :class:`~napari_patchdx.geometry.Grid` (a heatmap's,
or a rasterised polygon's): :func:`hard_negative_regions` makes one from a heatmap, :func:`correction_focus_regions`
from annotation regions a user corrected. :class:`FocusSampler` wraps Liu et al.'s
:class:`~napari_patchdx.sampling.balanced.BalancedSampler`: draw ``i`` comes from the focus regions with probability
``fraction`` (uniformly over their tissue cells, each region weighted by ``weight`` times its size), else from the
balanced sampler. A focus patch is placed and jittered like any other and labelled by the same exact central-region
rule from the slide's (possibly corrected) ground truth: the regions say where to look more, never what the label
is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..geometry import Grid
from ..io.annotations.model import NORMAL, AnnotationSet, Region
from ..io.names import file_name
from .balanced import BalancedSampler
from .patches import PatchGeometry
from .sources import SlideSource
from .tables import patch_frame


@dataclass(frozen=True)
class FocusRegion:
    """Where on one slide to draw more training patches.

    Attributes:
        slide: the slide file (matched to the sampler's sources by name, :func:`~napari_patchdx.io.names.file_name`).
        mask: (rows, cols) bool, True where patches should come from.
        grid: where the mask's cells lie on level 0.
        weight: relative weight of this region's cells against other regions' (default 1).
        reason: what the region is, for reports (e.g. ``"false positive p >= 0.5"``).
    """

    slide: str | Path
    mask: np.ndarray
    grid: Grid
    weight: float = 1.0
    reason: str = ""


def hard_negative_regions(
    heatmap: np.ndarray, grid: Grid, source: SlideSource, threshold: float = 0.5
) -> FocusRegion | None:
    """The false-positive region of a training slide's heatmap: cells whose probability is at least ``threshold``
    while the patch centred on the cell is normal by the slide's ground truth (Liu's central-region rule).

    Args:
        heatmap: (rows, cols) tumour probabilities of the first-round model (NaN: not computed).
        grid: the heatmap's cells on level 0.
        source: the slide with its ground truth, as sampled.
        threshold: the probability from which a normal cell is a false positive.

    Returns:
        The region (None when the slide has no false-positive cell).
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.shape != tuple(grid.shape):
        raise ConfigError(f"heatmap shape {heat.shape} is not its grid's {tuple(grid.shape)}")
    hot = np.isfinite(heat) & (heat >= float(threshold))
    if not hot.any():
        return None
    rows, cols = np.nonzero(hot)
    cy, cx = grid.centres(rows, cols)
    side = max(8, round(float(np.mean(grid.spacing))))  # the cell itself is the labelled central region
    labels = source.center_labels(cy - side / 2, cx - side / 2, PatchGeometry(side, side, None), 1.0)
    hot[rows[labels == 1], cols[labels == 1]] = False
    if not hot.any():
        return None
    return FocusRegion(source.path, hot, grid, 1.0, f"false positive p >= {float(threshold):g}")


def region_cells(regions: Sequence[Region], grid: Grid) -> np.ndarray:
    """(rows, cols) bool: the cells of ``grid`` whose centre lies in one of ``regions`` (level-0 polygons; the even-odd
    rule of :meth:`~napari_patchdx.io.annotations.AnnotationSet.rasterize`). A region that holds no cell centre
    marks the cell holding its bounding box's centre, so a region smaller than a cell is not lost."""
    mask = np.zeros(grid.shape, dtype=bool)
    for region in regions:
        own = AnnotationSet([region]).rasterize(grid.shape, grid.spacing[0], grid.origin, labels=[region.label])
        if not own.any():
            y0, x0, y1, x1 = region.bounds
            r, c = grid.index_of(np.array([(y0 + y1) / 2]), np.array([(x0 + x1) / 2]))
            if 0 <= r[0] < grid.shape[0] and 0 <= c[0] < grid.shape[1]:
                own[r[0], c[0]] = True
        mask |= own
    return mask


def correction_focus_regions(
    corrections: Sequence[tuple[SlideSource, AnnotationSet]], tumour_weight: float = 1.0
) -> list[FocusRegion]:
    """Slides' corrected regions (``"normal"`` regions and new tumour regions, level-0 pixels) as focus regions on
    each slide's tissue grid: per slide, one region of the normal regions' cells (reason ``"corrected: normal"``) and
    one of the tumour regions' cells (``"corrected: tumour"``).

    The weights balance the two kinds as Liu's sampler balances the classes: the normal cells of all slides together
    get one share of the focus draws and the tumour cells ``tumour_weight`` shares, uniformly over the tissue cells
    within each kind, whatever the areas (a missed lesion drawn in full covers many times the cells of a few rejected
    points). A region without tissue cells, or of a kind with weight 0, is left out.
    """
    parts: list[tuple[str, FocusRegion, int]] = []
    for source, regions in corrections:
        grid = source.tissue.grid
        for normal, reason in ((True, "corrected: normal"), (False, "corrected: tumour")):
            chosen = [r for r in regions if (r.label == NORMAL) == normal]
            if chosen:
                mask = region_cells(chosen, grid)
                cells = int((mask & source.tissue.mask).sum())
                parts.append((reason, FocusRegion(source.path, mask, grid, 1.0, reason), cells))
    share = {"corrected: normal": 1.0, "corrected: tumour": float(tumour_weight)}
    totals = {reason: sum(n for r, _, n in parts if r == reason) for reason in share}
    return [
        dataclasses.replace(region, weight=share[reason] / totals[reason])
        for reason, region, cells in parts
        if cells and share[reason] > 0
    ]


class FocusSampler:
    """Liu et al.'s balanced sampler with a share ``fraction`` of draws from :class:`FocusRegion` s.

    Draw ``i`` depends only on ``(seed, i)``, as for the balanced sampler; with ``fraction`` 0 the stream is the
    balanced sampler's. Exposes the balanced sampler's interface (``draw``, ``stream``, ``table``, ``sources``,
    ``geometry``, ``seed``), so training streams and tables take either.
    """

    def __init__(self, base: BalancedSampler, regions: Sequence[FocusRegion], fraction: float = 0.3) -> None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ConfigError(f"focus fraction must be in [0, 1], got {fraction!r}")
        self.base = base
        self.fraction = float(fraction)
        self.sources = base.sources
        self.geometry = base.geometry
        self.seed = base.seed
        by_name = {file_name(s.path): k for k, s in enumerate(base.sources)}
        self._cells: list[tuple[int, np.ndarray]] = []
        weights: list[float] = []
        for region in regions:
            k = by_name.get(file_name(region.slide))
            if k is None:
                names = ", ".join(sorted(by_name))
                raise ConfigError(f"focus region on {region.slide}: not one of the sampled slides ({names})")
            cells = self._tissue_cells(base.sources[k], region)
            if cells.size and region.weight > 0:
                self._cells.append((k, cells))
                weights.append(float(region.weight) * cells.size)
        self._p = np.asarray(weights) / sum(weights) if weights else np.zeros(0)
        self._focus_tumour: float | None = None
        if self.fraction > 0 and not self._cells:
            raise ConfigError("no focus region covers tissue of a sampled slide; nothing to draw more of")

    @staticmethod
    def _tissue_cells(source: SlideSource, region: FocusRegion) -> np.ndarray:
        """Flat indices of the source's tissue-grid cells whose centres lie in the region's mask."""
        tissue = source.tissue
        rows, cols = np.nonzero(tissue.mask)
        cy, cx = tissue.grid.centres(rows, cols)
        r, c = region.grid.index_of(cy, cx)
        inside = (r >= 0) & (c >= 0) & (r < region.mask.shape[0]) & (c < region.mask.shape[1])
        keep = np.zeros(rows.shape, dtype=bool)
        keep[inside] = region.mask[r[inside], c[inside]]
        return np.ravel_multi_index((rows[keep], cols[keep]), tissue.mask.shape)

    @property
    def jitter(self) -> float:
        """The positional jitter, patch pixels (the balanced sampler's)."""
        return self.base.jitter

    @property
    def p_tumor(self) -> float:
        """The expected share of tumour patches in the stream (for class weights): the balanced sampler's share for
        its draws, and for focus draws the share of tumour among 64 reproducible focus draws."""
        if not self._cells or self.fraction == 0:
            return self.base.p_tumor
        if self._focus_tumour is None:
            labels = []
            for j in range(64):
                rng = np.random.default_rng([self.seed, 3, j])
                k, cells = self._cells[int(rng.choice(len(self._cells), p=self._p))]
                labels.append(self.base.draw_in_cells(rng, k, cells, None)["label"])
            self._focus_tumour = float(np.mean(labels))
        return (1 - self.fraction) * self.base.p_tumor + self.fraction * self._focus_tumour

    @property
    def mismatches(self) -> int:
        """Balanced draws whose exact label differed from the chosen class after every retry."""
        return self.base.mismatches

    def draw(self, index: int) -> dict[str, Any]:
        """Patch number ``index``: from the focus regions with probability ``fraction``, else the balanced draw."""
        rng = np.random.default_rng([self.seed, 2, int(index)])
        if self._cells and rng.random() < self.fraction:
            k, cells = self._cells[int(rng.choice(len(self._cells), p=self._p))]
            return {**self.base.draw_in_cells(rng, k, cells, None), "focus": 1}
        return {**self.base.draw(index), "focus": 0}

    def stream(self, start: int = 0, step: int = 1) -> Any:
        """Endless draws ``start, start + step, ...``."""
        i = int(start)
        while True:
            yield self.draw(i)
            i += step

    def table(self, n: int, start: int = 0) -> pd.DataFrame:
        """Draws ``start .. start + n - 1`` as a patch table (with a ``focus`` column: 1 for focus draws)."""
        rows = [self.draw(i) for i in range(start, start + int(n))]
        focus = [r.pop("focus") for r in rows]
        frame = patch_frame(rows)
        frame["focus"] = np.asarray(focus, dtype=np.int8)
        return frame
