"""CAMELYON16 lesion-level FROC (the official protocol, see ``shared/REFERENCE.md``): :func:`froc` and
:func:`classify_points`.

:func:`froc` looks every detection up in the :func:`~napari_patchdx.evaluation.masks.evaluation_mask` exactly like the
official ``Evaluation_FROC.py`` (``mask[int(Y / 2**level), int(X / 2**level)]``) and computes the curve like its
``computeFROC`` and the score as the mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false positives per slide
(:data:`FROC_FP_RATES`; ``np.interp`` on the curve sorted by FP rate).

One deliberate departure: the official code stores each lesion's best probability in a float32 array while
false-positive probabilities stay float64, so a lesion and a false positive with the same probability (a tie)
can fall on different sides of a threshold. We keep every probability in float64, so ties are treated alike.

Bad input is an error, never a silently different number (:func:`froc`):

* a detection outside the level-0 slide (X or Y negative, ``X >= width`` or ``Y >= height``), or outside the
  supplied mask array, raises :class:`~napari_patchdx.errors.InputFileError` naming the slide and the file;
* a probability that is not finite or outside [0, 1] raises (the CSV reader already rejects NaN);
* slide sets: without an explicit ``slides`` list the detection slides and the ground-truth slides must be the
  same names; with one, every detection slide must be listed and every listed slide needs a ground-truth
  entry (``None`` for a normal slide); a listed slide without detections contributes none.

:func:`classify_points` gives the outcome of every detection by the very same lookup (hit / false positive /
ITC-ignored, :class:`~napari_patchdx.evaluation.outcomes.PointOutcomes`), for the napari points coloured by outcome
and the thumbnails. :func:`lookup_slides` and :func:`froc_from_lookups` are the two steps of :func:`froc`, shared
with the slide evaluation (:mod:`napari_patchdx.evaluation.slides`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError, InputFileError
from ..io.annotations.model import AnnotationSet, as_tumour_truth
from .froc_result import FrocResult, SlideFroc
from .masks import CAMELYON_LEVEL, CAMELYON_MPP, check_level0_shape, check_protocol, evaluation_mask
from .messages import name_list
from .outcomes import OUTCOME_FALSE_POSITIVE, OUTCOME_HIT, OUTCOME_ITC, PointOutcomes
from .points import PointsTable

FROC_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per slide at which the FROC score averages the sensitivity."""


