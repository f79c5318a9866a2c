"""A run's configuration: :class:`RunConfig` (validated on creation; reads YAML, JSON or a run's
``manifest.json``) and :func:`config_reference`, every key with its type, default and help (the documentation's
configuration reference is generated from it). Each section is its stage's settings object (:data:`SECTIONS`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .._config import closest, integer, number, text, unknown_key
from .._fsutil import atomic_write_text
from ..errors import ConfigError, InputFileError
from ..evaluation.settings import EvaluateSettings
from ..inference.settings import DistributedSettings, InferSettings
from ..reporting.settings import ReportSettings
from ..sampling.settings import SampleSettings
from ..sampling.sources import check_slide_mpp
from ..sampling.splits import SPLITS
from ..training.config import TrainConfig
from .manifest import MANIFEST_KIND, read_manifest

TRACKS: tuple[str, ...] = ("slides", "cxr")
"""``slides``: whole-slide images with tumour annotations. ``cxr``: a chest X-ray cohort folder."""

SECTIONS: dict[str, type] = {
    "sample": SampleSettings,
    "infer": InferSettings,
    "evaluate": EvaluateSettings,
    "report": ReportSettings,
    "distributed": DistributedSettings,
}
"""The sections of a run configuration besides ``train`` (:class:`~napari_patchdx.training.config.TrainConfig`):
name -> its stage's settings class, in the configuration's order."""

_TRAIN_TRACK = {"slides": "slide", "cxr": "cxr"}
_TOP_LEVEL_IN_TRAIN = ("track", "seed", "device")


def _train_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _TOP_LEVEL_IN_TRAIN]


_MOVED = {
    "evaluate.mpp": "the FROC protocol uses the slides' level-0 microns per pixel, which the top-level 'mpp' gives "
    "(for every stage); write it at the top level of the configuration instead",
}
"""Keys of earlier configurations that now live elsewhere -> where."""


def _section(name: str, cls: type, values: Any) -> Any:
    if isinstance(values, cls):
        return values
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name} must be a mapping of settings, got {values!r}")
    unknown = unknown_key(values, [f.name for f in dataclasses.fields(cls)])
    if unknown and f"{name}.{unknown[0]}" in _MOVED:
        raise ConfigError(f"{name}.{unknown[0]}: {_MOVED[f'{name}.{unknown[0]}']}")
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
        return text("splits", value)
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
        track: ``"slides"`` or ``"cxr"`` (see :mod:`napari_patchdx.pipeline`).
        input: the slide folder (ground truth beside the slides) or the chest X-ray cohort folder.
        run_dir: where the run is written (``run(..., run_dir=)`` overrides it).
        seed: seeds everything random: splits, sampling, training, bootstrap intervals.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``, for training and inference.
        splits: three fractions, a mapping name -> split, a CSV path, or None (see :mod:`napari_patchdx.pipeline`).
        mpp: slides: their level-0 microns per pixel, overriding what the files say (needed where they say nothing):
            one value for every slide, or a mapping slide name -> value (the others keep their files'). Every stage
            uses it: tissue detection, sampling, heatmaps, lesion points and the FROC protocol, whose microns per
            pixel are the slides' (so CAMELYON16's convention is ``mpp: 0.243``). The X-ray track ignores it.
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
    mpp: float | dict[str, float] | None = None
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
        self.input = text("input", self.input)  # type: ignore[assignment]
        self.run_dir = text("run_dir", self.run_dir, optional=True)
        self.seed = integer("seed", self.seed, 0)  # type: ignore[assignment]
        self.device = text("device", self.device)  # type: ignore[assignment]
        self.splits = _check_splits(self.splits)
        self.mpp = check_slide_mpp(self.mpp)
        for name, cls in SECTIONS.items():
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
            "mpp": self.mpp,
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
                for key in ("pretrained", "init_checkpoint", "stain_reference"):
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
        manifest = read_manifest(path)
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
        "mpp": (
            "slides: their level-0 microns per pixel, overriding the files' (needed where a file says nothing): one "
            "number for every slide, or a mapping slide name -> number (null: each file's own). Used by every "
            "stage, the FROC protocol included (CAMELYON16: 0.243); --mpp on the command line"
        ),
    }
    defaults = {"track": None, "input": None, "run_dir": None, "seed": 0, "device": "auto"}
    rows = []
    for f in dataclasses.fields(RunConfig):
        if f.name in top_help:
            rows.append(
                {
                    "key": f.name,
                    "type": _field_type(RunConfig, f.name)
                    .replace("list[float] | dict[str, str] | str", "list | map | path")
                    .replace("float | dict[str, float]", "number | map"),
                    "default": "required" if f.name in ("track", "input") else _yaml_value(defaults.get(f.name)),
                    "help": top_help[f.name],
                }
            )
    train_help = _train_help()
    sections: list[tuple[str, type, Any]] = [("sample", SampleSettings, SampleSettings())]
    sections.append(("train", TrainConfig, TrainConfig()))
    sections += [(name, cls, cls()) for name, cls in SECTIONS.items() if name != "sample"]
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
