"""The infer stage's settings: :class:`InferSettings` (what is predicted and how) and :class:`DistributedSettings`
(where slide inference runs; results do not depend on it). The ``infer`` and ``distributed`` sections of a run
configuration, the ``infer`` command's options and the inference widget's defaults are these objects' fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._config import about, boolean, choice, integer, number, text
from ..errors import ConfigError
from ..sampling.splits import SPLITS

HEATMAP_OPTIONS: tuple[str, ...] = ("tta", "stride", "batch_size", "min_tissue")
"""The :class:`InferSettings` that are keyword arguments of the heatmap job (``checkpoint`` and ``splits`` choose a
run's model and slides)."""


@dataclass
class InferSettings:
    """How heatmaps and CAMs are computed; checked on creation (a bad value raises ConfigError naming its key)."""

    checkpoint: str = field(default="best", metadata=about("which checkpoint of train/ to use: 'best' or 'last'"))
    splits: list[str] = field(
        default_factory=lambda: ["test"], metadata=about("the splits whose slides / images are predicted")
    )
    tta: bool = field(default=True, metadata=about("slides: average the 8 orientations of every patch"))
    stride: int | None = field(
        default=None, metadata=about("slides: heatmap cell side in patch pixels (null: the centre region)")
    )
    batch_size: int = field(default=32, metadata=about("slides: patches per model call"))
    min_tissue: float = field(
        default=0.0, metadata=about("slides: least tissue fraction of a heatmap cell that is evaluated (0: any)")
    )

    def __post_init__(self) -> None:
        self.checkpoint = choice("infer.checkpoint", self.checkpoint, ("best", "last"))
        if isinstance(self.splits, str):
            self.splits = [self.splits]
        if not isinstance(self.splits, Sequence) or not self.splits:
            raise ConfigError(f"infer.splits must be a non-empty list of {', '.join(SPLITS)}, got {self.splits!r}")
        self.splits = [choice("infer.splits", s, SPLITS) for s in self.splits]
        self.tta = boolean("infer.tta", self.tta)
        self.stride = integer("infer.stride", self.stride, 1, optional=True)
        self.batch_size = integer("infer.batch_size", self.batch_size, 1)  # type: ignore[assignment]
        self.min_tissue = number("infer.min_tissue", self.min_tissue, strict=False)  # type: ignore[assignment]
        if self.min_tissue > 1:
            raise ConfigError(f"infer.min_tissue must be in [0, 1], got {self.min_tissue}")

    def heatmap_options(self) -> dict[str, Any]:
        """The :data:`HEATMAP_OPTIONS` as keyword arguments of
        :func:`~napari_patchdx.inference.heatmaps.slide_heatmap_job` (and of ``heatmaps_job``, which passes them on)."""
        return {name: getattr(self, name) for name in HEATMAP_OPTIONS}


@dataclass
class DistributedSettings:
    """Where slide inference runs (a local dask cluster, an existing scheduler, or this process)."""

    workers: int = field(
        default=0, metadata=about("worker processes of a local dask cluster for slide inference (0: in this process)")
    )
    scheduler: str | None = field(
        default=None, metadata=about("address of an existing dask scheduler (e.g. tcp://host:8786) instead")
    )
    retries: int = field(default=2, metadata=about("times a slide is retried when its worker dies"))

    def __post_init__(self) -> None:
        self.workers = integer("distributed.workers", self.workers, 0)  # type: ignore[assignment]
        self.scheduler = text("distributed.scheduler", self.scheduler, optional=True)
        self.retries = integer("distributed.retries", self.retries, 0)  # type: ignore[assignment]

    def job_options(self) -> dict[str, Any]:
        """Every field, as keyword arguments of :func:`~napari_patchdx.inference.distributed_heatmaps.heatmaps_job`."""
        return dataclasses.asdict(self)
