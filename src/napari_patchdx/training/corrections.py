"""Retraining with a user's corrections ("review, correct, retrain"): one numbered, resumable round of fine-tuning
from a checkpoint with patches from the corrected regions weighted up, then before / after on the corrected slides.

A user corrects a slide's ground truth in two ways (:mod:`napari_patchdx.io.annotations.model`): a false positive
becomes a ``"normal"`` region (tissue that is not tumour), a missed lesion a new tumour region.
:func:`correction_regions` finds them by comparing the ground truth before and after. :func:`corrections_round_job`
then runs one round:

1. the corrected ground truth of every corrected slide is written first (ASAP XML, atomically), then ``round.json``;
2. fine-tuning from ``checkpoint`` (``TrainConfig.init_checkpoint``): Liu et al.'s balanced sampler over the training
   slides with the *corrected* ground truth, wrapped in a :class:`~napari_patchdx.sampling.focus.FocusSampler` that
   draws a share ``fraction`` of the patches from the correction regions rasterised on each slide's tissue grid (the
   mechanism hard-negative mining uses, :func:`focus_train_job`); a patch's label still comes from the corrected
   ground truth's central-region rule; validated on the given validation patches or slides;
3. heatmaps of the corrected slides by the starting and by the fine-tuned checkpoint (no test-time augmentation by
   default), evaluated against the corrected ground truth at the evaluation's NMS settings: false positives per
   slide, lesions detected, FROC and slide AUC when the truth allows them, the mean probability inside the normal
   (rejected) regions and the maximum inside the new tumour regions;
4. the heatmap difference (after - before) of each slide as a float map the reader opens aligned to its slide.

Folders: round ``k`` of a run folder is ``<run>/rounds/<k>/`` (:func:`~napari_patchdx.io.names.round_paths`):
``corrections/<slide>.xml``, ``train/`` (the fine-tuning run: ``best`` / ``last`` checkpoints, resume state),
``heatmaps_before/``, ``heatmaps_after/``, ``difference/`` and ``round.json`` (round number, status, the checkpoint it
started from and the new one, the corrections per slide, the settings, the metrics before and after, versions). An
interrupted round resumes (training from its resume state, finished heatmaps reused) when it is asked for again with
the same corrections, checkpoint and settings. A round may start from any checkpoint: the next round from the
previous round's (:func:`round_checkpoint`), and **going back to round j means starting from round j's checkpoint**
(or using it for inference); a round folder is never overwritten.

Like :mod:`~napari_patchdx.training.hard_negatives`, this module uses ``inference`` and ``evaluation`` (the round
needs heatmaps and their evaluation); neither imports ``training``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._fsutil import sha256_file
from ..errors import ConfigError, InputFileError
from ..evaluation.settings import EvaluateSettings
from ..geometry import Grid
from ..inference.heatmap_files import HEATMAP_VERSION, read_json, write_heatmap
from ..inference.settings import InferSettings
from ..io.annotations.asap import write_asap_xml
from ..io.annotations.model import NORMAL, AnnotationSet, Region
from ..io.names import HEATMAP_FORMAT, difference_paths, file_name, round_numbers, round_paths
from ..jsonvalues import json_value, write_json
from ..progress import Job, Progress, relay
from ..sampling.balanced import BalancedSampler
from ..sampling.focus import FocusRegion, FocusSampler, correction_focus_regions, region_cells
from ..sampling.patches import PatchGeometry
from ..sampling.sources import SlideMpp, SlideSource
from ..sampling.tables import read_patch_table
from ..versions import package_versions
from .config import DEFAULT_PATCH_SIZE, TrainConfig
from .inputs import TrainData
from .job import TRAIN_MANIFEST_NAME, train_job
from .loop import TrainResult
from .retrain_settings import RetrainSettings

PathLike = str | os.PathLike[str]
Truth = PathLike | AnnotationSet | None
"""A slide's ground truth: an annotation file, an :class:`AnnotationSet` (level-0 pixels, e.g. a viewer's layer) or
None (a normal slide)."""
ValData = pd.DataFrame | PathLike | Sequence[tuple[PathLike, Truth]]
"""Validation data: a patch table (DataFrame or ``.csv`` / ``.parquet``; its ``val`` rows) or ``(slide, truth)``
pairs from which ``config.val_patches`` balanced patches are drawn once."""
RoundReader = Callable[[PathLike, int], Any]
"""Reads round k of a run folder (``CorrectionRound.read``, ``XrayRound.read``): an object with ``status`` and
``checkpoint``, or None when the round is not of its kind."""
ROUND_KIND = "napari-patchdx corrections round"
"""The ``kind`` of a ``round.json``."""
_RING_TOLERANCE = 1e-6  # level-0 px: two exteriors closer than this at every vertex are the same region


# ---------------------------------------------------------------------------------------------------------------
# what was corrected
# ---------------------------------------------------------------------------------------------------------------


def _same_ring(a: np.ndarray, b: np.ndarray, tol: float = _RING_TOLERANCE) -> bool:
    """The same closed polygon: equal vertex count and every vertex within ``tol`` px, up to the starting vertex and
    the direction (a file re-saved by another tool may start elsewhere or turn the other way)."""
    if a.shape != b.shape:
        return False
    for ring in (b, b[::-1]):
        for start in np.flatnonzero(np.abs(ring - a[0]).max(axis=1) <= tol):
            if np.abs(np.roll(ring, -int(start), axis=0) - a).max() <= tol:
                return True
    return False


def _known(region: Region, regions: Sequence[Region]) -> bool:
    return any(_same_ring(region.exterior, other.exterior) for other in regions)


def correction_regions(before: AnnotationSet | None, after: AnnotationSet) -> AnnotationSet:
    """What a user corrected in a slide's ground truth: every normal region of ``after`` (rejected false positives,
    tissue declared not tumour) and every tumour region of ``after`` that ``before`` does not have (a missed lesion).

    A tumour region (any label that counts as tumour, :attr:`AnnotationSet.positives`) is "in ``before``" when one of
    ``before``'s tumour regions has the same exterior vertices within 1e-6 level-0 pixels (the same vertices from any
    starting vertex, in either direction; holes are not compared). Exclusion regions are not corrections.

    Args:
        before: the ground truth the model was trained and evaluated with (None: the slide had none).
        after: the corrected ground truth (level-0 pixels, (y, x)).

    Returns:
        The correction regions in ``after``'s order, as an :class:`AnnotationSet` with ``after``'s source.
    """
    old = [] if before is None else before.positives
    keep = [r for r in after.regions if r.label == NORMAL or (r in after.positives and not _known(r, old))]
    return AnnotationSet(keep, source=after.source)


@dataclass(eq=False)
class SlideCorrection:
    """One slide's ground truth before and after a user's corrections.

    Attributes:
        slide: the slide file.
        truth: the corrected ground truth (level-0 pixels).
        before: the ground truth the starting model knew (None: none).
    """

    slide: Path
    truth: AnnotationSet
    before: AnnotationSet | None = None

    def __post_init__(self) -> None:
        self.slide = Path(self.slide)
        if not isinstance(self.truth, AnnotationSet):
            raise ConfigError(f"{self.slide}: the corrected ground truth must be an AnnotationSet")

    @property
    def name(self) -> str:
        """The slide's name (:func:`~napari_patchdx.io.names.file_name`)."""
        return file_name(self.slide)

    @property
    def regions(self) -> AnnotationSet:
        """The correction regions (:func:`correction_regions`)."""
        return correction_regions(self.before, self.truth)

    @property
    def removed(self) -> list[Region]:
        """Tumour regions of ``before`` that the corrected ground truth no longer has."""
        return [] if self.before is None else [r for r in self.before.positives if not _known(r, self.truth.positives)]

    @property
    def changed(self) -> bool:
        """Whether the slide has correction regions or lost a tumour region."""
        return bool(len(self.regions) or self.removed)


