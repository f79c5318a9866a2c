"""Chest X-ray lesion boxes as napari Shapes data (numpy and pandas; no napari): the one rule between a napari
rectangle and a ``lesions.csv`` box, lesion-box layers, and a cohort image's ground-truth boxes layer.

**Boxes and rectangles.** A box of ``lesions.csv`` is half-open, ``[y0, y1) x [x0, x1)`` in the image's native
pixels (:class:`~napari_patchdx.io.cohort.LesionBox`). In napari an X-ray's pixel ``i`` is centred on data
coordinate ``i`` (world ``i * spacing`` millimetres when the layer has a pixel spacing), so pixel ``i`` spans
``i - 0.5 .. i + 0.5`` and a box is the rectangle with corners ``(y0 - 0.5, x0 - 0.5)`` and ``(y1 - 0.5, x1 - 0.5)``
(:func:`box_rectangle`). The way back (:func:`rectangle_box`) takes a shape's bounding box (any shape: a rectangle,
or a polygon drawn by mistake), adds 0.5 and rounds each edge to the nearest pixel edge (halves up, after rounding
to 1e-6 px), clipped to the image; a box of whole pixels goes there and back unchanged.

**Ground-truth layers** (:func:`cxr_truth_layer`): the boxes of one image of a cohort, the class of each shape a
categorical ``class`` feature whose categories are the cohort's classes, edges in each class's colour
(:func:`~napari_patchdx.io.annotations.model.class_color`). ``metadata["patchdx"]`` holds ``kind = "boxes"`` (so
the slide widgets never take it for a slide's ground truth), ``role = "cxr_truth"``, ``cohort`` (the folder),
``image_id``, ``classes``, ``frame = "pixel"``, ``spacing`` and ``shape``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io.annotations.model import TUMOR, class_color
from ..io.cohort import LESIONS_NAME, LesionBox, cohort_image, read_labels, read_lesions

__all__ = [
    "CXR_TRUTH_ROLE",
    "box_rectangle",
    "boxes_layer",
    "cohort_truth_layers",
    "cxr_truth_layer",
    "is_cxr_truth",
    "layer_boxes",
    "rectangle_box",
]

LayerData = tuple[Any, dict[str, Any], str]

#: ``metadata["patchdx"]["role"]`` of a cohort image's ground-truth boxes layer
CXR_TRUTH_ROLE = "cxr_truth"


def box_rectangle(y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    """The napari rectangle (4 (y, x) vertices in the X-ray's data frame, native pixels) of the half-open box
    ``[y0, y1) x [x0, x1)`` (native pixels)."""
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64) - 0.5


def rectangle_box(
    vertices: np.ndarray | Sequence[Sequence[float]],
    *,
    spacing: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
) -> tuple[int, int, int, int]:
    """The half-open box ``(y0, x0, y1, x1)`` (whole native pixels, (row, col)) of a napari shape.

    Args:
        vertices: (N, 2) (y, x) vertices: in the X-ray's data frame (native pixels, pixel ``i`` centred on ``i``),
            or, with ``spacing``, in world millimetres of an X-ray layer scaled by that spacing.
        spacing: the (row, col) pixel spacing in millimetres when ``vertices`` are in millimetres.
        shape: the image's (rows, cols): the box is clipped to it.

    Raises:
        ValueError: the vertices are not finite (N, 2) numbers, or the box holds no whole pixel (smaller than a
            pixel, or outside the image).
    """
    points = np.asarray(vertices, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2 or not len(points) or not np.isfinite(points[:, -2:]).all():
        raise ValueError(f"a shape needs finite (y, x) vertices, got an array of shape {points.shape}")
    points = points[:, -2:]
    if spacing is not None:
        points = points / np.asarray([float(s) for s in spacing][-2:], dtype=np.float64)
    lo, hi = points.min(axis=0) + 0.5, points.max(axis=0) + 0.5
    # to 1e-6 px first: a vertex taken through a layer's scale and back (10 -> 9.9999999) rounds as 10 does
    y0, x0 = (math.floor(round(float(v), 6) + 0.5) for v in lo)
    y1, x1 = (math.floor(round(float(v), 6) + 0.5) for v in hi)
    if y1 <= y0 or x1 <= x0:
        raise ValueError("the box holds no whole pixel (smaller than a pixel)")
    if shape is not None:
        rows, cols = int(shape[0]), int(shape[1])
        y0, y1 = min(max(y0, 0), rows), min(max(y1, 0), rows)
        x0, x1 = min(max(x0, 0), cols), min(max(x1, 0), cols)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"the box lies outside the image ({rows} x {cols} pixels)")
    return int(y0), int(x0), int(y1), int(x1)


def layer_boxes(
    data: Sequence[np.ndarray],
    classes: Sequence[str],
    *,
    spacing: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
) -> list[tuple[str, int, int, int, int]]:
    """``(class, y0, x0, y1, x1)`` boxes (:func:`rectangle_box`) of a Shapes layer's shapes and their classes, in
    the form :func:`~napari_patchdx.io.cohort.write_lesion_boxes` takes.

    Raises:
        ValueError: the lengths differ, or a shape holds no whole pixel (the message gives its number, from 1).
    """
    if len(data) != len(classes):
        raise ValueError(f"{len(data)} shapes but {len(classes)} classes")
    out = []
    for k, (vertices, cls) in enumerate(zip(data, classes, strict=True)):
        try:
            out.append((str(cls), *rectangle_box(vertices, spacing=spacing, shape=shape)))
        except ValueError as exc:
            raise ValueError(f"box {k + 1} ({cls}): {exc}") from None
    return out


def boxes_layer(
    boxes: np.ndarray,
    classes: list[str],
    spacing: tuple[float, float] | None = None,
    name: str = "lesion boxes",
) -> LayerData:
    """A Shapes layer of rectangles from (y0, x0, y1, x1) pixel boxes (half-open), labelled by class."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    data = [box_rectangle(*box) for box in boxes]
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "features": {"class": list(classes)},
        "edge_color": [class_color(c) for c in classes] if classes else class_color(TUMOR),
        "face_color": "transparent",
        "edge_width": 2.0,
        "text": {"string": "{class}", "size": 9, "color": "yellow", "anchor": "upper_left"},
        "metadata": {"patchdx": {"kind": "boxes", "frame": "pixel"}},
    }
    if spacing is not None:
        kwargs["scale"] = tuple(float(s) for s in spacing)
        kwargs["units"] = ("mm", "mm")
    return data, kwargs, "shapes"


