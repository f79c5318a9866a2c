"""Evaluating slides held in memory (heatmaps, annotations or points of napari layers).

:func:`evaluate_slide_inputs_job` turns a list of :class:`SlideInput` into a :class:`SlidesEvaluation` (lesion
points, FROC, per-point outcomes, slide scores and AUC, suspected label errors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputFileError
from ..geometry import Grid
from ..io.annotations.model import AnnotationSet, as_tumour_truth
from ..progress import Job, Progress, run_job
from .froc import froc_from_lookups, lookup_slides, warn_unchecked
from .froc_result import FrocResult, SlideFroc
from .label_errors import SUSPECT_HIGH, SUSPECT_LOW, check_suspect_limits, suspected_label_errors
from .masks import CAMELYON_LEVEL, CAMELYON_MPP, check_level0_shape, check_protocol
from .messages import name_list
from .nms import LIU_RADIUS_UM, LIU_THRESHOLD, lesion_points
from .outcomes import OUTCOMES, PointOutcomes
from .outputs import auc_interval
from .points import PointsTable
from .roc import check_boot, roc_auc_ci, slide_score


@dataclass(eq=False)
class SlideInput:
    """One slide to evaluate in memory (:func:`evaluate_slide_inputs_job`).

    Attributes:
        name: the slide's name (file stem); names must be distinct.
        heatmap: float (rows, cols) tumour probabilities laid over level 0 by ``grid`` (NaN = not evaluated),
            or None when only ``points`` are given.
        grid: where the heatmap's cells lie in level 0 (:class:`~napari_patchdx.geometry.Grid`).
        truth: the ground truth: an :class:`AnnotationSet` (a tumour slide), a tumour mask at the evaluation
            level (non-zero is tumour), or None (a normal slide).
        level0_shape: the slide's level-0 (height, width) in pixels (None: unknown; see :func:`froc`).
        points: lesion points to evaluate instead of those found in ``heatmap`` by non-maximum suppression.
        source: the heatmap (or points) file, named in error messages.
    """

    name: str
    heatmap: np.ndarray | None = None
    grid: Grid | None = None
    truth: AnnotationSet | np.ndarray | None = None
    level0_shape: tuple[int, int] | None = None
    points: PointsTable | None = None
    source: Path | None = None


@dataclass(eq=False)
class SlidesEvaluation:
    """The evaluation of a set of slides (:func:`evaluate_slide_inputs_job`).

    Attributes:
        names: slide names, in input order.
        is_tumor: (n,) bool, True for slides with ground truth (the CAMELYON16 convention).
        scores: (n,) float64 slide scores (NaN when a slide has no heatmap).
        points: slide -> its lesion points (level-0 (y, x), probability).
        outcomes: slide -> the outcome of each of its points (:class:`PointOutcomes`, same order).
        per_slide: slide -> its :class:`SlideFroc` counts (lesions, hits, ITCs, false positives).
        froc: the FROC result, or None when it is undefined (``froc_note`` says why).
        auc: ``(auc, lo, hi)`` slide-level ROC AUC with its bootstrap interval, or None (``auc_note`` says why).
        suspects: suspected label errors (:func:`suspected_label_errors`).
        settings: the parameters used (JSON-ready).
        moved_points: points of edge cells moved onto the slide (see :func:`evaluate_slide_inputs_job`).
    """

    names: list[str]
    is_tumor: np.ndarray
    scores: np.ndarray
    points: dict[str, PointsTable]
    outcomes: dict[str, PointOutcomes]
    per_slide: dict[str, SlideFroc]
    froc: FrocResult | None
    froc_note: str
    auc: tuple[float, float, float] | None
    auc_note: str
    suspects: list[dict[str, Any]]
    settings: dict[str, Any]
    moved_points: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """The per-slide table (the columns of :data:`SLIDES_CSV_COLUMNS`), in slide order."""
        suspect = {s["name"] for s in self.suspects}
        out = []
        for name, tumour, score in zip(self.names, self.is_tumor, self.scores, strict=True):
            row = self.per_slide[name]
            out.append(
                {
                    "slide": name,
                    "label": "tumor" if tumour else "normal",
                    "score": float(score),
                    "detections": row.n_detections,
                    "lesions": row.n_lesions,
                    "lesions_detected": row.hits,
                    "itc_lesions": row.n_itc,
                    "itc_detections": row.ignored,
                    "false_positives": row.false_positives,
                    "suspect": name in suspect,
                }
            )
        return out

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary: counts, FROC score and sensitivities, slide AUC with its interval, settings."""
        froc_part: dict[str, Any]
        if self.froc is not None:
            d = self.froc.to_dict()
            froc_part = {k: d[k] for k in ("score", "sensitivity_at", "n_slides", "n_lesions", "n_itc", "level", "mpp")}
        else:
            froc_part = {"score": None, "skipped": self.froc_note}
        auc_part: dict[str, Any] = auc_interval(self.auc)
        auc_part.update(
            confidence=0.95,
            n_boot=self.settings.get("n_boot"),
            n_tumor=int(np.count_nonzero(self.is_tumor & np.isfinite(self.scores))),
            n_normal=int(np.count_nonzero(~self.is_tumor & np.isfinite(self.scores))),
        )
        if self.auc is None:
            auc_part["skipped"] = self.auc_note
        elif self.auc_note:
            auc_part["note"] = self.auc_note
        n_points = sum(len(p) for p in self.points.values())
        counts = {k: sum(o.counts()[k] for o in self.outcomes.values()) for k in OUTCOMES}
        return {
            "track": "slides",
            "n_slides": len(self.names),
            "n_tumor": int(np.count_nonzero(self.is_tumor)),
            "n_normal": int(np.count_nonzero(~self.is_tumor)),
            "froc": froc_part,
            "slide_auc": auc_part,
            "points": {"total": n_points, "moved_onto_slide": self.moved_points, **counts},
            "suspects": len(self.suspects),
            "settings": self.settings,
        }


