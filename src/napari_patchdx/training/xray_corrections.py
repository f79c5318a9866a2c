"""Retraining with a user's corrections, chest X-ray track: one numbered, resumable round of fine-tuning from a
checkpoint on the corrected cohort, the corrected images weighted up, then their predictions before and after.

A user corrects an X-ray's lesion boxes (``lesions.csv``) and labels (``labels.csv``) in napari, or with
:func:`~napari_patchdx.io.cohort.save_image_truth`. :func:`xray_corrections_job` then runs round ``k`` in
``<run>/rounds/<k>/`` (the round-folder rule of :func:`~napari_patchdx.io.names.round_paths`, shared with the slide
rounds of :mod:`~napari_patchdx.training.corrections`):

* ``before/labels.csv``, ``before/lesions.csv``: the state the corrections are measured against: the previous
  round's ``truth/`` (the truth its model was trained on), or for the first round the cohort's ``.bak`` tables
  (the state before the last save of each table), unless the corrected images are given (``images``);
* ``truth/``: the cohort's tables as this round found them (what it trains on, and what the next round compares
  with); the corrected images are those whose labels or boxes differ between ``before/`` and ``truth/``
  (:func:`changed_images`);
* ``cohort/``: the **weighted view** the round trains on (:func:`write_weighted_view`): the cohort's ``labels.csv``
  with every corrected *training* image listed ``weight`` times (copies named ``<id>~copy2``, ... with the same
  image file, boxes, mask and lung mask), an explicit ``split`` column and absolute image paths, its
  ``lesions.csv``, ``masks/`` and ``lungs/``. This is how the corrected images are weighted up without a change to
  the training code: the patch stage's lesion sampler picks an image uniformly among those with a class (positives)
  or among all (negatives), and the whole-image stage passes over every listed row once per epoch, so a copy
  counts as one more image in both stages. Validation images are listed once (their corrected labels and boxes
  still validate the round);
* ``train/``: the fine-tuning run (``TrainConfig.init_checkpoint`` = the starting checkpoint; ``best`` / ``last``,
  resume state), on the view;
* ``cams_before/``, ``cams_after/``: CAMs of the corrected images by the starting and the fine-tuned checkpoint;
* ``round.json``: round number, status, the checkpoint it started from and the new one, the corrected images with
  their weight, split, labels and the class probabilities before and after, ``metrics`` (the validation AUROC per
  class and its mean of the starting and the fine-tuned checkpoint, as their training recorded them:
  :func:`validation_auroc`), the settings, versions.

A pipeline run's round (:func:`napari_patchdx.retrain`) gives the tables to compare with (``before``: the run's own,
or the starting round's ``truth/``) and the run's splits. :meth:`XrayRound.read` reads a round back; with
it, :func:`~napari_patchdx.training.corrections.latest_round` and
:func:`~napari_patchdx.training.corrections.round_checkpoint` find the finished ones.

An interrupted round resumes when it is asked for again with the same cohort tables, images, checkpoint and
settings. The splits of the view are, in order: ``splits`` given, else the previous round's view's, else those the
starting checkpoint's training run recorded (``train_manifest.json``), else the cohort's ``split`` column or the
training's reproducible split of the cohort as it is now (a corrected label can then move an image between sides:
give ``splits`` to pin them).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._fsutil import atomic_write_bytes, sha256_file
from ..errors import ConfigError
from ..inference.heatmap_files import read_json
from ..io.cohort import (
    LABELS_NAME,
    LESIONS_NAME,
    MASKS_FOLDER,
    LesionBox,
    read_labels,
    read_lesions,
    write_cohort_tables,
)
from ..io.names import round_numbers, round_paths
from ..jsonvalues import json_value, write_json
from ..progress import Job, Progress, relay, run_job
from ..versions import package_versions
from .config import TrainConfig
from .corrections import choose_round
from .inputs import TrainData, resolve_inputs
from .job import TRAIN_MANIFEST_NAME, train_job
from .loop import TrainResult
from .retrain_settings import RetrainSettings

PathLike = str | os.PathLike[str]

XRAY_ROUND_KIND = "napari-patchdx X-ray corrections round"
"""The ``kind`` of an X-ray round's ``round.json``."""
#: how the weighted view names the extra copies of a corrected training image: ``<id>~copy2``, ``<id>~copy3``, ...
COPY_MARK = "~copy"
#: the lung-mask folder of a cohort (copied into the weighted view with the masks)
LUNGS_FOLDER = "lungs"


