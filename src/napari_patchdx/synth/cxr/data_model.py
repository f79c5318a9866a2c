"""The lesion classes and their default strengths, and the records of a lesion and of a cohort on disk."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError

#: The five lesion classes of Park et al. 2019, in label-column and mask-bit order.
CXR_CLASSES: tuple[str, ...] = (
    "nodule",
    "consolidation",
    "interstitial_opacity",
    "pleural_effusion",
    "pneumothorax",
)

#: Per-class lesion strength. Density units are those of the model, where the lungs' air makes a deficit of
#: about 0.45 against the mediastinum and a posterior rib adds about 0.09.
#:
#: * ``nodule``: peak added density of a 15 mm nodule (scaled by sqrt(diameter / 15 mm) and x0.7-1.3).
#: * ``consolidation``: peak added density (x0.75-1.25).
#: * ``interstitial_opacity``: peak added density of the reticular texture (x0.75-1.25).
#: * ``pleural_effusion``: fraction (0-1) of the lung's air deficit replaced by fluid (x0.85-1.1, capped at 1).
#: * ``pneumothorax``: density removed in the vessel-free rim (x0.75-1.25); the pleural line adds 0.7 x this.
#:
#: The defaults are 2.5 times the subtle values first chosen (0.085, 0.15, 0.1, 0.8, 0.07): at those, a small
#: network trained on a CPU-sized cohort (300 images of 128 px) learned no class beyond chance, so neither arm of
#: the curriculum comparison learned anything to compare (benchmarks/curriculum.py, docs/benchmarks.md).
DEFAULT_CONTRAST: dict[str, float] = {
    "nodule": 0.21,
    "consolidation": 0.375,
    "interstitial_opacity": 0.25,
    "pleural_effusion": 1.0,
    "pneumothorax": 0.175,
}


def check_contrast(contrast: Mapping[str, float] | None) -> dict[str, float]:
    """:data:`DEFAULT_CONTRAST` updated by ``contrast``; ConfigError on an unknown class or a bad value."""
    out = dict(DEFAULT_CONTRAST)
    for key, value in (contrast or {}).items():
        if key not in DEFAULT_CONTRAST:
            raise ConfigError(f"unknown lesion class {key!r} in contrast; expected one of {CXR_CLASSES}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"contrast[{key!r}] must be a finite number >= 0, got {value}")
        out[key] = value
    return out


@dataclass(eq=False)
class Lesion:
    """One synthetic lesion.

    Attributes:
        cls: its class, one of :data:`CXR_CLASSES`.
        box: half-open bounding box ``(y0, x0, y1, x1)`` of ``mask`` in native pixels.
        mask: bool array of the whole image's shape (rows, cols), True exactly where the lesion changes the
            image (its density support dilated by the vendor filter radius).
    """

    cls: str
    box: tuple[int, int, int, int]
    mask: np.ndarray


@dataclass(frozen=True)
class CxrCohort:
    """A synthetic chest X-ray cohort on disk (see :func:`make_cxr_cohort` for the layout).

    Attributes:
        root: the cohort folder.
        labels_csv: ``labels.csv`` (image, one 0/1 column per class, png, dcm).
        lesions_csv: ``lesions.csv`` (image, lesion, class, y0, x0, y1, x1 in native pixels).
        images: image ids in order; files are ``images/<id>.png``, ``images/<id>.dcm``, ``masks/<id>.png``,
            ``lungs/<id>.png``.
        dicom: whether the DICOM files were written.
    """

    root: Path
    labels_csv: Path
    lesions_csv: Path
    images: tuple[str, ...]
    dicom: bool = True

    def png_path(self, image_id: str) -> Path:
        """The 16-bit grayscale PNG of ``image_id``."""
        return self.root / "images" / f"{image_id}.png"

    def dcm_path(self, image_id: str) -> Path:
        """The DICOM file of ``image_id`` (exists only when the cohort was written with ``dicom=True``)."""
        return self.root / "images" / f"{image_id}.dcm"

    def mask_path(self, image_id: str) -> Path:
        """The uint8 class bitmask PNG of ``image_id`` (bit k = class k of :data:`CXR_CLASSES`)."""
        return self.root / "masks" / f"{image_id}.png"

    def lung_path(self, image_id: str) -> Path:
        """The uint8 lung-field mask PNG of ``image_id`` (255 inside the lungs)."""
        return self.root / "lungs" / f"{image_id}.png"
