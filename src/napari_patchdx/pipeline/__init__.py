"""The staged pipeline behind ``napari_patchdx.run()``, ``napari-patchdx run`` and the napari "Run pipeline" widget.

One run is one track over one input folder, in one run directory::

    RUN_DIR/
      config.yaml      the resolved configuration (every default filled in, absolute paths)
      manifest.json    config, seed, package versions, device, input sizes and sha256, per-stage fingerprints,
                       status and timings, one entry per session, the metrics
      sample/          splits.csv (name, split, label, path, truth) and patches.csv (the patch table)
      train/           the trainer's folder (best.* / last.* checkpoints, resume state, train_manifest.json)
      infer/           slides: <stem>.heatmap.ome.tif + .json; X-rays: <image>.cam.ome.tif + .json
      evaluate/        metrics.json, per-slide / per-image table, points/, plots, thumbnails, suspects.json
      report.html      the HTML report (its images in report_files/, the run's metrics in metrics.json)

Tracks
------
``slides``
    ``input`` is a folder of slides with their ground truth beside them (``<stem>.xml`` / ``<stem>.geojson``;
    a slide without one is normal). Sample: Liu et al.'s balanced sampler draws ``sample.n`` training patches from
    the training slides (``sample.method: grid`` takes every tissue cell instead) and ``train.val_patches``
    validation patches from the validation slides, into ``sample/patches.csv``; the patch geometry is the training
    config's (``train.patch_size``, ``center_size``, ``mpp``, ``jitter``). Train: patch training on that table.
    Infer: heatmaps (8-fold TTA by default) of the slides of ``infer.splits`` (the test split), on a dask cluster
    when ``distributed.workers`` or ``distributed.scheduler`` says so. Evaluate: lesion points by NMS, the
    CAMELYON16 FROC, slide-level AUC. Report.
``cxr``
    ``input`` is a chest X-ray cohort folder as :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes it
    (``labels.csv``, ``images/``, ``masks/`` or ``lesions.csv``, ``lungs/``). Sample: the split, and the first
    ``sample.n`` lesion / normal-lung patches of the training stream (exactly the patches the curriculum's step 1
    starts with: the trainer draws the same stream from the same seed) for inspection. Train: ``train.stage``
    (default ``curriculum``: lesion patches, then whole images; ``baseline``: whole images with the same budget).
    Infer: probabilities and CAMs of the images of ``infer.splits``. Evaluate: AUROC per class with intervals,
    sensitivity / specificity at the checkpoint's Youden thresholds, the pointing game. Report.

Splits are per slide / image (never per patch): ``splits`` is three fractions (train, val, test; stratified by
tumour / lesion, reproducible from ``seed``), a mapping name -> split, or a CSV file with columns ``name, split``.
By default an X-ray cohort's ``labels.csv`` ``split`` column is used when it has one, else the fractions
``[0.6, 0.2, 0.2]``.

Skipping and re-running
-----------------------
Every stage has a fingerprint: a hash of its own settings, of the previous stage's fingerprint and, for the first
stage, of the inputs' sha256 checksums and the split. A stage whose recorded status is ``complete``, whose
fingerprint matches and whose artifacts all exist is skipped; otherwise its folder is cleared and it runs again,
and so, through the chained fingerprints, do all the stages after it. Settings that do not change the results
(``device``, ``train.num_workers``, ``train.progress_every``, the ``distributed`` section, ``run_dir``) are left
out of the fingerprints. A stage that was interrupted (Ctrl-C, Stop, a crash) with the same fingerprint is
resumed where that is possible (training from its resume state, heatmaps band by band), else redone. ``force``
re-runs every stage.

Reproducing
-----------
``run(RUN_DIR / "manifest.json")`` loads the manifest's configuration and runs it into the same folder (every
stage whose inputs and outputs are intact is skipped), or, with ``run_dir=``, into a new one; a warning names any
input whose checksum differs from the manifest's. Input checksums are cached in the manifest by size and
modification time, so re-running a run over large slides does not re-hash them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .. import __version__
from .._config import choice, closest, integer, number, unknown_key
from .._fsutil import atomic_write_text, sha256_file
from ..errors import ConfigError, InputFileError
from ..progress import Job, Progress
from ..sampling.balanced import (
    SPLITS,
    CxrLesionSampler,
    PatchGeometry,
    assign_splits,
    load_cxr_cohort,
    read_cohort_labels,
    sample_slides_job,
    write_patch_table,
)
from ..training import (
    DEFAULT_PATCH_SIZE,
    TrainConfig,
    TrainData,
    resolve_device,
    train_job,
)

__all__ = [
    "MANIFEST_KIND",
    "STAGES",
    "TRACKS",
    "DistributedSettings",
    "EvaluateSettings",
    "InferSettings",
    "ReportSettings",
    "RunConfig",
    "RunResult",
    "SampleSettings",
    "config_reference",
    "headline",
    "result_layers",
    "run",
    "run_job",
]

TRACKS: tuple[str, ...] = ("slides", "cxr")
"""``slides``: whole-slide images with tumour annotations. ``cxr``: a chest X-ray cohort folder."""

STAGES: tuple[str, ...] = ("sample", "train", "infer", "evaluate", "report")
"""The stages of a run, in order."""

MANIFEST_KIND = "napari-patchdx pipeline run"
MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.yaml"
REPORT_NAME = "report.html"
MANIFEST_VERSION = 1

DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
_TRAIN_TRACK = {"slides": "slide", "cxr": "cxr"}
_TOP_LEVEL_IN_TRAIN = ("track", "seed", "device")
# settings that do not change a stage's results: not part of its fingerprint
_TRAIN_NOT_FINGERPRINTED = ("device", "num_workers", "progress_every")
# share of the overall progress bar each stage takes
_WEIGHTS = {"sample": 0.08, "train": 0.6, "infer": 0.2, "evaluate": 0.08, "report": 0.04}
_SCALE = 1000
# stages that resume an interrupted attempt with the same fingerprint instead of starting over
_RESUMABLE = ("train", "infer")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _str(key: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string{' or null' if optional else ''}, got {value!r}")
    return str(value)


# ===============================================================================================================
# configuration
# ===============================================================================================================


@dataclass
class SampleSettings:
    """The ``sample`` section."""

    n: int = field(
        default=1000,
        metadata=_help(
            "slides: training patches drawn by the balanced sampler; cxr: lesion / normal-lung patches of the "
            "training stream saved to sample/patches.csv for inspection (0: none)"
        ),
    )
    method: str = field(
        default="balanced",
        metadata=_help("slides: 'balanced' (Liu et al.'s sampler, n patches) or 'grid' (every tissue cell)"),
    )
    min_tissue: float = field(
        default=0.25, metadata=_help("slides, grid method: least tissue fraction of a cell that gets a patch")
    )

    def __post_init__(self) -> None:
        self.n = integer("sample.n", self.n, 0)
        self.method = choice("sample.method", self.method, ("balanced", "grid"))
        self.min_tissue = number("sample.min_tissue", self.min_tissue, strict=False)
        if self.min_tissue > 1:
            raise ConfigError(f"sample.min_tissue must be in [0, 1], got {self.min_tissue}")


@dataclass
class InferSettings:
    """The ``infer`` section."""

    checkpoint: str = field(default="best", metadata=_help("which checkpoint of train/ to use: 'best' or 'last'"))
    splits: list[str] = field(
        default_factory=lambda: ["test"], metadata=_help("the splits whose slides / images are predicted")
    )
    tta: bool = field(default=True, metadata=_help("slides: average the 8 orientations of every patch"))
    stride: int | None = field(
        default=None, metadata=_help("slides: heatmap cell side in patch pixels (null: the centre region)")
    )
    batch_size: int = field(default=32, metadata=_help("slides: patches per model call"))
    min_tissue: float = field(
        default=0.0, metadata=_help("slides: least tissue fraction of a heatmap cell that is evaluated (0: any)")
    )

    def __post_init__(self) -> None:
        self.checkpoint = choice("infer.checkpoint", self.checkpoint, ("best", "last"))
        if isinstance(self.splits, str):
            self.splits = [self.splits]
        if not isinstance(self.splits, Sequence) or not self.splits:
            raise ConfigError(f"infer.splits must be a non-empty list of {', '.join(SPLITS)}, got {self.splits!r}")
        self.splits = [choice("infer.splits", s, SPLITS) for s in self.splits]
        self.tta = _bool("infer.tta", self.tta)
        self.stride = integer("infer.stride", self.stride, 1, optional=True)
        self.batch_size = integer("infer.batch_size", self.batch_size, 1)
        self.min_tissue = number("infer.min_tissue", self.min_tissue, strict=False)
        if self.min_tissue > 1:
            raise ConfigError(f"infer.min_tissue must be in [0, 1], got {self.min_tissue}")


@dataclass
class EvaluateSettings:
    """The ``evaluate`` section."""

    nms_threshold: float = field(
        default=0.5, metadata=_help("slides: lesion points are heatmap maxima above this probability")
    )
    nms_radius_um: float = field(
        default=187.5, metadata=_help("slides: non-maximum-suppression radius, micrometres (Liu et al.: 187.5)")
    )
    level: int = field(default=5, metadata=_help("slides: pyramid level of the FROC evaluation mask (CAMELYON16: 5)"))
    mpp: float | None = field(
        default=None,
        metadata=_help("slides: level-0 um/px the FROC assumes (CAMELYON16: 0.243; null: each slide's own)"),
    )
    score: str = field(
        default="max",
        metadata=_help("slides: slide score from the heatmap, 'max' (Liu et al.) or 'top<k>' (mean of the k largest)"),
    )
    n_boot: int = field(default=1000, metadata=_help("bootstrap resamples of the AUC / AUROC intervals"))

    def __post_init__(self) -> None:
        self.nms_threshold = number("evaluate.nms_threshold", self.nms_threshold, strict=False)
        self.nms_radius_um = number("evaluate.nms_radius_um", self.nms_radius_um, strict=False)
        self.level = integer("evaluate.level", self.level, 0)
        self.mpp = number("evaluate.mpp", self.mpp, optional=True)
        if not (isinstance(self.score, str) and re.fullmatch(r"max|top[1-9][0-9]*", self.score)):
            raise ConfigError(f"evaluate.score must be 'max' or 'top<k>' (e.g. 'top10'), got {self.score!r}")
        self.n_boot = integer("evaluate.n_boot", self.n_boot, 0)


@dataclass
class ReportSettings:
    """The ``report`` section."""

    enabled: bool = field(default=True, metadata=_help("write report.html at the end of the run"))
    title: str = field(default="napari-patchdx report", metadata=_help("the report's title"))

    def __post_init__(self) -> None:
        self.enabled = _bool("report.enabled", self.enabled)
        self.title = _str("report.title", self.title)  # type: ignore[assignment]


@dataclass
class DistributedSettings:
    """The ``distributed`` section (slide inference on dask; results do not depend on it)."""

    workers: int = field(
        default=0, metadata=_help("worker processes of a local dask cluster for slide inference (0: in this process)")
    )
    scheduler: str | None = field(
        default=None, metadata=_help("address of an existing dask scheduler (e.g. tcp://host:8786) instead")
    )
    retries: int = field(default=2, metadata=_help("times a slide is retried when its worker dies"))

    def __post_init__(self) -> None:
        self.workers = integer("distributed.workers", self.workers, 0)
        self.scheduler = _str("distributed.scheduler", self.scheduler, optional=True)
        self.retries = integer("distributed.retries", self.retries, 0)


_SECTIONS: dict[str, type] = {
    "sample": SampleSettings,
    "infer": InferSettings,
    "evaluate": EvaluateSettings,
    "report": ReportSettings,
    "distributed": DistributedSettings,
}


def _train_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _TOP_LEVEL_IN_TRAIN]


def _section(name: str, cls: type, values: Any) -> Any:
    if isinstance(values, cls):
        return values
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name} must be a mapping of settings, got {values!r}")
    unknown = unknown_key(values, [f.name for f in dataclasses.fields(cls)])
    if unknown:
        raise ConfigError(f"unknown key '{name}.{unknown[0]}'; did you mean '{name}.{unknown[1]}'?")
    return cls(**dict(values))


def _build_train(values: Any, track: str, seed: int, device: str) -> TrainConfig:
    """The training settings of a run: ``TrainConfig`` with the run's track, seed and device."""
    if isinstance(values, TrainConfig):
        values = {k: v for k, v in values.to_dict().items() if k not in _TOP_LEVEL_IN_TRAIN}
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"train must be a mapping of training settings, got {values!r}")
    keys = _train_keys()
    for key in values:
        if key in _TOP_LEVEL_IN_TRAIN:
            raise ConfigError(
                f"train.{key}: set '{key}' at the top level of the configuration; it applies to every stage"
            )
    unknown = unknown_key(values, keys)
    if unknown:
        raise ConfigError(f"unknown key 'train.{unknown[0]}'; did you mean 'train.{unknown[1]}'?")
    settings = dict(values)
    if track == "cxr":
        settings.setdefault("stage", "curriculum")
    try:
        return TrainConfig(track=_TRAIN_TRACK[track], seed=seed, device=device, **settings)
    except ConfigError as exc:
        message = str(exc)
        first = message.split(" ", 1)[0].split("[", 1)[0]
        raise ConfigError(f"train.{message}" if first in keys else f"train: {message}") from None


