"""The evaluate stage's settings (:class:`EvaluateSettings`): the ``evaluate`` section of a run configuration, the
``evaluate`` command's options and the Evaluate widget's defaults are this one object's fields."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from .._config import about, integer, number
from ..errors import ConfigError
from .masks import CAMELYON_LEVEL
from .nms import LIU_RADIUS_UM, LIU_THRESHOLD


@dataclass
class EvaluateSettings:
    """How heatmaps and CAMs are scored; checked on creation (a bad value raises ConfigError naming its key)."""

    nms_threshold: float = field(
        default=LIU_THRESHOLD, metadata=about("slides: lesion points are heatmap maxima above this probability")
    )
    nms_radius_um: float = field(
        default=LIU_RADIUS_UM,
        metadata=about(f"slides: non-maximum-suppression radius, micrometres (Liu et al.: {LIU_RADIUS_UM})"),
    )
    level: int = field(
        default=CAMELYON_LEVEL, metadata=about("slides: pyramid level of the FROC evaluation mask (CAMELYON16: 5)")
    )
    score: str = field(
        default="max",
        metadata=about("slides: slide score from the heatmap, 'max' (Liu et al.) or 'top<k>' (mean of the k largest)"),
    )
    n_boot: int = field(default=1000, metadata=about("bootstrap resamples of the AUC / AUROC intervals"))

    def __post_init__(self) -> None:
        self.nms_threshold = number("evaluate.nms_threshold", self.nms_threshold, strict=False)  # type: ignore[assignment]
        self.nms_radius_um = number("evaluate.nms_radius_um", self.nms_radius_um, strict=False)  # type: ignore[assignment]
        self.level = integer("evaluate.level", self.level, 0)  # type: ignore[assignment]
        if not (isinstance(self.score, str) and re.fullmatch(r"max|top[1-9][0-9]*", self.score)):
            raise ConfigError(f"evaluate.score must be 'max' or 'top<k>' (e.g. 'top10'), got {self.score!r}")
        self.n_boot = integer("evaluate.n_boot", self.n_boot, 0)  # type: ignore[assignment]

    def slide_options(self) -> dict[str, Any]:
        """Every field, as keyword arguments of :func:`~napari_patchdx.evaluation.evaluate_slides_job` (the X-ray
        evaluation takes ``n_boot`` only)."""
        return dataclasses.asdict(self)
