"""Evaluation: lesion points (Liu et al. NMS), CAMELYON16 lesion-level FROC, slide-level AUC, X-ray metrics.

Coordinates follow :mod:`napari_patchdx.geometry`: continuous level-0 pixel coordinates ordered (y, x). (X, Y)
appears only in the CAMELYON16 CSV and GeoJSON writers / reader, at the format boundary.

Lesion points
    :func:`lesion_points` runs Liu et al.'s non-maximum suppression on a heatmap laid over level 0 by a
    :class:`~napari_patchdx.geometry.Grid`; the result is a :class:`PointsTable` (level-0 (y, x) and
    probability, highest probability first) that writes the CAMELYON16 submission CSV and QuPath GeoJSON.

CAMELYON16 FROC (the official protocol, see ``shared/REFERENCE.md``)
    :func:`evaluation_mask` grows every tumour region by 37.5 um at level 5, fills holes, labels the result with
    8-connectivity and marks isolated tumour cells (major axis below 275 um). :func:`froc` looks every detection
    up in that mask exactly like the official ``Evaluation_FROC.py`` (``mask[int(Y / 2**level), int(X / 2**level)]``)
    and computes the curve like its ``computeFROC`` and the score as the mean sensitivity at 1/4, 1/2, 1, 2, 4 and
    8 false positives per slide (``np.interp`` on the curve sorted by FP rate). Its one deliberate departure (ties
    in float64) and its errors on bad input are described in :mod:`napari_patchdx.evaluation.froc`.

    :func:`classify_points` gives the outcome of every detection by the very same lookup (hit / false positive /
    ITC-ignored, :class:`PointOutcomes`), for the napari points coloured by outcome and the thumbnails.

Slide level and chest X-rays
    :func:`slide_score` (maximum, as Liu et al., or mean of the top k), :func:`roc_auc_ci` (bootstrap confidence
    interval), :func:`multilabel_auroc`, :func:`youden_thresholds`, :func:`sensitivity_specificity` and
    :func:`pointing_game` (CAM localisation).

Slide-level classification (CAMELYON16 task 2)
    :func:`heatmap_features` (maximum, top-k means, tumour area above thresholds, the largest lesion region's size
    and shape, in mm² and micrometres) and :class:`SlideClassifier` (a random forest, as the CAMELYON16 winner, or a
    logistic regression) fitted on training slides; :func:`compare_with_maximum` compares it with the heatmap
    maximum by AUC with a paired bootstrap interval of the difference (:func:`auc_difference_ci`).

Evaluating a run
    :func:`evaluate_slides` (heatmap files -> lesion points, FROC, slide AUC, ``slides.csv``, thumbnails) and
    :func:`evaluate_cxr` (CAM files -> per-class AUROC, operating points, pointing game, ``images.csv``,
    thumbnails) write a run's ``evaluate/`` folder and return its metrics; both have ``*_job`` twins that yield
    progress for the widgets. :func:`evaluate_slide_inputs_job` is the in-memory core (heatmaps, annotations or
    points held by napari layers). Both tracks list suspected label errors (:data:`SUSPECT_RULE`): cases whose
    prediction confidently contradicts their label.

Every writer writes atomically (a temporary file beside the target, then ``os.replace``).

Modules (each imports only the ones listed before it; the names above are re-exported here)
    ``files`` (path type, atomic writes, reading text inputs), ``messages`` (name lists for messages),
    ``points`` (:class:`PointsTable`, CAMELYON16 CSV and GeoJSON), ``nms`` (:func:`lesion_points`),
    ``masks`` (:func:`evaluation_mask`, protocol constants and checks), ``outcomes`` (:class:`PointOutcomes`,
    :data:`OUTCOME_COLORS`), ``figures`` (Agg figures, :func:`draw_roc`), ``froc_result`` (:class:`FrocResult`,
    :class:`SlideFroc`, :func:`draw_froc`), ``froc`` (:func:`froc`, :func:`classify_points`), ``froc_dirs``
    (:func:`froc_from_dirs`), ``roc`` (:func:`slide_score`, :func:`roc_auc_ci`), ``xray_metrics`` (AUROC,
    operating points, pointing game), ``label_errors`` (:func:`suspected_label_errors`), ``outputs`` (JSON / CSV
    writers), ``thumbnails`` (:func:`slide_thumbnail`, :func:`cxr_thumbnail`), ``slides``
    (:func:`evaluate_slide_inputs_job`), ``slide_files`` (:func:`evaluate_slides`), ``xrays``
    (:func:`evaluate_cxr`), ``settings`` (:class:`EvaluateSettings`), ``evaluate_files`` (:func:`evaluate`: either
    track in one call, routed by its inputs).
"""