def _check_splits(value: Any) -> list[float] | dict[str, str] | str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return _str("splits", value)
    numbers = isinstance(value, Mapping) and all(isinstance(v, int | float) for v in value.values())
    if isinstance(value, Mapping) and value and numbers and set(value) <= set(SPLITS):  # {train: 0.6, val: 0.2, ...}
        value = [value.get(split, 0.0) for split in SPLITS]
    elif isinstance(value, Mapping):
        out = {}
        for name, split in value.items():
            if split not in SPLITS:
                hint = f" (did you mean {closest(str(split), SPLITS)!r}?)" if isinstance(split, str) else ""
                raise ConfigError(f"splits[{name!r}] must be one of {', '.join(SPLITS)}, got {split!r}{hint}")
            out[str(name)] = str(split)
        if not out:
            raise ConfigError("splits: the mapping of names to splits is empty")
        return out
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        fractions = [number(f"splits[{i}]", v, strict=False) for i, v in enumerate(value)]
        if not np.isclose(sum(fractions), 1.0):  # type: ignore[arg-type]
            raise ConfigError(f"splits: the train, val and test fractions must sum to 1, got {value!r}")
        return fractions  # type: ignore[return-value]
    raise ConfigError(
        "splits must be three fractions [train, val, test], a mapping name -> split, or a CSV file with columns "
        f"name, split; got {value!r}"
    )