def _froc_curve(
    fp_probs: np.ndarray, tp_probs: np.ndarray, n_slides: int, n_lesions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official ``computeFROC``: (FPs per slide, sensitivity, thresholds), closing point last.

    ``tp_probs`` holds one value per label of every evaluation mask (ITCs and missed lesions 0), as the official
    ``TP_probs`` array; thresholds are every distinct value of both lists except the smallest.
    """
    pool = np.unique(np.concatenate([fp_probs, tp_probs]))
    thresholds = pool[1:]
    fp_sorted = np.sort(fp_probs)
    tp_sorted = np.sort(tp_probs)
    # counts of values >= t for every threshold t
    total_fps = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    total_tps = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    fps = np.append(total_fps, 0).astype(np.float64) / float(n_slides)
    sens = np.append(total_tps, 0).astype(np.float64) / float(n_lesions)
    return fps, sens, np.append(thresholds, np.inf)


def _froc_score(fps: np.ndarray, sens: np.ndarray) -> dict[float, float]:
    """Sensitivity at :data:`FROC_FP_RATES` by ``np.interp`` on the reversed official curve."""
    values = np.interp(np.asarray(FROC_FP_RATES), fps[::-1], sens[::-1])
    return {float(r): float(v) for r, v in zip(FROC_FP_RATES, values, strict=True)}


def _resolve_slides(
    detections: Mapping[str, PointsTable], truths: Mapping[str, Any], slides: Sequence[str] | None
) -> list[str]:
    det, gt = set(detections), set(truths)
    if slides is None:
        if det != gt:
            problems = []
            if det - gt:
                problems.append(f"detections for slides without ground truth: {name_list(det - gt)}")
            if gt - det:
                problems.append(f"slides with ground truth but no detections: {name_list(gt - det)}")
            raise ConfigError(
                "the detection slides and the ground-truth slides differ; "
                + "; ".join(problems)
                + " (pass an explicit slide list to evaluate listed slides without detections)"
            )
        return list(truths)
    order = [str(s) for s in slides]
    listed = set(order)
    if len(listed) != len(order):
        dupes = {s for s in order if order.count(s) > 1}
        raise ConfigError(f"the slide list names some slides more than once: {name_list(dupes)}")
    if det - listed:
        raise ConfigError(f"detections for slides that are not in the slide list: {name_list(det - listed)}")
    if listed - gt:
        raise ConfigError(
            f"listed slides without a ground-truth entry (use None for a normal slide): {name_list(listed - gt)}"
        )
    return order


@dataclass(frozen=True)
class SlideLookup:
    """One slide's detections looked up in its evaluation mask.

    Made by :func:`lookup_slides`; :func:`froc` and the slide evaluation use it.
    """

    row: SlideFroc
    outcomes: PointOutcomes
    fp_probs: np.ndarray
    tp_probs: np.ndarray  # best probability per evaluation-mask label (0 for missed lesions and ITCs)
    unchecked: bool  # no level-0 shape known: the outside-the-slide check was off


def _lookup_slide(
    name: str,
    det: PointsTable | None,
    truth: AnnotationSet | ArrayLike | None,
    shape: tuple[int, int] | None,
    level: int,
    mpp: float,
) -> SlideLookup:
    """Look one slide's detections up in its evaluation mask exactly as the official ``Evaluation_FROC.py``."""
    truth = as_tumour_truth(truth)
    ds = 2**level
    if det is None:
        det = PointsTable.empty()
    elif not isinstance(det, PointsTable):
        raise ConfigError(f"slide {name!r}: detections must be a PointsTable, got {type(det).__name__}")
    prob = det.probability
    bad = np.flatnonzero((prob < 0) | (prob > 1))
    if bad.size:
        raise InputFileError(
            det.source,
            f"slide {name!r}: {bad.size} probabilities lie outside [0, 1] (e.g. {prob[bad[0]]!r}); "
            "FROC needs probabilities",
        )
    mask_array: np.ndarray | None = None
    if truth is not None and not isinstance(truth, AnnotationSet):
        mask_array = np.asarray(truth)
        if mask_array.ndim != 2:
            raise ConfigError(f"slide {name!r}: a tumour mask must be 2-D, got shape {mask_array.shape}")
    unchecked = False
    if shape is not None:
        extent: tuple[int, int] | None = check_level0_shape(shape, f"slide {name!r}")
    elif mask_array is not None:
        extent = (mask_array.shape[0] * ds, mask_array.shape[1] * ds)
    else:
        extent = None
        unchecked = len(det) > 0
    if extent is not None and len(det):
        outside = np.flatnonzero((det.y < 0) | (det.x < 0) | (det.y >= extent[0]) | (det.x >= extent[1]))
        if outside.size:
            k = int(outside[0])
            raise InputFileError(
                det.source,
                f"slide {name!r}: {outside.size} detection(s) lie outside the {extent[0]} x {extent[1]} px "
                f"level-0 slide (height x width), e.g. X={det.x[k]:g}, Y={det.y[k]:g}",
            )
    n = len(det)
    if truth is None:
        outcomes = PointOutcomes(
            outcome=np.full(n, OUTCOME_FALSE_POSITIVE, dtype=object),
            lesion=np.zeros(n, dtype=np.int64),
            first_hit=np.zeros(n, dtype=bool),
        )
        row = SlideFroc(name, False, 0, 0, n, 0, n, 0)
        return SlideLookup(row, outcomes, prob, np.empty(0), unchecked)
    if isinstance(truth, AnnotationSet):
        if extent is None:
            ymax = xmax = 1.0
            if truth.regions:
                _, _, by, bx = truth.bounds()
                ymax, xmax = max(ymax, by), max(xmax, bx)
            if n:
                ymax, xmax = max(ymax, float(det.y.max()) + 1), max(xmax, float(det.x.max()) + 1)
            extent = (math.ceil(ymax), math.ceil(xmax))
        labels, itc, _ = evaluation_mask(truth, extent, level, mpp)
    else:
        assert mask_array is not None
        labels, itc, _ = evaluation_mask(mask_array, shape, level, mpp)
    r = (det.y / ds).astype(np.int64)  # int() truncation, as the official code (coordinates are >= 0)
    c = (det.x / ds).astype(np.int64)
    if n and (r.max() >= labels.shape[0] or c.max() >= labels.shape[1] or r.min() < 0 or c.min() < 0):
        raise InputFileError(det.source, f"slide {name!r}: detections fall outside the {labels.shape} evaluation mask")
    hit = labels[r, c]
    n_labels = int(labels.max())
    is_itc = np.zeros(n_labels + 1, dtype=bool)
    is_itc[list(itc)] = True
    on_itc = is_itc[hit]
    fp = hit == 0
    lesion = ~fp & ~on_itc
    best = np.zeros(n_labels, dtype=np.float64)
    np.maximum.at(best, hit[lesion] - 1, prob[lesion])
    outcome = np.full(n, OUTCOME_HIT, dtype=object)
    outcome[fp] = OUTCOME_FALSE_POSITIVE
    outcome[on_itc] = OUTCOME_ITC
    first_hit = np.zeros(n, dtype=bool)
    seen: set[int] = set()
    for k in np.flatnonzero(lesion).tolist():  # table order is decreasing probability: the first is the best
        if int(hit[k]) not in seen:
            seen.add(int(hit[k]))
            first_hit[k] = True
    lesion_ids = np.setdiff1d(np.arange(1, n_labels + 1), np.fromiter(itc, dtype=np.int64, count=len(itc)))
    row = SlideFroc(
        slide=name,
        is_tumor=True,
        n_lesions=int(lesion_ids.size),
        n_itc=len(itc),
        n_detections=n,
        hits=int(np.count_nonzero(best[lesion_ids - 1] > 0)),
        false_positives=int(np.count_nonzero(fp)),
        ignored=int(np.count_nonzero(on_itc)),
    )
    outcomes = PointOutcomes(outcome=outcome, lesion=hit.astype(np.int64), first_hit=first_hit)
    return SlideLookup(row, outcomes, prob[fp], best, unchecked)


def warn_unchecked(unchecked: Sequence[str], stacklevel: int = 3) -> None:
    """Warn that the outside-the-slide check was off for these slides (they have no level-0 shape)."""
    if unchecked:
        warnings.warn(
            f"no level-0 shape for {len(unchecked)} slide(s) ({name_list(unchecked)}): the check that their "
            "detections lie on the slide is off (annotated slides are rasterised over the extent of their "
            "annotations and detections)",
            UserWarning,
            stacklevel=stacklevel,
        )


def lookup_slides(
    detections: Mapping[str, PointsTable],
    truths: Mapping[str, AnnotationSet | ArrayLike | None],
    level0_shapes: Mapping[str, tuple[int, int]] | None,
    level: int,
    mpp: float,
    slides: Sequence[str] | None,
) -> list[SlideLookup]:
    """Check the protocol and the slide set, then look every slide's detections up in its mask."""
    level, mpp = check_protocol(level, mpp)
    order = _resolve_slides(detections, truths, slides)
    if not order:
        raise ConfigError("no slides to evaluate")
    shapes = level0_shapes or {}
    return [_lookup_slide(name, detections.get(name), truths[name], shapes.get(name), level, mpp) for name in order]


def froc_from_lookups(lookups: Sequence[SlideLookup], level: int, mpp: float) -> FrocResult:
    """The FROC curve and score of looked-up slides; a ConfigError when no slide has a lesion to find."""
    rows = [lk.row for lk in lookups]
    n_lesions = sum(row.n_lesions for row in rows)
    if n_lesions == 0:
        raise ConfigError(
            f"no lesion to find in the {len(rows)} slide(s) (no tumour slide, or only isolated tumour cells): "
            "lesion sensitivity and the FROC score are undefined"
        )
    fp_probs = np.concatenate([lk.fp_probs for lk in lookups]) if lookups else np.empty(0)
    tp_probs = np.concatenate([lk.tp_probs for lk in lookups]) if lookups else np.empty(0)
    fps, sens, thresholds = _froc_curve(fp_probs, tp_probs, len(rows), n_lesions)
    at = _froc_score(fps, sens)
    return FrocResult(
        score=float(np.mean(list(at.values()))),
        sensitivity_at=at,
        fps_per_slide=fps,
        sensitivity=sens,
        thresholds=thresholds,
        slides=rows,
        level=int(level),
        mpp=float(mpp),
    )


def froc(
    detections: Mapping[str, PointsTable],
    truths: Mapping[str, AnnotationSet | ArrayLike | None],
    level0_shapes: Mapping[str, tuple[int, int]] | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
    *,
    slides: Sequence[str] | None = None,
) -> FrocResult:
    """Lesion-level FROC of the CAMELYON16 challenge (official protocol, see the module docstring).

    Per slide, each detection is looked up in the :func:`evaluation_mask` at
    ``(int(Y / 2**level), int(X / 2**level))``: label 0 is a false positive, an ITC label is ignored, a lesion
    label is a hit (each lesion keeps its highest probability; extra detections in it are not false positives).
    On a normal slide (truth None) every detection is a false positive. The curve (:func:`_froc_curve`) counts,
    for each threshold t (every distinct probability except the smallest, including the 0 of each missed lesion
    and ITC, as the official code), false positives with probability >= t over the number of slides, and lesions
    whose best probability is >= t over the number of non-ITC lesions; a (0, 0) point closes it. The score is the
    mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 FPs per slide. :func:`classify_points` gives the outcome of
    every detection by the same lookup.

    Args:
        detections: slide name -> its lesion points (level-0 (y, x) and probability in [0, 1]).
        truths: slide name -> its ground truth: an :class:`AnnotationSet` (tumour slide), a precomputed tumour
            mask at level ``level`` (non-zero is tumour), or None (normal slide).
        level0_shapes: slide name -> level-0 (height, width) in pixels. Needed to rasterise annotations and to
            check that detections lie on the slide. For a slide without one: a mask's extent (shape times
            ``2**level``) is used; for annotations, the extent of the annotations and the detections, with a
            warning that the outside-the-slide check is off for it (likewise for a normal slide).
        level: pyramid level of the evaluation mask (5).
        mpp: level-0 microns per pixel assumed by the protocol (0.243).
        slides: the explicit slide set (its order is the per-slide table's order). Without it, the detection and
            ground-truth slides must be the same names.

    Raises:
        ConfigError: slide-set mismatch (the message lists the names), no lesion to find in any slide, no slide,
            bad level / mpp / shapes / masks.
        InputFileError: a detection outside the slide (or the mask), or a probability outside [0, 1]; the message
            names the slide and the detection file when known.
    """
    level, mpp = check_protocol(level, mpp)
    lookups = lookup_slides(detections, truths, level0_shapes, level, mpp, slides)
    warn_unchecked([lk.row.slide for lk in lookups if lk.unchecked])
    return froc_from_lookups(lookups, level, mpp)


def classify_points(
    points: PointsTable,
    truth: AnnotationSet | ArrayLike | None,
    level0_shape: tuple[int, int] | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
    *,
    name: str = "slide",
) -> PointOutcomes:
    """The outcome of every detection of one slide under the CAMELYON16 protocol (as :func:`froc` counts it).

    Args:
        points: the slide's detections (level-0 (y, x), probability in [0, 1]).
        truth: an :class:`AnnotationSet`, a tumour mask at level ``level`` (non-zero is tumour), or None for a
            normal slide (every detection is then a false positive).
        level0_shape: the slide's level-0 (height, width); see :func:`froc` for what happens without it.
        level, mpp: the protocol's pyramid level and level-0 microns per pixel (5 and 0.243 in the challenge).
        name: the slide's name, used in error messages.

    Returns:
        A :class:`PointOutcomes` aligned with ``points`` (hit / false positive / ITC-ignored, lesion label and
        whether the detection is its lesion's best).

    Raises:
        InputFileError: a detection outside the slide or a probability outside [0, 1].
        ConfigError: bad level / mpp / shape / mask.
    """
    level, mpp = check_protocol(level, mpp)
    lookup = _lookup_slide(str(name), points, truth, level0_shape, level, mpp)
    warn_unchecked([str(name)] if lookup.unchecked else [])
    return lookup.outcomes
