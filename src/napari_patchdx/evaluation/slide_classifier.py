"""Slide-level classification (CAMELYON16 task 2): a scikit-learn classifier on heatmap features
(:mod:`~napari_patchdx.evaluation.slide_features`) fitted on the training slides, compared with the heatmap's
maximum (Liu et al.'s slide score) by ROC AUC with a paired bootstrap interval of the difference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .roc import auc_difference_ci, roc_auc_ci
from .slide_features import feature_names

CLASSIFIERS: tuple[str, ...] = ("forest", "logistic")
"""``forest``: a random forest (Wang et al. 2016, the CAMELYON16 winner); ``logistic``: standardised features and
an L2 logistic regression (fewer parameters, for very small training sets)."""


def _matrix(features: Sequence[Mapping[str, float]]) -> np.ndarray:
    names = feature_names()
    try:
        x = np.array([[float(f[n]) for n in names] for f in features], dtype=np.float64)
    except KeyError as exc:
        raise ConfigError(f"slide features lack {exc.args[0]!r}: compute them with heatmap_features") from None
    if x.size and not np.isfinite(x).all():
        raise ConfigError("slide features contain NaN or infinite values")
    return x.reshape(len(features), len(names))


@dataclass
class SlideClassifier:
    """A fitted slide classifier: ``predict`` gives each slide's tumour probability from its heatmap features."""

    method: str
    estimator: Any

    @classmethod
    def fit(
        cls, features: Sequence[Mapping[str, float]], labels: Sequence[int], *, method: str = "forest", seed: int = 0
    ) -> SlideClassifier:
        """Fit on the training slides' features and 0 / 1 labels (both classes needed).

        Raises:
            ConfigError: an unknown method, one class only, or features that are not :func:`heatmap_features`'.
        """
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if method not in CLASSIFIERS:
            raise ConfigError(f"slide classifier must be one of {', '.join(CLASSIFIERS)}, got {method!r}")
        x, y = _matrix(features), np.asarray(labels, dtype=int).reshape(-1)
        if len(y) != len(x):
            raise ConfigError(f"{len(x)} feature rows but {len(y)} labels")
        if not (set(np.unique(y)) <= {0, 1}) or len(np.unique(y)) < 2:
            raise ConfigError("the slide classifier needs tumour and normal training slides (labels 0 / 1)")
        if method == "forest":
            estimator = RandomForestClassifier(n_estimators=300, min_samples_leaf=1, random_state=seed, n_jobs=1)
        else:
            estimator = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        estimator.fit(x, y)
        return cls(method, estimator)

    def predict(self, features: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Tumour probability of each slide, shape (n,)."""
        return np.asarray(self.estimator.predict_proba(_matrix(features))[:, 1], dtype=np.float64)


def compare_with_maximum(
    train: Sequence[tuple[Mapping[str, float], int]],
    test: Sequence[tuple[Mapping[str, float], int]],
    *,
    method: str = "forest",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a :class:`SlideClassifier` on ``train`` and compare it with the heatmap maximum on ``test``.

    Args:
        train, test: ``(features, label)`` per slide (label 1: tumour slide).
        method: see :data:`CLASSIFIERS`.
        n_boot, seed: bootstrap resamples and seed of the intervals.

    Returns:
        ``slide_auc_classifier`` and ``slide_auc_max`` (each ``[auc, lo, hi]``), ``difference`` (classifier minus
        maximum, ``[d, lo, hi]``, paired over the test slides), ``scores`` (per test slide: classifier, maximum),
        ``method``, ``n_train``, ``n_test``.
    """
    model = SlideClassifier.fit([f for f, _ in train], [y for _, y in train], method=method, seed=seed)
    labels = np.array([y for _, y in test], dtype=int)
    ours = model.predict([f for f, _ in test])
    maximum = np.array([float(f["max"]) for f, _ in test])
    return {
        "method": method,
        "n_train": len(train),
        "n_test": len(test),
        "slide_auc_classifier": list(roc_auc_ci(labels, ours, n_boot, seed)),
        "slide_auc_max": list(roc_auc_ci(labels, maximum, n_boot, seed)),
        "difference": list(auc_difference_ci(labels, ours, maximum, n_boot, seed)),
        "scores": [{"classifier": float(a), "max": float(b)} for a, b in zip(ours, maximum, strict=True)],
    }
