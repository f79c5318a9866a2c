"""Synthetic H&E lymph-node whole-slide images with exact tumour annotations.

The demo data and the test fixtures of the whole project. A slide is described by a small, seeded
:class:`SlideSpec` (tissue sections, tumour and exclusion polygons, pen strokes, stain parameters) and every
pixel at every resolution is a pure function of that spec: :func:`render_region` draws any window at any
power-of-two downsample, and the TIFF writer calls it tile by tile, so memory stays bounded and tiles join
without seams.

Geometry is in level-0 pixels, ordered (y, x) = (row, col), like the rest of napari-patchdx. A level-k pixel
(i, j) covers level-0 ``[i * ds, (i + 1) * ds) x [j * ds, (j + 1) * ds)`` with ``ds = 2**k``; every decision
(background / tissue / tumour / pen) is taken at the pixel's centre with the same even-odd rule as
:meth:`AnnotationSet.rasterize`, so the tumour drawn is exactly the tumour annotated.

Rendering is a Beer–Lambert stain model: optical density ``OD = c_H * h + c_E * e`` from hematoxylin and
eosin concentrations and per-slide jittered stain vectors, transmitted light ``RGB = I0 * exp(-OD)`` with
``I0`` the slide's near-white background. Normal lymph node is a dense sheet of small dark round lymphocyte
nuclei (about 6-8 um) over pale pink fibrous stroma, under a fibrous capsule; metastatic carcinoma forms nests
of large (10-18 um), pleomorphic, elliptical, vesicular nuclei (dark rim, pale chromatin, nucleolus) in
pink-purple cytoplasm with cell borders, separated by stromal septa. Tumour and normal tissue differ in texture
and nuclear morphology; their mean colours are close. Nuclei are placed on jittered lattices whose cells are
keyed by a counter-based hash of (slide seed, lattice index), so any window regenerates exactly the nuclei
that overlap it, at every level.

Two profiles (:data:`PROFILES`). ``"default"`` is the cohort above: conspicuous tumours a small network finds at
coarse magnification. ``"hard"`` (``profile="hard"``) adds what makes CAMELYON16 hard: tumour mimics in the
normal tissue (:class:`Mimic`: lymphoid follicles with germinal centres, histiocyte clusters, dense lymphocyte
sheets), several micro-metastases (0.2-2 mm) and ITCs beside the macro-metastasis, low-contrast infiltrating
tumour (:attr:`Lesion.contrast`), artefacts (:class:`Artefacts`: folds, out-of-focus bands, air bubbles, ink
over tissue) and two staining / scanning centres with different colours (:data:`CENTRES`). Mimics and
artefacts are not tumour: the ground truth still holds exactly the tumour drawn.

Modules, each importing only those above it: :mod:`.noise` (hashing, value noise), :mod:`.textures` (stroma
textures), :mod:`.polygons` (polygon tools), :mod:`.data_model` (spec, slide, cohort records),
:mod:`.placement` (placing shapes in tissue), :mod:`.layout_hard` (the hard profile's tumours, mimics,
artefacts and centre stains), :mod:`.layout` (tissue, tumour and pen layout: :func:`make_slide_spec`),
:mod:`.ground_truth` (annotations and lesions), :mod:`.frame` (the pixel grid drawn), :mod:`.nuclei` (nucleus
templates and lattices), :mod:`.histology` (normal and tumour tissue, mimics, infiltrating tumour),
:mod:`.artefacts` (drawing the artefacts), :mod:`.render` (:func:`render_region`, :func:`label_region`),
:mod:`.tiff_writer` (the pyramidal TIFF), :mod:`.slide` (:func:`make_slide`) and :mod:`.cohort`
(:func:`make_wsi_cohort`).
"""

from __future__ import annotations

from .cohort import make_wsi_cohort
from .data_model import (
    CENTRES,
    ITC_MAX_EXTENT_UM,
    MERGE_DISTANCE_UM,
    PROFILES,
    Artefacts,
    BlurBand,
    Bubble,
    Fold,
    Lesion,
    Mimic,
    PenStroke,
    SlideSpec,
    StainParams,
    SynthSlide,
    WsiCohort,
)
from .layout import make_slide_spec
from .render import LABEL_BACKGROUND, LABEL_NORMAL, LABEL_PEN, LABEL_TUMOR, label_region, render_region
from .slide import make_slide
from .tiff_writer import level_shapes

__all__ = [
    "CENTRES",
    "ITC_MAX_EXTENT_UM",
    "LABEL_BACKGROUND",
    "LABEL_NORMAL",
    "LABEL_PEN",
    "LABEL_TUMOR",
    "MERGE_DISTANCE_UM",
    "PROFILES",
    "Artefacts",
    "BlurBand",
    "Bubble",
    "Fold",
    "Lesion",
    "Mimic",
    "PenStroke",
    "SlideSpec",
    "StainParams",
    "SynthSlide",
    "WsiCohort",
    "label_region",
    "level_shapes",
    "make_slide",
    "make_slide_spec",
    "make_wsi_cohort",
    "render_region",
]