#: the columns of the per-slide table that hold counts (integers)
SLIDES_COUNT_COLUMNS = (
    "detections",
    "lesions",
    "lesions_detected",
    "itc_lesions",
    "itc_detections",
    "false_positives",
)
SLIDES_CSV_COLUMNS = ("slide", "label", "score", *SLIDES_COUNT_COLUMNS, "suspect")
"""Columns of ``slides.csv``: slide (name), label (tumor / normal), score (slide score), detections (lesion
points, all with probability above the NMS threshold), lesions (non-ITC lesions of the evaluation mask),
lesions_detected (lesions with at least one point), itc_lesions, itc_detections (points on ITCs, ignored),
false_positives (points outside every lesion; every point on a normal slide), suspect (1 = suspected label
error)."""


def _parse_score(score: str) -> tuple[str, int]:
    """``"max"`` -> ("max", 1); ``"topk_mean"`` -> top 10 mean; ``"top<k>"`` / ``"top<k>_mean"`` -> top k mean."""
    text = str(score).strip().lower()
    if text == "max":
        return "max", 1
    if text == "topk_mean":
        return "topk_mean", 10
    if text.startswith("top"):
        digits = text[3:].removesuffix("_mean")
        if digits.isdigit() and int(digits) >= 1:
            return "topk_mean", int(digits)
    raise ConfigError(f"unknown slide score {score!r}; use 'max' (Liu et al.) or 'top<k>' (mean of the k largest)")


