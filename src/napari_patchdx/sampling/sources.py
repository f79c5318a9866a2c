"""Slides ready for sampling (:class:`SlideSource`): a slide with its tissue mask, tumour annotations and split.

Sampling never builds a full-resolution mask: a source keeps the tumour on the tissue mask's low-resolution grid
(about 8 um/px), and the exact central-region label of a patch is computed by rasterising the annotations inside
that one central region (:meth:`SlideSource.center_labels`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io.annotations.model import AnnotationSet
from ..io.annotations.read import read_annotations
from ..io.names import file_name
from ..io.slides.base import Slide
from ..io.slides.open import open_slide
from .patches import PatchGeometry
from .splits import SPLITS
from .tissue import detect_tissue
from .tissue_config import TissueConfig
from .tissue_mask import TissueMask

__all__ = ["SlideSource"]


@dataclass(eq=False)
class SlideSource:
    """A slide with its tissue mask, annotations and split, ready for sampling.

    Attributes:
        path: the slide file.
        slide: the opened slide.
        tissue: its tissue mask (low resolution, with geometry).
        annotations: tumour annotations, or None for a normal slide.
        split: ``train`` / ``val`` / ``test``.
        tumor: tumour mask on the tissue mask's grid (pixel centre inside tumour).
    """

    path: Path
    slide: Slide
    tissue: TissueMask
    annotations: AnnotationSet | None = None
    split: str = "train"
    tumor: np.ndarray = field(init=False, repr=False)
    _tumor_integral: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grid = self.tissue.grid
        if self.annotations is not None and len(self.annotations.positives):
            self.tumor = self.annotations.rasterize(grid.shape, grid.spacing[0])
            outside = int((self.tumor & ~self.tissue.mask).sum())
            if outside > 0.2 * max(1, int(self.tumor.sum())):
                warnings.warn(
                    f"{self.path}: {100 * outside / self.tumor.sum():.0f}% of the annotated tumour lies outside "
                    "the detected tissue; it is sampled as tumour anyway",
                    UserWarning,
                    stacklevel=3,
                )
        else:
            self.tumor = np.zeros(grid.shape, dtype=bool)
        self._tumor_integral = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1), dtype=np.int64)
        self._tumor_integral[1:, 1:] = np.cumsum(np.cumsum(self.tumor, axis=0), axis=1)
        if not self.tissue.mask.any():
            warnings.warn(f"{self.path}: no tissue found; no patches come from this slide", UserWarning, stacklevel=3)

    @property
    def name(self) -> str:
        """The slide's name: its file name without the suffix (:func:`~napari_patchdx.io.names.file_name`)."""
        return file_name(self.path)

    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike[str],
        annotations: str | os.PathLike[str] | AnnotationSet | None = None,
        *,
        tissue: TissueMask | TissueConfig | None = None,
        split: str = "train",
        mpp: float | None = None,
    ) -> SlideSource:
        """Open ``path``, read its annotations (a path, a set, or None) and detect (or take) its tissue mask."""
        slide = open_slide(path, mpp=mpp)
        if isinstance(annotations, str | os.PathLike):
            annotations = read_annotations(annotations).clip(*slide.shape)
        if not isinstance(tissue, TissueMask):
            tissue = detect_tissue(slide, tissue or TissueConfig())
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        return cls(Path(path), slide, tissue, annotations, split)

    def center_labels(self, ys: np.ndarray, xs: np.ndarray, geometry: PatchGeometry, scale: float) -> np.ndarray:
        """Liu's label of patches with level-0 top-left ``(ys, xs)``: 1 if any central-region pixel is tumour.

        The central region is rasterised exactly (at the patch resolution) only for patches whose central region
        comes near tumour on the coarse grid; all others are 0 without any rasterisation.
        """
        ys = np.atleast_1d(np.asarray(ys, dtype=np.float64))
        xs = np.atleast_1d(np.asarray(xs, dtype=np.float64))
        labels = np.zeros(ys.shape, dtype=np.int8)
        if self.annotations is None or not self.tumor.any():
            return labels
        c0 = (geometry.patch_size - geometry.center_size) // 2 * scale
        side = geometry.center_size * scale
        near = self._near_tumor(ys + c0, xs + c0, side)
        for i in np.flatnonzero(near):
            window = self.annotations.rasterize(
                (geometry.center_size, geometry.center_size), scale, origin=(ys[i] + c0, xs[i] + c0)
            )
            labels[i] = 1 if window.any() else 0
        return labels

    def _near_tumor(self, y0: np.ndarray, x0: np.ndarray, side: float) -> np.ndarray:
        """Boxes whose grid footprint (grown by one grid cell) touches a tumour cell of the coarse mask."""
        grid = self.tissue.grid
        s = grid.spacing[0]
        rows, cols = self.tumor.shape
        integral = self._tumor_integral
        r0 = np.clip(np.floor(y0 / s).astype(np.int64) - 1, 0, rows)
        c0 = np.clip(np.floor(x0 / s).astype(np.int64) - 1, 0, cols)
        r1 = np.clip(np.ceil((y0 + side) / s).astype(np.int64) + 1, 0, rows)
        c1 = np.clip(np.ceil((x0 + side) / s).astype(np.int64) + 1, 0, cols)
        return (integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) > 0