@dataclass
class RunConfig:
    """Everything that decides a pipeline run (validated on creation; :meth:`load` reads YAML, JSON or a manifest).

    Attributes:
        track: ``"slides"`` or ``"cxr"`` (see the module docstring).
        input: the slide folder (ground truth beside the slides) or the chest X-ray cohort folder.
        run_dir: where the run is written (``run(..., run_dir=)`` overrides it).
        seed: seeds everything random: splits, sampling, training, bootstrap intervals.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``, for training and inference.
        splits: three fractions, a mapping name -> split, a CSV path, or None (see the module docstring).
        sample, infer, evaluate, report, distributed: the sections (:class:`SampleSettings` ...).
        train: the training settings, a :class:`~napari_patchdx.training.TrainConfig` whose track, seed and device
            are the run's (given as a mapping of its other fields; the cxr track's default stage is
            ``curriculum``).
    """

    track: str
    input: str
    run_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    splits: list[float] | dict[str, str] | str | None = None
    sample: SampleSettings = field(default_factory=SampleSettings)
    train: TrainConfig | dict[str, Any] | None = None
    infer: InferSettings = field(default_factory=InferSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    distributed: DistributedSettings = field(default_factory=DistributedSettings)

    def __post_init__(self) -> None:
        if self.track not in TRACKS:
            hint = f" (did you mean {closest(str(self.track), TRACKS)!r}?)" if isinstance(self.track, str) else ""
            raise ConfigError(f"track must be one of {', '.join(map(repr, TRACKS))}, got {self.track!r}{hint}")
        self.input = _str("input", self.input)  # type: ignore[assignment]
        self.run_dir = _str("run_dir", self.run_dir, optional=True)
        self.seed = integer("seed", self.seed, 0)  # type: ignore[assignment]
        self.device = _str("device", self.device)  # type: ignore[assignment]
        self.splits = _check_splits(self.splits)
        for name, cls in _SECTIONS.items():
            setattr(self, name, _section(name, cls, getattr(self, name)))
        self.train = _build_train(self.train, self.track, self.seed, self.device)
        self.device = self.train.device
        if self.track == "slides" and self.sample.method == "balanced" and self.sample.n < 1:
            raise ConfigError("sample.n must be >= 1 for the balanced slide sampler (it is the training set)")

    @property
    def training(self) -> TrainConfig:
        """The validated training settings."""
        assert isinstance(self.train, TrainConfig)
        return self.train

    # ------------------------------------------------------------------------------------------------ JSON / YAML

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data, every default filled in (what ``config.yaml`` holds)."""
        out: dict[str, Any] = {
            "track": self.track,
            "input": self.input,
            "run_dir": self.run_dir,
            "seed": self.seed,
            "device": self.device,
            "splits": self.splits,
            "sample": dataclasses.asdict(self.sample),
            "train": {k: v for k, v in self.training.to_dict().items() if k not in _TOP_LEVEL_IN_TRAIN},
        }
        for name in ("infer", "evaluate", "report", "distributed"):
            out[name] = dataclasses.asdict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None) -> RunConfig:
        """A configuration from plain data; relative paths are taken relative to ``base_dir`` (default: as is).

        Raises:
            ConfigError: an unknown key (the message names it and the closest valid key), a missing ``track`` or
                ``input``, or a value of the wrong type or range (the message names its key).
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"a run configuration must be a mapping of settings, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown key {str(key)!r}; did you mean {closest(str(key), names)!r}?")
        missing = [k for k in ("track", "input") if values.get(k) is None]
        if missing:
            raise ConfigError(f"the configuration needs {' and '.join(missing)} (e.g. track: slides, input: FOLDER)")
        data = dict(values)
        if base_dir is not None:
            base = Path(base_dir)
            for key in ("input", "run_dir"):
                if isinstance(data.get(key), str | os.PathLike):
                    data[key] = str(base / Path(data[key]).expanduser())
            if isinstance(data.get("splits"), str | os.PathLike):
                data["splits"] = str(base / Path(data["splits"]).expanduser())
            train = data.get("train")
            if isinstance(train, Mapping):
                train = dict(train)
                for key in ("pretrained", "init_checkpoint"):
                    if isinstance(train.get(key), str | os.PathLike):
                        train[key] = str(base / Path(train[key]).expanduser())
                data["train"] = train
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> RunConfig:
        """A configuration from a YAML (or JSON) file; relative paths in it are relative to the file's folder."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "no such configuration file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InputFileError(path, f"not a readable YAML configuration ({exc})") from None
        if not isinstance(values, Mapping):
            raise InputFileError(path, "a configuration file must hold a mapping of settings (key: value lines)")
        if values.get("kind") == MANIFEST_KIND:
            return cls.from_manifest(path)
        try:
            return cls.from_dict(values, base_dir=path.parent.resolve())
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_manifest(cls, path: str | os.PathLike[str]) -> RunConfig:
        """The configuration a run's ``manifest.json`` recorded, with ``run_dir`` = the manifest's folder."""
        path = Path(path)
        manifest = _read_manifest(path)
        if manifest is None:
            raise InputFileError(path, f"not a napari-patchdx run manifest (no kind {MANIFEST_KIND!r})")
        values = dict(manifest.get("config") or {})
        values["run_dir"] = str(path.resolve().parent)
        try:
            return cls.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def load(cls, source: RunConfig | Mapping[str, Any] | str | os.PathLike[str], **overrides: Any) -> RunConfig:
        """A configuration from a :class:`RunConfig`, a mapping, a YAML / JSON file or a run's ``manifest.json``,
        with top-level ``overrides`` (e.g. ``input=``, ``run_dir=``) applied and validated."""
        if isinstance(source, RunConfig):
            config = source
        elif isinstance(source, Mapping):
            config = cls.from_dict(source)
        elif isinstance(source, str | os.PathLike):
            config = cls.from_yaml(source)
        else:
            raise ConfigError(f"a run configuration is a RunConfig, a mapping or a file path, got {source!r}")
        if overrides:
            values = config.to_dict()
            values.update({k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in overrides.items()})
            config = cls.from_dict(values)
        return config

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The configuration as YAML text; written atomically to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        if path is not None:
            atomic_write_text(path, text)
        return text


def _field_type(cls: type, name: str) -> str:
    hints = typing.get_type_hints(cls)
    text = str(hints.get(name, ""))
    return text.replace("typing.", "").replace("<class '", "").replace("'>", "").replace("NoneType", "None")


def _train_help() -> dict[str, str]:
    """Each TrainConfig attribute's description, parsed from its docstring's ``Attributes:`` section."""
    doc = TrainConfig.__doc__ or ""
    out: dict[str, str] = {}
    current: str | None = None
    in_attrs = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= 8 and ":" in stripped:
            names, text = stripped.split(":", 1)
            current = names
            for name in (n.strip() for n in names.split(",")):
                out[name] = text.strip()
        elif current is not None:
            for name in (n.strip() for n in current.split(",")):
                out[name] = f"{out[name]} {stripped}"
    for name, text in out.items():
        text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")
        out[name] = text.replace("the module docstring", "napari_patchdx.training")
    return out


def config_reference() -> list[dict[str, str]]:
    """Every configuration key: ``key`` (dotted), ``type``, ``default`` (as YAML) and ``help``.

    The documentation's configuration reference is generated from this list.
    """
    top_help = {
        "track": "'slides' (slides with their ground truth beside them) or 'cxr' (a chest X-ray cohort folder)",
        "input": "the slide folder or the X-ray cohort folder (relative paths: from the configuration file)",
        "run_dir": "where the run is written (run_dir= / --run-dir override it)",
        "seed": "seeds everything random: splits, sampling, training, bootstrap intervals",
        "device": "'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:<index>' or 'mps'",
        "splits": (
            "per slide / image: three fractions [train, val, test] (stratified), a mapping name -> split, or a CSV "
            "file with columns name, split (null: labels.csv's split column, else [0.6, 0.2, 0.2])"
        ),
    }
    defaults = {"track": None, "input": None, "run_dir": None, "seed": 0, "device": "auto"}
    rows = []
    for f in dataclasses.fields(RunConfig):
        if f.name in top_help:
            rows.append(
                {
                    "key": f.name,
                    "type": _field_type(RunConfig, f.name).replace(
                        "list[float] | dict[str, str] | str", "list | map | path"
                    ),
                    "default": "required" if f.name in ("track", "input") else _yaml_value(defaults.get(f.name)),
                    "help": top_help[f.name],
                }
            )
    train_help = _train_help()
    sections: list[tuple[str, type, Any]] = [("sample", SampleSettings, SampleSettings())]
    sections.append(("train", TrainConfig, TrainConfig()))
    sections += [(name, cls, cls()) for name, cls in _SECTIONS.items() if name != "sample"]
    for section, cls, instance in sections:
        for f in dataclasses.fields(cls):
            if cls is TrainConfig and f.name in _TOP_LEVEL_IN_TRAIN:
                continue
            default = getattr(instance, f.name)
            help_text = f.metadata.get("help") if cls is not TrainConfig else train_help.get(f.name, "")
            if cls is TrainConfig and f.name == "stage":
                default = "patches (slides) / curriculum (cxr)"
                help_text = f"{help_text} The pipeline's default for the cxr track is 'curriculum'."
            elif cls is TrainConfig and f.name == "arch":
                default = None
            rows.append(
                {
                    "key": f"{section}.{f.name}",
                    "type": _field_type(cls, f.name),
                    "default": default if isinstance(default, str) and " " in default else _yaml_value(default),
                    "help": str(help_text or ""),
                }
            )
    return rows


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


# ===============================================================================================================
# inputs
# ===============================================================================================================


@dataclass
class _Item:
    """One slide or X-ray of the run."""

    name: str
    path: Path
    truth: Path | None
    positive: bool
    split: str = "train"


@dataclass
class _Inputs:
    """The resolved inputs of a run: items with their splits, the files whose checksums are recorded."""

    root: Path
    items: list[_Item]
    files: list[Path]
    classes: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def split(self, *splits: str) -> list[_Item]:
        return [it for it in self.items if it.split in splits]


def _slide_stem(path: Path) -> str:
    """The name a slide's outputs are named after: the file name without ``.ome.tif`` / its suffix."""
    name = path.name
    return name[: -len(".ome.tif")] if name.lower().endswith(".ome.tif") else path.stem


