"""The one chest X-ray job: predict a list of X-rays with one checkpoint and save each one's CAMs and probabilities.

The command line (``napari-patchdx infer``), ``run()``'s infer stage and the *Run inference* widget all run
:func:`predict_xrays_job`; :func:`predict_xrays` runs it to its end.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io.names import cam_paths, file_name
from ..progress import SCALE, Job, Progress, map_items, run_job
from .xray import CxrPrediction, cxr_predict, read_cxr_prediction, save_cxr_prediction

__all__ = ["XrayInput", "XrayOutcome", "predict_xrays", "predict_xrays_job"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class XrayInput:
    """One chest X-ray to predict.

    Attributes:
        source: the image file, or its pixels (a 2-D array, e.g. a napari layer's data).
        name: what its outputs are named after (``<name>.cam.ome.tif``); a file's name by default.
        label: how messages and tables name it (default: ``name``).
        spacing: (row, col) pixel spacing in millimetres, when known (read from the file otherwise).
    """

    source: Path | np.ndarray
    name: str
    label: str = ""
    spacing: tuple[float, float] | None = None

    @classmethod
    def of(cls, value: XrayInput | PathLike) -> XrayInput:
        """``value`` as an input: an XrayInput as it is, a path named by :func:`~napari_patchdx.io.names.file_name`."""
        if isinstance(value, XrayInput):
            return value
        path = Path(value)
        return cls(path, file_name(path), path.name)

    @property
    def shown(self) -> str:
        """The label, or the name when there is none."""
        return self.label or self.name


@dataclass(frozen=True)
class XrayOutcome:
    """A predicted X-ray: its input (``spacing`` filled in from the file), its prediction and the written CAM file."""

    input: XrayInput
    prediction: CxrPrediction
    path: Path


def predict_xrays_job(
    images: Sequence[XrayInput | PathLike],
    checkpoint: PathLike,
    out_dir: PathLike,
    *,
    device: str = "cpu",
    resume: bool = False,
) -> Job[list[XrayOutcome]]:
    """Per-class probabilities and native-size CAMs of chest X-rays, saved to ``out_dir`` one image after another.

    Args:
        images: X-ray files (PNG, JPEG, TIFF, DICOM) or :class:`XrayInput` (pixels of a layer, a chosen name).
        checkpoint: a 1-channel checkpoint (loaded once, before the first image).
        out_dir: where ``<name>.cam.ome.tif`` + ``<name>.cam.json`` are written (created).
        device: a resolved torch device string.
        resume: an image whose two files are already in ``out_dir`` is read back instead of predicted again.

    Yields reports as :func:`~napari_patchdx.progress.map_items`: each image's outcome (an :class:`XrayOutcome`) or
    failure as an :class:`~napari_patchdx.progress.ItemReport` as soon as it is known. An image that cannot be
    read fails alone: the others run, then its error is raised (naming the file). Returns the outcomes in order.

    Raises:
        ConfigError: no image, or two images with the same output name.
        InputFileError: the checkpoint is missing, broken or not 1-channel (before any image); an image that
            cannot be read (after the others).
    """
    from ..io.cxr.read import read_cxr
    from ..models.checkpoint import load_checkpoint

    items = [XrayInput.of(image) for image in images]
    if not items:
        raise ConfigError("no chest X-ray given")
    seen: dict[str, str] = {}
    for item in items:
        if item.name in seen:
            raise ConfigError(f"{seen[item.name]} and {item.shown} would both write {item.name}.cam.ome.tif")
        seen[item.name] = item.shown
    yield Progress(0, SCALE, f"loading {Path(checkpoint).name}")
    model, meta = load_checkpoint(checkpoint, in_channels=1, device=device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def one(item: XrayInput) -> XrayOutcome:
        paths = cam_paths(out, item.name)
        if resume and paths["final"].is_file() and paths["sidecar"].is_file():
            prediction = read_cxr_prediction(paths["final"])
            kept = dataclasses.replace(item, spacing=item.spacing or prediction.spacing)
            return XrayOutcome(kept, prediction, paths["final"])
        image, spacing = item.source, item.spacing
        if isinstance(image, Path):  # read once: the pixels for the model, the spacing for the outputs
            cxr = read_cxr(image)
            image, spacing = cxr.image, spacing or cxr.spacing
        (prediction,) = cxr_predict([image], model, meta, device=device)
        source = item.source if isinstance(item.source, Path) else None
        prediction = dataclasses.replace(prediction, source=source, spacing=spacing)
        saved = save_cxr_prediction(prediction, out, name=item.name)
        return XrayOutcome(dataclasses.replace(item, spacing=spacing), prediction, saved)

    return (yield from map_items(one, items, describe=lambda item: item.shown))


def predict_xrays(
    images: Sequence[XrayInput | PathLike],
    checkpoint: PathLike,
    out_dir: PathLike,
    *,
    device: str = "cpu",
    resume: bool = False,
) -> list[XrayOutcome]:
    """:func:`predict_xrays_job` run to its end."""
    return run_job(predict_xrays_job(images, checkpoint, out_dir, device=device, resume=resume))
