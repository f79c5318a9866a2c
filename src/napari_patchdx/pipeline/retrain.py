"""A corrections round on a pipeline run: :func:`retrain` (``napari_patchdx.retrain``, the ``napari-patchdx retrain``
command) and its job :func:`retrain_job`.

Given a finished slide run (its sample and train stages done) and the user's corrected ground truth (a folder of
``<slide>.xml`` / ``<slide>.geojson`` files, or a mapping slide name -> file or
:class:`~napari_patchdx.io.annotations.AnnotationSet`), one round of
:func:`~napari_patchdx.training.corrections.corrections_round_job` runs into ``<run>/rounds/<k>/``:

* **Start.** By default the latest finished round's checkpoint, or the train stage's (``infer.checkpoint``: best)
  when no round finished; ``from_round=j`` starts from round j's (``0``: the train stage's) - going back to a round.
* **What was corrected.** Each given file is compared with the ground truth the starting model knew: the newest
  corrected file of that slide in the rounds the start descends from, else the run's own ground truth file
  (``sample/splits.csv``). A run file changed since the run (its sha256 differs from the manifest's) is taken from
  its ``.bak`` backup when that holds the run's content (the napari widgets keep one when they save), else refused:
  the original is needed to tell what changed.
* **Training data.** The run's training slides with their current ground truth, plus every slide corrected in this
  round or the rounds before it (a corrected validation or test slide so joins the training data and is no longer
  held out); validated on the run's validation patches (``sample/patches.csv``).
* **Settings.** :class:`~napari_patchdx.training.retrain_settings.RetrainSettings` (keyword arguments here, options of
  the command); the training settings, the heatmaps' stride and batch size, the evaluation's NMS settings and the
  slides' microns per pixel are the run's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._config import closest
from .._fsutil import sha256_file
from ..errors import ConfigError, InputFileError
from ..io.annotations.model import AnnotationSet
from ..io.annotations.read import read_annotations
from ..io.names import ANNOTATION_SUFFIXES, annotation_candidates, file_name, round_paths
from ..progress import Job, Progress, run_job
from ..training.corrections import (
    CorrectionRound,
    SlideCorrection,
    Truth,
    corrections_round_job,
    latest_round,
    round_checkpoint,
)
from ..training.retrain_settings import RetrainSettings
from .config import RunConfig
from .manifest import MANIFEST_NAME, read_manifest
from .results import splits_table

PathLike = str | os.PathLike[str]
TruthInput = PathLike | Mapping[str, PathLike | AnnotationSet]
"""The corrected ground truth: a folder of ``<slide>.xml`` / ``.geojson`` files, or slide name -> file or set."""


def _run(run_dir: PathLike) -> tuple[Path, RunConfig, dict[str, Any]]:
    run = Path(run_dir).expanduser().resolve()
    manifest = read_manifest(run / MANIFEST_NAME)
    if manifest is None:
        raise ConfigError(f"{run}: not a napari-patchdx run folder (no manifest.json of a run)")
    config = RunConfig.from_manifest(run / MANIFEST_NAME)
    if config.track != "slides":
        raise ConfigError(f"{run}: a {config.track} run; retrain with corrections works on slide runs")
    if ((manifest.get("stages") or {}).get("train") or {}).get("status") != "complete":
        raise ConfigError(
            f"the train stage of {run} is not done: run `napari-patchdx train CONFIG` (or `run`) before retraining"
        )
    return run, config, manifest


def _given(truth: TruthInput, slides: Mapping[str, Path]) -> dict[str, AnnotationSet]:
    """Slide name -> its corrected ground truth, read; every file and name checked against the run's slides."""
    if isinstance(truth, Mapping):
        out = {}
        for name, value in truth.items():
            if str(name) not in slides:
                hint = closest(str(name), sorted(slides))
                raise ConfigError(f"truth: the run has no slide {name!r} (did you mean {hint!r}?)")
            out[str(name)] = value if isinstance(value, AnnotationSet) else read_annotations(value)
        return out
    folder = Path(truth)
    if not folder.is_dir():
        raise InputFileError(folder, "no such folder of corrected ground truth (<slide>.xml / <slide>.geojson)")
    out = {}
    for name, slide in slides.items():
        found = [folder / p.name for p in annotation_candidates(slide) if (folder / p.name).is_file()]
        if found:
            out[name] = read_annotations(found[0])
    strays = sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in ANNOTATION_SUFFIXES and p.is_file() and file_name(p) not in slides
    )
    if strays:
        raise ConfigError(f"{folder}: ground truth of slides the run does not have: {', '.join(strays[:10])}")
    return out


def _original(path: Path, manifest: Mapping[str, Any]) -> AnnotationSet:
    """The run's own ground truth file as the run read it: the file, or its ``.bak`` when the file changed since."""
    recorded = {str(r.get("path")): r.get("sha256") for r in manifest.get("inputs") or []}
    want = recorded.get(str(path.resolve()))
    if want is None or (path.is_file() and sha256_file(path) == want):
        return read_annotations(path)
    backup = path.with_name(path.name + ".bak")
    if backup.is_file() and sha256_file(backup) == want:
        truth = read_annotations(backup)
        truth.source = path
        return truth
    raise InputFileError(
        path,
        "changed since the run (its sha256 differs from the run manifest's) and no backup beside it holds the run's "
        "version; retraining compares the corrected ground truth with the run's: put the corrected files in another "
        "folder and restore this one",
    )