def _missing_error(missing: Sequence[Path]) -> ConfigError:
    listed = "\n".join(f"  {p}" for p in dict.fromkeys(missing))
    return ConfigError(f"missing inputs ({len(set(missing))}):\n{listed}")


def _resolve_inputs(config: RunConfig) -> _Inputs:
    """Find every input file, list all missing ones in one error, assign the splits and check they are usable."""
    from ..io.detect import slides_in_folder

    root = Path(config.input)
    missing: list[Path] = []
    items: list[_Item] = []
    files: list[Path] = []
    classes: tuple[str, ...] = ()
    extra = [Path(p) for p in (config.training.pretrained, config.training.init_checkpoint) if p is not None]
    if isinstance(config.splits, str):
        extra.append(Path(config.splits))
    missing.extend(p for p in extra if not p.is_file())
    if not root.is_dir():
        raise _missing_error([*missing, root])
    labels_split: dict[str, str] = {}
    if config.track == "slides":
        for path, truth in slides_in_folder(root):
            items.append(_Item(_slide_stem(path), path, truth, truth is not None))
            files.append(path)
            if truth is not None:
                files.append(truth)
        if not items and not missing:
            raise InputFileError(root, "holds no slides (svs, ndpi, mrxs, scn, bif, vms or tiled TIFF)")
        stems = [it.name for it in items]
        twins = sorted({s for s in stems if stems.count(s) > 1})
        if twins:
            raise InputFileError(root, f"two slides share the name {twins[0]!r} (outputs are named by slide)")
    else:
        labels = root / "labels.csv"
        if not labels.is_file():
            missing.append(labels)
        else:
            table, classes = read_cohort_labels(root)
            files.append(labels)
            for name in ("lesions.csv",):
                if (root / name).is_file():
                    files.append(root / name)
            for row in table.itertuples(index=False):
                image = str(row.image)
                png = root / str(row.png)
                if not png.is_file():
                    missing.append(png)
                positive = any(int(getattr(row, c)) for c in classes)
                items.append(_Item(image, png, None, positive))
                files.append(png)
                for sub in ("masks", "lungs"):
                    extra_file = root / sub / f"{image}.png"
                    if extra_file.is_file():
                        files.append(extra_file)
                if "split" in table.columns:
                    labels_split[image] = str(row.split)
    if missing:
        raise _missing_error(missing)
    files.extend(extra)
    inputs = _Inputs(root, items, files, classes)
    _assign_splits(config, inputs, labels_split)
    _check_splits_usable(config, inputs)
    return inputs


def _read_split_csv(path: Path) -> dict[str, str]:
    try:
        table = pd.read_csv(path)
    except Exception as exc:
        raise InputFileError(path, f"not a readable CSV ({type(exc).__name__}: {exc})") from None
    name_col = next((c for c in ("name", "slide", "image") if c in table.columns), None)
    if name_col is None or "split" not in table.columns:
        raise InputFileError(path, "a split file needs columns 'name' (or 'slide' / 'image') and 'split'")
    out = {}
    for lineno, (name, split) in enumerate(zip(table[name_col], table["split"], strict=True), start=2):
        if split not in SPLITS:
            raise InputFileError(path, f"line {lineno}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        out[str(name)] = str(split)
    return out


def _assign_splits(config: RunConfig, inputs: _Inputs, labels_split: Mapping[str, str]) -> None:
    names = [it.name for it in inputs.items]
    splits = config.splits
    if isinstance(splits, str):
        mapping = _read_split_csv(Path(splits))
        where = splits
    elif isinstance(splits, Mapping):
        mapping, where = dict(splits), "splits"
    elif splits is None and labels_split:
        bad = sorted({s for s in labels_split.values() if s not in SPLITS})
        if bad:
            raise InputFileError(inputs.root / "labels.csv", f"split column holds {bad}; use {', '.join(SPLITS)}")
        mapping, where = dict(labels_split), "labels.csv"
    else:
        fractions = tuple(splits) if splits is not None else DEFAULT_SPLIT_FRACTIONS
        strata = {it.name: int(it.positive) for it in inputs.items}
        mapping = assign_splits(names, fractions, seed=config.seed, strata=strata)  # type: ignore[arg-type]
        where = ""
    if where:
        unknown = sorted(set(mapping) - set(names))
        absent = [n for n in names if n not in mapping]
        if unknown:
            raise ConfigError(f"{where}: names not in {inputs.root}: {', '.join(unknown[:10])}")
        if absent:
            raise ConfigError(f"{where}: no split for {', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}")
    for it in inputs.items:
        it.split = mapping[it.name]


def _check_splits_usable(config: RunConfig, inputs: _Inputs) -> None:
    kind = "slide" if config.track == "slides" else "image"
    for split in ("train", "val"):
        if not inputs.split(split):
            raise ConfigError(
                f"no {kind} has split {split!r} ({len(inputs.items)} {kind}s); training needs training and "
                "validation data: adjust 'splits'"
            )
    if not inputs.split(*config.infer.splits):
        raise ConfigError(
            f"no {kind} has a split in infer.splits {config.infer.splits}; adjust 'splits' or 'infer.splits'"
        )
    if config.track == "slides":
        for split in ("train", "val"):
            if not any(it.positive for it in inputs.split(split)):
                raise ConfigError(
                    f"no tumour slide (one with ground truth beside it) has split {split!r}; the balanced sampler "
                    "needs tumour in the training and validation slides: adjust 'splits'"
                )
        evaluated = inputs.split(*config.infer.splits)
        if all(it.positive for it in evaluated) or not any(it.positive for it in evaluated):
            inputs.notes.append(
                "the evaluated slides are all of one class: the slide-level AUC is undefined (FROC still works)"
            )


# ===============================================================================================================
# manifest, fingerprints, checksums
# ===============================================================================================================


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == MANIFEST_KIND else None


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_jsonable(manifest), indent=2, allow_nan=False) + "\n")


