"""napari layer-data tuples for our artifacts, built without importing napari.

``(data, kwargs, layer_type)`` tuples are what npe2 readers and sample-data providers return and what
``viewer._add_layer_from_data`` / ``Layer.create`` take, so the reader, the widgets and ``run(viewer=...)`` all
share these builders. Every layer is placed with :mod:`napari_patchdx.geometry` so slides, masks, heatmaps,
points and shapes line up; world units are micrometres when the slide's mpp is known, else level-0 pixels.

Each layer's ``metadata["patchdx"]`` records what it is (``kind``), the source path and the frame of its data
(``frame = "level0"`` for vector data in continuous level-0 (y, x)), which the writers use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError
from .geometry import napari_transform, vector_transform
from .io.annotations import AnnotationSet, read_annotations, to_layer_data
from .io.cxr import CxrImage, read_cxr
from .io.detect import SLIDE_SUFFIXES, TIFF_SUFFIXES, annotations_beside, detect_kind
from .io.slides import Slide, open_slide

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
        # shapes a user draws become new tumour regions, never holes of an existing one
        "feature_defaults": {"label": "tumor", "name": "", "group": "", "role": "exterior", "region": -1},
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


def layers_for_paths(paths: Sequence[str | os.PathLike[str]]) -> list[LayerData]:
    """Layer data for every path (slides with their ground truth, X-rays, annotation files), routed by content."""
    layers: list[LayerData] = []
    for p in map(Path, paths):
        kind = detect_kind(p)
        if kind == "slide":
            layers.extend(slide_file_layers(p))
        elif kind == "cxr":
            layers.extend(cxr_file_layers(p))
        elif kind == "annotations":
            layers.extend(annotation_file_layers(p))
    return layers


def slide_file_layers(path: Path) -> list[LayerData]:
    """A multiscale slide layer plus, when ``<stem>.xml`` / ``<stem>.geojson`` sits beside it, its ground truth."""
    slide = open_slide(path)
    layers = [slide_layer(slide)]
    ann_path = annotations_beside(path)
    if ann_path is not None:
        try:
            annotations = read_annotations(ann_path).clip(*slide.shape)
        except Exception as exc:  # a broken annotation file must not hide the slide
            warnings.warn(f"{ann_path}: ground truth not shown: {exc}", UserWarning, stacklevel=2)
        else:
            layers.append(annotation_layer(annotations, slide.mpp, name=f"{path.stem} ground truth"))
    return layers


def cxr_file_layers(path: Path) -> list[LayerData]:
    """A grayscale chest X-ray layer with its pixel spacing (mm) as scale."""
    return [cxr_layer(read_cxr(path))]


def annotation_file_layers(path: Path) -> list[LayerData]:
    """An annotation file as Shapes; aligned in micrometres when a slide with the same name sits beside it."""
    annotations = read_annotations(path)
    if not len(annotations.regions):
        raise InputFileError(path, "holds no polygon annotations (points and lines are not read)")
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


#: Colours of patch boxes by label.
PATCH_COLORS = {0: "#34c759", 1: "#ff3b30"}


def patches_layer(
    table: Any,
    level_downsamples: Sequence[float],
    mpp: float | None,
    name: str = "patches",
) -> LayerData:
    """A Shapes layer of patch read windows (level-0 rectangles) from patch-table rows of ONE image.

    Boxes are red for tumour / lesion patches and green for normal ones; ``label`` and ``split`` are features.
    """
    ds = np.asarray(level_downsamples, dtype=np.float64)[table["level"].to_numpy()]
    foot = table["size"].to_numpy() * ds
    y = table["y"].to_numpy(np.float64)
    x = table["x"].to_numpy(np.float64)
    data = [
        np.array([[y0, x0], [y0, x0 + f], [y0 + f, x0 + f], [y0 + f, x0]]) for y0, x0, f in zip(y, x, foot, strict=True)
    ]
    labels = table["label"].astype(int).tolist()
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "features": {"label": labels, "split": table["split"].astype(str).tolist()},
        "edge_color": [PATCH_COLORS[int(v > 0)] for v in labels] if labels else "#34c759",
        "face_color": "transparent",
        "edge_width": float(np.median(foot) / 40) if len(foot) else 2.0,
        "units": _units(mpp),
        "metadata": {"patchdx": {"kind": "patches", "frame": "level0", "mpp": mpp}},
        **vector_transform(mpp),
    }
    return data, kwargs, "shapes"


def tissue_layer(tissue: Any, name: str = "tissue") -> LayerData:
    """A Labels layer (1 = tissue) of a :class:`~napari_patchdx.data.tissue.TissueMask`, aligned to its slide."""
    kwargs: dict[str, Any] = {
        "name": name,
        "opacity": 0.35,
        "units": _units(tissue.grid.mpp),
        "metadata": {"patchdx": {"kind": "tissue", "grid": tissue.grid.to_dict(), "threshold": tissue.threshold}},
        **tissue.grid.napari(),
    }
    return tissue.mask.astype(np.uint8), kwargs, "labels"


def points_layer(
    points: Any,
    mpp: float | None,
    *,
    top_k: int = 2000,
    diameter_um: float = 100.0,
    name: str = "lesion points",
) -> LayerData:
    """A Points layer of lesion points (a :class:`~napari_patchdx.evaluate.PointsTable`), coloured by probability.

    Only the ``top_k`` most probable points are shown so the viewer stays fast; ``probability`` is a feature.
    Points are drawn ``diameter_um`` micrometres across (level-0 pixels when mpp is unknown).
    """
    k = min(int(top_k), len(points.probability))
    data = np.stack([points.y[:k], points.x[:k]], axis=1) if k else np.zeros((0, 2))
    size = diameter_um / mpp if mpp else diameter_um
    kwargs: dict[str, Any] = {
        "name": name,
        "features": {"probability": np.asarray(points.probability[:k], dtype=np.float64)},
        "face_color": "probability",
        "face_colormap": "inferno",
        "face_contrast_limits": (0.0, 1.0),
        "border_color": "white",
        "size": size,
        "units": _units(mpp),
        "metadata": {
            "patchdx": {"kind": "points", "frame": "level0", "mpp": mpp, "shown": k, "total": len(points.probability)}
        },
        **vector_transform(mpp),
    }
    return data, kwargs, "points"
