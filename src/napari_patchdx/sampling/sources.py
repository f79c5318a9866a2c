"""Slides ready for sampling (:class:`SlideSource`): a slide with its tissue mask, tumour annotations and split;
and the one rule for a slide's microns per pixel given by the user (:data:`SlideMpp`, :func:`slide_mpp`).

Sampling never builds a full-resolution mask: a source keeps the tumour on the tissue mask's low-resolution grid
(about 8 um/px), and the exact central-region label of a patch is computed by rasterising the annotations inside
that one central region (:meth:`SlideSource.center_labels`).

**Microns per pixel.** Tissue detection, sampling at a magnification, lesion points and the FROC need each slide's
level-0 microns per pixel. A file that does not say can be given it wherever a slide enters: one value for every
slide or a mapping slide name (:func:`~napari_patchdx.io.names.file_name`) -> value (:data:`SlideMpp`), as the
``mpp`` of the run configuration, ``--mpp`` of the command line, ``mpp=`` of the jobs (sampling, training,
heatmaps, evaluation) and the widgets' um/px field. A given value overrides the file's.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._config import closest, number
from ..errors import ConfigError, MissingMetadataError
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

__all__ = [
    "MPP_HINT",
    "SlideMpp",
    "SlideSource",
    "check_mpp_names",
    "check_slide_mpp",
    "require_slide_mpp",
    "slide_mpp",
]

SlideMpp = float | Mapping[str, float] | None
"""Level-0 microns per pixel given for slides: one value for every slide, a mapping slide name -> value (slides not
named keep their file's), or None (every slide its file's)."""

MPP_HINT = (
    "give the slide's level-0 microns per pixel: `mpp: <um/px>` (every slide) or `mpp: {<slide name>: <um/px>}` "
    "in the run configuration, `--mpp <um/px>` or `--mpp <slide name>=<um/px>` on the command line, `mpp=` in "
    "Python, or the um/px field of the napari widgets"
)
"""How a user gives a slide's microns per pixel (the end of every "microns per pixel unknown" message)."""


def check_slide_mpp(value: Any, key: str = "mpp") -> float | dict[str, float] | None:
    """``value`` as a :data:`SlideMpp`: None, a finite number > 0, or a non-empty mapping of slide names to such
    numbers (names as text).

    Raises:
        ConfigError: anything else (the message names ``key``, and the slide for a bad mapping value).
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        if not value:
            raise ConfigError(f"{key}: the mapping of slide names to microns per pixel is empty")
        return {str(name): float(number(f"{key}[{str(name)!r}]", um)) for name, um in value.items()}  # type: ignore[arg-type]
    try:
        return number(key, value)
    except ConfigError:
        raise ConfigError(
            f"{key} must be the slides' level-0 microns per pixel: a number > 0 for every slide, or a mapping "
            f"slide name -> number; got {value!r}"
        ) from None


def slide_mpp(mpp: SlideMpp, slide: str | os.PathLike[str]) -> float | None:
    """The microns per pixel ``mpp`` gives the slide file ``slide`` (by its name), or None (the file's own)."""
    if mpp is None:
        return None
    if isinstance(mpp, Mapping):
        value = mpp.get(file_name(slide))
        return None if value is None else float(value)
    return float(mpp)


def check_mpp_names(mpp: SlideMpp, names: Iterable[str], key: str = "mpp") -> None:
    """Refuse a mapping ``mpp`` that names slides not among ``names`` (the closest name suggested)."""
    if not isinstance(mpp, Mapping):
        return
    known = list(names)
    unknown = [str(n) for n in mpp if str(n) not in known]
    if unknown:
        hint = f" (did you mean {closest(unknown[0], known)!r}?)" if known else ""
        raise ConfigError(
            f"{key} names slides that are not among the inputs: {', '.join(sorted(unknown)[:10])}{hint}; slides are "
            "named by their file name without the suffix"
        )


def require_slide_mpp(slide: Slide, purpose: str) -> float:
    """The slide's microns per pixel, or a :class:`MissingMetadataError` naming the file, what needs them and how to
    give them (:data:`MPP_HINT`)."""
    if slide.mpp is None:
        raise MissingMetadataError(
            slide.path, f"microns per pixel unknown: the file does not say, and {purpose} needs them; {MPP_HINT}"
        )
    return float(slide.mpp)


@dataclass(eq=False)
class SlideSource:
    """A slide with its tissue mask, annotations and split, ready for sampling.

    Attributes:
        path: the slide file.
        slide: the opened slide.
        tissue: its tissue mask (low resolution, with geometry).
        annotations: the slide's annotations, or None for a normal slide (annotations without a tumour region,
            e.g. only ``"normal"`` ones, sample like a normal slide).
        split: ``train`` / ``val`` / ``test``.
        tumor: tumour mask on the tissue mask's grid (pixel centre inside a positive region and outside every
            exclusion and normal region: :meth:`~napari_patchdx.io.annotations.AnnotationSet.rasterize`).
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
        mpp: SlideMpp = None,
    ) -> SlideSource:
        """Open ``path``, read its annotations (a path, a set, or None) and detect (or take) its tissue mask.

        ``mpp`` gives the slide's level-0 microns per pixel (:data:`SlideMpp`: one value, or a mapping slide name
        -> value), overriding the file's; tissue detection needs them (:class:`MissingMetadataError` naming the file
        and how to give them when neither says).
        """
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        slide = open_slide(path, mpp=slide_mpp(mpp, path))
        try:
            if isinstance(annotations, str | os.PathLike):
                annotations = read_annotations(annotations).clip(*slide.shape)
            if not isinstance(tissue, TissueMask):
                require_slide_mpp(slide, "tissue detection")
                tissue = detect_tissue(slide, tissue or TissueConfig())
        except BaseException:
            slide.close()
            raise
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