from __future__ import annotations

from .evaluate_files import evaluate
from .figures import draw_roc
from .froc import FROC_FP_RATES, classify_points, froc
from .froc_dirs import froc_from_dirs
from .froc_result import FrocResult, SlideFroc, draw_froc
from .label_errors import SUSPECT_HIGH, SUSPECT_LOW, SUSPECT_RULE, suspected_label_errors
from .masks import CAMELYON_LEVEL, CAMELYON_MPP, GROWTH_UM, ITC_MAJOR_AXIS_UM, evaluation_mask
from .nms import LIU_RADIUS_UM, lesion_points
from .outcomes import OUTCOME_COLORS, OUTCOME_FALSE_POSITIVE, OUTCOME_HIT, OUTCOME_ITC, OUTCOMES, PointOutcomes
from .points import PointsTable, read_camelyon_csv
from .roc import auc_difference_ci, roc_auc_ci, slide_score
from .settings import EvaluateSettings
from .slide_classifier import CLASSIFIERS, SlideClassifier, compare_with_maximum
from .slide_features import feature_names, heatmap_features
from .slide_files import evaluate_slides, evaluate_slides_job
from .slides import SLIDES_CSV_COLUMNS, SlideInput, SlidesEvaluation, evaluate_slide_inputs, evaluate_slide_inputs_job
from .thumbnails import cxr_thumbnail, slide_thumbnail
from .xray_metrics import (
    PointingPair,
    multilabel_auroc,
    pointing_game,
    pointing_game_pairs,
    sensitivity_specificity,
    youden_thresholds,
)
from .xrays import evaluate_cxr, evaluate_cxr_job

__all__ = [
    "CAMELYON_LEVEL",
    "CAMELYON_MPP",
    "CLASSIFIERS",
    "FROC_FP_RATES",
    "GROWTH_UM",
    "ITC_MAJOR_AXIS_UM",
    "LIU_RADIUS_UM",
    "OUTCOMES",
    "OUTCOME_COLORS",
    "OUTCOME_FALSE_POSITIVE",
    "OUTCOME_HIT",
    "OUTCOME_ITC",
    "SLIDES_CSV_COLUMNS",
    "SUSPECT_HIGH",
    "SUSPECT_LOW",
    "SUSPECT_RULE",
    "EvaluateSettings",
    "FrocResult",
    "PointOutcomes",
    "PointingPair",
    "PointsTable",
    "SlideClassifier",
    "SlideFroc",
    "SlideInput",
    "SlidesEvaluation",
    "auc_difference_ci",
    "classify_points",
    "compare_with_maximum",
    "cxr_thumbnail",
    "draw_froc",
    "draw_roc",
    "evaluate",
    "evaluate_cxr",
    "evaluate_cxr_job",
    "evaluate_slide_inputs",
    "evaluate_slide_inputs_job",
    "evaluate_slides",
    "evaluate_slides_job",
    "evaluation_mask",
    "feature_names",
    "froc",
    "froc_from_dirs",
    "heatmap_features",
    "lesion_points",
    "multilabel_auroc",
    "pointing_game",
    "pointing_game_pairs",
    "read_camelyon_csv",
    "roc_auc_ci",
    "sensitivity_specificity",
    "slide_score",
    "slide_thumbnail",
    "suspected_label_errors",
    "youden_thresholds",
]
