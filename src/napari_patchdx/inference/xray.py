"""Chest X-rays: :func:`cxr_predict` (per-class probabilities and native-size CAMs) and the CAM files."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._fsutil import atomic_write_text
from ..errors import ConfigError, InputFileError
from ..io.float_maps import read_float_image, write_float_image
from ..io.names import CAM_FORMAT, cam_paths, file_name
from ..sampling.datasets import resize_square
from ..transforms.compose import cxr_eval_transforms, transform_from_dict
from .ensemble import precision_autocast, resolve_precision
from .heatmap_files import read_json


@dataclass(frozen=True)
class CxrPrediction:
    """Predictions for one chest X-ray.

    Attributes:
        classes: class names (the checkpoint's).
        probabilities: float32 (K,) sigmoid of each class logit.
        cams: float32 (K, H, W) class activation maps in logit units, upsampled bilinearly to the native image
            (their mean over the working-size CAM grid is the logit).
        shape: native (H, W).
        source: the image path, or None for an array.
        spacing: the image's (row, col) pixel spacing in millimetres, when its file gives one.
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    cams: np.ndarray = field(repr=False)
    shape: tuple[int, int]
    source: Path | None = None
    spacing: tuple[float, float] | None = None


def _cxr_transform(meta: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    norm = meta.get("normalization") or {"mode": "standardize"}
    mode = norm.get("mode")
    if mode == "standardize":
        transform = transform_from_dict(norm["transform"]) if norm.get("transform") else cxr_eval_transforms()
        return lambda image: np.asarray(transform(image, np.random.default_rng(0)), dtype=np.float32)
    if mode == "unit":
        return lambda image: image
    raise ConfigError(f"chest X-ray inference supports normalization 'standardize' or 'unit', not {mode!r}")


@torch.inference_mode()
def cxr_predict(
    images: Sequence[str | os.PathLike[str] | np.ndarray],
    model: nn.Module,
    meta: dict[str, Any],
    *,
    device: str | torch.device = "cpu",
    precision: str | None = None,
) -> list[CxrPrediction]:
    """Per-class probabilities and native-size CAMs of chest X-rays (paths, or float grey arrays in [0, 1]).

    Each image is resized bilinearly to ``meta["input_size"]`` square and standardised as the checkpoint's
    ``normalization`` says (default: :func:`cxr_eval_transforms`). The CAMs (``model.cam``, logit units) are
    upsampled bilinearly with pixel-centre alignment, so CAM cell ``(r, c)`` covers native pixels
    ``[r, r + 1) * H / h`` x ``[c, c + 1) * W / w``.

    ``precision``: ``"bf16"`` (bfloat16 autocast) or ``"fp32"``; None = bf16 on CUDA, fp32 elsewhere. CAMs and
    probabilities are returned in float32 either way.
    """
    from ..io.cxr.read import read_cxr

    size = int(meta["input_size"])
    classes = tuple(meta.get("classes") or [str(k) for k in range(getattr(model, "num_classes", 1))])
    transform = _cxr_transform(meta)
    dev = torch.device(device)
    autocast = functools.partial(precision_autocast, dev, resolve_precision(precision, dev))
    model = model.to(dev).eval()
    out = []
    for item in images:
        source, spacing = None, None
        if isinstance(item, np.ndarray):
            image = np.asarray(item, dtype=np.float32)
        else:
            source = Path(item)
            cxr = read_cxr(source)
            image, spacing = cxr.image.astype(np.float32, copy=False), cxr.spacing
        if image.ndim != 2:
            raise ConfigError(f"chest X-rays are 2-D grey images, got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(transform(resize_square(image, size))))[None, None]
        if dev.type == "cuda":
            x = x.pin_memory().to(dev, non_blocking=True)
        with autocast():
            cam = model.cam(x.to(dev)).float()
        probs = torch.sigmoid(cam.mean(dim=(2, 3)))[0]
        native = F.interpolate(cam, size=image.shape, mode="bilinear", align_corners=False)[0]
        out.append(
            CxrPrediction(
                classes,
                probs.cpu().numpy().astype(np.float32),
                native.cpu().numpy().astype(np.float32),
                (int(image.shape[0]), int(image.shape[1])),
                source,
                None if spacing is None else (float(spacing[0]), float(spacing[1])),
            )
        )
    return out


def save_cxr_prediction(prediction: CxrPrediction, out_dir: str | os.PathLike[str], name: str | None = None) -> Path:
    """Write one X-ray's CAMs as a (class, Y, X) float32 OME-TIFF (channels named by class) and its probabilities
    in the ``.cam.json`` sidecar; returns the OME-TIFF path. ``name`` defaults to the source file's name
    (:func:`napari_patchdx.io.names.file_name`)."""
    if name is None:
        if prediction.source is None:
            raise ConfigError("save_cxr_prediction: a prediction of an in-memory array needs name=")
        name = file_name(prediction.source)
    paths = cam_paths(out_dir, name)
    paths["final"].parent.mkdir(parents=True, exist_ok=True)
    um = None if prediction.spacing is None else (1000.0 * prediction.spacing[0], 1000.0 * prediction.spacing[1])
    write_float_image(paths["final"], prediction.cams, pixel_size_um=um, channel_names=prediction.classes)
    sidecar = {
        "format": CAM_FORMAT,
        "version": 1,
        "classes": list(prediction.classes),
        "probabilities": [float(p) for p in prediction.probabilities],
        "shape": list(prediction.shape),
        "source": str(prediction.source) if prediction.source is not None else None,
        "values": "class activation maps in logit units, upsampled bilinearly to the native image (row, col)",
    }
    if prediction.spacing is not None:  # (row, col) mm; absent = unknown (readers may ask the source X-ray)
        sidecar["spacing"] = [float(v) for v in prediction.spacing]
    atomic_write_text(paths["sidecar"], json.dumps(sidecar, indent=1))
    return paths["final"]


def read_cxr_prediction(path: str | os.PathLike[str]) -> CxrPrediction:
    """A prediction written by :func:`save_cxr_prediction` (its ``.cam.ome.tif`` or ``.cam.json``)."""
    path = Path(path)
    base = path.name
    for suffix in (".cam.ome.tif", ".cam.json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    paths = cam_paths(path.parent, base)
    side = read_json(paths["sidecar"])
    if side is None or side.get("format") != CAM_FORMAT:
        raise InputFileError(paths["sidecar"], "missing or not a napari-patchdx CAM sidecar")
    cams = read_float_image(paths["final"])
    classes = tuple(side["classes"])
    if cams.ndim == 2:
        cams = cams[None]
    if cams.shape[0] != len(classes) or list(cams.shape[1:]) != list(side["shape"]):
        raise InputFileError(
            paths["final"],
            f"CAM shape {cams.shape} does not match its sidecar ({len(classes)} classes, {side['shape']})",
        )
    source = Path(side["source"]) if side.get("source") else None
    spacing = tuple(float(v) for v in side["spacing"]) if side.get("spacing") else None
    probabilities = np.asarray(side["probabilities"], np.float32)
    return CxrPrediction(classes, probabilities, cams, tuple(side["shape"]), source, spacing)
