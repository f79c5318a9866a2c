"""npe2 reader: whole-slide images, chest X-rays, annotation files, slide heatmaps and X-ray CAMs -> layer data.

Heatmaps (``<slide>.heatmap.ome.tif`` + ``.heatmap.json``) open as an Image layer aligned to their slide; CAM files
(``<image>.cam.ome.tif`` + ``.cam.json``) as one layer per class aligned to their X-ray (see
:func:`napari_patchdx.io.detect.detect_kind` for the routing).

``napari_get_reader`` never raises and returns None for files we do not handle; the reader it returns raises
:class:`~napari_patchdx.errors.InputFileError` (naming the file) when a claimed file turns out to be broken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..io.detect import detect_kind
from ..io.slides.dicom import one_per_series
from ..layerdata import LayerData, layers_for_paths

ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]


def napari_get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for ``path`` (or for every path of a list) or None when we do not handle it."""
    try:
        paths = [path] if isinstance(path, str | Path) else list(path)
        kinds = [detect_kind(p) for p in paths]
    except Exception:
        return None
    if not kinds or any(k is None for k in kinds):
        return None
    return read_paths


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """npe2 reader function: every path as layer data (see :func:`napari_patchdx.layerdata.layers_for_paths`); the
    files of one DICOM-WSI series give one slide. Reading into a viewer installs the plugin's viewer hooks
    (:func:`~napari_patchdx._napari.hooks.install_viewer_hooks`: safe layer removal, ground-truth layers adopted and
    coloured by class) before any of our dock widgets is open."""
    from .hooks import install_in_current_viewer

    paths = [path] if isinstance(path, str | Path) else list(path)
    layers = layers_for_paths(one_per_series(paths))
    install_in_current_viewer()
    return layers
