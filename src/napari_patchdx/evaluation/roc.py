"""Slide-level metrics: one score per slide (:func:`slide_score`) and the ROC AUC with a bootstrap confidence
interval (:func:`roc_auc_ci`), with the label, score and bootstrap helpers the X-ray metrics share.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError


def slide_score(heatmap: ArrayLike, method: str = "max", k: int = 10) -> float:
    """One tumour score per slide from its heatmap, ignoring NaN cells.

    Args:
        heatmap: probabilities of any shape (NaN = not computed / no tissue).
        method: ``"max"`` (Liu et al.: the heatmap's maximum) or ``"topk_mean"`` (mean of the k largest values;
            of all values when fewer than k).
        k: number of values averaged by ``"topk_mean"``.

    Raises:
        ConfigError: unknown method, k < 1, or a heatmap with no finite value.
    """
    values = np.asarray(heatmap, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ConfigError("slide_score: the heatmap has no finite value")
    if method == "max":
        return float(values.max())
    if method == "topk_mean":
        if int(k) < 1:
            raise ConfigError(f"slide_score: k must be >= 1, got {k!r}")
        kk = min(int(k), values.size)
        return float(np.partition(values, values.size - kk)[values.size - kk :].mean())
    raise ConfigError(f"slide_score: unknown method {method!r}; use 'max' or 'topk_mean'")


def binary_labels(labels: ArrayLike, what: str) -> np.ndarray:
    """0 / 1 (or bool) labels as a bool array; other values raise a ConfigError naming ``what``."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr
    with np.errstate(invalid="ignore"):
        ok = np.isin(arr, (0, 1))
    if not ok.all():
        raise ConfigError(f"{what} must be 0 / 1 (or bool)")
    return arr.astype(bool)


def finite_scores(scores: ArrayLike, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Scores as float64 of ``shape`` (that of the labels); NaN, infinity or another shape raise."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != shape:
        raise ConfigError(f"{what} has shape {arr.shape}, the labels {shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} contains NaN or infinite values")
    return arr


def auc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every row (Mann–Whitney with mid-ranks for ties, equal to ``roc_auc_score``); NaN if one class."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1).astype(np.float64)
    n_neg = labels.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval (alpha / 2, 1 - alpha / 2) of the finite values; (NaN, NaN) if none."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def check_boot(n_boot: int, alpha: float) -> None:
    """Check the bootstrap settings: ``n_boot >= 0`` and ``0 < alpha < 1``."""
    if int(n_boot) < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot!r}")
    if not (0 < float(alpha) < 1):
        raise ConfigError(f"alpha must be within (0, 1), got {alpha!r}")


def roc_auc_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    stratified: bool = True,
) -> tuple[float, float, float]:
    """ROC AUC (``sklearn.metrics.roc_auc_score``) and its percentile bootstrap confidence interval.

    Args:
        labels: (n,) 0 / 1 (or bool) truth, both classes present.
        scores: (n,) finite scores, higher meaning more likely positive.
        n_boot: bootstrap resamples (0: no interval, lo = hi = NaN).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.
        alpha: 1 - confidence level (0.05: a 95 % interval from the 2.5th and 97.5th percentiles).
        stratified: resample positives and negatives separately (each keeps its count, so every resample has
            both classes); otherwise resample all cases together and skip resamples with one class.

    Returns:
        ``(auc, lo, hi)``.

    Raises:
        ConfigError: labels not binary, one class only, shapes differ, non-finite scores, bad n_boot / alpha.
    """
    from sklearn.metrics import roc_auc_score

    y = binary_labels(labels, "labels").reshape(-1)
    s = finite_scores(scores, np.shape(labels), "scores").reshape(-1)
    if y.all() or not y.any():
        raise ConfigError("roc_auc_ci needs both positive and negative cases")
    check_boot(n_boot, alpha)
    auc = float(roc_auc_score(y, s))
    if int(n_boot) == 0:
        return auc, math.nan, math.nan
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    if stratified:
        pos, neg = s[y], s[~y]
        boot_scores = np.concatenate(
            [pos[rng.integers(0, pos.size, (n_boot, pos.size))], neg[rng.integers(0, neg.size, (n_boot, neg.size))]],
            axis=1,
        )
        boot_labels = np.zeros_like(boot_scores, dtype=bool)
        boot_labels[:, : pos.size] = True
    else:
        idx = rng.integers(0, s.size, (n_boot, s.size))
        boot_scores, boot_labels = s[idx], y[idx]
    lo, hi = percentile_ci(auc_rows(boot_scores, boot_labels), float(alpha))
    return auc, lo, hi


def auc_difference_ci(
    labels: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) on the same cases and its paired, stratified percentile bootstrap interval.

    Both scores are resampled with the same case indices (positives and negatives separately), so the interval is
    that of the difference, not of two independent AUCs.

    Returns:
        ``(difference, lo, hi)`` (lo = hi = NaN when ``n_boot`` is 0).

    Raises:
        ConfigError: as :func:`roc_auc_ci`.
    """
    y = binary_labels(labels, "labels").reshape(-1)
    a = finite_scores(scores_a, np.shape(labels), "scores_a").reshape(-1)
    b = finite_scores(scores_b, np.shape(labels), "scores_b").reshape(-1)
    if y.all() or not y.any():
        raise ConfigError("auc_difference_ci needs both positive and negative cases")
    check_boot(n_boot, alpha)
    both = np.stack([a, b])
    diff = float(np.subtract(*auc_rows(both, np.broadcast_to(y, both.shape))))
    if int(n_boot) == 0:
        return diff, math.nan, math.nan
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    idx = np.concatenate(
        [
            pos[rng.integers(0, pos.size, (int(n_boot), pos.size))],
            neg[rng.integers(0, neg.size, (int(n_boot), neg.size))],
        ],
        axis=1,
    )
    boot_labels = np.zeros(idx.shape, dtype=bool)
    boot_labels[:, : pos.size] = True
    diffs = auc_rows(a[idx], boot_labels) - auc_rows(b[idx], boot_labels)
    lo, hi = percentile_ci(diffs, alpha)
    return diff, lo, hi
