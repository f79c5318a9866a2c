"""napari-patchdx: train and run lesion detectors on whole-slide images and chest X-rays.

The core (everything outside ``napari_patchdx._napari``) imports neither napari nor Qt. Public names are
imported lazily, so ``import napari_patchdx`` (done by napari when it scans plugins) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .versions import __version__

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
    "RunConfig": "napari_patchdx.pipeline.config",
    "RunResult": "napari_patchdx.pipeline.results",
    "run": "napari_patchdx.pipeline.runner",
    "train": "napari_patchdx.training.job",
    "predict_slides": "napari_patchdx.inference.distributed_heatmaps",
    "predict_xrays": "napari_patchdx.inference.xray_job",
    "lesion_points": "napari_patchdx.evaluation.nms",
    "froc": "napari_patchdx.evaluation.froc",
    "evaluate_slides": "napari_patchdx.evaluation.slide_files",
    "evaluate_cxr": "napari_patchdx.evaluation.xrays",
    "build_report": "napari_patchdx.reporting.build",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    from .errors import ConfigError, InputFileError, MissingMetadataError, PatchdxError
    from .evaluation.froc import froc
    from .evaluation.nms import lesion_points
    from .evaluation.slide_files import evaluate_slides
    from .evaluation.xrays import evaluate_cxr
    from .inference.distributed_heatmaps import predict_slides
    from .inference.xray_job import predict_xrays
    from .io.annotations import AnnotationSet, Region, read_annotations
    from .io.cxr import CxrImage, read_cxr
    from .io.slides import Slide, open_slide
    from .pipeline.config import RunConfig
    from .pipeline.results import RunResult
    from .pipeline.runner import run
    from .reporting.build import build_report
    from .training.job import train


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_patchdx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
