"""The sample stage's settings (:class:`SampleSettings`): the ``sample`` section of a run configuration, the
``sample`` command's options and the Sample patches widget's defaults are this one object's fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._config import about, choice, integer, number
from ..errors import ConfigError

SAMPLE_METHODS: tuple[str, ...] = ("balanced", "grid")
"""``balanced``: Liu et al.'s sampler (n patches, tumour / normal balanced); ``grid``: every tissue cell."""


@dataclass
class SampleSettings:
    """How training patches are drawn; checked on creation (a bad value raises ConfigError naming its key)."""

    n: int = field(
        default=1000,
        metadata=about(
            "slides: training patches drawn by the balanced sampler; cxr: lesion / normal-lung patches of the "
            "training stream saved to sample/patches.csv for inspection (0: none)"
        ),
    )
    method: str = field(
        default="balanced",
        metadata=about("slides: 'balanced' (Liu et al.'s sampler, n patches) or 'grid' (every tissue cell)"),
    )
    min_tissue: float = field(
        default=0.25, metadata=about("slides, grid method: least tissue fraction of a cell that gets a patch")
    )

    def __post_init__(self) -> None:
        self.n = integer("sample.n", self.n, 0)  # type: ignore[assignment]
        self.method = choice("sample.method", self.method, SAMPLE_METHODS)
        self.min_tissue = number("sample.min_tissue", self.min_tissue, strict=False)  # type: ignore[assignment]
        if self.min_tissue > 1:
            raise ConfigError(f"sample.min_tissue must be in [0, 1], got {self.min_tissue}")
