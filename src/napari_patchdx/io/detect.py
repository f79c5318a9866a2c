"""Which of our readers handles a file: by suffix where it is unambiguous, by content where it is not.

Content decides for ``.tif`` / ``.tiff`` (a tiled pyramid is a slide, anything else an X-ray), for ``.dcm`` /
``.dicom`` (a VL Whole Slide Microscopy Image is a slide, any other DICOM an X-ray: the header alone is read, see
:mod:`napari_patchdx.io.slides.dicom`, whose header rule ``open_slide`` applies too) and for ``.xml`` (ASAP
annotations or not ours). The reader, the command line and the pipeline inputs route through :func:`detect_kind` and
:func:`slides_in_folder`; the files of one DICOM-WSI series count as one slide
(:func:`~napari_patchdx.io.slides.dicom.one_per_series`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import InputFileError
from .names import CAM_FORMAT, HEATMAP_FORMAT, annotation_candidates, float_map_name, float_map_sidecar
from .slides.dicom import DICOM_SUFFIXES, dicom_wsi_series, one_per_series, read_dicom_header

SLIDE_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
CXR_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"}) | DICOM_SUFFIXES

#: sidecars are small JSON files; anything larger is not read when routing
_SIDECAR_MAX_BYTES = 64 * 1024 * 1024

Kind = Literal["slide", "cxr", "annotations", "heatmap", "cam"]


def detect_kind(path: str | os.PathLike[str]) -> Kind | None:
    """``"slide"``, ``"cxr"``, ``"annotations"``, ``"heatmap"``, ``"cam"`` or None (not ours). Never raises.

    A float map ``<name>.ome.tif`` is a ``"heatmap"`` / ``"cam"`` when its name says so (``<slide>.heatmap.ome.tif``,
    ``<image>.cam.ome.tif``, the names :mod:`napari_patchdx.inference` writes) or when its sidecar ``<name>.json``
    has the heatmap / CAM ``format``. Other ``.tif`` / ``.tiff`` go to the slide reader when the file is a tiled
    pyramid and to the chest X-ray reader otherwise; ``.dcm`` / ``.dicom`` go to the slide reader when their SOP
    class is VL Whole Slide Microscopy Image (one file of a DICOM-WSI series: the series is the slide) and to the
    chest X-ray reader otherwise (which names the problem when the file is neither); ``.xml`` is claimed only when it
    is an ASAP annotation file.
    """
    from .slides.open import is_pyramidal_tiff

    try:
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix in SLIDE_SUFFIXES:
            return "slide" if p.is_file() else None
        if not p.is_file():
            return None
        if suffix in TIFF_SUFFIXES:
            return float_map_kind(p) or ("slide" if is_pyramidal_tiff(p) else "cxr")
        if suffix in DICOM_SUFFIXES:
            return "slide" if is_dicom_wsi(p) else "cxr"
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


def is_dicom_wsi(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a DICOM file whose SOP class is VL Whole Slide Microscopy Image (header only). Never
    raises."""
    header = read_dicom_header(path)
    return header is not None and header.is_wsi


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A float map's sidecar as a dict, or None when it is missing, too large, not JSON or not an object."""
    sidecar = float_map_sidecar(path)
    try:
        if sidecar is None or not sidecar.is_file() or sidecar.stat().st_size > _SIDECAR_MAX_BYTES:
            return None
        with open(sidecar, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def float_map_kind(path: str | os.PathLike[str]) -> Literal["heatmap", "cam"] | None:
    """``"heatmap"`` or ``"cam"`` for a float map of ours (by its name, else by its sidecar's format), else None."""
    name = float_map_name(path)
    if name is None:
        return None
    lower = name.lower()
    if lower.endswith(".heatmap"):
        return "heatmap"
    if lower.endswith(".cam"):
        return "cam"
    side = read_sidecar(path)
    if side is None:
        return None
    if side.get("format") == HEATMAP_FORMAT:
        return "heatmap"
    if side.get("format") == CAM_FORMAT:
        return "cam"
    return None


def annotations_beside(slide: str | os.PathLike[str]) -> Path | None:
    """The ground truth that sits beside a slide (:func:`napari_patchdx.io.names.annotation_candidates`: ``<name>.xml``,
    else ``<name>.geojson``), or None."""
    return next((p for p in annotation_candidates(slide) if p.is_file()), None)


def slides_in_folder(folder: str | os.PathLike[str]) -> list[tuple[Path, Path | None]]:
    """Every slide in ``folder`` with its ground truth, in file-name order: files with a slide suffix, ``.tif`` only
    when it is a slide by content, and each DICOM-WSI series once, as its representative file (level-0 instance;
    its ground truth is ``<that file's name>.xml`` / ``.geojson``)."""
    folder = Path(folder)
    found = [
        p for p in folder.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES | TIFF_SUFFIXES and detect_kind(p) == "slide"
    ]
    found.extend(one_per_series(instances[0].path for instances in dicom_wsi_series(folder).values()))
    return [(p, annotations_beside(p)) for p in sorted(found)]


def slide_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Path | None]]:
    """``(slide, ground truth or None)`` for slide files and folders of slides, in the order given, each slide once.

    A folder gives its slides (:func:`slides_in_folder`); a file of a DICOM-WSI series stands for the series; a
    slide's ground truth is the annotation file beside it (:func:`annotations_beside`).

    Raises:
        InputFileError: a path that does not exist, is not a slide we read, or is a folder holding no slides.
    """
    pairs: list[tuple[Path, Path | None]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = slides_in_folder(path)
            if not found:
                raise InputFileError(path, "holds no slides")
            pairs.extend(found)
        elif detect_kind(path) == "slide":
            slide = one_per_series([path])[0]  # any file of a DICOM-WSI series stands for the series
            pairs.append((slide, annotations_beside(slide)))
        else:
            raise InputFileError(path, "no such file" if not path.exists() else "not a slide we read")
    return list(dict.fromkeys(pairs))
