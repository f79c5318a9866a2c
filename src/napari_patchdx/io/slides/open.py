"""Opening a slide: :func:`open_slide` checks the file and picks the backend; :func:`is_pyramidal_tiff` tells
whole-slide TIFFs from single-image (X-ray) TIFFs. DICOM files are told apart by :mod:`.dicom`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import InputFileError
from ..tiffmeta import TIFF_MAGIC
from .base import Slide
from .dicom import DICOM_SUFFIXES, dicom_slide_problem
from .openslide import OpenSlideSlide, openslide_format
from .tiff import TiffSlide

__all__ = ["is_pyramidal_tiff", "open_slide"]


def _check_file(path: Path) -> bytes:
    """The first 132 bytes (TIFF magic, DICOM preamble and ``DICM``) after checking the file exists and is not empty."""
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a slide file")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(path, "file is empty (0 bytes)")
    with open(path, "rb") as f:
        return f.read(132)


def is_pyramidal_tiff(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a TIFF we treat as a whole-slide image rather than a single (X-ray) image.

    Slides: vendor TIFF formats (ndpi, scn, Philips, SVS, BIF), and 8-bit tiled TIFFs that are colour (3-4 samples)
    or carry a pyramid. Everything else — 12/16-bit or float images, untiled images, single-level tiled gray
    images — goes to the chest X-ray reader. Never raises: broken or non-TIFF files give False.
    """
    import tifffile

    try:
        p = Path(path)
        if _check_file(p)[:4] not in TIFF_MAGIC:
            return False
        with tifffile.TiffFile(p) as tif:
            if tif.is_ndpi or tif.is_scn or tif.is_philips or tif.is_svs:
                return True
            if tif.is_bif:
                return True
            first = tif.pages.first
            if not first.is_tiled or first.bitspersample != 8:
                return False
            if first.samplesperpixel >= 3:
                return True
            if tif.series and len(tif.series[0].levels) > 1:
                return True
            if len(tif.pages) > 1:
                second = tif.pages[1]
                return bool(second.imagewidth < first.imagewidth and second.imagelength < first.imagelength)
            return False
    except Exception:
        return False


def open_slide(
    path: str | os.PathLike[str],
    mpp: float | None = None,
    backend: str = "auto",
) -> Slide:
    """Open a whole-slide image.

    A DICOM whole-slide image (``.dcm``, SOP class VL Whole Slide Microscopy Image) opens through OpenSlide from
    any one file of its series: the other files (one per pyramid level, plus label / overview) are found in the
    same folder by Series Instance UID; files of other series there are ignored. Its mpp comes from the level-0
    Pixel Spacing. A DICOM that is not a whole-slide image (e.g. a radiograph) is refused.

    Args:
        path: the slide file (svs, ndpi, mrxs, scn, bif, vms, tiled / pyramidal TIFF, OME-TIFF, DICOM-WSI, ...).
        mpp: level-0 microns per pixel; overrides what the file says (needed when it says nothing).
        backend: ``"auto"`` (tifffile for tiled TIFF pyramids it understands — generic, OME, SVS — else
            OpenSlide), ``"tifffile"`` or ``"openslide"``.

    Raises:
        InputFileError: the file is missing, empty, truncated, or not a slide either backend can read.
    """
    p = Path(path)
    head = _check_file(p)
    if backend not in ("auto", "tifffile", "openslide"):
        raise ValueError(f"backend must be 'auto', 'tifffile' or 'openslide', got {backend!r}")
    if backend == "openslide":
        return OpenSlideSlide(p, mpp)
    if backend == "tifffile":
        return TiffSlide(p, mpp)
    if p.suffix.lower() in DICOM_SUFFIXES or (head[128:132] == b"DICM" and head[:4] not in TIFF_MAGIC):
        problem = dicom_slide_problem(p)
        if problem is not None:
            raise InputFileError(p, problem)
        return OpenSlideSlide(p, mpp)
    if head[:4] in TIFF_MAGIC:
        if not _vendor_tiff(p):
            # a plain TIFF we cannot read as a slide (wrong bit depth, untiled, truncated, ...) is not handed to
            # OpenSlide, which would open some of them and then show wrong pixels
            return TiffSlide(p, mpp)
        if openslide_format(p) is not None:
            return OpenSlideSlide(p, mpp)
        raise InputFileError(p, "vendor TIFF that OpenSlide cannot read")
    if openslide_format(p) is not None:
        return OpenSlideSlide(p, mpp)
    raise InputFileError(
        p,
        f"not a whole-slide image that OpenSlide or tifffile can read (file starts with {head[:8]!r})",
    )


def _vendor_tiff(path: Path) -> bool:
    """TIFF-based vendor formats whose geometry only OpenSlide interprets correctly."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ndpi or tif.is_scn or tif.is_philips or tif.is_bif)
    except Exception:
        return False
