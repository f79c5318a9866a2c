"""How the CAMELYON16 protocol counts each detection: hit, false positive or ITC-ignored, and their colours.

:class:`PointOutcomes` holds the outcome of every detection of one slide
(:func:`~napari_patchdx.evaluation.froc.classify_points` computes it); :data:`OUTCOMES` lists the outcomes and
:data:`OUTCOME_COLORS` gives the colour each is drawn in (points layers, thumbnails).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTCOME_HIT = "hit"
"""Outcome of a detection inside a (non-ITC) lesion of the evaluation mask."""


OUTCOME_FALSE_POSITIVE = "false_positive"
"""Outcome of a detection on a non-tumour pixel of the evaluation mask (every detection of a normal slide)."""


OUTCOME_ITC = "itc_ignored"
"""Outcome of a detection on an isolated-tumour-cell cluster: neither hit nor false positive."""


OUTCOMES = (OUTCOME_HIT, OUTCOME_FALSE_POSITIVE, OUTCOME_ITC)
"""Every detection outcome, in display order."""


@dataclass(frozen=True, eq=False)
class PointOutcomes:
    """How the CAMELYON16 protocol counts each detection of one slide (same order as its :class:`PointsTable`).

    Attributes:
        outcome: (n,) str, one of :data:`OUTCOMES`: ``"hit"`` (in a lesion), ``"false_positive"`` (on a
            non-tumour pixel of the evaluation mask, or anywhere on a normal slide), ``"itc_ignored"`` (on an
            isolated-tumour-cell cluster).
        lesion: (n,) int64 label of the evaluation-mask region the detection falls in (0 = none); detections
            with the same label are in the same lesion.
        first_hit: (n,) bool, True for the detection that gives its lesion its probability (the most probable
            one; the first in table order on ties). The other hits on that lesion count neither as hits again
            nor as false positives.
    """

    outcome: np.ndarray
    lesion: np.ndarray
    first_hit: np.ndarray

    def __len__(self) -> int:
        return int(self.outcome.shape[0])

    def counts(self) -> dict[str, int]:
        """Number of detections of every outcome (keys :data:`OUTCOMES`)."""
        return {name: int(np.count_nonzero(self.outcome == name)) for name in OUTCOMES}


#: Colours of detection outcomes (points layers, thumbnails): hit green, false positive red, ITC-ignored orange.
OUTCOME_COLORS = {OUTCOME_HIT: "#34c759", OUTCOME_FALSE_POSITIVE: "#ff3b30", OUTCOME_ITC: "#ff9500"}
