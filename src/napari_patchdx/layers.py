"""napari layer-data tuples for our artifacts, built without importing napari.

``(data, kwargs, layer_type)`` tuples are what npe2 readers and sample-data providers return and what
``viewer._add_layer_from_data`` / ``Layer.create`` take, so the reader, the widgets and ``run(viewer=...)`` all
share these builders. Every layer is placed with :mod:`napari_patchdx.geometry` so slides, masks, heatmaps,
points and shapes line up; world units are micrometres when the slide's mpp is known, else level-0 pixels.

Each layer's ``metadata["patchdx"]`` records what it is (``kind``), the source path and the frame of its data
(``frame = "level0"`` for vector data in continuous level-0 (y, x)), which the writers use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import napari_transform, vector_transform
from .io.annotations import AnnotationSet, to_layer_data
from .io.cxr import CxrImage
from .io.slides import Slide

LayerData = tuple[Any, dict[str, Any], str]

#: Edge colours of annotation classes (RGBA); other classes get matplotlib's tab10 cycle.
CLASS_COLORS = {"tumor": "#00e5ff", "exclusion": "#ffd400"}


def _units(mpp: float | None) -> tuple[str, str]:
    return ("um", "um") if mpp else ("pixel", "pixel")


def slide_layer(slide: Slide, name: str | None = None) -> LayerData:
    """A lazily loaded multiscale RGB image layer of ``slide`` (reads no pixels when built)."""
    data = slide.pyramid()
    transform = napari_transform((1.0, 1.0), (0.0, 0.0), slide.mpp)
    kwargs: dict[str, Any] = {
        "name": name or slide.path.stem,
        "rgb": True,
        "multiscale": True,
        "contrast_limits": [0, 255],
        "units": _units(slide.mpp),
        "metadata": {"patchdx": {"kind": "slide", **slide.metadata()}},
        **transform,
    }
    return data, kwargs, "image"


def annotation_layer(
    annotations: AnnotationSet, mpp: float | None, name: str = "ground truth", edge_width: float | None = None
) -> LayerData:
    """A Shapes layer of annotation polygons in level-0 (y, x), coloured by class; holes drawn dashed-free.

    ``edge_width`` is in level-0 pixels (default: 1/400 of the annotations' extent, at least 2).
    """
    data, features = to_layer_data(annotations)
    if edge_width is None:
        if len(annotations.regions):
            y0, x0, y1, x1 = annotations.bounds()
            edge_width = max(2.0, max(y1 - y0, x1 - x0) / 400.0)
        else:
            edge_width = 2.0
    colors = [_class_color(lbl) for lbl in features.get("label", [])]
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "polygon",
        "features": features,
        "edge_color": colors if colors else "#00e5ff",
        "face_color": "transparent",
        "edge_width": edge_width,
        "units": _units(mpp),
        "metadata": {
            "patchdx": {
                "kind": "annotations",
                "frame": "level0",
                "mpp": mpp,
                "source": str(annotations.source) if annotations.source else None,
            }
        },
        **vector_transform(mpp),
    }
    return data, kwargs, "shapes"


def _class_color(label: str) -> str:
    if label in CLASS_COLORS:
        return CLASS_COLORS[label]
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10"]
    return to_hex(cmap(sum(label.encode()) % 10))


def cxr_layer(cxr: CxrImage, name: str | None = None) -> LayerData:
    """A grayscale image layer of a chest X-ray, scaled to millimetres when the pixel spacing is known."""
    spacing = cxr.spacing
    kwargs: dict[str, Any] = {
        "name": name or (cxr.path.stem if cxr.path else "chest x-ray"),
        "colormap": "gray",
        "contrast_limits": [0.0, 1.0],
        "metadata": {"patchdx": {"kind": "cxr", "path": str(cxr.path) if cxr.path else None, **_jsonable(cxr.meta)}},
    }
    if spacing is not None:
        kwargs["scale"] = tuple(float(s) for s in spacing)
        kwargs["units"] = ("mm", "mm")
    return cxr.image, kwargs, "image"


def boxes_layer(
    boxes: np.ndarray,
    classes: list[str],
    spacing: tuple[float, float] | None = None,
    name: str = "lesion boxes",
) -> LayerData:
    """A Shapes layer of rectangles from (y0, x0, y1, x1) pixel boxes (half-open), labelled by class."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    # napari rectangles run between pixel centres; a half-open box [y0, y1) spans y0 - 0.5 .. y1 - 0.5.
    data = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64) - 0.5 for y0, x0, y1, x1 in boxes]
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "features": {"class": list(classes)},
        "edge_color": [_class_color(c) for c in classes] if classes else "#00e5ff",
        "face_color": "transparent",
        "edge_width": 2.0,
        "text": {"string": "{class}", "size": 9, "color": "yellow", "anchor": "upper_left"},
        "metadata": {"patchdx": {"kind": "boxes", "frame": "pixel"}},
    }
    if spacing is not None:
        kwargs["scale"] = tuple(float(s) for s in spacing)
        kwargs["units"] = ("mm", "mm")
    return data, kwargs, "shapes"


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, str | int | float | bool) else str(x) for x in v]
        else:
            out[k] = str(v)
    return out
