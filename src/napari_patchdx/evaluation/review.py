"""Reviewing an evaluation: the lesion points and missed lesions one by one, and the corrections a decision makes.

:func:`review_items` lists, per slide, every lesion point with its probability and outcome (hit, false positive,
ITC-ignored) and every ground-truth tumour region that no lesion point falls in (a missed lesion), in the order a
reviewer steps through them (:data:`REVIEW_ORDERS`). :func:`decide` turns a decision into a correction of the ground
truth (:func:`correction_region`): rejecting a false positive marks a disc around it as normal tissue, accepting one
(a lesion the ground truth lacks, or any point of an unannotated slide) marks it as tumour. The napari Evaluate
widget and the headless corrections (``benchmarks/corrections.py``) use the same rules.

Coordinates are continuous level-0 (y, x) pixels; radii are in level-0 pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..io.annotations.model import NORMAL, TUMOR, AnnotationSet, Region
from ..io.annotations.polygon import points_in_polygon
from .outcomes import OUTCOME_FALSE_POSITIVE, OUTCOME_HIT, OUTCOME_ITC, PointOutcomes
from .points import PointsTable

__all__ = [
    "ACCEPT",
    "MISSED",
    "REJECT",
    "REVIEW_ORDERS",
    "UNCERTAIN",
    "ReviewItem",
    "correction_region",
    "decide",
    "order_items",
    "review_items",
]

MISSED = "missed_lesion"
"""The outcome of a ground-truth tumour region that no lesion point falls in."""

UNCERTAIN = "uncertain"
"""The outcome of a region where the model is unsure (:mod:`napari_patchdx.evaluation.uncertainty`): where to look."""

ACCEPT, REJECT = "accepted", "rejected"
"""The two decisions on a review item."""

REVIEW_ORDERS: dict[str, tuple[str, ...]] = {
    "all, most probable first": (OUTCOME_HIT, OUTCOME_FALSE_POSITIVE, OUTCOME_ITC, MISSED),
    "false positives": (OUTCOME_FALSE_POSITIVE,),
    "hits": (OUTCOME_HIT,),
    "missed lesions": (MISSED,),
    "ITC-ignored": (OUTCOME_ITC,),
    "where to look (most uncertain)": (UNCERTAIN,),
}
"""The review orders: a name -> the outcomes listed, most probable first (missed lesions largest first, uncertain
regions most uncertain first)."""

_DISC_VERTICES = 32


@dataclass
class ReviewItem:
    """One thing to review.

    Attributes:
        slide: the slide's name.
        yx: level-0 (y, x) of the lesion point, or of the missed region's centre.
        probability: the point's probability (NaN for a missed lesion).
        outcome: ``"hit"``, ``"false_positive"``, ``"itc_ignored"`` or :data:`MISSED`.
        index: the point's row in the slide's points table (-1 for a missed lesion).
        size: the missed region's longer side, level-0 pixels (0 for a point).
        score: an uncertain region's uncertainty (0..1; NaN otherwise).
        decision: ``""`` (not reviewed), :data:`ACCEPT` or :data:`REJECT`.
    """

    slide: str
    yx: np.ndarray
    probability: float
    outcome: str
    index: int = -1
    size: float = 0.0
    score: float = math.nan
    decision: str = field(default="")


def review_items(
    points: Mapping[str, PointsTable],
    outcomes: Mapping[str, PointOutcomes],
    truths: Mapping[str, AnnotationSet | None],
) -> list[ReviewItem]:
    """Every lesion point (with its outcome) and every missed tumour region of the slides, most probable first.

    Args:
        points: slide -> its lesion points (level-0 (y, x), probability).
        outcomes: slide -> the outcomes of those points (same order).
        truths: slide -> its ground truth (None: an unannotated or normal slide, which has no missed lesion).

    A tumour region of the ground truth is missed when no point of its slide that is not a false positive lies in
    it (exterior minus holes).
    """
    items: list[ReviewItem] = []
    for slide, table in points.items():
        result = outcomes[slide]
        if len(result) != len(table):
            raise ConfigError(f"slide {slide!r}: {len(result)} outcomes for {len(table)} points")
        for i in range(len(table)):
            items.append(ReviewItem(slide, table.yx[i].copy(), float(table.probability[i]), str(result.outcome[i]), i))
        truth = truths.get(slide)
        if truth is None:
            continue
        found = table.yx[result.outcome != OUTCOME_FALSE_POSITIVE] if len(table) else np.zeros((0, 2))
        for region in truth.positives:
            inside = points_in_polygon(found, region.exterior) if len(found) else np.zeros(0, dtype=bool)
            for hole in region.holes:
                inside &= ~points_in_polygon(found, hole)
            if not inside.any():
                y0, x0, y1, x1 = region.bounds
                centre = np.array([(y0 + y1) / 2.0, (x0 + x1) / 2.0])
                items.append(ReviewItem(slide, centre, math.nan, MISSED, -1, float(max(y1 - y0, x1 - x0))))
    return order_items(items, next(iter(REVIEW_ORDERS)))


def order_items(items: Sequence[ReviewItem], order: str) -> list[ReviewItem]:
    """The items a review order (:data:`REVIEW_ORDERS`) lists: its outcomes, most probable first (missed lesions
    after the points, largest first); ties keep the input order."""
    if order not in REVIEW_ORDERS:
        raise ConfigError(f"unknown review order {order!r}; one of {', '.join(REVIEW_ORDERS)}")
    wanted = REVIEW_ORDERS[order]
    kept = [it for it in items if it.outcome in wanted]

    def key(it: ReviewItem) -> tuple[int, float]:
        if it.outcome == MISSED:
            return (1, -it.size)
        if it.outcome == UNCERTAIN:
            return (2, -it.score)
        return (0, -it.probability)

    return sorted(kept, key=key)


def correction_region(yx: Sequence[float], radius: float, label: str) -> Region:
    """A disc of ``radius`` level-0 pixels around level-0 ``yx`` as a ground-truth region of class ``label``."""
    if not (radius > 0 and math.isfinite(radius)):
        raise ConfigError(f"the correction radius must be a positive number of pixels, got {radius!r}")
    t = np.linspace(0.0, 2.0 * np.pi, _DISC_VERTICES, endpoint=False)
    ring = np.stack([yx[0] + radius * np.sin(t), yx[1] + radius * np.cos(t)], axis=1)
    return Region(ring, label=label, name=f"review {label}", group=label)


def decide(item: ReviewItem, decision: str, radius: float) -> Region | None:
    """Record ``decision`` on ``item`` and return the correction it makes to the slide's ground truth, or None.

    * rejecting a false positive: a normal disc of ``radius`` around it (the model's mistake, a hard negative);
    * accepting a false positive (a lesion the ground truth lacks, e.g. any point of an unannotated slide): a
      tumour disc the user can refine;
    * an uncertain region (where to look) is decided like a false positive: normal when rejected, tumour when
      accepted;
    * accepting a hit, an ITC-ignored point or a missed lesion, or rejecting any of them: no change (a hit lies in
      ground-truth tumour; correct the ground truth itself to change that).
    """
    if decision not in (ACCEPT, REJECT):
        raise ConfigError(f"a decision is {ACCEPT!r} or {REJECT!r}, got {decision!r}")
    item.decision = decision
    if item.outcome not in (OUTCOME_FALSE_POSITIVE, UNCERTAIN):
        return None
    return correction_region(item.yx, radius, NORMAL if decision == REJECT else TUMOR)
