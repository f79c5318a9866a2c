"""napari-patchdx: train and run lesion detectors on whole-slide images and chest X-rays.

The core (everything outside ``napari_patchdx._napari``) imports neither napari nor Qt. Public names are
imported lazily, so ``import napari_patchdx`` (done by napari when it scans plugins) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .versions import __version__

_LAZY = {  # name -> "module" (the same name there) or "module:name"
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
    "retrain": "napari_patchdx.pipeline.retrain",
    "sample": "napari_patchdx.sampling.sample_files",
    "evaluate": "napari_patchdx.evaluation.evaluate_files",
    "report": "napari_patchdx.reporting.build:build_report",
    "SampleSettings": "napari_patchdx.sampling.settings",
    "InferSettings": "napari_patchdx.inference.settings",
    "DistributedSettings": "napari_patchdx.inference.settings",
    "EvaluateSettings": "napari_patchdx.evaluation.settings",
    "ReportSettings": "napari_patchdx.reporting.settings",
    "TrainConfig": "napari_patchdx.training.config",
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
    from .evaluation.evaluate_files import evaluate
    from .evaluation.froc import froc
    from .evaluation.nms import lesion_points
    from .evaluation.settings import EvaluateSettings
    from .evaluation.slide_files import evaluate_slides
    from .evaluation.xrays import evaluate_cxr
    from .inference.distributed_heatmaps import predict_slides
    from .inference.settings import DistributedSettings, InferSettings
    from .inference.xray_job import predict_xrays
    from .io.annotations import AnnotationSet, Region, read_annotations
    from .io.cxr import CxrImage, read_cxr
    from .io.slides import Slide, open_slide
    from .pipeline.config import RunConfig
    from .pipeline.results import RunResult
    from .pipeline.retrain import retrain
    from .pipeline.runner import run
    from .reporting.build import build_report
    from .reporting.build import build_report as report
    from .reporting.settings import ReportSettings
    from .sampling.sample_files import sample
    from .sampling.settings import SampleSettings
    from .training.config import TrainConfig
    from .training.job import train


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'napari_patchdx' has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value
