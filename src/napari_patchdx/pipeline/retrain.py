"""A corrections round on a pipeline run: :func:`retrain` (``napari_patchdx.retrain``, the ``napari-patchdx retrain``
command) and its job :func:`retrain_job`, for either track.

**Slides.** Given a finished slide run (its sample and train stages done) and the user's corrected ground truth (a
folder of ``<slide>.xml`` / ``<slide>.geojson`` files, or a mapping slide name -> file or
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

**Chest X-rays.** On a finished X-ray run the corrections are the cohort's own tables: ``lesions.csv`` and
``labels.csv`` edited in place (by the napari "X-ray ground truth" widget, or
:func:`~napari_patchdx.io.cohort.save_image_truth`, which keep ``.bak`` backups); ``truth`` is then left out, or
names the corrected cohort folder (a copy of the run's cohort, images included). One round of
:func:`~napari_patchdx.training.xray_corrections.xray_corrections_job` runs into ``<run>/rounds/<k>/``:

* **Start.** As for slides: the latest finished round's checkpoint, else the train stage's; ``from_round=j`` starts
  from round j's (``0``: the train stage's).
* **What was corrected.** The images whose labels or boxes differ from the tables the starting model knew: round
  j's ``truth/`` when it starts from round j, else the run's own tables (the cohort's ``labels.csv`` /
  ``lesions.csv`` when their sha256 is the manifest's, else their ``.bak`` when that holds the run's version, else
  refused). No difference: nothing to retrain on, refused naming the cohort and the tables compared.
* **Training data.** The cohort with the corrected training images listed ``weight`` (4) times, on the run's splits
  (``sample/splits.csv``), so it is validated on the run's validation images, with the run's training settings
  (its stage: the curriculum's lesion patches, then whole images).
* **Settings.** ``epochs``, ``steps_per_epoch`` and ``lr`` of
  :class:`~napari_patchdx.training.retrain_settings.RetrainSettings`; the slide-only fields (``fraction``,
  ``tumour_weight``, ``tta``) are refused when set.
* **Result.** An :class:`~napari_patchdx.training.xray_corrections.XrayRound`: the new checkpoint, the corrected
  images' class probabilities before and after, and the validation AUROC per class before and after.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._config import closest
from .._fsutil import sha256_file
from ..errors import ConfigError, InputFileError
from ..io.annotations.model import AnnotationSet
from ..io.annotations.read import read_annotations
from ..io.cohort import LABELS_NAME, LESIONS_NAME
from ..io.names import ANNOTATION_SUFFIXES, annotation_candidates, file_name, round_paths
from ..progress import Job, Progress, run_job
from ..training.corrections import (
    CorrectionRound,
    RoundReader,
    SlideCorrection,
    Truth,
    corrections_round_job,
    latest_round,
    round_checkpoint,
)
from ..training.retrain_settings import RetrainSettings
from ..training.xray_corrections import (
    XrayRound,
    changed_tables,
    xray_corrections_job,
)
from .config import RunConfig
from .manifest import MANIFEST_NAME, read_manifest
from .results import splits_table

PathLike = str | os.PathLike[str]
TruthInput = PathLike | Mapping[str, PathLike | AnnotationSet]
"""The corrected ground truth: a folder of ``<slide>.xml`` / ``.geojson`` files, or slide name -> file or set (slide
runs); the corrected cohort folder (X-ray runs)."""
XRAY_SETTINGS = ("epochs", "steps_per_epoch", "lr")
"""The :class:`~napari_patchdx.training.retrain_settings.RetrainSettings` fields an X-ray round uses."""
COHORT_TABLES = (LABELS_NAME, LESIONS_NAME)


def _run(run_dir: PathLike) -> tuple[Path, RunConfig, dict[str, Any]]:
    run = Path(run_dir).expanduser().resolve()
    manifest = read_manifest(run / MANIFEST_NAME)
    if manifest is None:
        raise ConfigError(f"{run}: not a napari-patchdx run folder (no manifest.json of a run)")
    config = RunConfig.from_manifest(run / MANIFEST_NAME)
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


#: what to do when a run input changed since the run and its backup does not hold the run's version
_RESTORE = (
    "retraining compares the corrections with the run's version: put the corrected files in another folder and "
    "restore this one"
)


def _run_version(path: Path, manifest: Mapping[str, Any], remedy: str = _RESTORE) -> Path:
    """The file holding a run input's content as the run read it: the file itself (also when the manifest does not
    record it), or its ``.bak`` backup when the file changed since and the backup holds the run's version; else an
    InputFileError naming the file, ending with ``remedy``."""
    target = path.resolve()
    named = [r for r in manifest.get("inputs") or [] if r.get("path") and Path(r["path"]).name == path.name]
    want = next((r.get("sha256") for r in named if Path(r["path"]).resolve() == target), None)
    if want is None or (path.is_file() and sha256_file(path) == want):
        return path
    backup = path.with_name(path.name + ".bak")
    if backup.is_file() and sha256_file(backup) == want:
        return backup
    raise InputFileError(
        path,
        f"changed since the run (its sha256 differs from the run manifest's) and no backup beside it holds the "
        f"run's version; {remedy}",
    )


def _original(path: Path, manifest: Mapping[str, Any]) -> AnnotationSet:
    """The run's own ground truth file as the run read it: the file, or its ``.bak`` when the file changed since."""
    found = _run_version(path, manifest)
    truth = read_annotations(found)
    truth.source = path
    return truth


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