def _input_records(files: Sequence[Path], previous: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Size, modification time and sha256 of each input; a checksum is reused when size and mtime are unchanged."""
    known = {str(r.get("path")): r for r in previous if isinstance(r, Mapping)}
    out = []
    for path in dict.fromkeys(Path(p).resolve() for p in files):
        stat = path.stat()
        old = known.get(str(path))
        if old and old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns and old.get("sha256"):
            sha = str(old["sha256"])
        else:
            sha = sha256_file(path)
        out.append({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha})
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"napari_patchdx": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "torchvision", "numpy", "pandas", "scikit-learn", "scikit-image", "tifffile", "dask"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _device_record(device: str) -> dict[str, Any]:
    import torch

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        name = torch.cuda.get_device_name(resolved)
    else:
        name = platform.processor() or platform.machine() or "cpu"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return {
        "requested": device,
        "resolved": str(resolved),
        "name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def _fingerprints(config: RunConfig, inputs: _Inputs, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The chained fingerprint of every stage (see the module docstring)."""

    def rel(path: str) -> str:
        p = Path(path)
        with contextlib.suppress(ValueError):
            return p.relative_to(inputs.root.resolve()).as_posix()
        return p.name

    data = sorted((rel(r["path"]), r["sha256"]) for r in records)
    t = config.training
    if config.track == "slides":
        geometry = {k: getattr(t, k) for k in ("patch_size", "center_size", "mpp", "jitter", "val_patches")}
    else:
        geometry = {k: getattr(t, k) for k in ("patch_size", "working_size")}
    fps: dict[str, str] = {}
    fps["sample"] = _digest(
        {
            "stage": "sample",
            "track": config.track,
            "inputs": data,
            "splits": {it.name: it.split for it in inputs.items},
            "sample": dataclasses.asdict(config.sample),
            "geometry": geometry,
            "seed": config.seed,
        }
    )
    train = {k: v for k, v in t.to_dict().items() if k not in _TRAIN_NOT_FINGERPRINTED}
    fps["train"] = _digest({"stage": "train", "after": fps["sample"], "train": train})
    fps["infer"] = _digest({"stage": "infer", "after": fps["train"], "infer": dataclasses.asdict(config.infer)})
    fps["evaluate"] = _digest(
        {
            "stage": "evaluate",
            "after": fps["infer"],
            "evaluate": dataclasses.asdict(config.evaluate),
            "seed": config.seed,
        }
    )
    fps["report"] = _digest({"stage": "report", "after": fps["evaluate"], "report": dataclasses.asdict(config.report)})
    return fps


# ===============================================================================================================
# results
# ===============================================================================================================


@dataclass
class RunResult:
    """What a pipeline run produced.

    Attributes:
        run_dir: the run directory.
        track: ``"slides"`` or ``"cxr"``.
        config: the configuration that ran.
        manifest: ``manifest.json``.
        artifacts: stage -> the files it wrote (absolute paths).
        metrics: the evaluation's metrics (``evaluate/metrics.json``; empty when evaluation did not run).
        report: ``report.html``, or None.
        stages: stage -> what happened in this call: ``"ran"``, ``"resumed"``, ``"skipped"`` (its artifacts were
            current), ``"cancelled"``, ``"disabled"`` or ``"not run"``.
        timings: stage -> seconds this call spent on it.
        cancelled: True when ``stop`` ended the run (a stage left resumable state; the next run goes on).
        notes: remarks about the inputs (e.g. an undefined AUC).
    """

    run_dir: Path
    track: str
    config: RunConfig
    manifest: Path
    artifacts: dict[str, list[Path]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    stages: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)

    def layers(self, *, max_items: int | None = None) -> list[tuple[Any, dict[str, Any], str]]:
        """napari layer-data tuples of the results (no napari import): for every predicted slide the slide, its
        ground truth, its heatmap and its lesion points; for every predicted X-ray the image, its lesion boxes
        and one CAM layer per class. Layers of all but the first slide / image start hidden."""
        return result_layers(self.run_dir, max_items=max_items)


def _splits_table(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "sample" / "splits.csv"
    if not path.is_file():
        raise InputFileError(path, "no such file: the run's sample stage has not finished")
    return pd.read_csv(path, keep_default_na=False)


def result_layers(run_dir: str | os.PathLike[str], *, max_items: int | None = None) -> list[tuple[Any, dict, str]]:
    """Layer-data tuples of a run directory's results (see :meth:`RunResult.layers`)."""
    from .. import layerdata as L

    run_dir = Path(run_dir)
    manifest = _read_manifest(run_dir / MANIFEST_NAME)
    if manifest is None:
        raise InputFileError(run_dir / MANIFEST_NAME, "not a napari-patchdx run (no manifest)")
    track = manifest["config"]["track"]
    infer_dir = run_dir / "infer"
    table = _splits_table(run_dir)
    out: list[tuple[Any, dict, str]] = []
    shown = 0
    for row in table.itertuples(index=False):
        name = str(row.name)
        suffix = ".heatmap.ome.tif" if track == "slides" else ".cam.ome.tif"
        result = infer_dir / f"{name}{suffix}"
        if not result.is_file():
            continue
        if max_items is not None and shown >= max_items:
            break
        group: list[tuple[Any, dict, str]] = []
        if track == "slides":
            group.extend(L.slide_file_layers(Path(row.path)))
            group.extend(L.heatmap_file_layers(result))
            points = run_dir / "evaluate" / "points" / f"{name}.csv"
            if points.is_file():
                from ..evaluation import read_camelyon_csv

                mpp = group[0][1]["metadata"]["patchdx"].get("mpp")
                group.append(L.points_layer(read_camelyon_csv(points), mpp, name=f"{name} lesion points"))
        else:
            image = L.cxr_file_layers(Path(row.path))[0]
            image[1]["name"] = name
            group.append(image)
            spacing = image[1].get("scale")
            boxes = _lesion_boxes(Path(manifest["config"]["input"]), name)
            if boxes is not None:
                group.append(L.boxes_layer(boxes[0], boxes[1], spacing=spacing, name=f"{name} lesions"))
            group.extend(L.cam_file_layers(result))
        if shown:
            for _, kwargs, _ in group:
                kwargs["visible"] = False
        out.extend(group)
        shown += 1
    return out


def _lesion_boxes(root: Path, image: str) -> tuple[np.ndarray, list[str]] | None:
    path = root / "lesions.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    rows = table[table["image"].astype(str) == image]
    if rows.empty:
        return None
    return rows[["y0", "x0", "y1", "x1"]].to_numpy(np.float64), rows["class"].astype(str).tolist()


# ===============================================================================================================
# the stages
# ===============================================================================================================


@dataclass
class _Context:
    config: RunConfig
    run_dir: Path
    inputs: _Inputs
    device: str
    stop: Callable[[], bool] | None


def _part(job: Job[Any], lo: float, hi: float, label: str = "") -> Job[Any]:
    """Forward a job's reports mapped onto [lo, hi] of a stage (in units of 1/_SCALE); returns its result."""
    while True:
        try:
            report = next(job)
        except StopIteration as done:
            return done.value
        frac = lo + (hi - lo) * report.fraction
        message = f"{label}{report.message}" if label else report.message
        yield Progress(round(frac * _SCALE), _SCALE, message, report.partial)


def _sample_stage(ctx: _Context) -> Job[list[Path]]:
    config, t = ctx.config, ctx.config.training
    out = ctx.run_dir / "sample"
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "name": it.name,
            "split": it.split,
            "label": int(it.positive),
            "path": str(it.path.resolve()),
            "truth": "" if it.truth is None else str(it.truth.resolve()),
        }
        for it in ctx.inputs.items
    ]
    splits_csv = out / "splits.csv"
    atomic_write_text(splits_csv, pd.DataFrame(rows).to_csv(index=False, lineterminator="\n"))
    table_path = out / "patches.csv"
    if config.track == "slides":
        patch = t.patch_size or DEFAULT_PATCH_SIZE["slide"]
        geometry = PatchGeometry(patch, t.center_size or min(128, patch), t.mpp)
        parts = []
        for k, split in enumerate(("train", "val")):
            chosen = ctx.inputs.split(split)
            pairs = [(it.path, it.truth) for it in chosen]
            method = config.sample.method if split == "train" else "balanced"
            n = config.sample.n if split == "train" else t.val_patches
            job = sample_slides_job(
                pairs,
                method=method,
                n=n,
                geometry=geometry,
                seed=config.seed,
                jitter=t.jitter,
                min_tissue=config.sample.min_tissue,
                splits={it.name: split for it in chosen},
            )
            parts.append((yield from _part(job, 0.5 * k, 0.5 * (k + 1), f"{split} patches: ")))
        write_patch_table(pd.concat(parts, ignore_index=True), table_path)
        return [splits_csv, table_path]
    if config.sample.n == 0:
        return [splits_csv]
    yield Progress(0, _SCALE, "reading lesion masks")
    splits = {it.name: it.split for it in ctx.inputs.items}
    sources = [s for s in load_cxr_cohort(ctx.inputs.root, splits) if s.split == "train"]
    sampler = CxrLesionSampler(
        sources,
        patch_size=t.patch_size or min(DEFAULT_PATCH_SIZE["cxr"], t.working_size),
        working_size=t.working_size,
        seed=config.seed,
    )
    chunks = []
    n = config.sample.n
    for start in range(0, n, 64):
        chunks.append(sampler.table(min(64, n - start), start=start))
        done = start + len(chunks[-1])
        yield Progress(int(_SCALE * done / n), _SCALE, f"sampled {done} of {n} lesion / normal-lung patches")
    write_patch_table(pd.concat(chunks, ignore_index=True), table_path)
    return [splits_csv, table_path]


