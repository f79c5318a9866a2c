"""Which of our readers handles a file: by suffix where it is unambiguous, by content where it is not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

SLIDE_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
CXR_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
ANNOTATION_SUFFIXES = frozenset({".xml", ".geojson"})

Kind = Literal["slide", "cxr", "annotations"]


def detect_kind(path: str | os.PathLike[str]) -> Kind | None:
    """``"slide"``, ``"cxr"``, ``"annotations"`` or None (not ours). Never raises.

    ``.tif`` / ``.tiff`` go to the slide reader when the file is a tiled pyramid and to the chest X-ray reader
    otherwise; ``.xml`` is claimed only when it is an ASAP annotation file.
    """
    from .slides import is_pyramidal_tiff

    try:
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix in SLIDE_SUFFIXES:
            return "slide" if p.is_file() else None
        if not p.is_file():
            return None
        if suffix in TIFF_SUFFIXES:
            return "slide" if is_pyramidal_tiff(p) else "cxr"
        if suffix in CXR_SUFFIXES:
            return "cxr"
        if suffix == ".geojson":
            return "annotations"
        if suffix == ".xml":
            with open(p, "rb") as f:
                head = f.read(4096)
            return "annotations" if b"ASAP_Annotations" in head else None
    except Exception:
        return None
    return None


def annotations_beside(slide: str | os.PathLike[str]) -> Path | None:
    """The ground truth that sits beside a slide: ``<stem>.xml``, else ``<stem>.geojson``, else None."""
    path = Path(slide)
    return next((path.with_suffix(s) for s in (".xml", ".geojson") if path.with_suffix(s).is_file()), None)


def slides_in_folder(folder: str | os.PathLike[str]) -> list[tuple[Path, Path | None]]:
    """Every slide in ``folder`` (by suffix; ``.tif`` only when it is a slide by content) with its ground truth."""
    return [
        (p, annotations_beside(p))
        for p in sorted(Path(folder).iterdir())
        if p.suffix.lower() in SLIDE_SUFFIXES | TIFF_SUFFIXES and detect_kind(p) == "slide"
    ]