def _check_heatmap(inp: SlideInput) -> np.ndarray:
    heat = np.asarray(inp.heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise InputFileError(inp.source, f"slide {inp.name!r}: the heatmap must be 2-D, got shape {heat.shape}")
    if inp.grid is None:
        raise ConfigError(f"slide {inp.name!r}: a heatmap needs its grid (where its cells lie in level 0)")
    if tuple(heat.shape) != tuple(int(v) for v in inp.grid.shape):
        raise InputFileError(
            inp.source,
            f"slide {inp.name!r}: heatmap shape {heat.shape} does not match its grid {tuple(inp.grid.shape)}",
        )
    finite = heat[np.isfinite(heat)]
    if finite.size == 0:
        raise InputFileError(
            inp.source,
            f"slide {inp.name!r}: the heatmap has no evaluated cell (all NaN), so the slide has no score; was its "
            "tissue mask empty?",
        )
    if np.isinf(heat).any() or finite.min() < 0 or finite.max() > 1:
        raise InputFileError(
            inp.source,
            f"slide {inp.name!r}: heatmap values span {finite.min():g} .. {finite.max():g} (or are infinite); "
            "they must be probabilities in [0, 1] (NaN = not evaluated)",
        )
    if inp.level0_shape is not None:
        h, w = check_level0_shape(inp.level0_shape, f"slide {inp.name!r}")
        g = inp.grid
        need = (
            math.ceil((h - g.origin[0]) / g.spacing[0]),
            math.ceil((w - g.origin[1]) / g.spacing[1]),
        )
        if abs(need[0] - g.shape[0]) > 1 or abs(need[1] - g.shape[1]) > 1 or g.origin[0] >= h or g.origin[1] >= w:
            raise InputFileError(
                inp.source,
                f"slide {inp.name!r}: the heatmap's {g.shape[0]} x {g.shape[1]} cells of {g.spacing[0]:g} px do not "
                f"cover the {h} x {w} px level-0 slide (about {need[0]} x {need[1]} cells expected); is it another "
                "slide's heatmap?",
            )
    return heat


def _onto_slide(
    points: PointsTable, grid: Grid, shape: tuple[int, int], source: Path | None
) -> tuple[PointsTable, int]:
    """Move points whose cell centre lies off the slide to the centre of the part of their cell on the slide.

    A heatmap's last row / column of cells may extend past the slide's edge (the grid has ``ceil(h / stride)``
    rows), so such a cell's centre can fall outside the level-0 image, where the FROC protocol refuses it; the
    cell's patch looked at the slide's edge, so its point goes to the middle of the cell's on-slide part.
    """
    if not len(points):
        return points, 0
    y, x = points.y.copy(), points.x.copy()
    rows, cols = grid.index_of(y, x)
    moved = np.zeros(len(points), dtype=bool)
    for coord, idx, axis in ((y, rows, 0), (x, cols, 1)):
        lo = grid.origin[axis] + idx * grid.spacing[axis]
        hi = lo + grid.spacing[axis]
        lo_in, hi_in = np.maximum(lo, 0.0), np.minimum(hi, float(shape[axis]))
        off = (coord < 0) | (coord >= shape[axis])
        if (off & (lo_in >= hi_in)).any():
            raise InputFileError(source, "lesion points fall in heatmap cells that lie entirely off the slide")
        coord[off] = (lo_in[off] + hi_in[off]) / 2.0
        moved |= off
    return PointsTable(y=y, x=x, probability=points.probability, source=source), int(np.count_nonzero(moved))


def protocol_mpp(slide_mpps: Mapping[str, float | None], mpp: float | None = None) -> float:
    """The level-0 microns per pixel the FROC protocol uses for a set of slides: ``mpp`` when given, else the
    slides' own value, which must be known for every slide and the same (within 1 %) for all.

    Raises:
        ConfigError: ``mpp`` not given and a slide's mpp unknown, or the slides' values differ (naming them).
    """
    if mpp is not None:
        return float(mpp)
    unknown = [s for s, m in slide_mpps.items() if m is None]
    if unknown:
        raise ConfigError(
            f"level-0 microns per pixel unknown for slides {name_list(unknown)}; pass mpp= (the CAMELYON16 "
            f"protocol assumes {CAMELYON_MPP})"
        )
    known = np.array([m for m in slide_mpps.values() if m is not None], dtype=np.float64)
    if known.size and known.max() > known.min() * 1.01:
        raise ConfigError(
            f"the slides' microns per pixel differ ({known.min():g} .. {known.max():g}) but the FROC protocol "
            f"uses one value; pass mpp= (the CAMELYON16 protocol uses {CAMELYON_MPP} for every slide)"
        )
    return float(known.mean()) if known.size else CAMELYON_MPP


def evaluate_slide_inputs_job(
    inputs: Sequence[SlideInput],
    *,
    nms_threshold: float = LIU_THRESHOLD,
    nms_radius_um: float = LIU_RADIUS_UM,
    level: int = CAMELYON_LEVEL,
    mpp: float | None = None,
    score: str = "max",
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
) -> Job[SlidesEvaluation]:
    """Evaluate slides held in memory: lesion points, FROC, per-point outcomes, slide scores and ROC AUC.

    Per slide: lesion points come from ``points`` when given, else from the heatmap by :func:`lesion_points`
    (Liu et al.'s NMS with ``nms_threshold`` and ``nms_radius_um``; the radius is converted to cells with the
    grid's mpp, or ``mpp`` when the grid has none). A point whose cell centre lies past the slide's edge (the
    last row / column of cells may overhang it) is moved to the centre of the cell's on-slide part (counted in
    ``moved_points``). The slide score is :func:`slide_score` of the heatmap (``"max"``, or ``"top<k>"`` for
    the mean of the k largest values). Then the CAMELYON16 FROC over all slides (:func:`froc`; skipped with a
    note when no slide has a lesion to find), the outcome of every point (:func:`classify_points`, the same
    lookup), the slide-level ROC AUC with a stratified bootstrap 95 % interval (:func:`roc_auc_ci`; skipped
    with a note unless both tumour and normal slides have scores) and the suspected label errors
    (:func:`suspected_label_errors` on the slide scores).

    Args:
        inputs: the slides (:class:`SlideInput`), names distinct.
        nms_threshold, nms_radius_um: NMS threshold (probability) and radius (micrometres).
        level, mpp: the FROC protocol's pyramid level and level-0 microns per pixel; ``mpp`` None: the slides'
            own (their grids'), by :func:`protocol_mpp`.
        score: slide score, ``"max"`` or ``"top<k>"``.
        n_boot, seed: bootstrap resamples and seed of the AUC interval.
        suspect_high, suspect_low: limits of the suspected-label-error rule (:data:`SUSPECT_RULE`).

    Yields :class:`~napari_patchdx.progress.Progress` once per slide; returns a :class:`SlidesEvaluation`.

    Raises:
        ConfigError: no slide, repeated names, bad parameters, a slide with neither heatmap nor points.
        InputFileError: a heatmap that is not probabilities, has no evaluated cell, or does not fit its slide; a
            point off the slide.
    """
    grids = {inp.name: inp.grid.mpp for inp in inputs if inp.grid is not None}
    level, mpp = check_protocol(level, protocol_mpp(grids, mpp))
    method, k = _parse_score(score)
    high, low = check_suspect_limits(suspect_high, suspect_low)
    if not (math.isfinite(float(nms_threshold)) and 0.0 <= float(nms_threshold) < 1.0):
        raise ConfigError(f"nms_threshold must be a probability in [0, 1), got {nms_threshold!r}")
    if not (math.isfinite(float(nms_radius_um)) and float(nms_radius_um) >= 0):
        raise ConfigError(f"nms_radius_um must be >= 0 micrometres, got {nms_radius_um!r}")
    check_boot(n_boot, 0.05)
    items = list(inputs)
    if not items:
        raise ConfigError("no slides to evaluate")
    names = [str(inp.name) for inp in items]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"slide names must be distinct; repeated: {name_list(dupes)}")
    points: dict[str, PointsTable] = {}
    truths: dict[str, AnnotationSet | np.ndarray | None] = {}
    shapes: dict[str, tuple[int, int]] = {}
    scores = np.full(len(items), np.nan)
    moved_total = 0
    for i, inp in enumerate(items):
        yield Progress(i, len(items) + 1, f"{inp.name}: lesion points")
        if inp.level0_shape is not None:
            shapes[inp.name] = check_level0_shape(inp.level0_shape, f"slide {inp.name!r}")
        truths[inp.name] = inp.truth
        if inp.heatmap is not None:
            heat = _check_heatmap(inp)
            assert inp.grid is not None
            scores[i] = slide_score(heat, method, k)
        elif inp.points is None:
            raise ConfigError(f"slide {inp.name!r} has neither a heatmap nor lesion points")
        if inp.points is not None:
            pts = inp.points
        else:
            assert inp.grid is not None
            grid = inp.grid
            if grid.mpp is None:
                grid = Grid(grid.shape, grid.spacing, grid.origin, float(mpp))
            found = lesion_points(heat, grid, float(nms_threshold), float(nms_radius_um))
            pts = PointsTable(found.y, found.x, found.probability, source=inp.source)
            if inp.name in shapes:
                pts, moved = _onto_slide(pts, grid, shapes[inp.name], inp.source)
                moved_total += moved
        points[inp.name] = pts
    yield Progress(len(items), len(items) + 1, "FROC and slide AUC")
    lookups = lookup_slides(points, truths, shapes, level, mpp, names)
    warn_unchecked([lk.row.slide for lk in lookups if lk.unchecked], stacklevel=2)
    froc_result: FrocResult | None = None
    froc_note = ""
    try:
        froc_result = froc_from_lookups(lookups, level, mpp)
    except ConfigError as exc:
        froc_note = str(exc)
    is_tumor = np.array([as_tumour_truth(truths[n]) is not None for n in names], dtype=bool)
    valid = np.isfinite(scores)
    auc: tuple[float, float, float] | None = None
    auc_note = ""
    if not valid.all():
        unscored = [n for n, v in zip(names, valid, strict=True) if not v]
        auc_note = f"slides without a heatmap have no score and are left out: {name_list(unscored)}"
    y, s = is_tumor[valid], scores[valid]
    if y.any() and not y.all():
        auc = roc_auc_ci(y, s, n_boot=int(n_boot), seed=int(seed))
    else:
        auc_note = (
            "slide-level ROC AUC needs tumour and normal slides with scores; "
            f"have {int(y.sum())} tumour and {int((~y).sum())} normal" + (f"; {auc_note}" if auc_note else "")
        )
    suspects = suspected_label_errors([n for n, v in zip(names, valid, strict=True) if v], y, s, high=high, low=low)
    settings = {
        "nms_threshold": float(nms_threshold),
        "nms_radius_um": float(nms_radius_um),
        "level": level,
        "mpp": mpp,
        "score": str(score),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "suspect_high": high,
        "suspect_low": low,
    }
    result = SlidesEvaluation(
        names=names,
        is_tumor=is_tumor,
        scores=scores,
        points=points,
        outcomes={lk.row.slide: lk.outcomes for lk in lookups},
        per_slide={lk.row.slide: lk.row for lk in lookups},
        froc=froc_result,
        froc_note=froc_note,
        auc=auc,
        auc_note=auc_note,
        suspects=suspects,
        settings=settings,
        moved_points=moved_total,
    )
    yield Progress(len(items) + 1, len(items) + 1, "evaluated")
    return result


def evaluate_slide_inputs(inputs: Sequence[SlideInput], **kwargs: Any) -> SlidesEvaluation:
    """:func:`evaluate_slide_inputs_job` run to the end (same arguments)."""
    return run_job(evaluate_slide_inputs_job(inputs, **kwargs))