def _train_stage(ctx: _Context) -> Job[tuple[list[Path], bool]]:
    config = ctx.config
    out = ctx.run_dir / "train"
    if config.track == "slides":
        data = TrainData(patch_table=str(ctx.run_dir / "sample" / "patches.csv"))
    else:
        data = TrainData(cxr_root=str(ctx.inputs.root), splits={it.name: it.split for it in ctx.inputs.items})
    result = yield from _part(train_job(config.training, data, out, resume=True, stop=ctx.stop), 0.0, 1.0)
    files = [p for p in sorted(out.iterdir()) if p.is_file() and p.suffix in (".safetensors", ".json", ".csv")]
    return files, bool(result.cancelled)


def _checkpoint(ctx: _Context) -> Path:
    path = ctx.run_dir / "train" / f"{ctx.config.infer.checkpoint}.safetensors"
    if not path.is_file():
        raise InputFileError(path, "no such checkpoint: the training stage has not written it")
    return path


def _infer_stage(ctx: _Context) -> Job[list[Path]]:
    config = ctx.config
    out = ctx.run_dir / "infer"
    out.mkdir(parents=True, exist_ok=True)
    items = ctx.inputs.split(*config.infer.splits)
    checkpoint = _checkpoint(ctx)
    if config.track == "slides":
        from ..distributed import heatmaps_job
        from ..inference import heatmap_paths

        settings = config.infer
        job = heatmaps_job(
            [it.path for it in items],
            [checkpoint],
            out,
            workers=config.distributed.workers,
            scheduler=config.distributed.scheduler,
            retries=config.distributed.retries,
            device=ctx.device,
            tta=settings.tta,
            stride=settings.stride,
            batch_size=settings.batch_size,
            min_tissue=settings.min_tissue,
        )
        yield from _part(job, 0.0, 1.0)
        files = []
        for it in items:
            paths = heatmap_paths(out, it.name)
            files += [paths["final"], paths["sidecar"]]
        return files
    from ..inference import cam_paths, cxr_predict, save_cxr_prediction
    from ..models import load_checkpoint

    yield Progress(0, _SCALE, f"loading {checkpoint.name}")
    model, meta = load_checkpoint(checkpoint, device=ctx.device)
    files = []
    for k, it in enumerate(items):
        paths = cam_paths(out, it.name)
        if not (paths["final"].is_file() and paths["sidecar"].is_file()):  # resuming: kept from the last attempt
            prediction = cxr_predict([it.path], model, meta, device=ctx.device)[0]
            save_cxr_prediction(prediction, out, name=it.name)
        files += [paths["final"], paths["sidecar"]]
        yield Progress(int(_SCALE * (k + 1) / len(items)), _SCALE, f"predicted {it.name} ({k + 1} of {len(items)})")
    return files


def _evaluate_stage(ctx: _Context) -> Job[list[Path]]:
    from .. import evaluation as ev

    config = ctx.config
    out = ctx.run_dir / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    items = ctx.inputs.split(*config.infer.splits)
    settings = config.evaluate
    if config.track == "slides":
        job = ev.evaluate_slides_job(
            [it.path for it in items],
            ctx.run_dir / "infer",
            out,
            annotations={it.name: it.truth for it in items},
            nms_threshold=settings.nms_threshold,
            nms_radius_um=settings.nms_radius_um,
            level=settings.level,
            mpp=settings.mpp,
            score=settings.score,
            n_boot=settings.n_boot,
            seed=config.seed,
        )
    else:
        from ..models import read_checkpoint_meta

        meta = read_checkpoint_meta(_checkpoint(ctx))
        values = meta.get("thresholds") or []
        thresholds = {
            str(c): float(v)
            for c, v in zip(meta.get("classes") or [], values, strict=False)
            if v is not None and np.isfinite(v)
        }
        job = ev.evaluate_cxr_job(
            ctx.run_dir / "infer",
            ctx.inputs.root,
            out,
            images=[it.name for it in items],
            thresholds=thresholds or None,
            n_boot=settings.n_boot,
            seed=config.seed,
        )
    yield from _part(job, 0.0, 1.0)
    return sorted(p for p in out.rglob("*") if p.is_file())


def _report_stage(ctx: _Context) -> Job[list[Path]]:
    from ..reporting import build_report

    yield Progress(0, _SCALE, "writing the report")
    path = Path(build_report(ctx.run_dir, ctx.run_dir / REPORT_NAME, title=ctx.config.report.title))
    yield Progress(_SCALE, _SCALE, f"wrote {path.name}")
    return [path, path.parent / "metrics.json"]


_STAGE_JOBS: dict[str, Callable[[_Context], Job[Any]]] = {
    "sample": _sample_stage,
    "train": _train_stage,
    "infer": _infer_stage,
    "evaluate": _evaluate_stage,
    "report": _report_stage,
}


def _stage_dir(run_dir: Path, stage: str) -> Path | None:
    return None if stage == "report" else run_dir / stage


def _clear_stage(run_dir: Path, stage: str) -> None:
    folder = _stage_dir(run_dir, stage)
    if folder is not None and folder.exists():
        shutil.rmtree(folder)
    if stage == "report":
        for name in (REPORT_NAME, "metrics.json"):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()