def _start(run: Path, from_round: int | None, read: RoundReader) -> int:
    """The round to start from: ``from_round``, else the latest finished one of the kind ``read`` reads; 0: the
    train stage."""
    start = latest_round(run, read) if from_round is None else from_round
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(f"from_round must be a round number >= 0 (0: the train stage's checkpoint), got {start!r}")
    return start


def _stage_checkpoint(run: Path, config: RunConfig) -> Path:
    """The train stage's checkpoint (``infer.checkpoint``: best or last)."""
    checkpoint = run / "train" / f"{config.infer.checkpoint}.safetensors"
    if not checkpoint.is_file():
        raise InputFileError(checkpoint, "no such checkpoint: the run's train stage did not write it")
    return checkpoint


def retrain_job(
    run_dir: PathLike,
    truth: TruthInput | None = None,
    *,
    from_round: int | None = None,
    device: str | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = True,
    images: Sequence[str] | None = None,
    **settings: Any,
) -> Job[CorrectionRound] | Job[XrayRound]:
    """One corrections round on the run in ``run_dir`` (see the module docstring), as a job; the run, the truth and
    the settings are checked when this is called, before the job is returned.

    Args:
        run_dir: a slide or X-ray run whose sample and train stages are done.
        truth: slides: the corrected ground truth (:data:`TruthInput`), level-0 pixels (required); X-rays: None (the
            run's cohort, corrected in place) or the corrected cohort folder.
        from_round: the round whose checkpoint to start from (0: the train stage's; None: the latest finished).
        device: where training and heatmaps / CAMs run (None: the run's).
        stop: polled as in :func:`~napari_patchdx.training.corrections.corrections_round_job`.
        resume: resume the last round when it is unfinished with the same corrections and settings.
        images: X-rays: the corrected image ids (None: the images whose labels or boxes changed, see the module
            docstring); needed when the run's version of a table is lost (saved over more than once since the run).
        **settings: :class:`~napari_patchdx.training.retrain_settings.RetrainSettings` fields (X-rays:
            :data:`XRAY_SETTINGS` only).

    Raises:
        ConfigError: not a finished run, an unknown setting or round, a slide-only setting on an X-ray run, no slide
            or no change in ``truth`` (X-rays: no image of the cohort changed).
        InputFileError: an unreadable ground truth file or cohort table, or a run ground truth file or cohort table
            changed without a backup of the run's version.
    """
    run, config, manifest = _run(run_dir)
    known = [f.name for f in dataclasses.fields(RetrainSettings)]
    for key in settings:
        if key not in known:
            raise ConfigError(f"unknown retrain setting {key!r}; did you mean {closest(key, known)!r}?")
    options = RetrainSettings(**settings)
    if config.track == "cxr":
        named = None if images is None else [str(i) for i in images]
        return _xray_round_job(run, config, manifest, options, truth, named, from_round, device, stop, resume)
    if images is not None:
        raise ConfigError(f"{run}: images names corrected X-rays; a slide run's corrections are its ground truth files")
    if truth is None:
        raise ConfigError(
            f"{run}: a slide run is retrained with corrected ground truth: give truth (a folder of <slide>.xml / "
            "<slide>.geojson, --truth FOLDER)"
        )
    table = splits_table(run)
    slides = {str(r.name): Path(str(r.path)) for r in table.itertuples(index=False)}
    run_truth = {str(r.name): Path(str(r.truth)) if str(r.truth) else None for r in table.itertuples(index=False)}
    given = _given(truth, slides)
    if not given:
        raise ConfigError(f"{truth}: holds no ground truth of the run's slides ({', '.join(sorted(slides)[:5])} ...)")
    start = _start(run, from_round, CorrectionRound.read)
    checkpoint = _stage_checkpoint(run, config) if start == 0 else round_checkpoint(run, start)
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


