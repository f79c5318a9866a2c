"""The settings of a corrections round (:class:`RetrainSettings`): the ``retrain`` command's options, the keyword
arguments of :func:`~napari_patchdx.training.corrections.corrections_round_job` and :func:`napari_patchdx.retrain`,
and the Retrain controls of the napari Evaluate widget are this one object's fields."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .._config import about, boolean, integer, number
from ..errors import ConfigError
from .config import TrainConfig

PathLike = str | os.PathLike[str]


@dataclass
class RetrainSettings:
    """How a corrections round fine-tunes and re-infers (checked on creation: a bad value raises ConfigError naming
    its key). Its fields are the ``retrain`` command's options and keyword arguments of
    :func:`~napari_patchdx.training.corrections.corrections_round_job` and :func:`napari_patchdx.retrain`, with the
    same defaults."""

    fraction: float = field(
        default=0.5, metadata=about("share of the fine-tuning patches drawn from the corrected regions, in (0, 1]")
    )
    tumour_weight: float = field(
        default=1.0,
        metadata=about(
            "share of the corrected-region patches drawn from new tumour regions against normal (rejected) ones, "
            "whatever their areas (1: as many; 0: normal regions only)"
        ),
    )
    epochs: int | None = field(default=None, metadata=about("fine-tuning epochs (null: the training settings')"))
    steps_per_epoch: int | None = field(
        default=None, metadata=about("batches per fine-tuning epoch (null: the training settings')")
    )
    lr: float | None = field(
        default=None, metadata=about("learning rate of the fine-tuning (null: the training settings' rule)")
    )
    tta: bool = field(
        default=False,
        metadata=about("average the 8 orientations when re-inferring the corrected slides (slower; before and "
                       "after are compared alike either way)"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        self.fraction = number("retrain.fraction", self.fraction)  # type: ignore[assignment]
        if self.fraction > 1:
            raise ConfigError(f"retrain.fraction must be in (0, 1], got {self.fraction}")
        self.tumour_weight = number("retrain.tumour_weight", self.tumour_weight, strict=False)  # type: ignore[assignment]
        self.epochs = integer("retrain.epochs", self.epochs, 1, optional=True)
        self.steps_per_epoch = integer("retrain.steps_per_epoch", self.steps_per_epoch, 1, optional=True)
        self.lr = number("retrain.lr", self.lr, optional=True)
        self.tta = boolean("retrain.tta", self.tta)

    def job_options(self) -> dict[str, Any]:
        """Every field, as keyword arguments of :func:`~napari_patchdx.training.corrections.corrections_round_job`."""
        return dataclasses.asdict(self)

    def train_config(self, config: TrainConfig, checkpoint: PathLike) -> TrainConfig:
        """``config`` fine-tuning from ``checkpoint`` with this round's epochs, steps and learning rate."""
        changes: dict[str, Any] = {"init_checkpoint": os.fspath(checkpoint), "hard_negatives": False}
        changes.update({k: v for k in ("epochs", "steps_per_epoch", "lr") if (v := getattr(self, k)) is not None})
        return dataclasses.replace(config, **changes)
