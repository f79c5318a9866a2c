"""Statistics of benchmarks/claims.py: a stratified bootstrap over slides / images shared by every arm.

Every claim is a statistic of one test set (the same slides or X-rays for every arm and seed). Its interval comes
from resampling those cases (positives and negatives separately, so each resample keeps both): in each resample the
statistic is recomputed for every seed's model on the same cases and averaged over the seeds, and a difference
between arms is taken on the same resample (paired). The point value is the statistic on the full set, averaged over
seeds; seed-to-seed spread enters the point, the interval reflects which cases happened to be in the test set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from napari_patchdx.evaluation.froc import SlideLookup, froc_from_lookups
from napari_patchdx.evaluation.roc import auc_rows

Stat = Callable[[np.ndarray], float]
"""A statistic of the cases picked by an index array (NaN where it is undefined for that resample)."""


def bootstrap(stat: Stat, positive: np.ndarray, n_boot: int, seed: int) -> list[float | None]:
    """``[value, lo, hi]``: ``stat`` on every case and its 95 % stratified percentile bootstrap interval.

    Args:
        stat: the statistic of an index array into the cases.
        positive: (n,) bool, the stratum of each case (tumour slide / image with a lesion).
        n_boot: resamples (0: no interval, lo = hi = None).
        seed: the resampling seed.

    Resamples where the statistic is undefined (NaN) are dropped; when fewer than half remain, the interval is
    None (too few cases to say).
    """
    positive = np.asarray(positive, dtype=bool)
    value = stat(np.arange(len(positive)))
    if n_boot == 0 or not math.isfinite(value):
        return [finite(value), None, None]
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    values = []
    for _ in range(n_boot):
        idx = (
            np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            if len(neg)
            else rng.choice(pos, len(pos))
        )
        values.append(stat(idx))
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if len(arr) < n_boot / 2:
        return [finite(value), None, None]
    lo, hi = np.percentile(arr, [2.5, 97.5])
    return [finite(value), finite(lo), finite(hi)]


def finite(value: float) -> float | None:
    """``value`` rounded to 4 digits, or None when it is not finite (JSON has no NaN)."""
    return round(float(value), 4) if value is not None and math.isfinite(value) else None


def seed_mean(per_seed: Sequence[Stat]) -> Stat:
    """The statistic averaged over seeds (NaN when any seed's is undefined)."""

    def stat(idx: np.ndarray) -> float:
        return float(np.mean([s(idx) for s in per_seed]))

    return stat


def difference(a: Stat, b: Stat) -> Stat:
    """``a - b`` on the same resample (a paired difference)."""
    return lambda idx: a(idx) - b(idx)


def froc_score(lookups: Sequence[SlideLookup]) -> Stat:
    """The CAMELYON16 FROC score of the picked slides (official protocol; NaN without a lesion to find)."""

    def stat(idx: np.ndarray) -> float:
        picked = [lookups[i] for i in idx]
        if sum(lk.row.n_lesions for lk in picked) == 0:
            return math.nan
        return float(froc_from_lookups(picked, 5, 1.0).score)

    return stat


def fp_at_sensitivity(lookups: Sequence[SlideLookup], target: float) -> Stat:
    """False positives per slide (all picked slides) where the FROC curve first reaches ``target`` sensitivity.

    The lowest FP rate of the curve points whose lesion sensitivity is at least ``target`` (NaN when the curve
    never reaches it, or no lesion is to be found).
    """

    def stat(idx: np.ndarray) -> float:
        picked = [lookups[i] for i in idx]
        if sum(lk.row.n_lesions for lk in picked) == 0:
            return math.nan
        result = froc_from_lookups(picked, 5, 1.0)
        ok = result.sensitivity >= target
        return float(result.fps_per_slide[ok].min()) if ok.any() else math.nan

    return stat


def auc(labels: np.ndarray, scores: np.ndarray) -> Stat:
    """ROC AUC of the picked cases (:func:`~napari_patchdx.evaluation.roc.auc_rows`); NaN with one class only."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)

    def stat(idx: np.ndarray) -> float:
        return float(auc_rows(scores[idx][None, :], labels[idx][None, :])[0])

    return stat


def mean_class_auc(labels: np.ndarray, scores: np.ndarray) -> Stat:
    """Mean over classes of the per-class AUROC of the picked images (classes with one label only are left out)."""
    per_class = [auc(labels[:, k], scores[:, k]) for k in range(labels.shape[1])]

    def stat(idx: np.ndarray) -> float:
        values = [s(idx) for s in per_class]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    return stat