def is_cxr_truth(meta: dict[str, Any]) -> bool:
    """Whether a layer's ``metadata["patchdx"]`` is that of a cohort image's ground-truth boxes layer."""
    return meta.get("kind") == "boxes" and meta.get("role") == CXR_TRUTH_ROLE


def cxr_truth_layer(
    root: str | os.PathLike[str],
    image_id: str,
    *,
    spacing: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    name: str | None = None,
    draw_class: str | None = None,
) -> LayerData:
    """The ground-truth boxes layer of image ``image_id`` of the cohort in ``root`` (see the module docstring).

    Args:
        root: the cohort folder (``labels.csv``, ``lesions.csv``; an image without rows gets an empty layer).
        image_id: the image's id in ``labels.csv``.
        spacing: the X-ray layer's (row, col) pixel spacing in millimetres (its ``scale``), or None (pixels).
        shape: the image's (rows, cols) in native pixels (recorded; the edge width follows it).
        name: layer name (default ``"<image_id> lesion boxes"``).
        draw_class: the class of the boxes drawn next (default: the cohort's first class).

    Raises:
        InputFileError: ``labels.csv`` or ``lesions.csv`` is broken.
        ValueError: ``draw_class`` is not a class of the cohort.
    """
    root, image_id = Path(root), str(image_id).strip()
    _, classes = read_labels(root)
    lesions = root / LESIONS_NAME
    boxes: list[LesionBox] = read_lesions(lesions, classes).get(image_id, []) if lesions.is_file() else []
    draw = classes[0] if draw_class is None else str(draw_class)
    if draw not in classes:
        raise ValueError(f"class {draw!r} is not one of the cohort's classes {list(classes)}")
    names = [b.cls for b in boxes]
    width = 2.0 if shape is None else max(1.5, max(int(v) for v in shape[:2]) / 300.0)
    kwargs: dict[str, Any] = {
        "name": name or f"{image_id} lesion boxes",
        "ndim": 2,
        "shape_type": "rectangle",
        "features": pd.DataFrame({"class": pd.Categorical(names, categories=list(classes))}),
        "feature_defaults": {"class": draw},
        "edge_color": [class_color(c) for c in names] if names else class_color(draw),
        "face_color": "transparent",
        "edge_width": float(width),
        "text": {"string": "{class}", "size": 9, "color": "yellow", "anchor": "upper_left"},
        "metadata": {
            "patchdx": {
                "kind": "boxes",
                "role": CXR_TRUTH_ROLE,
                "frame": "pixel",
                "cohort": str(root),
                "image_id": image_id,
                "classes": list(classes),
                "spacing": None if spacing is None else [float(s) for s in spacing][-2:],
                "shape": None if shape is None else [int(v) for v in shape[:2]],
            }
        },
    }
    if spacing is not None:
        kwargs["scale"] = tuple(float(s) for s in spacing)[-2:]
        kwargs["units"] = ("mm", "mm")
    return [box_rectangle(b.y0, b.x0, b.y1, b.x1) for b in boxes], kwargs, "shapes"


def cohort_truth_layers(
    path: str | os.PathLike[str],
    *,
    spacing: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    name: str | None = None,
) -> list[LayerData]:
    """The ground-truth boxes layer (:func:`cxr_truth_layer`) of the X-ray file ``path`` when it belongs to a cohort
    (:func:`~napari_patchdx.io.cohort.cohort_image`), else no layer. A broken ``labels.csv`` / ``lesions.csv`` gives
    a warning that names it and no layer: it must not hide the X-ray."""
    try:
        found = cohort_image(path)
        if found is None:
            return []
        root, image_id = found
        return [cxr_truth_layer(root, image_id, spacing=spacing, shape=shape, name=name)]
    except (OSError, ValueError) as exc:  # InputFileError is a ValueError
        warnings.warn(f"{path}: lesion boxes not shown: {exc}", UserWarning, stacklevel=2)
        return []
