"""What a synthetic slide is: its spec (tissue, tumours, pens, stain), the written slide and the cohort.

Also the CAMELYON16 size rules (:data:`ITC_MAX_EXTENT_UM`, :data:`MERGE_DISTANCE_UM`) and the pen inks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ...io.annotations.model import TUMOR, AnnotationSet
from .noise import derive_key

ITC_MAX_EXTENT_UM = 200.0
"""A tumour whose longest extent is below this (micrometres) is an isolated-tumour-cell cluster."""
MERGE_DISTANCE_UM = 75.0
"""Tumours whose edges are closer than this (micrometres) form one lesion in the CAMELYON16 protocol."""

PEN_INKS = {
    "green": np.array([0.30, 0.62, 0.42]),
    "blue": np.array([0.28, 0.38, 0.78]),
    "black": np.array([0.16, 0.16, 0.19]),
}
"""Transmitted fraction of light (R, G, B) of each marker ink, by :attr:`PenStroke.color`."""


@dataclass(frozen=True, eq=False)
class StainParams:
    """Per-slide stain appearance.

    Attributes:
        hematoxylin: (3,) unit optical-density vector of hematoxylin, (R, G, B).
        eosin: (3,) unit optical-density vector of eosin, (R, G, B).
        h_scale: multiplier of every hematoxylin concentration (staining intensity).
        e_scale: multiplier of every eosin concentration.
        background: (3,) float RGB of empty glass (the incident light ``I0``), about 235-245.
    """

    hematoxylin: np.ndarray
    eosin: np.ndarray
    h_scale: float
    e_scale: float
    background: np.ndarray


@dataclass(frozen=True, eq=False)
class PenStroke:
    """One marker stroke on the glass.

    Attributes:
        polygon: (N, 2) float64 outline of the inked area, level-0 pixels, (y, x), open ring.
        centreline: (M, 2) float64 path of the pen tip, level-0 pixels, (y, x).
        width_px: stroke width in level-0 pixels.
        color: ink name: ``"green"``, ``"blue"`` or ``"black"``.
    """

    polygon: np.ndarray
    centreline: np.ndarray
    width_px: float
    color: str


@dataclass(frozen=True)
class Lesion:
    """One annotated tumour polygon and its size.

    Attributes:
        name: its annotation name in the XML (``"Annotation <k>"``).
        kind: ``"macro"`` (the largest, carries the exclusion region), ``"pair"`` (one of two tumours closer
            than :data:`MERGE_DISTANCE_UM`), ``"itc"`` (isolated tumour cells) or ``"micro"``.
        centre: (y, x) mean of the vertices, level-0 pixels.
        bbox: (ymin, xmin, ymax, xmax), level-0 pixels.
        extent_um: longest extent (largest vertex-to-vertex distance), micrometres.
        area_um2: polygon area (exclusion not subtracted), square micrometres.
        is_itc: ``extent_um < ITC_MAX_EXTENT_UM``.
        merge_group: index shared by tumours whose edges are closer than :data:`MERGE_DISTANCE_UM` (the
            CAMELYON16 protocol scores them as one lesion); distinct otherwise.
        has_exclusion: an exclusion (``_2``) region lies inside it.
    """

    name: str
    kind: str
    centre: tuple[float, float]
    bbox: tuple[float, float, float, float]
    extent_um: float
    area_um2: float
    is_itc: bool
    merge_group: int
    has_exclusion: bool


@dataclass(frozen=True, eq=False)
class SlideSpec:
    """Everything that determines a synthetic slide's pixels (see :func:`make_slide_spec`).

    Attributes:
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel.
        seed: the slide seed; all texture and nuclei derive from it.
        tile: tile side in pixels; the background noise repeats with this period, so every background tile of
            every level is identical.
        stain: per-slide stain parameters.
        tissue: tissue-section outlines, each (N, 2) float64 (y, x) level-0 open ring.
        tissue_inner: the same sections shrunk by the capsule thickness (the capsule lies between the two).
        tumors: tumour polygons (annotation group ``_0``), (y, x) level-0.
        tumor_kinds: kind of each tumour (see :class:`Lesion`).
        exclusions: exclusion polygons (group ``_2``), each inside a tumour; drawn as normal tissue.
        pens: pen strokes on the glass, outside the tissue.
    """

    height: int
    width: int
    mpp: float
    seed: int
    tile: int
    stain: StainParams
    tissue: tuple[np.ndarray, ...]
    tissue_inner: tuple[np.ndarray, ...]
    tumors: tuple[np.ndarray, ...] = ()
    tumor_kinds: tuple[str, ...] = ()
    exclusions: tuple[np.ndarray, ...] = ()
    pens: tuple[PenStroke, ...] = ()

    @cached_property
    def _bboxes(self) -> dict[str, list[tuple[float, float, float, float]]]:
        def bb(p: np.ndarray) -> tuple[float, float, float, float]:
            lo, hi = p.min(axis=0), p.max(axis=0)
            return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

        return {
            "tissue": [bb(p) for p in self.tissue],
            "pen": [bb(s.polygon) for s in self.pens],
        }

    @cached_property
    def _keys(self) -> dict[str, int]:
        names = ("density", "nest", "thick", "lymph", "tumor", "spindle", "pen")
        return {n: derive_key(self.seed, n) for n in names}

    @cached_property
    def _tex_offset(self) -> tuple[int, int]:
        rng = np.random.default_rng(derive_key(self.seed, "texture-offset"))
        return int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20))

    def intersects_content(self, y0: float, x0: float, y1: float, x1: float) -> bool:
        """Whether the level-0 box [y0, y1) x [x0, x1) meets the bounding box of any tissue or pen stroke."""
        for by0, bx0, by1, bx1 in (*self._bboxes["tissue"], *self._bboxes["pen"]):
            if by0 < y1 and y0 <= by1 and bx0 < x1 and x0 <= bx1:
                return True
        return False


@dataclass(eq=False)
class SynthSlide:
    """One written synthetic slide.

    Attributes:
        path: the pyramidal TIFF.
        annotation_path: its ASAP XML ground truth, or None for a normal slide.
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel.
        label: ``"tumor"`` or ``"normal"``.
        regions: the annotations (tumours ``_0``, exclusions ``_2``), geometry in level-0 (y, x) pixels; empty
            for a normal slide.
        tissue: tissue-section outlines, (N, 2) (y, x) level-0 pixels.
        lesions: one entry per tumour polygon, in annotation order.
        seed: the slide seed.
        spec: the full description; ``render_region(slide, ...)`` redraws any window.
        pen_marks: outlines of the pen strokes, (N, 2) (y, x) level-0 pixels (empty unless asked for).
        level_shapes: (rows, cols) of every pyramid level, level 0 first.
    """

    path: Path
    annotation_path: Path | None
    height: int
    width: int
    mpp: float
    label: str
    regions: AnnotationSet
    tissue: list[np.ndarray]
    lesions: list[Lesion]
    seed: int
    spec: SlideSpec
    pen_marks: list[np.ndarray] = field(default_factory=list)
    level_shapes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_itc(self) -> int:
        """Number of tumour polygons that are isolated-tumour-cell clusters."""
        return sum(les.is_itc for les in self.lesions)


@dataclass(eq=False)
class WsiCohort:
    """A written synthetic cohort.

    Attributes:
        root: the directory holding the slides, their XML and ``slides.csv``.
        slides: every slide, tumour slides first.
        csv: path of ``slides.csv`` (columns slide, label, file, annotation, height, width, mpp, n_lesions,
            n_itc; file and annotation relative to ``root``, annotation empty for normal slides).
    """

    root: Path
    slides: list[SynthSlide]
    csv: Path

    @property
    def tumor_slides(self) -> list[SynthSlide]:
        """The slides labelled ``"tumor"``."""
        return [s for s in self.slides if s.label == TUMOR]

    @property
    def normal_slides(self) -> list[SynthSlide]:
        """The slides labelled ``"normal"``."""
        return [s for s in self.slides if s.label != TUMOR]