def _xray_round_job(
    run: Path,
    config: RunConfig,
    manifest: Mapping[str, Any],
    options: RetrainSettings,
    truth: TruthInput | None,
    images: list[str] | None,
    from_round: int | None,
    device: str | None,
    stop: Callable[[], bool] | None,
    resume: bool,
) -> Job[XrayRound]:
    """An X-ray run's corrections round (see the module docstring and :func:`retrain_job`), checked before the job
    is returned."""
    defaults = RetrainSettings()
    slide_only = [f.name for f in dataclasses.fields(RetrainSettings) if f.name not in XRAY_SETTINGS]
    for name in slide_only:
        if getattr(options, name) != getattr(defaults, name):
            raise ConfigError(
                f"retrain setting {name!r} applies to slide runs; an X-ray round takes {', '.join(XRAY_SETTINGS)}"
            )
    run_cohort = Path(config.input).expanduser().resolve()
    if isinstance(truth, Mapping):
        raise ConfigError(
            f"{run}: an X-ray run's corrections are its cohort's labels.csv / lesions.csv: give the corrected cohort "
            "folder, or nothing for the run's own cohort (corrected in place)"
        )
    cohort = run_cohort if truth is None else Path(truth).expanduser().resolve()
    if not (cohort / LABELS_NAME).is_file():
        raise InputFileError(
            cohort / LABELS_NAME, "no such file: an X-ray run's corrections are a cohort folder (labels.csv, images)"
        )
    start = _start(run, from_round, XrayRound.read)
    before: dict[str, Path] | None
    if start == 0:
        checkpoint = _stage_checkpoint(run, config)
        lost = (
            "its .bak holds a later save, so which images were corrected cannot be told: name them (images=[...], "
            "--image ID)"
        )
        try:
            before = {name: _run_version(run_cohort / name, manifest, lost) for name in COHORT_TABLES}
        except InputFileError:
            if images is None:
                raise
            before = None  # the images are named: the round records the backups as its "before"
        since = "the run"
    else:
        checkpoint = round_checkpoint(run, start, XrayRound.read)
        before = {name: round_paths(run, start)["folder"] / "truth" / name for name in COHORT_TABLES}
        since = f"round {start}"
    if images is not None and not images:
        raise ConfigError("images is empty: name at least one corrected X-ray (or leave it out)")
    if (
        images is None
        and before is not None
        and not changed_tables({name: cohort / name for name in COHORT_TABLES}, before)
    ):
        compared = ", ".join(str(p) for p in before.values() if p.is_file())
        raise ConfigError(
            f"no image of {cohort} changed since {since} ({LABELS_NAME} / {LESIONS_NAME} equal {compared}): there "
            "is no correction to retrain on; correct labels or boxes first (the napari X-ray ground truth widget, "
            "or save_image_truth)"
        )
    splits = {str(r.name): str(r.split) for r in splits_table(run).itertuples(index=False)}
    training = config.training if device is None else dataclasses.replace(config.training, device=device)
    return xray_corrections_job(
        training,
        cohort,
        checkpoint,
        run,
        images=images,
        before=before,
        splits=splits,
        epochs=options.epochs,
        steps_per_epoch=options.steps_per_epoch,
        lr=options.lr,
        device=device,
        stop=stop,
        resume=resume,
    )


def retrain(
    run_dir: PathLike,
    truth: TruthInput | None = None,
    *,
    from_round: int | None = None,
    device: str | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = True,
    on_progress: Callable[[Progress], None] | None = None,
    images: Sequence[str] | None = None,
    **settings: Any,
) -> CorrectionRound | XrayRound:
    """Retrain a run with the user's corrections: one corrections round into ``<run_dir>/rounds/<k>/`` (see
    :mod:`napari_patchdx.pipeline.retrain`); :func:`retrain_job` run to its end (``on_progress`` gets every report).

    A slide run takes the corrected ground truth (``truth``) and returns the
    :class:`~napari_patchdx.training.corrections.CorrectionRound`: the new checkpoint, per corrected slide the
    false positives, detected lesions and heatmap inside the corrected regions before and after, FROC and slide AUC
    before and after when the truth allows them, and the paths (heatmaps before / after and their difference).

    An X-ray run's corrections are its cohort's tables, edited in place (``truth`` left out) or in a corrected copy
    of the cohort (``truth``: that folder); ``images`` names the corrected X-rays where they cannot be told (see
    :func:`retrain_job`). It returns the
    :class:`~napari_patchdx.training.xray_corrections.XrayRound`: the new checkpoint, the corrected images' class
    probabilities and the validation AUROC per class before and after."""
    job = retrain_job(
        run_dir, truth, from_round=from_round, device=device, stop=stop, resume=resume, images=images, **settings
    )
    return run_job(job, on_progress)