@dataclass
class XrayRound:
    """One X-ray corrections round.

    Attributes:
        number: its number k (``<run>/rounds/<k>/``).
        folder: its folder.
        start_checkpoint: the checkpoint it fine-tuned.
        checkpoint: the fine-tuned checkpoint (``train/best.safetensors``), or None when the round did not finish.
        images: corrected image id -> ``{"split", "weight", "labels", "before", "after"}`` (class probabilities by
            the starting and the fine-tuned checkpoint, once computed).
        status: ``"complete"`` or ``"cancelled"`` (``"running"`` when read back from an interrupted round).
        train: the fine-tuning's result (None when read back from ``round.json``).
        metrics: ``{"val_auroc": {"before": ..., "after": ...}}``: class -> validation AUROC (and ``"mean"``) of
            the starting and the fine-tuned checkpoint (:func:`validation_auroc`; None where not recorded); empty
            until the round completes.
    """

    number: int
    folder: Path
    start_checkpoint: Path
    checkpoint: Path | None
    images: dict[str, dict[str, Any]]
    status: str
    train: TrainResult | None = field(default=None, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        """The round was stopped before it finished."""
        return self.status != "complete"

    @classmethod
    def read(cls, run_dir: PathLike, number: int) -> XrayRound | None:
        """X-ray round ``number`` of ``run_dir`` from its ``round.json`` (None when it has none, or a slide
        round's)."""
        paths = round_paths(run_dir, number)
        record = read_json(paths["record"])
        if record is None or record.get("kind") != XRAY_ROUND_KIND:
            return None
        new = record.get("checkpoint")
        return cls(
            number=number,
            folder=paths["folder"],
            start_checkpoint=Path(record["start_checkpoint"]),
            checkpoint=None if new is None else Path(new),
            images=dict(record.get("images") or {}),
            status=str(record.get("status")),
            metrics=dict(record.get("metrics") or {}),
        )


def validation_auroc(checkpoint: PathLike) -> dict[str, float | None] | None:
    """The validation AUROC per class (and ``"mean"``) of a checkpoint's weights, as its training recorded it: the
    sidecar's metrics entry of the stage and epoch the weights were saved at. None (undefined: a class with one label
    in the validation set) per class; None as a whole when the sidecar records no such entry.

    Raises:
        InputFileError: an unreadable checkpoint.
    """
    from ..models.checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(checkpoint)
    for entry in reversed(meta.get("metrics") or []):
        values = entry.get("val_auroc")
        if entry.get("stage") == meta.get("stage") and entry.get("epoch") == meta.get("epoch") and values:
            return {str(c): None if v is None or not math.isfinite(float(v)) else float(v) for c, v in values.items()}
    return None


# ---------------------------------------------------------------------------------------------------------------
# what was corrected
# ---------------------------------------------------------------------------------------------------------------


def _truth_of(folder: Path) -> dict[str, tuple[tuple[tuple[str, int], ...], tuple[tuple[Any, ...], ...]]]:
    """Per image of the tables in ``folder``: its (class, value) labels and its sorted boxes."""
    table, classes = read_labels(folder)
    lesions = folder / LESIONS_NAME
    boxes = read_lesions(lesions, classes) if lesions.is_file() else {}
    out = {}
    for row in table.to_dict("records"):
        image = str(row["image"]).strip()
        labels = tuple((c, int(float(row[c]))) for c in classes)
        found = sorted((b.cls, b.y0, b.x0, b.y1, b.x1) for b in boxes.get(image, []))
        out[image] = (labels, tuple(found))
    return out


def changed_images(now: PathLike, before: PathLike) -> list[str]:
    """Images whose labels or lesion boxes differ between two folders holding cohort tables (``labels.csv`` and
    optionally ``lesions.csv``): ``now``'s order; an image ``before`` does not list counts as changed.

    Raises:
        InputFileError: a table is broken.
    """
    new, old = _truth_of(Path(now)), _truth_of(Path(before))
    return [image for image, truth in new.items() if old.get(image) != truth]


def _copy_tables(files: Mapping[str, Path], folder: Path) -> None:
    """Copy cohort tables (target name -> source file) into ``folder``, atomically."""
    for name, source in files.items():
        if source.is_file():
            atomic_write_bytes(folder / name, source.read_bytes(), mkdir=True)


def changed_tables(now: Mapping[str, PathLike], before: Mapping[str, PathLike]) -> list[str]:
    """:func:`changed_images` of two sets of cohort tables given as files: table name (``labels.csv``,
    ``lesions.csv``) -> file, a missing file meaning no such table (e.g. ``{"labels.csv": cohort / "labels.csv.bak"}``).

    Raises:
        InputFileError: a table is broken, or ``labels.csv`` is missing.
    """
    with tempfile.TemporaryDirectory() as tmp:
        _copy_tables({k: Path(v) for k, v in now.items()}, Path(tmp) / "now")
        _copy_tables({k: Path(v) for k, v in before.items()}, Path(tmp) / "before")
        return changed_images(Path(tmp) / "now", Path(tmp) / "before")


# ---------------------------------------------------------------------------------------------------------------
# the weighted view
# ---------------------------------------------------------------------------------------------------------------


def view_id(image_id: str, copy: int) -> str:
    """The id of copy ``copy`` (1, 2, ...) of an image in a weighted view (copy 1 keeps the image's own id)."""
    return image_id if copy == 1 else f"{image_id}{COPY_MARK}{copy}"


def write_weighted_view(
    cohort: PathLike,
    folder: PathLike,
    images: pd.DataFrame,
    classes: Sequence[str],
    weights: Mapping[str, int],
) -> Path:
    """Write a cohort view in ``folder`` that lists image ``i`` ``weights.get(i, 1)`` times (see the module
    docstring); returns ``folder``.

    Args:
        cohort: the cohort folder (its ``lesions.csv``, ``masks/`` and ``lungs/`` are carried over).
        folder: the view's folder (created).
        images: the images as training resolves them (columns ``image``, ``path``, ``split`` and one 0 / 1 column
            per class: :class:`~napari_patchdx.training.inputs.TrainInputs`'s ``images``).
        classes: the class columns.
        weights: image id -> how many times it is listed (>= 1).
    """
    cohort, folder = Path(cohort), Path(folder)
    lesions = cohort / LESIONS_NAME
    boxes = read_lesions(lesions, classes) if lesions.is_file() else None
    rows: list[dict[str, Any]] = []
    view_boxes: dict[str, list[LesionBox]] = {}
    for row in images.to_dict("records"):
        image = str(row["image"])
        for copy in range(1, int(weights.get(image, 1)) + 1):
            name = view_id(image, copy)
            rows.append(
                {
                    "image": name,
                    **{c: int(row[c]) for c in classes},
                    "png": str(Path(row["path"]).resolve()),
                    "split": row["split"],
                }
            )
            if boxes is not None:
                view_boxes[name] = [
                    LesionBox(name, b.cls, b.class_index, b.y0, b.x0, b.y1, b.x1) for b in boxes.get(image, [])
                ]
            for sub in (MASKS_FOLDER, LUNGS_FOLDER):
                source = cohort / sub / f"{image}.png"
                if source.is_file():
                    atomic_write_bytes(folder / sub / f"{name}.png", source.read_bytes(), mkdir=True)
    write_cohort_tables(folder, pd.DataFrame(rows), classes, view_boxes if boxes is not None else None)
    return folder


def _view_splits(view: Path) -> dict[str, str] | None:
    """The splits a round's weighted view recorded (its own images, not the copies), or None without a view."""
    if not (view / LABELS_NAME).is_file():
        return None
    table, _ = read_labels(view)
    return {str(i): str(s) for i, s in zip(table["image"], table["split"], strict=True) if COPY_MARK not in str(i)}


def _recorded_splits(run: Path, number: int, checkpoint: Path) -> dict[str, str] | None:
    """The splits of the previous round's view, else those the checkpoint's training run was given."""
    for k in sorted((j for j in round_numbers(run) if j < number), reverse=True):
        splits = _view_splits(round_paths(run, k)["folder"] / "cohort")
        if splits:
            return splits
    manifest = read_json(checkpoint.parent / TRAIN_MANIFEST_NAME) or {}
    splits = (manifest.get("data") or {}).get("splits")
    return {str(k): str(v) for k, v in splits.items()} if isinstance(splits, dict) and splits else None


# ---------------------------------------------------------------------------------------------------------------
# the round
# ---------------------------------------------------------------------------------------------------------------


def _before_tables(run: Path, cohort: Path, number: int) -> dict[str, Path] | None:
    """The tables the corrections are measured against: the latest earlier round's ``truth/``, else the cohort's
    ``.bak`` files; None when there is neither."""
    for k in sorted((j for j in round_numbers(run) if j < number), reverse=True):
        truth = round_paths(run, k)["folder"] / "truth"
        if (truth / LABELS_NAME).is_file():
            return {name: truth / name for name in (LABELS_NAME, LESIONS_NAME)}
    bak = {name: cohort / f"{name}.bak" for name in (LABELS_NAME, LESIONS_NAME)}
    if not bak[LABELS_NAME].is_file() and not bak[LESIONS_NAME].is_file():
        return None
    # a table never saved since has no backup: it is unchanged
    return {name: path if path.is_file() else cohort / name for name, path in bak.items()}


def _probabilities(outcomes: Sequence[Any]) -> dict[str, dict[str, float]]:
    return {
        o.input.name: {str(c): float(p) for c, p in zip(o.prediction.classes, o.prediction.probabilities, strict=True)}
        for o in outcomes
    }


def xray_corrections_job(
    config: TrainConfig | None,
    cohort: PathLike,
    checkpoint: PathLike,
    run_dir: PathLike,
    *,
    images: Sequence[str] | None = None,
    before: Mapping[str, PathLike] | None = None,
    weight: int = 4,
    splits: Mapping[str, str] | None = None,
    number: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    lr: float | None = None,
    device: str | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = True,
) -> Job[XrayRound]:
    """One X-ray corrections round into ``<run_dir>/rounds/<k>/`` (see the module docstring); a generator of
    progress.

    Args:
        config: the training settings of the fine-tuning (X-ray track; None: those recorded in ``checkpoint``), e.g.
            ``stage="curriculum"`` (lesion patches, then whole images).
        cohort: the corrected cohort folder (``labels.csv``, ``lesions.csv``, ``images/``, ``masks/``, ``lungs/``).
        checkpoint: the checkpoint to fine-tune (the run's, or a round's ``train/best.safetensors``).
        run_dir: the run folder that holds ``rounds/``.
        images: the corrected image ids (None: those that changed since the previous state, see the module
            docstring).
        before: the tables the corrections are measured against, table name (``labels.csv``, ``lesions.csv``) ->
            file; a table left out is the cohort's own (None: the previous round's ``truth/``, else the cohort's
            ``.bak`` files).
        weight: how many times a corrected training image is listed in the view (>= 1; 1: not weighted up).
        splits: image id -> ``train`` / ``val`` / ``test`` (None: see the module docstring).
        number: the round number (None: the last round when it is unfinished with the same inputs and ``resume``,
            else the next).
        epochs, steps_per_epoch, lr: the fine-tuning's (None: ``config``'s), as
            :class:`~napari_patchdx.training.corrections.RetrainSettings` applies them.
        device: where the CAMs before and after are computed (None: ``config.device``).
        stop: polled during training (a resumable state is saved); the round then returns ``cancelled``.
        resume: continue an unfinished round of the same inputs; False always starts a new round.

    Raises:
        ConfigError: the slide track, a bad weight, an unknown image id, no corrected image (nothing to retrain on),
            no earlier state to compare with (give ``images``), a round folder holding another round.
        InputFileError: broken cohort tables, an unreadable checkpoint.
    """
    from ..devices import resolve_device
    from ..inference.xray_job import XrayInput, predict_xrays_job
    from ..models.checkpoint import read_checkpoint_meta

    start, root, run = Path(checkpoint), Path(cohort), Path(run_dir)
    meta = read_checkpoint_meta(start)  # a missing or broken checkpoint fails here, before any work
    base = config if config is not None else TrainConfig.from_dict(meta.get("config") or {})
    if base.track != "cxr":
        raise ConfigError("X-ray corrections rounds retrain chest X-ray models (track 'cxr'); slides have their own")
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ConfigError(f"weight must be an integer >= 1 (copies of a corrected training image), got {weight!r}")
    tuned = RetrainSettings(epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr).train_config(base, start)
    read_labels(root)  # a broken cohort fails before any work
    tables = {name: root / name for name in (LABELS_NAME, LESIONS_NAME)}
    given = None if before is None else {name: Path(before.get(name, tables[name])) for name in tables}
    key = {
        "start_checkpoint": sha256_file(start),
        "cohort": str(root.resolve()),
        "tables": {name: sha256_file(p) if p.is_file() else None for name, p in tables.items()},
        "images": None if images is None else sorted(str(i) for i in images),
        "weight": weight,
        "splits": None if splits is None else dict(splits),
        "train": {k: v for k, v in tuned.to_dict().items() if k not in ("device", "num_workers", "progress_every")},
    }
    if given is not None:  # only then: the rounds that compared with their defaults keep their keys
        key["before"] = {name: sha256_file(p) if p.is_file() else None for name, p in given.items()}
    key = json_value(key, "round key")
    k = choose_round(run, key, resume, number)
    paths = round_paths(run, k)
    folder = paths["folder"]
    record: dict[str, Any] = dict(read_json(paths["record"]) or {})
    view = folder / "cohort"
    if record.get("status") is None or not (view / LABELS_NAME).is_file():
        yield Progress(0, 1000, f"round {k}: recording the cohort's tables")
        previous = given if given is not None else _before_tables(run, root, k)
        # checked before anything is written into the round folder
        if images is not None:
            corrected = [str(i).strip() for i in images]
        elif previous is None:
            raise ConfigError(
                f"round {k}: no earlier state of {root} to compare with (no earlier round and no labels.csv.bak / "
                "lesions.csv.bak): give the corrected image ids (images=...)"
            )
        else:
            corrected = changed_tables(tables, previous)
        if not corrected:
            raise ConfigError(
                f"round {k}: no image's labels or boxes changed in {root} since the previous state: there is no "
                "correction to retrain on"
            )
        given = splits if splits is not None else _recorded_splits(run, k, start)
        data = TrainData(cxr_root=root, splits=given)
        inputs = run_job(resolve_inputs(tuned, data, samplers=False))
        table = inputs.images
        assert table is not None
        known = set(table["image"])
        unknown = [i for i in corrected if i not in known]
        if unknown:
            raise ConfigError(f"round {k}: {root / LABELS_NAME} lists no image {unknown[0]!r}")
        split_of = dict(zip(table["image"], table["split"], strict=True))
        _copy_tables(tables, folder / "truth")
        if previous is not None:
            _copy_tables(previous, folder / "before")
        weights = {i: weight if split_of[i] == "train" else 1 for i in corrected}
        write_weighted_view(root, view, table, inputs.classes, weights)
        labels = {str(r["image"]): {c: int(r[c]) for c in inputs.classes} for r in table.to_dict("records")}
        record = {
            "kind": XRAY_ROUND_KIND,
            "round": k,
            "status": "running",
            "key": key,
            "cohort": str(root),
            "start_checkpoint": str(start),
            "checkpoint": None,
            "weight": weight,
            "images": {
                i: {"split": split_of[i], "weight": weights[i], "labels": labels[i]} for i in dict.fromkeys(corrected)
            },
            "train_config": tuned.to_dict(),
            "versions": package_versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(paths["record"], record)
    corrected = list(record["images"])

    train = yield from relay(
        train_job(tuned, TrainData(cxr_root=view), paths["train"], resume=resume, stop=stop),
        0.05,
        0.85,
        prefix=f"round {k}: fine-tuning: ",
    )

    def finish(status: str, new: Path | None) -> XrayRound:
        record.update(status=status, checkpoint=None if new is None else str(new))
        if status == "complete":
            record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            after = None if new is None else validation_auroc(new)
            record["metrics"] = {"val_auroc": {"before": validation_auroc(start), "after": after}}
        write_json(paths["record"], record)
        return XrayRound(k, folder, start, new, record["images"], status, train, dict(record.get("metrics") or {}))

    if train.cancelled or train.best is None:
        return finish("cancelled", train.best)
    where = device or str(resolve_device(base.device))
    files = _image_files(root, corrected)
    for j, (when, model) in enumerate((("before", start), ("after", train.best))):
        outcomes = yield from relay(
            predict_xrays_job([XrayInput(p, i, i) for i, p in files.items()], model, folder / f"cams_{when}",
                              device=where, resume=resume),
            0.85 + 0.075 * j, 0.85 + 0.075 * (j + 1), prefix=f"round {k}: CAMs {when}: ",
        )  # fmt: skip
        for image, probabilities in _probabilities(outcomes).items():
            record["images"][image][when] = probabilities
    yield Progress(1000, 1000, f"round {k}: done")
    return finish("complete", train.best)


def _image_files(root: Path, ids: Sequence[str]) -> dict[str, Path]:
    """Image id -> its image file (``png`` column, relative to the cohort folder)."""
    table, _ = read_labels(root)
    files = {str(i).strip(): root / str(p).strip() for i, p in zip(table["image"], table["png"], strict=True)}
    return {i: files[i] for i in ids}


def xray_corrections_round(
    *args: Any, on_progress: Callable[[Progress], None] | None = None, **kwargs: Any
) -> XrayRound:
    """Run :func:`xray_corrections_job` to the end (``on_progress`` gets every report); returns the round."""
    return run_job(xray_corrections_job(*args, **kwargs), on_progress)
