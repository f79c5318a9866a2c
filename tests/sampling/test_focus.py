"""Drawing more patches from chosen regions: hard-negative regions from a heatmap, and the focus sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_patchdx.errors import ConfigError
from napari_patchdx.geometry import Grid
from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.focus import FocusRegion, FocusSampler, hard_negative_regions
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.synth.wsi.render import LABEL_TUMOR, label_region

CELL = 256  # level-0 px per heatmap cell


@pytest.fixture(scope="module")
def sources(wsi_cohort) -> list[SlideSource]:
    return [SlideSource.prepare(s.path, s.annotation_path) for s in wsi_cohort.slides]


def _tumour_slide(wsi_cohort, sources):
    k = next(i for i, s in enumerate(sources) if s.tumor.any())
    return wsi_cohort.slides[k], sources[k]


def test_hard_negatives_are_the_hot_cells_without_tumour(wsi_cohort, sources) -> None:
    synth, source = _tumour_slide(wsi_cohort, sources)
    h, w = source.slide.shape
    grid = Grid((h // CELL, w // CELL), (CELL, CELL), (0.0, 0.0), source.slide.mpp)
    heat = np.full(grid.shape, 0.2)
    heat[::2, :] = 0.9  # every other row of cells is "hot"
    heat[1, 1] = np.nan
    region = hard_negative_regions(heat, grid, source, threshold=0.5)
    assert region is not None and region.grid == grid and region.reason == "false positive p >= 0.5"
    truth = np.array(
        [
            [(label_region(synth, r * CELL, c * CELL, CELL, CELL) == LABEL_TUMOR).any() for c in range(grid.shape[1])]
            for r in range(grid.shape[0])
        ]
    )
    assert truth.any() and (truth & (heat >= 0.5)).any()  # some hot cells hold tumour: they are not negatives
    np.testing.assert_array_equal(region.mask, (heat >= 0.5) & ~truth)
    assert hard_negative_regions(np.full(grid.shape, 0.1), grid, source) is None


def test_focus_sampler_draws_its_share_from_the_regions(wsi_cohort, sources) -> None:
    _, source = _tumour_slide(wsi_cohort, sources)
    geometry = PatchGeometry(128, 64)
    base = BalancedSampler(sources, geometry, seed=3, jitter=0.0)
    h, w = source.slide.shape
    grid = Grid((h // CELL, w // CELL), (CELL, CELL), (0.0, 0.0), source.slide.mpp)
    heat = np.zeros(grid.shape)
    heat[: grid.shape[0] // 2, :] = 0.9  # the model fires on the upper half
    region = hard_negative_regions(heat, grid, source)
    assert region is not None

    # no share: the balanced sampler's draws
    plain = FocusSampler(base, [region], fraction=0.0).table(60)
    pd.testing.assert_frame_equal(plain.drop(columns="focus"), base.table(60))
    assert not plain["focus"].any()

    sampler = FocusSampler(base, [region], fraction=0.5)
    table = sampler.table(400)
    pd.testing.assert_frame_equal(table, FocusSampler(base, [region], fraction=0.5).table(400))  # reproducible
    focus = table[table["focus"] == 1]
    assert 0.4 < len(focus) / len(table) < 0.6
    assert (focus["slide"] == str(source.path)).all() and (focus["label"] == 0).all()  # false positives: normal
    cy = (focus["y"] + 64).to_numpy()
    cx = (focus["x"] + 64).to_numpy()
    r, c = grid.index_of(cy, cx)
    assert region.mask[np.clip(r, 0, grid.shape[0] - 1), np.clip(c, 0, grid.shape[1] - 1)].mean() > 0.9
    rest = table[table["focus"] == 0]
    assert 0.3 < rest["label"].mean() < 0.7  # the balanced half stays balanced


def test_focus_region_errors(sources) -> None:
    base = BalancedSampler(sources, PatchGeometry(128, 64), seed=0)
    grid = Grid((2, 2), (CELL, CELL), (0.0, 0.0), 0.5)
    with pytest.raises(ConfigError, match="not one of the sampled slides"):
        FocusSampler(base, [FocusRegion("elsewhere.tif", np.ones((2, 2), bool), grid)])
    with pytest.raises(ConfigError, match="nothing to draw more of"):
        FocusSampler(base, [FocusRegion(sources[0].path, np.zeros((2, 2), bool), grid)])
    with pytest.raises(ConfigError, match=r"fraction must be in \[0, 1\]"):
        FocusSampler(base, [], fraction=1.5)