def _parent(run: Path, k: int) -> int:
    """The round whose checkpoint round ``k`` started from (0: the train stage's, or unknown)."""
    record = CorrectionRound.read(run, k)
    if record is None:
        return 0
    folder = record.start_checkpoint.resolve().parent
    return next((j for j in range(k - 1, 0, -1) if round_paths(run, j)["train"].resolve() == folder), 0)


def _lineage(run: Path, start: int) -> list[int]:
    """Round ``start`` and the rounds it descends from, newest first; [] for the train stage (0)."""
    chain: list[int] = []
    k = start
    while k > 0 and k not in chain:
        chain.append(k)
        k = _parent(run, k)
    return chain


def retrain_job(
    run_dir: PathLike,
    truth: TruthInput,
    *,
    from_round: int | None = None,
    device: str | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = True,
    **settings: Any,
) -> Job[CorrectionRound]:
    """One corrections round on the run in ``run_dir`` (see the module docstring), as a job; the run, the truth and
    the settings are checked when this is called, before the job is returned.

    Args:
        run_dir: a slide run whose sample and train stages are done.
        truth: the corrected ground truth (:data:`TruthInput`), level-0 pixels.
        from_round: the round whose checkpoint to start from (0: the train stage's; None: the latest finished).
        device: where training and heatmaps run (None: the run's).
        stop: polled as in :func:`~napari_patchdx.training.corrections.corrections_round_job`.
        resume: resume the last round when it is unfinished with the same corrections and settings.
        **settings: :class:`~napari_patchdx.training.retrain_settings.RetrainSettings` fields.

    Raises:
        ConfigError: not a finished slide run, an unknown setting or round, no slide or no change in ``truth``.
        InputFileError: an unreadable ground truth file, or a run ground truth file changed without a backup.
    """
    run, config, manifest = _run(run_dir)
    known = [f.name for f in dataclasses.fields(RetrainSettings)]
    for key in settings:
        if key not in known:
            raise ConfigError(f"unknown retrain setting {key!r}; did you mean {closest(key, known)!r}?")
    options = RetrainSettings(**settings)
    table = splits_table(run)
    slides = {str(r.name): Path(str(r.path)) for r in table.itertuples(index=False)}
    run_truth = {str(r.name): Path(str(r.truth)) if str(r.truth) else None for r in table.itertuples(index=False)}
    given = _given(truth, slides)
    if not given:
        raise ConfigError(f"{truth}: holds no ground truth of the run's slides ({', '.join(sorted(slides)[:5])} ...)")
    start = latest_round(run) if from_round is None else int(from_round)
    if start == 0:
        checkpoint = run / "train" / f"{config.infer.checkpoint}.safetensors"
        if not checkpoint.is_file():
            raise InputFileError(checkpoint, "no such checkpoint: the run's train stage did not write it")
    else:
        checkpoint = round_checkpoint(run, start)
    lineage = _lineage(run, start)

    def current(name: str) -> Truth:
        """The ground truth the starting model knew: the newest corrected file of its lineage, else the run's."""
        for k in lineage:
            path = round_paths(run, k)["corrections"] / f"{name}.xml"
            if path.is_file():
                return path
        path = run_truth[name]
        return None if path is None else _original(path, manifest)

    def as_set(value: Truth) -> AnnotationSet | None:
        return value if value is None or isinstance(value, AnnotationSet) else read_annotations(value)

    corrections = [SlideCorrection(slides[n], after, as_set(current(n))) for n, after in sorted(given.items())]
    earlier = {n for k in lineage for n in map(file_name, round_paths(run, k)["corrections"].glob("*.xml"))}
    trained = [str(r.name) for r in table.itertuples(index=False) if r.split == "train"]
    train_slides = [(slides[n], current(n)) for n in dict.fromkeys([*trained, *sorted(earlier & set(slides))])]
    training = config.training if device is None else dataclasses.replace(config.training, device=device)
    return corrections_round_job(
        training,
        corrections,
        checkpoint,
        run,
        val=run / "sample" / "patches.csv",
        train_slides=train_slides,
        infer=config.infer,
        evaluate=config.evaluate,
        mpp=config.mpp,
        device=device,
        stop=stop,
        resume=resume,
        **options.job_options(),
    )


def retrain(
    run_dir: PathLike,
    truth: TruthInput,
    *,
    from_round: int | None = None,
    device: str | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = True,
    on_progress: Callable[[Progress], None] | None = None,
    **settings: Any,
) -> CorrectionRound:
    """Retrain a slide run with the user's corrected ground truth: one corrections round into
    ``<run_dir>/rounds/<k>/`` (see :mod:`napari_patchdx.pipeline.retrain`); :func:`retrain_job` run to its end
    (``on_progress`` gets every report). Returns the
    :class:`~napari_patchdx.training.corrections.CorrectionRound`: the new checkpoint, per corrected slide the
    false positives, detected lesions and heatmap inside the corrected regions before and after, FROC and slide AUC
    before and after when the truth allows them, and the paths (heatmaps before / after and their difference)."""
    job = retrain_job(run_dir, truth, from_round=from_round, device=device, stop=stop, resume=resume, **settings)
    return run_job(job, on_progress)
