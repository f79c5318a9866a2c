"""Where to look next (issue 14 item 4): uncertainty of a heatmap, slides ranked by it, uncertain regions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchdx import ConfigError
from napari_patchdx.evaluation.uncertainty import (
    disagreement_map,
    rank_slides,
    slide_uncertainty,
    uncertain_regions,
    uncertainty_map,
)
from napari_patchdx.geometry import Grid


def test_uncertainty_is_one_at_the_threshold_and_zero_at_the_far_end() -> None:
    p = np.array([[0.0, 0.25, 0.5, 0.75, 1.0, np.nan]])
    np.testing.assert_allclose(uncertainty_map(p), [[0.0, 0.5, 1.0, 0.5, 0.0, np.nan]])
    np.testing.assert_allclose(uncertainty_map(np.array([0.0, 0.2, 1.0]), threshold=0.2), [0.75, 1.0, 0.0])
    with pytest.raises(ConfigError, match="threshold"):
        uncertainty_map(p, threshold=1.0)
    # two members that disagree (0.1 and 0.9): mean 0.5 is already maximal; agreeing confident members stay low
    np.testing.assert_allclose(disagreement_map([np.array([[0.1, 0.95]]), np.array([[0.9, 0.95]])]), [[1.0, 0.1]])
    np.testing.assert_allclose(disagreement_map([np.array([[0.2]]), np.array([[0.4]])]), [[0.6 + 0.2]])
    with pytest.raises(ConfigError, match="2-D"):
        disagreement_map([np.array([0.2, 0.3])])


def test_slides_rank_by_their_most_uncertain_cells_and_regions_are_placed_at_their_peak() -> None:
    confident = np.full((10, 10), 0.02)
    doubtful = confident.copy()
    doubtful[2, 3] = 0.55  # one doubtful focus of two cells
    doubtful[2, 4] = 0.7
    doubtful[8, 8] = 0.35
    unknown = np.full((4, 4), np.nan)
    assert slide_uncertainty(uncertainty_map(doubtful)) == pytest.approx(0.9)  # top 1 % of 100 cells: one cell
    assert np.isnan(slide_uncertainty(uncertainty_map(unknown)))
    ranking = rank_slides({"confident": confident, "unknown": unknown, "doubtful": doubtful})
    assert [name for name, _ in ranking] == ["doubtful", "confident", "unknown"]
    grid = Grid((10, 10), (64.0, 64.0), (0.0, 0.0), 0.5)
    regions = uncertain_regions(uncertainty_map(doubtful), doubtful, grid)
    assert [(r.yx, r.cells) for r in regions] == [((160.0, 224.0), 2), ((544.0, 544.0), 1)]
    assert regions[0].probability == pytest.approx(0.55) and regions[0].uncertainty == pytest.approx(0.9)
    assert uncertain_regions(uncertainty_map(doubtful), doubtful, grid, max_regions=1) == regions[:1]
    with pytest.raises(ConfigError, match="shape"):
        uncertain_regions(uncertainty_map(unknown), unknown, grid)
