"""Slides whose files do not say their microns per pixel: synthetic slides with the resolution unit tag set to
"none" (the pixels, tiles and pyramid unchanged), as a scanner export or a converted file may leave them."""

from __future__ import annotations

import shutil
from pathlib import Path

import tifffile

from napari_patchdx.io.slides.open import open_slide


def strip_mpp(path: Path) -> Path:
    """Set every page's ResolutionUnit to 1 (no absolute unit) in place, so the file no longer gives an mpp."""
    with tifffile.TiffFile(path, mode="r+") as tif:
        for page in tif.pages:
            page.tags["ResolutionUnit"].overwrite(1)
    with open_slide(path) as slide:
        assert slide.mpp is None, f"{path} still says {slide.mpp} um/px"
    return path


def copy_without_mpp(source: Path, target: Path) -> Path:
    """``target``: a copy of the folder ``source`` whose ``.tif`` slides say no microns per pixel (ground truth and
    other files copied as they are)."""
    shutil.copytree(source, target)
    for slide in sorted(target.glob("*.tif")):
        strip_mpp(slide)
    return target
