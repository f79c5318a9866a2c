"""Chest X-ray metrics: per-class AUROC with bootstrap intervals (:func:`multilabel_auroc`), operating points
(:func:`youden_thresholds`, :func:`sensitivity_specificity`) and the pointing game (CAM localisation,
:func:`pointing_game`, :func:`pointing_game_pairs`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError
from .messages import name_list
from .roc import auc_rows, binary_labels, check_boot, finite_scores, percentile_ci


def _multilabel(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    yt = np.asarray(y_true)
    if yt.ndim == 1:
        yt = yt[:, None]
        ys = np.asarray(y_score, dtype=np.float64).reshape(-1, 1) if np.ndim(y_score) == 1 else np.asarray(y_score)
    else:
        ys = np.asarray(y_score)
    if yt.ndim != 2:
        raise ConfigError(f"y_true must be (n_images, n_classes), got shape {yt.shape}")
    y = binary_labels(yt, "y_true")
    s = finite_scores(ys, y.shape, "y_score")
    return y, s


def class_names(classes: Sequence[str] | None, n: int) -> list[str]:
    """Class names as str (default ``"0"``, ``"1"``, ...): ``n`` of them, distinct."""
    if classes is None:
        return [str(c) for c in range(n)]
    names = [str(c) for c in classes]
    if len(names) != n:
        raise ConfigError(f"{len(names)} class names for {n} classes")
    if len(set(names)) != len(names):
        raise ConfigError("class names must be distinct")
    return names


def multilabel_auroc(
    y_true: ArrayLike,
    y_score: ArrayLike,
    classes: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float, float]]:
    """Per-class ROC AUC with bootstrap intervals for multi-label images (one sigmoid per class), and their mean.

    The bootstrap resamples images (the same resample for every class, so the mean's interval keeps the classes'
    correlation); for a class, resamples with one class only are skipped, and for the mean, resamples where any
    evaluable class has one class only.

    Args:
        y_true: (n_images, n_classes) 0 / 1 labels.
        y_score: (n_images, n_classes) finite scores.
        classes: class names (default ``"0"``, ``"1"``, ...); ``"mean"`` is reserved.
        n_boot, seed, alpha: as :func:`roc_auc_ci` (plain, unstratified bootstrap).

    Returns:
        class name -> ``(auc, lo, hi)``, plus ``"mean"`` -> the macro average over the classes that have both
        positives and negatives. A class with one label only gets ``(nan, nan, nan)`` and a warning.
    """
    from sklearn.metrics import roc_auc_score

    y, s = _multilabel(y_true, y_score)
    names = class_names(classes, y.shape[1])
    if "mean" in names:
        raise ConfigError("'mean' is reserved for the macro average; rename that class")
    check_boot(n_boot, alpha)
    ok = y.any(axis=0) & ~y.all(axis=0)
    if not ok.any():
        raise ConfigError("multilabel_auroc: no class has both positive and negative images")
    if not ok.all():
        lacking = [n for n, good in zip(names, ok, strict=True) if not good]
        warnings.warn(
            f"classes with one label only (AUC undefined): {name_list(lacking)}",
            UserWarning,
            stacklevel=2,
        )
    aucs = np.full(y.shape[1], np.nan)
    for c in np.flatnonzero(ok):
        aucs[c] = roc_auc_score(y[:, c], s[:, c])
    boot = np.full((int(n_boot), y.shape[1]), np.nan)
    if int(n_boot) > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, y.shape[0], (int(n_boot), y.shape[0]))
        for c in np.flatnonzero(ok):
            boot[:, c] = auc_rows(s[idx, c], y[idx, c])
    out: dict[str, tuple[float, float, float]] = {}
    for c, name in enumerate(names):
        lo, hi = percentile_ci(boot[:, c], float(alpha)) if ok[c] else (math.nan, math.nan)
        out[name] = (float(aucs[c]), lo, hi)
    mean_boot = boot[:, ok].mean(axis=1) if int(n_boot) > 0 else np.empty(0)
    out["mean"] = (float(aucs[ok].mean()), *percentile_ci(mean_boot, float(alpha)))
    return out


def youden_thresholds(y_true: ArrayLike, y_score: ArrayLike) -> np.ndarray:
    """Per-class threshold maximising Youden's J = sensitivity + specificity - 1 (``sklearn.metrics.roc_curve``).

    A case is called positive when its score is >= the threshold. Among equal J the highest threshold wins.

    Args:
        y_true: (n_images, n_classes) 0 / 1 labels (or (n,) for one class).
        y_score: scores of the same shape.

    Returns:
        float64 (n_classes,) thresholds; NaN for a class with one label only.
    """
    from sklearn.metrics import roc_curve

    y, s = _multilabel(y_true, y_score)
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        if y[:, c].all() or not y[:, c].any():
            continue
        fpr, tpr, thr = roc_curve(y[:, c], s[:, c], drop_intermediate=False)
        youden = tpr - fpr
        best = np.flatnonzero(youden >= youden.max() - 1e-12)  # equal J up to rounding (1 - 1/3 vs 2/3 - 0)
        out[c] = float(thr[int(best[0])])
    return out


def sensitivity_specificity(
    y_true: ArrayLike, y_score: ArrayLike, thresholds: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sensitivity and specificity when a score >= its class threshold is called positive.

    Args:
        y_true: (n_images, n_classes) 0 / 1 labels (or (n,) for one class).
        y_score: scores of the same shape.
        thresholds: (n_classes,) thresholds (e.g. from :func:`youden_thresholds`) or one for all classes.

    Returns:
        ``(sensitivity, specificity)``, each float64 (n_classes,); NaN where a class has no positive (for
        sensitivity) or no negative (for specificity) image.
    """
    y, s = _multilabel(y_true, y_score)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64).reshape(-1), (y.shape[1],))
    pred = s >= t[None, :]
    n_pos = y.sum(axis=0)
    n_neg = (~y).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (pred & y).sum(axis=0) / n_pos
        spec = (~pred & ~y).sum(axis=0) / n_neg
    return np.where(n_pos > 0, sens, np.nan), np.where(n_neg > 0, spec, np.nan)


