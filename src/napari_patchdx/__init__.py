"""napari-patchdx: train and run lesion detectors on whole-slide images and chest X-rays.

The core (everything outside ``napari_patchdx._napari``) imports neither napari nor Qt. Public names are
imported lazily, so ``import napari_patchdx`` (done by napari when it scans plugins) stays cheap.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("napari-patchdx")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

_LAZY = {
    "AnnotationSet": "napari_patchdx.io.annotations",
    "Region": "napari_patchdx.io.annotations",
    "read_annotations": "napari_patchdx.io.annotations",
    "CxrImage": "napari_patchdx.io.cxr",
    "read_cxr": "napari_patchdx.io.cxr",
    "Slide": "napari_patchdx.io.slides",
    "open_slide": "napari_patchdx.io.slides",
    "ConfigError": "napari_patchdx.errors",
    "InputFileError": "napari_patchdx.errors",
    "MissingMetadataError": "napari_patchdx.errors",
    "PatchdxError": "napari_patchdx.errors",
    "RunConfig": "napari_patchdx.pipeline",
    "RunResult": "napari_patchdx.pipeline",
    "run": "napari_patchdx.pipeline",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    from .errors import ConfigError, InputFileError, MissingMetadataError, PatchdxError
    from .io.annotations import AnnotationSet, Region, read_annotations
    from .io.cxr import CxrImage, read_cxr
    from .io.slides import Slide, open_slide
    from .pipeline import RunConfig, RunResult, run


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_patchdx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
