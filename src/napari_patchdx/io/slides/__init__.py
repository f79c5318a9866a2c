"""Whole-slide images: one interface over two backends.

* :class:`TiffSlide` reads tiled, pyramidal TIFFs itself (generic tiled TIFF, OME-TIFF, Aperio SVS): it decodes
  each compressed tile exactly once through tifffile / imagecodecs, keeps decoded tiles in a small LRU cache and
  assembles regions in numpy. It is faster than OpenSlide's cairo compositing and is what "read each byte once"
  inference builds on.
* :class:`OpenSlideSlide` wraps OpenSlide for the vendor formats tifffile does not understand as slides
  (ndpi, mrxs, scn, bif, vms, Philips TIFF, ...) and for DICOM whole-slide images (a series of ``.dcm`` files in one
  folder, opened from any one of them).

Coordinates: level-0 pixels, (y, x) = (row, col). Region reads return ``uint8`` RGB arrays of shape
``(height, width, 3)``; areas outside the image or transparent in the file are white.

Modules: :mod:`.base` (the :class:`Slide` interface and :class:`TileReadError`), :mod:`.tiff` (:class:`TiffSlide`),
:mod:`.openslide` (:class:`OpenSlideSlide`; ``openslide`` is imported only there), :mod:`.dicom` (a DICOM-WSI told from
a radiograph by its header; files grouped into series) and :mod:`.open` (:func:`open_slide`, :func:`is_pyramidal_tiff`).
"""

from __future__ import annotations

from .base import Slide, TileReadError
from .open import is_pyramidal_tiff, open_slide
from .openslide import OpenSlideSlide
from .tiff import TiffSlide

__all__ = [
    "OpenSlideSlide",
    "Slide",
    "TiffSlide",
    "TileReadError",
    "is_pyramidal_tiff",
    "open_slide",
]
