"""npe2 reader: whole-slide images, chest X-rays and annotation files -> napari layer data.

``napari_get_reader`` never raises and returns None for files we do not handle; the reader it returns raises
:class:`~napari_patchdx.errors.InputFileError` (naming the file) when a claimed file turns out to be broken.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..layers import LayerData

SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}
TIFF_SUFFIXES = {".tif", ".tiff"}
CXR_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
ANNOTATION_SUFFIXES = {".xml", ".geojson"}

ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]


def napari_get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for ``path`` (or for every path of a list) or None when we do not handle it."""
    try:
        paths = [path] if isinstance(path, str | Path) else list(path)
        kinds = [_kind(Path(p)) for p in paths]
    except Exception:
        return None
    if not kinds or any(k is None for k in kinds):
        return None
    return read_paths


def _kind(p: Path) -> str | None:
    from ..io.slides import is_pyramidal_tiff

    suffix = p.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return "slide" if (p.is_file() or (suffix == ".mrxs" and p.exists())) else None
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
    return None


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """Read every path into layer data (slides with their ground truth, X-rays, annotation files)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[LayerData] = []
    for p in map(Path, paths):
        kind = _kind(p)
        if kind == "slide":
            layers.extend(read_slide(p))
        elif kind == "cxr":
            layers.extend(read_cxr_file(p))
        elif kind == "annotations":
            layers.extend(read_annotation_file(p))
    return layers


def read_slide(path: Path) -> list[LayerData]:
    """A multiscale slide layer plus, when ``<stem>.xml`` / ``<stem>.geojson`` sits beside it, its ground truth."""
    from ..io.annotations import read_annotations
    from ..io.slides import open_slide
    from ..layers import annotation_layer, slide_layer

    slide = open_slide(path)
    layers = [slide_layer(slide)]
    for suffix in (".xml", ".geojson"):
        ann_path = path.with_suffix(suffix)
        if not ann_path.is_file():
            continue
        try:
            annotations = read_annotations(ann_path).clip(*slide.shape)
        except Exception as exc:  # a broken annotation file must not hide the slide
            warnings.warn(f"{ann_path}: ground truth not shown: {exc}", UserWarning, stacklevel=2)
            continue
        layers.append(annotation_layer(annotations, slide.mpp, name=f"{path.stem} ground truth"))
        break
    return layers


def read_cxr_file(path: Path) -> list[LayerData]:
    """A grayscale chest X-ray layer with its pixel spacing (mm) as scale."""
    from ..io.cxr import read_cxr
    from ..layers import cxr_layer

    return [cxr_layer(read_cxr(path))]


def read_annotation_file(path: Path) -> list[LayerData]:
    """An annotation file as Shapes; aligned in micrometres when a slide with the same name sits beside it."""
    from ..io.annotations import read_annotations
    from ..io.slides import open_slide
    from ..layers import annotation_layer

    annotations = read_annotations(path)
    mpp: Any = None
    for sibling in sorted(path.parent.glob(path.stem + ".*")):
        if sibling.suffix.lower() in SLIDE_SUFFIXES | TIFF_SUFFIXES:
            try:
                with open_slide(sibling) as slide:
                    mpp = slide.mpp
                    annotations = annotations.clip(*slide.shape)
                break
            except Exception:
                continue
    return [annotation_layer(annotations, mpp, name=f"{path.stem} ground truth")]
