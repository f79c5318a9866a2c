"""Writing one synthetic slide: its TIFF and ground-truth XML, or reusing the ones this very call would write."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...io.annotations.asap import write_asap_xml
from ...io.annotations.model import TUMOR, AnnotationSet
from .data_model import SynthSlide
from .ground_truth import slide_annotations, slide_lesions
from .layout import make_slide_spec
from .tiff_writer import level_shapes, read_description, slide_description, write_tiff


def make_slide(
    path: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    mpp: float = 0.5,
    seed: int = 0,
    tumor: bool = True,
    tissue_fraction: float = 0.4,
    pen_marks: bool = False,
    tile: int = 256,
    quality: int = 85,
    overwrite: bool = False,
    profile: str = "default",
    centre: str | None = None,
) -> SynthSlide:
    """Write one synthetic slide: a pyramidal, tiled, JPEG-compressed RGB TIFF, and its ASAP XML if tumour.

    The TIFF opens in OpenSlide as a generic tiled TIFF: one top-level page per level (reduced levels marked
    subfiletype 1), each half the size of the one before (rounding up) until the smaller side is <= 512,
    tiles of ``tile`` x ``tile`` px, XResolution / YResolution = 10000 / mpp px per centimetre (so
    ``openslide.mpp-x`` equals ``mpp``). Background-only tiles are one pre-encoded JPEG reused, so large,
    mostly empty slides are cheap; the rest is drawn tile by tile with :func:`render_region`, so memory does
    not grow with the slide.

    Files are written under temporary names and renamed into place, the XML (``path.with_suffix(".xml")``)
    before the TIFF, so a TIFF that exists is complete and its ground truth is already there.

    Args:
        path: the TIFF to write (conventionally ``.tif``).
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel.
        seed: the same seed and arguments give pixel- and byte-identical files.
        tumor: draw metastases and write the ground-truth XML; False draws a normal slide and writes no XML.
        tissue_fraction: fraction of the slide area covered by tissue, in (0, 0.6].
        pen_marks: add marker strokes (green / blue / black) on the glass, outside the tissue.
        tile: tile side in pixels (multiple of 16).
        quality: JPEG quality, 1-100.
        overwrite: replace whatever is at ``path`` and its XML. Without it, files this very call would write
            (same arguments, same generator version, recorded in the TIFF's ImageDescription) are kept and
            reused, so an interrupted cohort resumes; any other file in the way raises FileExistsError.
        profile: ``"default"`` or ``"hard"`` (tumour mimics, micro-metastases and ITCs, low-contrast tumour,
            artefacts and the stain of a ``centre``; see :func:`~.layout.make_slide_spec`). Mimics and
            artefacts are not tumour: the XML holds the tumours and exclusions only, exactly as drawn.
        centre: ``"A"`` or ``"B"`` for a hard slide (default ``"A"``); None for the default profile.

    Returns:
        The :class:`SynthSlide` describing what was written (or found). The parent directory is created.
    """
    if not (1 <= int(quality) <= 100):
        raise ValueError(f"quality must be within 1..100, got {quality!r}")
    path = Path(path)
    xml = path.with_suffix(".xml")
    if xml == path:
        raise ValueError(f"{path}: the slide path must not end in .xml")
    spec = make_slide_spec(
        height=height,
        width=width,
        mpp=mpp,
        seed=seed,
        tumor=tumor,
        tissue_fraction=tissue_fraction,
        pen_marks=pen_marks,
        tile=tile,
        profile=profile,
        centre=centre,
    )
    description = slide_description(spec, tumor, tissue_fraction, pen_marks, quality)
    regions = slide_annotations(spec)
    reuse = False
    if not overwrite:
        reuse = _check_existing(path, xml, description, regions if tumor else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    annotation_path: Path | None = None
    if tumor:
        annotation_path = xml if reuse else write_asap_xml(regions, xml, overwrite=True)
        regions.source = annotation_path
    elif xml.exists():
        xml.unlink()  # only reached with overwrite: a stale ground truth would make this a tumour slide
    shapes = level_shapes(spec.height, spec.width) if reuse else write_tiff(spec, path, int(quality), description)
    return SynthSlide(
        path=path,
        annotation_path=annotation_path,
        height=spec.height,
        width=spec.width,
        mpp=spec.mpp,
        label=TUMOR if tumor else "normal",
        regions=regions,
        tissue=list(spec.tissue),
        lesions=slide_lesions(spec, spec.tumor_kinds, spec.tumor_contrast),
        seed=spec.seed,
        spec=spec,
        pen_marks=[s.polygon for s in spec.pens],
        level_shapes=shapes,
    )


def _same_regions(path: Path, expected: AnnotationSet) -> bool:
    from ...io.annotations.read import read_annotations

    try:
        found = read_annotations(path)
    except Exception:  # unreadable or not annotations: not ours
        return False
    if len(found.regions) != len(expected.regions):
        return False
    return all(
        a.label == b.label
        and a.exterior.shape == b.exterior.shape
        and np.allclose(a.exterior, b.exterior, rtol=0, atol=1e-6)
        for a, b in zip(found.regions, expected.regions, strict=True)
    )


def _check_existing(path: Path, xml: Path, description: str, regions: AnnotationSet | None) -> bool:
    """Without overwrite: True if ``path`` already holds this very slide (reuse it), False if nothing is there.

    Raises FileExistsError when a file is in the way that this call would not have written identically.
    """
    if path.exists():
        if read_description(path) != description:
            raise FileExistsError(f"{path}: already exists and is not this slide (pass overwrite=True to replace it)")
        if regions is None:
            if xml.exists():
                raise FileExistsError(f"{xml}: a normal slide must have no annotation file (pass overwrite=True)")
            return True
        if xml.exists() and _same_regions(xml, regions):
            return True
        if xml.exists():
            raise FileExistsError(f"{xml}: already exists and differs (pass overwrite=True to replace it)")
        return False  # the ground truth went missing: write both again
    if xml.exists() and (regions is None or not _same_regions(xml, regions)):
        raise FileExistsError(f"{xml}: already exists and is not this slide's ground truth (pass overwrite=True)")
    return False