def _current(entry: Any, fingerprint: str, run_dir: Path) -> bool:
    """A stage's recorded outputs are complete, of this fingerprint, and all still there."""
    if not isinstance(entry, Mapping) or entry.get("status") != "complete" or entry.get("fingerprint") != fingerprint:
        return False
    return all((run_dir / p).exists() for p in entry.get("artifacts", []))


def _check_run_dir(run_dir: Path) -> dict[str, Any] | None:
    """The folder's previous manifest; refuse a folder that holds other things than a run of ours."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir {run_dir} exists and is not a folder")
    if not run_dir.is_dir():
        return None
    manifest = _read_manifest(run_dir / MANIFEST_NAME)
    if manifest is None:
        others = [p.name for p in run_dir.iterdir() if p.name != CONFIG_NAME]
        if others:
            raise ConfigError(
                f"run_dir {run_dir} holds files that are not a napari-patchdx run ({', '.join(sorted(others)[:5])}); "
                "choose an empty or new folder"
            )
    return manifest


# ===============================================================================================================
# run
# ===============================================================================================================


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _prepare(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike[str], run_dir: str | os.PathLike[str] | None
) -> tuple[RunConfig, Path, Mapping[str, Any] | None]:
    source_manifest = None
    if isinstance(config, str | os.PathLike) and Path(config).is_file():
        source_manifest = _read_manifest(Path(config))
    cfg = RunConfig.load(config)
    target = run_dir if run_dir is not None else cfg.run_dir
    if target is None:
        raise ConfigError("say where the run goes: run_dir in the configuration, or run(..., run_dir=DIR)")
    path = Path(target).expanduser().resolve()
    cfg = RunConfig.load(cfg, run_dir=str(path), input=str(Path(cfg.input).expanduser().resolve()))
    return cfg, path, source_manifest


def run_job(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike[str],
    *,
    run_dir: str | os.PathLike[str] | None = None,
    stop: Callable[[], bool] | None = None,
    force: bool = False,
    stages: Sequence[str] | None = None,
) -> Job[RunResult]:
    """The pipeline as a job: a generator of :class:`~napari_patchdx.progress.Progress` returning a
    :class:`RunResult` (what :func:`run`, the command line and the "Run pipeline" widget drive).

    The configuration, the input files, the splits and the run folder are checked when this is called, before
    the job is returned (so errors come before any progress bar); the job then checksums the inputs and runs.

    Progress ``done`` / ``total`` are thousandths of the whole run (stages weighted by their usual cost); the
    message starts with the stage; ``partial`` is ``{"stage": name, "event": "start" | "progress" | "skipped" |
    "done", "data": the stage's own partial result}`` (e.g. the trainer's epoch records).

    Args:
        config: a :class:`RunConfig`, a mapping, a YAML / JSON configuration file or a run's ``manifest.json``.
        run_dir: the run directory (default: the configuration's ``run_dir``).
        stop: polled at every progress report; when it returns True the current stage stops (training saves a
            resumable checkpoint), its state is recorded and the job returns with ``cancelled=True``.
        force: re-run every stage, even those whose artifacts are current.
        stages: run only these stages (default: all); the stages before them must be complete and current.

    Raises:
        ConfigError: invalid settings, missing input files (all listed in one message), unusable splits, a run
            folder holding other files, or (with ``stages``) an earlier stage that is not done.
        InputFileError: an unreadable input.
    """
    cfg, root, source_manifest = _prepare(config, run_dir)
    selected = list(STAGES) if stages is None else [str(s) for s in stages]
    for s in selected:
        if s not in STAGES:
            raise ConfigError(f"unknown stage {s!r}; did you mean {closest(s, STAGES)!r}?")
    last = max(STAGES.index(s) for s in selected)
    inputs = _resolve_inputs(cfg)
    device_record = _device_record(cfg.device)
    previous = _check_run_dir(root)
    recorded = (previous or {}).get("stages") or {}
    for s in STAGES[:last]:  # the cheap part of the check now; whether it is current needs the checksums
        if s not in selected and (recorded.get(s) or {}).get("status") != "complete":
            raise _not_done(s, root, selected)
    return _execute(cfg, root, source_manifest, selected, last, inputs, device_record, previous, stop, force)


def _not_done(stage: str, root: Path, selected: Sequence[str]) -> ConfigError:
    later = next(x for x in STAGES[STAGES.index(stage) + 1 :] if x in selected)
    return ConfigError(
        f"the {stage} stage of {root} is not done (or its settings or inputs changed), and {later} needs it: "
        f"run `napari-patchdx {stage} CONFIG` or `napari-patchdx run CONFIG` first"
    )


def _execute(
    cfg: RunConfig,
    root: Path,
    source_manifest: Mapping[str, Any] | None,
    selected: list[str],
    last: int,
    inputs: _Inputs,
    device_record: dict[str, Any],
    previous: dict[str, Any] | None,
    stop: Callable[[], bool] | None,
    force: bool,
) -> Job[RunResult]:
    """The body of :func:`run_job`, after the checks that need no work."""
    yield Progress(0, _SCALE, "checking inputs (sha256)", {"stage": "sample", "event": "checksums", "data": None})
    old_inputs = (previous or {}).get("inputs") or (source_manifest or {}).get("inputs") or []
    records = _input_records(inputs.files, old_inputs)
    if source_manifest is not None:
        recorded = {r.get("path"): r.get("sha256") for r in source_manifest.get("inputs") or []}
        changed = [r["path"] for r in records if r["path"] in recorded and recorded[r["path"]] != r["sha256"]]
        gone = sorted(set(recorded) - {r["path"] for r in records})
        if changed or gone:
            warnings.warn(
                "repeating a run whose inputs changed since its manifest was written: "
                + "; ".join(
                    [*(f"{p}: checksum differs" for p in changed), *(f"{p}: no longer an input" for p in gone)]
                ),
                UserWarning,
                stacklevel=2,
            )
    fps = _fingerprints(cfg, inputs, records)

    for s in STAGES[:last]:
        if s not in selected and not _current(((previous or {}).get("stages") or {}).get(s), fps[s], root):
            raise _not_done(s, root, selected)

    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = dict(previous or {})
    manifest.update(
        {
            "kind": MANIFEST_KIND,
            "format_version": MANIFEST_VERSION,
            "created": manifest.get("created") or _now(),
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "versions": _versions(),
            "device": device_record,
            "inputs": records,
            "input_bytes": int(sum(r["size"] for r in records)),
            "splits": {it.name: it.split for it in inputs.items},
            "notes": inputs.notes,
        }
    )
    manifest.setdefault("stages", {})
    session: dict[str, Any] = {
        "started": _now(),
        "argv": list(sys.argv),
        "force": bool(force),
        "versions": manifest["versions"],
        "device": device_record["resolved"],
        "stages": {},
        "seconds": {},
    }
    manifest.setdefault("sessions", []).append(session)
    manifest_path = root / MANIFEST_NAME
    cfg.to_yaml(root / CONFIG_NAME)
    _write_manifest(manifest_path, manifest)

    ctx = _Context(cfg, root, inputs, str(resolve_device(cfg.device)), stop)
    result = RunResult(root, cfg.track, cfg, manifest_path, notes=list(inputs.notes))
    base = 0.0
    for s in STAGES:
        weight = _WEIGHTS[s]
        entry = manifest["stages"].get(s)
        action: str
        if s not in selected or STAGES.index(s) > last:
            action = "skipped" if STAGES.index(s) < last else "not run"
        elif s == "report" and not cfg.report.enabled:
            action = "disabled"
        elif not force and _current(entry, fps[s], root):
            action = "skipped"
            yield Progress(
                int(_SCALE * (base + weight)), _SCALE, f"{s}: up to date, skipped", {"stage": s, "event": "skipped"}
            )
        else:
            resume = (
                not force
                and s in _RESUMABLE
                and isinstance(entry, Mapping)
                and entry.get("fingerprint") == fps[s]
                and entry.get("status") in ("running", "cancelled", "failed")
            )
            if not resume:
                _clear_stage(root, s)
            for later in STAGES[STAGES.index(s) + 1 :]:  # their inputs are about to change
                if isinstance(manifest["stages"].get(later), dict):
                    manifest["stages"][later]["status"] = "stale"
            entry = {"fingerprint": fps[s], "status": "running", "started": _now(), "artifacts": []}
            manifest["stages"][s] = entry
            _write_manifest(manifest_path, manifest)
            yield Progress(
                int(_SCALE * base),
                _SCALE,
                f"{s}: {'resuming' if resume else 'starting'}",
                {"stage": s, "event": "start"},
            )
            t0 = time.perf_counter()
            try:
                outcome = yield from _guarded(s, _STAGE_JOBS[s](ctx), base, weight, stop)
            except BaseException as exc:
                entry["status"] = "cancelled" if isinstance(exc, GeneratorExit | KeyboardInterrupt) else "failed"
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["seconds"] = round(time.perf_counter() - t0, 3)
                session["stages"][s] = entry["status"]
                session["finished"] = _now()
                if s not in _RESUMABLE:  # nothing half-done stays behind
                    with contextlib.suppress(OSError):
                        _clear_stage(root, s)
                with contextlib.suppress(Exception):
                    _write_manifest(manifest_path, manifest)
                raise
            seconds = time.perf_counter() - t0
            files, cancelled = outcome
            entry["seconds"] = round(seconds, 3)
            entry["finished"] = _now()
            entry["artifacts"] = [p.resolve().relative_to(root).as_posix() for p in files]
            result.timings[s] = round(seconds, 3)
            session["seconds"][s] = round(seconds, 3)
            if cancelled:
                entry["status"] = "cancelled"
                session["stages"][s] = "cancelled"
                session["finished"] = _now()
                _write_manifest(manifest_path, manifest)
                result.stages[s] = "cancelled"
                result.cancelled = True
                for rest in STAGES[STAGES.index(s) + 1 :]:
                    result.stages[rest] = "not run"
                _fill_result(result, manifest, root)
                yield Progress(int(_SCALE * base), _SCALE, f"{s}: stopped", {"stage": s, "event": "cancelled"})
                return result
            entry["status"] = "complete"
            action = "resumed" if resume else "ran"
            if s == "evaluate":
                manifest["metrics"] = _read_metrics(root)
            _write_manifest(manifest_path, manifest)
            yield Progress(int(_SCALE * (base + weight)), _SCALE, f"{s}: done", {"stage": s, "event": "done"})
        result.stages[s] = action
        session["stages"][s] = action
        base += weight
    session["finished"] = _now()
    if (root / "evaluate" / "metrics.json").is_file():
        manifest["metrics"] = _read_metrics(root)
    _write_manifest(manifest_path, manifest)
    _fill_result(result, manifest, root)
    yield Progress(_SCALE, _SCALE, "done", {"stage": None, "event": "finished"})
    return result


def _guarded(
    stage: str, job: Job[Any], base: float, weight: float, stop: Callable[[], bool] | None
) -> Job[tuple[list[Path], bool]]:
    """Forward a stage's reports onto the run's scale; stop it at a report when ``stop()`` says so.

    Returns ``(files, cancelled)``. Training polls ``stop`` itself (it saves a resumable state first).
    """
    while True:
        try:
            report = next(job)
        except StopIteration as done:
            value = done.value
            return value if stage == "train" else (value, False)
        frac = base + weight * report.fraction
        yield Progress(
            round(_SCALE * frac),
            _SCALE,
            f"{stage}: {report.message}",
            {"stage": stage, "event": "progress", "data": report.partial},
        )
        if stage != "train" and stop is not None and stop():
            job.close()
            return [], True


_NOT_HEADLINE = frozenset(
    {
        "settings",
        "inputs",
        "files",
        "confidence",
        "lo",
        "hi",
        "level",
        "mpp",
        "thresholds",
        "pointing_pairs",
        "pointing_unboxed_positives",
        "moved_onto_slide",
    }
)


def headline(metrics: Any, prefix: str = "", _depth: int = 0) -> dict[str, str]:
    """The headline numbers of a metrics dict for a status line: its finite scalar numbers one level deep (e.g.
    ``froc.score``, ``slide_auc.auc``, ``mean_auroc.auc``), formatted to 4 significant digits, at most 10 (counts,
    settings, interval bounds and thresholds left out)."""
    out: dict[str, str] = {}
    if not isinstance(metrics, Mapping):
        return out
    for key, value in metrics.items():
        if key in _NOT_HEADLINE or str(key).startswith("n_") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            if np.isfinite(value):
                out[f"{prefix}{key}"] = f"{value:.4g}"
        elif isinstance(value, Mapping) and _depth == 0:
            out.update(headline(value, f"{prefix}{key}.", 1))
    return dict(list(out.items())[:10])


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "evaluate" / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fill_result(result: RunResult, manifest: Mapping[str, Any], root: Path) -> None:
    for s, entry in (manifest.get("stages") or {}).items():
        if isinstance(entry, Mapping) and entry.get("status") == "complete":
            result.artifacts[s] = [root / p for p in entry.get("artifacts", [])]
    result.metrics = (
        _read_metrics(root) if (manifest.get("stages") or {}).get("evaluate", {}).get("status") == "complete" else {}
    )
    report_entry = (manifest.get("stages") or {}).get("report") or {}
    current = report_entry.get("status") == "complete" and result.config.report.enabled
    result.report = root / REPORT_NAME if current else None


def run(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    viewer: Any = None,
    stop: Callable[[], bool] | None = None,
    force: bool = False,
    stages: Sequence[str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **settings: Any,
) -> RunResult:
    """Run the pipeline (sample -> train -> infer -> evaluate -> report) over a run directory; see the module
    docstring for the layout, the tracks and how stages are skipped.

    Args:
        config: a :class:`RunConfig`, a mapping, a YAML / JSON file, or a run's ``manifest.json`` (repeats that
            run); None: the configuration is given as keyword ``settings`` (``run(track="slides", input=...,
            train={"epochs": 2}, run_dir=...)``).
        run_dir: the run directory (default: the configuration's ``run_dir``; for a manifest, its folder).
        viewer: a napari viewer: the result layers (slides, heatmaps, lesion points / X-rays, lesion boxes,
            CAMs) are added to it at the end.
        stop: polled at every progress report; True stops the run cleanly (see :func:`run_job`).
        force: re-run every stage.
        stages: run only these stages (the earlier ones must be done).
        on_progress: called with every :class:`~napari_patchdx.progress.Progress` report.
        **settings: configuration keys, when ``config`` is None (or overriding top-level keys of ``config``).

    Returns:
        A :class:`RunResult` with the artifact paths, the metrics and what each stage did.
    """
    from ..progress import run_job as drive

    if config is None:
        if not settings:
            raise ConfigError("run() needs a configuration: a RunConfig, a YAML file, a manifest or keyword settings")
        config = RunConfig.from_dict(settings)
    elif settings:
        config = RunConfig.load(config, **settings)
    result = drive(run_job(config, run_dir=run_dir, stop=stop, force=force, stages=stages), on_progress)
    if viewer is not None and not result.cancelled:
        from .._napari.viewer import add_layers

        add_layers(viewer, result.layers())
    return result
