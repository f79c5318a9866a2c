"""The geometry of a slide patch (:class:`PatchGeometry`): its size, central region and magnification."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, InputFileError
from ..io.slides.base import Slide

__all__ = ["PatchGeometry"]


@dataclass(frozen=True)
class PatchGeometry:
    """Size and magnification of slide patches.

    Attributes:
        patch_size: side of the patch the model sees, in pixels (Liu et al.: 299).
        center_size: side of the central region that decides the label, in the same pixels (Liu et al.: 128).
        mpp: microns per patch pixel; None = the slide's level-0 resolution.
    """

    patch_size: int = 299
    center_size: int = 128
    mpp: float | None = None

    def __post_init__(self) -> None:
        if self.patch_size < 8:
            raise ConfigError(f"patch_size must be >= 8 pixels, got {self.patch_size}")
        if not 1 <= self.center_size <= self.patch_size:
            raise ConfigError(f"center_size must be in [1, patch_size={self.patch_size}], got {self.center_size}")
        if self.mpp is not None and not self.mpp > 0:
            raise ConfigError(f"mpp must be positive, got {self.mpp}")

    def plan(self, slide: Slide) -> tuple[int, int, float]:
        """How to read a patch from ``slide``: ``(level, read_size, scale)``.

        ``scale`` is level-0 pixels per patch pixel; the read window is ``read_size`` pixels of ``level``, covering
        ``patch_size * scale`` level-0 pixels. Raises when the patch does not fit in the level.
        """
        if self.mpp is None:
            level, read_size, scale = 0, self.patch_size, 1.0
        else:
            want = self.mpp / slide.require_mpp(f"patches at {self.mpp} um/px")
            level = slide.best_level_for_downsample(want)
            residual = want / slide.level_downsamples[level]
            read_size = self.patch_size if abs(residual - 1) < 0.02 else round(self.patch_size * residual)
            scale = slide.level_downsamples[level] * read_size / self.patch_size
        h, w = slide.level_shapes[level]
        if read_size > min(h, w):
            raise InputFileError(
                slide.path,
                f"a {read_size} px patch does not fit in level {level} ({h} x {w} px); use a smaller patch or mpp",
            )
        return level, read_size, scale
