"""What a synthetic slide is: its spec (tissue, tumours, pens, stain), the written slide and the cohort.

Also the CAMELYON16 size rules (:data:`ITC_MAX_EXTENT_UM`, :data:`MERGE_DISTANCE_UM`), the pen inks, and what
the ``"hard"`` profile adds: tumour mimics (:class:`Mimic`), artefacts (:class:`Artefacts`) and the two
staining / scanning centres (:data:`CENTRES`).
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

PROFILES = ("default", "hard")
"""Cohort profiles: ``"default"`` (the original, easy cohort) and ``"hard"`` (mimics, small and low-contrast
tumours, artefacts, two centres)."""
CENTRES = ("A", "B")
"""The staining / scanning centres of the ``"hard"`` profile: A (pale pink eosin, neutral white glass) and B
(strong blue-purple hematoxylin, magenta eosin, warm glass), like the two hospitals of CAMELYON16."""


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


@dataclass(frozen=True, eq=False)
class Mimic:
    """A non-tumour region of the ``"hard"`` profile drawn to look like tumour to a colour / texture detector.

    Mimics are normal tissue: they are not in the ground truth and :func:`label_region` calls them normal.

    Attributes:
        kind: ``"follicle"`` (lymphoid follicle: a dense mantle of small lymphocytes around a pale germinal
            centre of large centroblasts and tingible-body macrophages), ``"histiocytes"`` (a cluster of sinus
            histiocytes: pale pink cytoplasm, large oval vesicular nuclei, cell borders) or ``"sheet"`` (a dense
            sheet of crowded, partly activated lymphocytes: dark blue-purple).
        polygon: (N, 2) float64 outline, level-0 pixels, (y, x), open ring.
        core: the germinal centre of a follicle (inside ``polygon``), else None.
    """

    kind: str
    polygon: np.ndarray
    core: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Fold:
    """A tissue fold: a band where the section lies on itself (about twice the optical density).

    Attributes:
        polygon: (N, 2) float64 outline of the band, level-0 pixels, (y, x); drawn only over tissue.
        thickness: optical-density multiplier inside the band (1.5-2).
    """

    polygon: np.ndarray
    thickness: float


@dataclass(frozen=True, eq=False)
class BlurBand:
    """An out-of-focus band of the scan: a straight strip across the slide where the tissue is blurred.

    Attributes:
        point: (y, x) a level-0 point on the strip's centre line.
        normal: (y, x) unit vector across the strip.
        half_width_px: half the strip's width, level-0 pixels; the blur fades in over ``ramp_px`` at its edges.
        ramp_px: width of the fade, level-0 pixels.
        sigma_um: Gaussian blur in the middle of the strip, micrometres.
    """

    point: tuple[float, float]
    normal: tuple[float, float]
    half_width_px: float
    ramp_px: float
    sigma_um: float


@dataclass(frozen=True, eq=False)
class Bubble:
    """An air bubble under the coverslip: a dark refractive rim around a slightly washed-out disc.

    Attributes:
        centre: (y, x) level-0 pixels.
        radius_px: radius of the rim, level-0 pixels.
        rim_px: width of the dark rim, level-0 pixels.
    """

    centre: tuple[float, float]
    radius_px: float
    rim_px: float

    @property
    def reach_px(self) -> float:
        """How far from the centre the bubble changes any pixel, level-0 pixels (nothing beyond)."""
        return 1.1 * self.radius_px + 3.0 * self.rim_px


@dataclass(frozen=True, eq=False)
class Artefacts:
    """The artefacts of a ``"hard"`` slide (all empty in the default profile).

    Attributes:
        folds: tissue folds.
        blur_bands: out-of-focus strips.
        bubbles: air bubbles.
        inks: marker strokes drawn across the tissue (ink over tissue stays tissue in :func:`label_region`; on
            the glass it is ``LABEL_PEN`` like :attr:`SlideSpec.pens`).
    """

    folds: tuple[Fold, ...] = ()
    blur_bands: tuple[BlurBand, ...] = ()
    bubbles: tuple[Bubble, ...] = ()
    inks: tuple[PenStroke, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.folds or self.blur_bands or self.bubbles or self.inks)


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
        contrast: 1 for cohesive carcinoma; below 1 (``"hard"`` profile) a low-contrast, infiltrating tumour
            whose fraction of tumour cells (the rest lymphocytes) is about ``contrast``.
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
    contrast: float = 1.0


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
        profile: ``"default"`` or ``"hard"`` (see :data:`PROFILES`).
        centre: the staining / scanning centre (``"A"`` / ``"B"``) of a ``"hard"`` slide; ``""`` otherwise.
        tumor_contrast: per tumour, its :attr:`Lesion.contrast` (empty: all 1).
        mimics: tumour mimics in the normal tissue (``"hard"`` profile).
        artefacts: folds, blur bands, bubbles and ink over tissue (``"hard"`` profile).
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
    profile: str = "default"
    centre: str = ""
    tumor_contrast: tuple[float, ...] = ()
    mimics: tuple[Mimic, ...] = ()
    artefacts: Artefacts = field(default_factory=Artefacts)

    @cached_property
    def _bboxes(self) -> dict[str, list[tuple[float, float, float, float]]]:
        def bb(p: np.ndarray) -> tuple[float, float, float, float]:
            lo, hi = p.min(axis=0), p.max(axis=0)
            return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

        return {
            "tissue": [bb(p) for p in self.tissue],
            "pen": [bb(s.polygon) for s in (*self.pens, *self.artefacts.inks)],
            "bubble": [
                (b.centre[0] - b.reach_px, b.centre[1] - b.reach_px, b.centre[0] + b.reach_px, b.centre[1] + b.reach_px)
                for b in self.artefacts.bubbles
            ],
        }

    @cached_property
    def _keys(self) -> dict[str, int]:
        names = ("density", "nest", "thick", "lymph", "tumor", "spindle", "pen", "histio", "blast", "infiltrate")
        return {n: derive_key(self.seed, n) for n in names}

    @cached_property
    def _tex_offset(self) -> tuple[int, int]:
        rng = np.random.default_rng(derive_key(self.seed, "texture-offset"))
        return int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20))

    @property
    def strokes(self) -> tuple[PenStroke, ...]:
        """Every marker stroke: those on the glass (:attr:`pens`) and those across the tissue (ink artefacts)."""
        return (*self.pens, *self.artefacts.inks)

    def intersects_content(self, y0: float, x0: float, y1: float, x1: float) -> bool:
        """Whether the level-0 box [y0, y1) x [x0, x1) meets the bounding box of any tissue, pen stroke or bubble."""
        for by0, bx0, by1, bx1 in (*self._bboxes["tissue"], *self._bboxes["pen"], *self._bboxes["bubble"]):
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
        spec: the full description (profile, centre, mimics and artefacts included); ``render_region(slide,
            ...)`` redraws any window.
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
            n_itc, and for the ``"hard"`` profile profile and centre; file and annotation relative to ``root``,
            annotation empty for normal slides).
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
