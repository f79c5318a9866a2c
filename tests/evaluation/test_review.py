"""Reviewing an evaluation (issue 14): the review items, their orders, and the corrections a decision makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_patchdx import ConfigError
from napari_patchdx.evaluation.outcomes import PointOutcomes
from napari_patchdx.evaluation.points import PointsTable
from napari_patchdx.evaluation.review import (
    ACCEPT,
    MISSED,
    REJECT,
    correction_region,
    decide,
    order_items,
    review_items,
)
from napari_patchdx.io.annotations.model import AnnotationSet, Region


def _square(y0: float, x0: float, y1: float, x1: float, label: str = "tumor") -> Region:
    return Region(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64), label=label)


def _case():
    """Slide a: a hit (0.9) on lesion 1, a false positive (0.7), a point (0.4) in lesion 2's hole; lesion 3 has no
    point. Slide b (no ground truth): one false positive (0.95)."""
    a = PointsTable(np.array([50.0, 500.0, 250.0]), np.array([50.0, 500.0, 250.0]), np.array([0.9, 0.7, 0.4]))
    b = PointsTable(np.array([10.0]), np.array([20.0]), np.array([0.95]))
    outcomes = {
        "a": PointOutcomes(
            np.array(["hit", "false_positive", "false_positive"]), np.array([1, 0, 0]), np.array([1, 0, 0], bool)
        ),
        "b": PointOutcomes(np.array(["false_positive"]), np.zeros(1, np.int64), np.zeros(1, bool)),
    }
    holed = Region(
        np.array([[200.0, 200.0], [200.0, 300.0], [300.0, 300.0], [300.0, 200.0]]),
        holes=(np.array([[240.0, 240.0], [240.0, 260.0], [260.0, 260.0], [260.0, 240.0]]),),
    )
    truth = AnnotationSet(
        [_square(0, 0, 100, 100), holed, _square(800, 800, 1000, 900), _square(600, 0, 700, 50, "normal")]
    )
    return {"a": a, "b": b}, outcomes, {"a": truth, "b": None}


def test_review_items_most_probable_first_with_the_missed_lesions_after() -> None:
    points, outcomes, truths = _case()
    items = review_items(points, outcomes, truths)
    assert [(it.slide, it.outcome, it.probability) for it in items if it.outcome != MISSED] == [
        ("b", "false_positive", 0.95),
        ("a", "hit", 0.9),
        ("a", "false_positive", 0.7),
        ("a", "false_positive", 0.4),
    ]
    missed = [it for it in items if it.outcome == MISSED]  # a point in a hole misses its lesion; normal is no lesion
    assert [(it.size, tuple(it.yx)) for it in missed] == [(200.0, (900.0, 850.0)), (100.0, (250.0, 250.0))]
    assert all(math.isnan(it.probability) and it.index == -1 for it in missed) and items[-2:] == missed
    assert [it.outcome for it in order_items(items, "false positives")] == ["false_positive"] * 3
    assert [it.size for it in order_items(items, "missed lesions")] == [200.0, 100.0]
    assert order_items(items, "hits")[0].index == 0
    with pytest.raises(ConfigError, match="unknown review order"):
        order_items(items, "by colour")


def test_decisions_make_normal_or_tumour_discs_only_for_false_positives() -> None:
    points, outcomes, truths = _case()
    items = review_items(points, outcomes, truths)
    rejected = decide(items[0], REJECT, 30.0)  # slide b's false positive
    assert rejected is not None and rejected.label == "normal" and items[0].decision == REJECT
    np.testing.assert_allclose(rejected.exterior.mean(axis=0), [10.0, 20.0], atol=1e-9)
    np.testing.assert_allclose(np.hypot(*(rejected.exterior - [10.0, 20.0]).T), 30.0)
    assert rejected.area == pytest.approx(math.pi * 30.0**2, rel=0.01)
    accepted = decide(items[2], ACCEPT, 10.0)  # a false positive the user says is tumour
    assert accepted is not None and accepted.label == "tumor"
    assert decide(items[1], REJECT, 10.0) is None and items[1].decision == REJECT  # a hit: no change
    assert decide(items[-1], ACCEPT, 10.0) is None  # a missed lesion: drawn by the user, not by a decision
    with pytest.raises(ConfigError, match="decision"):
        decide(items[0], "maybe", 10.0)
    with pytest.raises(ConfigError, match="radius"):
        correction_region((0.0, 0.0), 0.0, "normal")
