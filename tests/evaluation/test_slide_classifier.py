"""Slide-level classification: heatmap features with hand-computed values, the paired AUC difference, and a
classifier that beats the heatmap maximum where the maximum is fooled by single hot cells."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchdx.errors import ConfigError
from napari_patchdx.evaluation.roc import auc_difference_ci, roc_auc_ci
from napari_patchdx.evaluation.slide_classifier import SlideClassifier, compare_with_maximum
from napari_patchdx.evaluation.slide_features import feature_names, heatmap_features
from napari_patchdx.geometry import Grid

GRID = Grid((10, 10), (128.0, 128.0), (0.0, 0.0), 0.5)  # cells of 64 um: 0.004096 mm2 each
CELL_MM2 = 0.064 * 0.064


def test_heatmap_features_hand_computed() -> None:
    heat = np.full((10, 10), 0.1)
    heat[0, :] = np.nan  # no tissue
    heat[2:5, 2:5] = 0.8  # a 3 x 3 region
    heat[8, 8] = 0.95  # one hot cell
    f = heatmap_features(heat, GRID)
    assert list(f) == feature_names()
    assert f["max"] == pytest.approx(0.95)
    assert f["top5_mean"] == pytest.approx((0.95 + 4 * 0.8) / 5)
    assert f["mean_tissue"] == pytest.approx((0.95 + 9 * 0.8 + 80 * 0.1) / 90)
    assert f["area_mm2_above_0.5"] == pytest.approx(10 * CELL_MM2)
    assert f["area_mm2_above_0.9"] == pytest.approx(1 * CELL_MM2)
    assert f["n_regions"] == 2 and f["largest_area_mm2"] == pytest.approx(9 * CELL_MM2)
    assert f["largest_mean_probability"] == pytest.approx(0.8) and f["largest_solidity"] == pytest.approx(1.0)
    # the ellipse of the same second moments: 4 sqrt(variance of the cells' coordinates), 2 / 3 cell² for 3 x 3
    assert f["largest_major_axis_um"] == pytest.approx(4 * np.sqrt(2 / 3) * 64)
    empty = heatmap_features(np.full((10, 10), 0.2), GRID)
    assert empty["n_regions"] == 0 and empty["largest_area_mm2"] == 0.0
    with pytest.raises(ConfigError, match="microns per pixel"):
        heatmap_features(heat, Grid((10, 10), (128.0, 128.0)))
    with pytest.raises(ConfigError, match="no finite cell"):
        heatmap_features(np.full((10, 10), np.nan), GRID)


def test_paired_auc_difference() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    good = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert auc_difference_ci(labels, good, good, 200, 0) == (0.0, 0.0, 0.0)
    bad = good[::-1]
    d, lo, hi = auc_difference_ci(labels, good, bad, 200, 0)
    assert d == pytest.approx(1.0) and lo == hi == pytest.approx(1.0)  # every resample: 1 - 0
    noisy = np.array([0.9, 0.2, 0.7, 0.3, 0.8, 0.1])
    d, lo, hi = auc_difference_ci(labels, good, noisy, 500, 1)
    assert d == pytest.approx(1.0 - roc_auc_ci(labels, noisy, 0)[0]) and lo <= d <= hi


def _cohort(n: int, rng: np.random.Generator) -> list[tuple[dict[str, float], int]]:
    """Tumour slides: one broad region of moderate probability; normal slides: one single very hot cell."""
    out = []
    for i in range(n):
        heat = rng.uniform(0.0, 0.3, (10, 10))
        if i % 2:
            r, c, s = rng.integers(0, 5), rng.integers(0, 5), rng.integers(3, 6)
            heat[r : r + s, c : c + s] = rng.uniform(0.6, 0.8)
        else:
            heat[rng.integers(0, 10), rng.integers(0, 10)] = rng.uniform(0.9, 0.99)
        out.append((heatmap_features(heat, GRID), i % 2))
    return out


@pytest.mark.parametrize("method", ["forest", "logistic"])
def test_classifier_beats_the_maximum_when_hot_cells_fool_it(method: str) -> None:
    rng = np.random.default_rng(0)
    train, test = _cohort(20, rng), _cohort(12, rng)
    result = compare_with_maximum(train, test, method=method, n_boot=200, seed=0)
    assert result["slide_auc_max"][0] == 0.0  # every normal slide has the hotter cell
    assert result["slide_auc_classifier"][0] == 1.0
    assert result["difference"][0] == 1.0 and result["difference"][1] > 0.5
    assert (result["n_train"], result["n_test"], len(result["scores"])) == (20, 12, 12)


def test_classifier_input_errors() -> None:
    rng = np.random.default_rng(1)
    train = _cohort(6, rng)
    with pytest.raises(ConfigError, match="tumour and normal"):
        SlideClassifier.fit([f for f, _ in train], [1] * 6)
    with pytest.raises(ConfigError, match="one of forest, logistic"):
        SlideClassifier.fit([f for f, _ in train], [y for _, y in train], method="svm")
    with pytest.raises(ConfigError, match="lack 'max'"):
        SlideClassifier.fit([{"top5_mean": 1.0}] * 2, [0, 1])
