"""The sections of a run configuration besides ``train``: ``sample``, ``infer``, ``evaluate``, ``report`` and
``distributed``, each a dataclass validated on creation whose fields carry their help text."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._config import choice, integer, number
from ..errors import ConfigError
from ..sampling.splits import SPLITS


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def text_value(key: str, value: Any, *, optional: bool = False) -> str | None:
    """The setting ``key`` as a non-empty string (a path becomes its text); None passes when ``optional``.

    Raises:
        ConfigError: ``value`` is not a non-empty string (the message names ``key``).
    """
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string{' or null' if optional else ''}, got {value!r}")
    return str(value)


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
        self.title = text_value("report.title", self.title)  # type: ignore[assignment]


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
        self.scheduler = text_value("distributed.scheduler", self.scheduler, optional=True)
        self.retries = integer("distributed.retries", self.retries, 0)


SECTIONS: dict[str, type] = {
    "sample": SampleSettings,
    "infer": InferSettings,
    "evaluate": EvaluateSettings,
    "report": ReportSettings,
    "distributed": DistributedSettings,
}
"""The sections of a run configuration besides ``train``: name -> settings class, in the configuration's order."""
