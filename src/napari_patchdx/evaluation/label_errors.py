"""Suspected label errors: cases whose prediction confidently contradicts their label (:data:`SUSPECT_RULE`).

:func:`suspected_label_errors` lists them for both tracks (slides by their slide score, X-rays per class);
:func:`suspects_document` is the ``suspects.json`` both evaluations write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError
from .roc import binary_labels
from .xray_metrics import class_names

SUSPECT_HIGH = 0.9
"""A case labelled negative whose score is at least this is a suspected label error (missed positive)."""


SUSPECT_LOW = 0.1
"""A case labelled positive whose score is at most this is a suspected label error (false label or empty mask)."""


SUSPECT_RULE = (
    "A case is a suspected label error when the model confidently contradicts its label: labelled negative "
    "(a normal slide, or an X-ray without that class) with a score >= {high}, or labelled positive with a score "
    "<= {low}. Slides are scored by their slide score (by default the heatmap maximum, Liu et al.), X-rays by the "
    "class probability. Suspects are listed most contradictory first (by the score for negatives, 1 - score for "
    "positives); they are candidates to re-read, not errors: Liu et al. found two CAMELYON16 training slides "
    "labelled normal that held tumour this way."
)


def check_suspect_limits(high: float, low: float) -> tuple[float, float]:
    """Check the suspected-label-error limits (0 <= low < high <= 1); returns (high, low)."""
    high, low = float(high), float(low)
    if not (0.0 <= low < high <= 1.0):
        raise ConfigError(f"suspect limits must satisfy 0 <= low < high <= 1, got low={low!r}, high={high!r}")
    return high, low


def suspected_label_errors(
    names: Sequence[str],
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    classes: Sequence[str] | None = None,
    high: float = SUSPECT_HIGH,
    low: float = SUSPECT_LOW,
) -> list[dict[str, Any]]:
    """Cases whose prediction confidently contradicts their label (see :data:`SUSPECT_RULE`).

    Args:
        names: one name per case (slide or image).
        labels: (n,) or (n, n_classes) 0 / 1 labels.
        scores: scores of the same shape, probabilities in [0, 1]; NaN scores are skipped (no prediction).
        classes: class names of the columns (default ``"0"``, ``"1"``, ...; ``"tumor"`` for 1-D labels).
        high: a negative with a score >= this is suspect.
        low: a positive with a score <= this is suspect.

    Returns:
        One dict per suspect, most contradictory first (ties in input order): ``name``, ``class``, ``label``
        (0 / 1), ``score``, ``reason`` (a sentence) and ``contradiction`` (the score for a negative, 1 - score for
        a positive).
    """
    high, low = check_suspect_limits(high, low)
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    one_d = y.ndim == 1
    if one_d:
        y, s = y[:, None], s.reshape(-1, 1)
    if y.shape != s.shape or y.ndim != 2:
        raise ConfigError(f"labels of shape {np.shape(labels)} and scores of shape {np.shape(scores)} differ")
    if len(names) != y.shape[0]:
        raise ConfigError(f"{len(names)} names for {y.shape[0]} cases")
    y = binary_labels(y, "labels")
    cls = ["tumor"] if one_d and classes is None else class_names(classes, y.shape[1])
    found: list[tuple[float, int, dict[str, Any]]] = []
    for i, name in enumerate(names):
        for c, cname in enumerate(cls):
            p = float(s[i, c])
            if not math.isfinite(p):
                continue
            if not y[i, c] and p >= high:
                reason = f"labelled without {cname} but predicted {cname} with {p:.3f} >= {high:g}"
                contradiction = p
            elif y[i, c] and p <= low:
                reason = f"labelled {cname} but predicted {p:.3f} <= {low:g}"
                contradiction = 1.0 - p
            else:
                continue
            entry = {
                "name": str(name),
                "class": cname,
                "label": int(y[i, c]),
                "score": p,
                "reason": reason,
                "contradiction": contradiction,
            }
            found.append((-contradiction, len(found), entry))
    return [entry for _, _, entry in sorted(found, key=lambda t: (t[0], t[1]))]


def suspects_document(suspects: list[dict[str, Any]], high: float, low: float, score: str) -> dict[str, Any]:
    """The ``suspects.json`` document: the rule with its limits, the score used and the suspects."""
    return {
        "rule": SUSPECT_RULE.format(high=f"{high:g}", low=f"{low:g}"),
        "high": high,
        "low": low,
        "score": score,
        "suspects": suspects,
    }