def _digest(corrections: Sequence[SlideCorrection]) -> str:
    """A fingerprint of the corrected ground truths (labels and vertices), for resuming a round."""
    h = hashlib.sha256()
    for c in sorted(corrections, key=lambda c: c.name):
        h.update(c.name.encode())
        for r in c.truth.regions:
            h.update(r.label.encode())
            for ring in (r.exterior, *r.holes):
                h.update(np.ascontiguousarray(ring, dtype="<f8").tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# fine-tuning with focus regions (shared with hard-negative mining)
# ---------------------------------------------------------------------------------------------------------------


def _geometry(config: TrainConfig) -> PatchGeometry:
    patch = config.patch_size or DEFAULT_PATCH_SIZE["slide"]
    return PatchGeometry(patch, config.center_size or min(128, patch), config.mpp)


def focus_train_job(
    config: TrainConfig,
    sources: Sequence[SlideSource],
    regions: Sequence[FocusRegion],
    val: pd.DataFrame,
    out_dir: PathLike,
    *,
    fraction: float,
    init_checkpoint: PathLike,
    mpp: SlideMpp = None,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Job[TrainResult]:
    """Fine-tune ``init_checkpoint`` on Liu et al.'s balanced sampler over ``sources`` (split ``train``; their
    ground truth labels every patch) with a share ``fraction`` of the patches drawn from ``regions``
    (:class:`~napari_patchdx.sampling.focus.FocusSampler`), validated on the patch table ``val``. The one fine-tuning
    step of hard-negative mining and of corrections rounds; a generator like
    :func:`~napari_patchdx.training.job.train_job`, whose result it returns.
    """
    base = BalancedSampler(sources, _geometry(config), seed=config.seed, jitter=config.jitter)
    focus = FocusSampler(base, regions, fraction)
    tuned = dataclasses.replace(config, hard_negatives=False, init_checkpoint=os.fspath(init_checkpoint))
    data = TrainData(patch_table=val, sampler=focus, mpp=mpp)  # type: ignore[arg-type]
    return (yield from train_job(tuned, data, out_dir, resume=resume, stop=stop))


def _val_table(val: ValData, config: TrainConfig, mpp: SlideMpp) -> Job[pd.DataFrame]:
    if isinstance(val, pd.DataFrame | str | os.PathLike):
        frame = val if isinstance(val, pd.DataFrame) else read_patch_table(val)
        if "split" in frame.columns:
            frame = frame[frame["split"] == "val"]
        if frame.empty:
            raise ConfigError("the validation patch table has no 'val' rows")
        return frame.reset_index(drop=True)
    pairs = list(val)
    if not pairs:
        raise ConfigError("no validation data: give a patch table with 'val' rows or validation slides")
    sources = []
    for i, (path, truth) in enumerate(pairs):
        yield Progress(i, len(pairs), f"preparing validation slide {file_name(path)}")
        sources.append(SlideSource.prepare(path, truth, split="val", mpp=mpp))
    yield Progress(0, 0, f"drawing {config.val_patches} validation patches")
    return BalancedSampler(sources, _geometry(config), seed=config.seed, jitter=config.jitter).table(config.val_patches)


# ---------------------------------------------------------------------------------------------------------------
# the round
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class CorrectionRound:
    """One corrections round (:func:`corrections_round_job`), as its ``round.json`` records it.

    Attributes:
        number: the round number k (folder ``<run>/rounds/<k>/``).
        folder: the round folder.
        start_checkpoint: the checkpoint fine-tuned (the previous round's, or the run's).
        checkpoint: the fine-tuned ``best`` checkpoint (None when the round was stopped before it had one).
        slides: per corrected slide: ``corrections`` (``normal``, ``tumour`` (new), ``tumour_removed`` region counts,
            ``normal_area_px`` / ``tumour_area_px`` in level-0 px² and ``*_mm2`` when the slide's mpp is known) and,
            for ``before`` and ``after``: ``false_positives``, ``detections``, ``lesions``, ``lesions_detected``,
            ``score`` (slide score), ``normal_mean`` / ``normal_max`` (heatmap inside the normal regions; null
            without them), ``tumour_max`` (inside the new tumour regions); ``difference`` (the difference map).
        metrics: ``before`` / ``after``: ``fp_per_slide`` (mean over the corrected slides), ``froc`` (score or
            null) and ``slide_auc`` (``[auc, lo, hi]`` or null) with notes where undefined.
        paths: the round's parts (:func:`~napari_patchdx.io.names.round_paths`).
        status: ``complete``, ``cancelled`` (stopped; asking for the round again resumes it) or ``running``.
        train: the fine-tuning run's result (None when the round was read back from its record).
    """

    number: int
    folder: Path
    start_checkpoint: Path
    checkpoint: Path | None
    slides: dict[str, dict[str, Any]]
    metrics: dict[str, Any]
    paths: dict[str, Path]
    status: str
    train: TrainResult | None = field(default=None, repr=False)

    @property
    def cancelled(self) -> bool:
        """The round was stopped before it finished."""
        return self.status != "complete"

    @classmethod
    def read(cls, run_dir: PathLike, number: int) -> CorrectionRound | None:
        """Round ``number`` of ``run_dir`` from its ``round.json`` (None when it has none)."""
        paths = round_paths(run_dir, number)
        record = read_json(paths["record"])
        if record is None or record.get("kind") != ROUND_KIND:
            return None
        new = record.get("checkpoint")
        return cls(
            number=number,
            folder=paths["folder"],
            start_checkpoint=Path(record["start_checkpoint"]),
            checkpoint=None if new is None else Path(new),
            slides=dict(record.get("slides") or {}),
            metrics=dict(record.get("metrics") or {}),
            paths=paths,
            status=str(record.get("status")),
        )


def round_checkpoint(run_dir: PathLike, number: int, read: RoundReader | None = None) -> Path:
    """The fine-tuned checkpoint of complete round ``number`` of ``run_dir``: what the next round starts from, and
    what going back to that round means (start a round from it, or infer with it). ``read`` reads a round of one
    kind (default :meth:`CorrectionRound.read`, slides; ``XrayRound.read`` for X-rays).

    Raises:
        ConfigError: the round does not exist or did not finish.
    """
    found = (read or CorrectionRound.read)(run_dir, number)
    if found is None or found.status != "complete" or found.checkpoint is None:
        raise ConfigError(f"{round_paths(run_dir, number)['folder']} holds no finished corrections round")
    return Path(found.checkpoint)


def latest_round(run_dir: PathLike, read: RoundReader | None = None) -> int:
    """The number of the latest complete round of ``run_dir`` of the kind ``read`` reads (see
    :func:`round_checkpoint`); 0 when none finished."""
    reader = read or CorrectionRound.read
    done = [k for k in round_numbers(run_dir) if (r := reader(run_dir, k)) and r.status == "complete"]
    return max(done, default=0)


def recorded_slides(run_dir: PathLike) -> tuple[list[tuple[str, Truth]], list[tuple[str, Truth]]]:
    """A training run's (training, validation) slides with their ground truth, as its ``train_manifest.json``
    records them (the folder :func:`~napari_patchdx.training.job.train_job` wrote): a round on that run trains on
    the former (a corrected slide's truth replacing its entry) and validates on the latter.

    Raises:
        InputFileError: no manifest in ``run_dir``, or it records no validation slide.
    """
    manifest = Path(run_dir) / TRAIN_MANIFEST_NAME
    if not manifest.is_file():
        raise InputFileError(manifest, "no such file: choose the folder the training wrote as the training run folder")
    slides = (read_json(manifest) or {}).get("data", {}).get("slides") or []
    train = [(s["slide"], s.get("annotations")) for s in slides if s.get("split") == "train"]
    val = [(s["slide"], s.get("annotations")) for s in slides if s.get("split") == "val"]
    if not val:
        raise InputFileError(manifest, "records no validation slide: the round needs the run's validation slides")
    return train, val


def choose_round(run: Path, key: dict[str, Any], resume: bool, number: int | None = None) -> int:
    """The number of the round to run in ``run``: ``number`` when given, else the last round when it is unfinished
    with this ``key`` (and ``resume``), else a new one after the last. A folder holding another round is refused,
    never overwritten. The one numbering rule of slide and X-ray rounds."""
    numbers = round_numbers(run)
    if number is None:
        last = numbers[-1] if numbers else 0
        record = read_json(round_paths(run, last)["record"]) if last else None
        same = record is not None and record.get("key") == key and record.get("status") != "complete"
        return last if resume and same else last + 1
    paths = round_paths(run, number)
    record = read_json(paths["record"])
    if record is None:
        if paths["folder"].exists() and any(paths["folder"].iterdir()):
            raise ConfigError(f"{paths['folder']} holds files but no round.json; choose another round number")
        return number
    if record.get("key") != key:
        raise ConfigError(
            f"{paths['folder']} holds round {number} of other corrections, checkpoint or settings; a round is never "
            "overwritten: leave the number out to start the next round"
        )
    if not resume and record.get("status") != "complete":
        raise ConfigError(f"{paths['folder']} holds an unfinished round {number}; resume it or start the next")
    return number


def _summary(c: SlideCorrection, source: SlideSource) -> dict[str, Any]:
    regions = c.regions
    normal = [r for r in regions if r.label == NORMAL]
    tumour = [r for r in regions if r.label != NORMAL]
    out: dict[str, Any] = {"normal": len(normal), "tumour": len(tumour), "tumour_removed": len(c.removed)}
    mpp = source.slide.mpp
    for key, part in (("normal", normal), ("tumour", tumour)):
        area = float(sum(r.area for r in part))
        out[f"{key}_area_px"] = area
        out[f"{key}_area_mm2"] = None if mpp is None else area * mpp**2 / 1e6
    return out


def _inside(heat: np.ndarray, grid: Grid, regions: Sequence[Region]) -> np.ndarray:
    if not regions:
        return np.zeros(0)
    values = heat[region_cells(regions, grid)]
    return values[np.isfinite(values)]


def _measure(ev: Any, name: str, heat: np.ndarray, grid: Grid, regions: AnnotationSet) -> dict[str, Any]:
    row = ev.per_slide[name]
    normal = _inside(heat, grid, [r for r in regions if r.label == NORMAL])
    tumour = _inside(heat, grid, [r for r in regions if r.label != NORMAL])
    return {
        "false_positives": row.false_positives,
        "detections": row.n_detections,
        "lesions": row.n_lesions,
        "lesions_detected": row.hits,
        "score": float(ev.scores[ev.names.index(name)]),
        "normal_mean": float(normal.mean()) if normal.size else None,
        "normal_max": float(normal.max()) if normal.size else None,
        "tumour_max": float(tumour.max()) if tumour.size else None,
    }


def _summary_metrics(ev: Any) -> dict[str, Any]:
    fps = [row.false_positives for row in ev.per_slide.values()]
    return {
        "fp_per_slide": float(np.mean(fps)) if fps else None,
        "froc": None if ev.froc is None else float(ev.froc.score),
        "froc_note": ev.froc_note,
        "slide_auc": None if ev.auc is None else [float(v) for v in ev.auc],
        "slide_auc_note": ev.auc_note,
    }


def _write_difference(folder: Path, name: str, slide: Path, before: Any, after: Any) -> Path:
    if before.heatmap.shape != after.heatmap.shape or before.grid != after.grid:
        raise ConfigError(
            f"{name}: the heatmaps before and after lie on different grids ({before.grid} vs {after.grid}); were "
            "the checkpoints trained with different patch geometries?"
        )
    paths = difference_paths(folder, name)
    diff = after.heatmap.astype(np.float32) - before.heatmap.astype(np.float32)
    write_heatmap(paths["final"], diff, before.grid)
    values = "heatmap difference, after - before (in [-1, 1]); NaN where either has no value"
    sidecar = {"format": HEATMAP_FORMAT, "version": HEATMAP_VERSION, "kind": "difference", "slide": str(slide)}
    sidecar.update(grid=before.grid.to_dict(), values=values, before=str(before.path), after=str(after.path))
    write_json(paths["sidecar"], sidecar)
    return paths["final"]


def corrections_round_job(
    config: TrainConfig | None,
    corrections: Sequence[SlideCorrection],
    checkpoint: PathLike,
    run_dir: PathLike,
    *,
    val: ValData,
    train_slides: Sequence[tuple[PathLike, Truth]] = (),
    fraction: float = 0.5,
    tumour_weight: float = 1.0,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    lr: float | None = None,
    tta: bool = False,
    infer: InferSettings | None = None,
    evaluate: EvaluateSettings | None = None,
    mpp: SlideMpp = None,
    device: str | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = True,
) -> Job[CorrectionRound]:
    """One corrections round into ``<run_dir>/rounds/<k>/`` (see the module docstring); a generator of progress.

    Args:
        config: the training settings of the fine-tuning (slide track; None: those recorded in ``checkpoint``).
        corrections: the slides with their corrected ground truth and the ground truth before; the slides that
            changed (:attr:`SlideCorrection.changed`) are written, trained on and re-inferred.
        checkpoint: the checkpoint to fine-tune (the run's, or a round's: :func:`round_checkpoint`).
        run_dir: the run folder that holds ``rounds/``.
        val: validation data (:data:`ValData`).
        train_slides: the other training slides with their ground truth (a corrected slide's truth replaces its
            entry here; corrected slides not listed are added).
        fraction, tumour_weight, epochs, steps_per_epoch, lr, tta: the round's settings
            (:class:`~napari_patchdx.training.retrain_settings.RetrainSettings`).
        infer: stride, batch size and least tissue of the heatmaps (:class:`InferSettings`; its ``tta`` is replaced
            by ``tta``).
        evaluate: NMS threshold and radius (micrometres), FROC level, slide score, bootstrap of the AUC.
        mpp: the slides' level-0 microns per pixel where their files do not say (one value or name -> value).
        device: where the heatmaps are computed (None: ``config.device``).
        stop: polled during training (a resumable state is saved) and between slides; the round then returns with
            status ``cancelled``.
        resume: continue the last round when it is unfinished with the same corrections, checkpoint and settings
            (training from its resume state, finished heatmaps reused); False always starts the next round.

    Returns:
        The :class:`CorrectionRound` (also written to its ``round.json``).

    Raises:
        ConfigError: no slide changed, the X-ray track, bad settings, no validation data.
        InputFileError: an unreadable slide or checkpoint.
    """
    from ..devices import resolve_device
    from ..evaluation.slides import SlideInput, evaluate_slide_inputs_job
    from ..inference.heatmaps import slide_heatmap_job
    from ..models.checkpoint import read_checkpoint_meta

    settings = RetrainSettings(fraction, tumour_weight, epochs, steps_per_epoch, lr, tta)
    start = Path(checkpoint)
    meta = read_checkpoint_meta(start)  # a missing or broken checkpoint fails here, before any work
    base = config if config is not None else TrainConfig.from_dict(meta.get("config") or {})
    if base.track != "slide":
        raise ConfigError("corrections rounds retrain slide models (track 'slide'); X-rays have their own")
    tuned = settings.train_config(base, start)
    items = [c for c in corrections if c.changed]
    names = [c.name for c in items]
    if not items:
        raise ConfigError("no slide's ground truth changed: there is no correction to retrain on")
    if len(set(names)) < len(names):
        raise ConfigError(f"two corrected slides share a name: {sorted(n for n in names if names.count(n) > 1)}")
    infer = infer or InferSettings()
    evaluate = evaluate or EvaluateSettings()
    heat_options = {**infer.heatmap_options(), "tta": settings.tta}
    where = device or str(resolve_device(base.device))
    run = Path(run_dir)
    key = {
        "start_checkpoint": sha256_file(start),
        "corrections": _digest(items),
        "settings": settings.job_options(),
        "train": {k: v for k, v in tuned.to_dict().items() if k not in ("device", "num_workers", "progress_every")},
        "infer": heat_options,
        "evaluate": evaluate.slide_options(),
    }
    k = choose_round(run, json_value(key), resume)
    paths = round_paths(run, k)
    yield Progress(0, 1000, f"round {k}: writing the corrected ground truth of {len(items)} slide(s)")
    paths["corrections"].mkdir(parents=True, exist_ok=True)
    for c in items:  # first, so the corrections are on disk whatever happens next
        write_asap_xml(c.truth, paths["corrections"] / f"{c.name}.xml")
    record: dict[str, Any] = dict(read_json(paths["record"]) or {})
    record.update(
        kind=ROUND_KIND, round=k, status="running", key=key, start_checkpoint=str(start), checkpoint=None,
        settings=settings.job_options(), train_config=tuned.to_dict(), infer=heat_options,
        evaluate=evaluate.slide_options(), versions=package_versions(),
    )  # fmt: skip
    record.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_json(paths["record"], record)

    # the training slides with the corrected ground truth, and the correction regions on their tissue grids
    truths: dict[str, tuple[Path, Truth]] = {file_name(p): (Path(p), t) for p, t in train_slides}
    for c in items:
        truths[c.name] = (c.slide, paths["corrections"] / f"{c.name}.xml")
    sources: dict[str, SlideSource] = {}
    for i, (name, (path, truth)) in enumerate(truths.items()):
        yield Progress(round(100 * i / len(truths)), 1000, f"round {k}: preparing {name}")
        sources[name] = SlideSource.prepare(path, truth, split="train", mpp=mpp)
    regions = correction_focus_regions([(sources[c.name], c.regions) for c in items], settings.tumour_weight)
    record["slides"] = {c.name: {"corrections": _summary(c, sources[c.name])} for c in items}
    write_json(paths["record"], record)
    val_table = yield from relay(_val_table(val, base, mpp), 0.1, 0.12, prefix=f"round {k}: ")

    train = yield from relay(
        focus_train_job(
            tuned, list(sources.values()), regions, val_table, paths["train"], fraction=settings.fraction,
            init_checkpoint=start, mpp=mpp, resume=resume, stop=stop,
        ),
        0.12, 0.7, prefix=f"round {k}: fine-tuning: ",
    )  # fmt: skip

    def finish(status: str, new: Path | None) -> CorrectionRound:
        record.update(status=status, checkpoint=None if new is None else str(new))
        if status == "complete":
            record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(paths["record"], record)
        return CorrectionRound(
            k, paths["folder"], start, new, record["slides"], record.get("metrics") or {}, paths, status, train
        )

    if train.cancelled or train.best is None:
        return finish("cancelled", train.best)
    results: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
    for j, (when, model, folder) in enumerate(
        (("before", start, paths["heatmaps_before"]), ("after", train.best, paths["heatmaps_after"]))
    ):
        for i, c in enumerate(items):
            lo = 0.7 + 0.1 * j + 0.1 * i / len(items)
            job = slide_heatmap_job(
                c.slide, [model], folder, device=where, mpp=mpp, tissue=sources[c.name].tissue, **heat_options
            )
            results[when][c.name] = yield from relay(
                job, lo, lo + 0.1 / len(items), prefix=f"round {k}: {when}: {c.name}: "
            )
            if stop is not None and stop():
                return finish("cancelled", train.best)
    yield Progress(900, 1000, f"round {k}: before / after against the corrected ground truth")
    record["metrics"] = {}
    for j, (when, found) in enumerate(results.items()):
        inputs = [
            SlideInput(c.name, found[c.name].heatmap, found[c.name].grid, c.truth, sources[c.name].slide.shape,
                       source=found[c.name].path)
            for c in items
        ]  # fmt: skip
        job = evaluate_slide_inputs_job(inputs, seed=base.seed, **evaluate.slide_options())
        ev = yield from relay(job, 0.9 + 0.04 * j, 0.94 + 0.04 * j, prefix=f"round {k}: evaluating {when}: ")
        record["metrics"][when] = _summary_metrics(ev)
        for c in items:
            res = found[c.name]
            record["slides"][c.name][when] = _measure(ev, c.name, res.heatmap, res.grid, c.regions)
    paths["difference"].mkdir(parents=True, exist_ok=True)
    for c in items:
        pair = (results["before"][c.name], results["after"][c.name])
        record["slides"][c.name]["difference"] = str(_write_difference(paths["difference"], c.name, c.slide, *pair))
    yield Progress(1000, 1000, f"round {k}: done")
    return finish("complete", train.best)