@dataclass(frozen=True)
class PointingPair:
    """One (image, class) pair of the pointing game.

    Attributes:
        image: index of the image in the inputs.
        class_index: index of the class.
        hit: the CAM's peak lies inside one of the class's boxes on that image.
        peak: (y, x) centre of the CAM's argmax cell, in the boxes' frame (native pixels when ``image_shapes``
            are given).
    """

    image: int
    class_index: int
    hit: bool
    peak: tuple[float, float]


def pointing_game_pairs(
    cams: ArrayLike | Sequence[ArrayLike],
    boxes: Sequence[Sequence[tuple[int, float, float, float, float]]],
    image_shapes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
) -> list[PointingPair]:
    """Every (image, class) pair with at least one lesion box, and whether the class CAM's peak falls in one.

    The rule and the arguments are those of :func:`pointing_game` (which averages these pairs per class); pairs
    come image by image, classes in increasing index.
    """
    maps = list(cams) if not isinstance(cams, np.ndarray) else [cams[i] for i in range(cams.shape[0])]
    if len(maps) != len(boxes):
        raise ConfigError(f"{len(maps)} CAMs for {len(boxes)} box lists")
    if not maps:
        raise ConfigError("pointing_game needs at least one image")
    first = np.asarray(maps[0])
    if first.ndim != 3:
        raise ConfigError(f"each CAM must be (n_classes, H, W), got shape {first.shape}")
    n_classes = first.shape[0]
    if image_shapes is None:
        frames: list[tuple[int, int] | None] = [None] * len(maps)
    elif len(image_shapes) == 2 and np.ndim(image_shapes[0]) == 0:
        frames = [tuple(image_shapes)] * len(maps)  # type: ignore[list-item]
    else:
        frames = [tuple(fs) for fs in image_shapes]  # type: ignore[misc]
        if len(frames) != len(maps):
            raise ConfigError(f"{len(frames)} image shapes for {len(maps)} images")
    pairs: list[PointingPair] = []
    for i, (cam_like, image_boxes, frame) in enumerate(zip(maps, boxes, frames, strict=True)):
        cam = np.asarray(cam_like, dtype=np.float64)
        if cam.ndim != 3 or cam.shape[0] != n_classes:
            raise ConfigError(f"image {i}: CAM must be ({n_classes}, H, W), got shape {cam.shape}")
        by_class: dict[int, list[tuple[float, float, float, float]]] = {}
        for box in image_boxes:
            if len(box) != 5:
                raise ConfigError(f"image {i}: a box must be (class_index, y0, x0, y1, x1), got {box!r}")
            ci = int(box[0])
            if not 0 <= ci < n_classes:
                raise ConfigError(f"image {i}: class index {ci} out of range 0..{n_classes - 1}")
            by_class.setdefault(ci, []).append(tuple(float(v) for v in box[1:]))  # type: ignore[arg-type]
        h_cam, w_cam = cam.shape[1:]
        sy, sx = (1.0, 1.0) if frame is None else (frame[0] / h_cam, frame[1] / w_cam)
        for ci in sorted(by_class):
            plane = np.where(np.isnan(cam[ci]), -np.inf, cam[ci])
            r, c = divmod(int(np.argmax(plane)), w_cam)
            cy, cx = (r + 0.5) * sy, (c + 0.5) * sx
            hit = any(y0 <= cy < y1 and x0 <= cx < x1 for y0, x0, y1, x1 in by_class[ci])
            pairs.append(PointingPair(i, ci, bool(hit), (float(cy), float(cx))))
    return pairs


def pointing_game(
    cams: ArrayLike | Sequence[ArrayLike],
    boxes: Sequence[Sequence[tuple[int, float, float, float, float]]],
    classes: Sequence[str] | None = None,
    image_shapes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
) -> dict[str, float]:
    """Pointing-game hit rate per class: does the maximum of the class activation map fall in the lesion?

    For each image and each class with at least one box on that image, the CAM's argmax cell (first in
    row-major order on ties; NaN never wins) is a hit when its centre lies inside any of the class's boxes,
    half-open: ``y0 <= y < y1`` and ``x0 <= x < x1``.

    Args:
        cams: (n_images, n_classes, H, W) array, or a list of (n_classes, H_i, W_i) arrays.
        boxes: per image, a list of ``(class_index, y0, x0, y1, x1)`` lesion boxes, (row, col) order.
        classes: class names (default ``"0"``, ``"1"``, ...).
        image_shapes: the (height, width) of the frame the boxes are given in, per image or one for all; the
            CAM cell (r, c) is then centred at ``((r + 0.5) * height / H, (c + 0.5) * width / W)``. None: boxes
            are in CAM cells, the centre is ``(r + 0.5, c + 0.5)``.

    Returns:
        class name -> hits / (image, class) pairs with a box; NaN for a class without any box.
    """
    pairs = pointing_game_pairs(cams, boxes, image_shapes)
    first = np.asarray(cams[0])  # type: ignore[index]
    n_classes = first.shape[0]
    names = class_names(classes, n_classes)
    hits = np.zeros(n_classes, dtype=np.int64)
    total = np.zeros(n_classes, dtype=np.int64)
    for pair in pairs:
        total[pair.class_index] += 1
        hits[pair.class_index] += int(pair.hit)
    return {name: (float(hits[c] / total[c]) if total[c] else math.nan) for c, name in enumerate(names)}
