"""napari layer-data tuples for our artifacts, built without importing napari.

``(data, kwargs, layer_type)`` tuples are what npe2 readers and sample-data providers return and what napari's
``Layer.create`` takes, so the reader, the widgets and a run's result layers all share these builders. Every
layer is placed with :mod:`napari_patchdx.geometry` so slides, masks, heatmaps, points and shapes line up; world
units are micrometres when the slide's mpp is known, else level-0 pixels.

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

from ..errors import InputFileError
from ..geometry import Grid, napari_transform, vector_transform
from ..io.annotations.model import CLASS_COLORS as CLASS_COLORS
from ..io.annotations.model import TUMOR, AnnotationSet, class_color
from ..io.annotations.read import read_annotations
from ..io.cxr.read import CxrImage, read_cxr
from ..io.detect import (
    CAM_FORMAT,
    HEATMAP_FORMAT,
    SLIDE_SUFFIXES,
    TIFF_SUFFIXES,
    annotations_beside,
    detect_kind,
    float_map_name,
    float_map_sidecar,
    read_sidecar,
)
from ..io.names import file_name
from ..io.slides.base import Slide
from ..io.slides.dicom import DICOM_SUFFIXES
from ..io.slides.open import open_slide
from ..jsonvalues import json_value
from .cxr_truth import boxes_layer as boxes_layer
from .cxr_truth import cohort_truth_layers
from .shapes import DRAW_CLASSES as DRAW_CLASSES
from .shapes import FEATURE_DEFAULTS, annotation_features, to_layer_data

LayerData = tuple[Any, dict[str, Any], str]


def _units(mpp: float | None) -> tuple[str, str]:
    return ("um", "um") if mpp else ("pixel", "pixel")


def slide_layer(slide: Slide, name: str | None = None) -> LayerData:
    """A lazily loaded multiscale RGB image layer of ``slide`` (reads no pixels when built)."""
    data = slide.pyramid()
    transform = napari_transform((1.0, 1.0), (0.0, 0.0), slide.mpp)
    kwargs: dict[str, Any] = {
        "name": name or file_name(slide.path),
        "rgb": True,
        "multiscale": True,
        "contrast_limits": [0, 255],
        "units": _units(slide.mpp),
        "metadata": {"patchdx": {"kind": "slide", **slide.metadata()}},
        **transform,
    }
    return data, kwargs, "image"


def annotation_layer(
    annotations: AnnotationSet,
    mpp: float | None,
    name: str = "ground truth",
    edge_width: float | None = None,
    slide_path: str | os.PathLike[str] | None = None,
) -> LayerData:
    """A Shapes layer of annotation polygons in continuous level-0 (y, x) pixels, each edge in its class colour
    (:func:`class_color`); world units are micrometres at ``mpp`` level-0 microns per pixel (pixels when None).

    The ``label`` feature is categorical (:data:`DRAW_CLASSES` and any other label present), so the class of a
    shape is picked in napari's features table; shapes the user draws are new tumour regions
    (:data:`~napari_patchdx.layerdata.shapes.FEATURE_DEFAULTS`). ``edge_width`` is in level-0 pixels (default:
    1/400 of the annotations' extent, at least 2). ``metadata["patchdx"]`` holds ``kind = "annotations"``,
    ``frame = "level0"``, ``mpp``, ``source`` (the annotation file) and ``slide`` (``slide_path``, or None).
    """
    data, features = to_layer_data(annotations)
    if edge_width is None:
        extent = 0.0
        if len(annotations.regions):
            y0, x0, y1, x1 = annotations.bounds()
            extent = max(y1 - y0, x1 - x0)
        edge_width = max(2.0, extent / 400.0)
    source = str(annotations.source) if annotations.source else None
    return _shapes_of_classes(data, annotation_features(features), mpp, name, edge_width, source, slide_path)


def empty_annotation_layer(slide: Slide, name: str | None = None) -> LayerData:
    """An empty ground-truth Shapes layer over ``slide``, ready to draw in: the frame and metadata of
    :func:`annotation_layer` (data in level-0 (y, x) pixels, world in micrometres when the slide's mpp is known),
    ``metadata["patchdx"]["slide"]`` the slide's path, edges 1/400 of the slide's longer side (level-0 pixels, at
    least 2) and a new shape a tumour region. Default name ``"<slide name> ground truth"``."""
    width = max(2.0, max(int(v) for v in slide.shape[:2]) / 400.0)
    name = name or f"{file_name(slide.path)} ground truth"
    return _shapes_of_classes([], annotation_features(), slide.mpp, name, width, None, slide.path)


def _shapes_of_classes(
    data: list[np.ndarray],
    features: Any,
    mpp: float | None,
    name: str,
    edge_width: float,
    source: str | None,
    slide_path: str | os.PathLike[str] | None,
) -> LayerData:
    """The Shapes layer of :func:`annotation_layer` / :func:`empty_annotation_layer` (level-0 (y, x) data)."""
    kwargs: dict[str, Any] = {
        "name": name,
        "ndim": 2,
        "shape_type": "polygon",
        "features": features,
        "feature_defaults": dict(FEATURE_DEFAULTS),
        "edge_color": [class_color(v) for v in features["label"]] if len(data) else class_color(TUMOR),
        "face_color": "transparent",
        "edge_width": float(edge_width),
        "units": _units(mpp),
        "metadata": {
            "patchdx": {
                "kind": "annotations",
                "frame": "level0",
                "mpp": mpp,
                "source": source,
                "slide": None if slide_path is None else str(slide_path),
            }
        },
        **vector_transform(mpp),
    }
    return data, kwargs, "shapes"


def cxr_layer(cxr: CxrImage, name: str | None = None) -> LayerData:
    """A grayscale image layer of a chest X-ray, scaled to millimetres when the pixel spacing is known."""
    spacing = cxr.spacing
    kwargs: dict[str, Any] = {
        "name": name or (cxr.path.stem if cxr.path else "chest x-ray"),
        "colormap": "gray",
        "contrast_limits": [0.0, 1.0],
        "metadata": {
            "patchdx": {
                "kind": "cxr",
                "path": str(cxr.path) if cxr.path else None,
                "spacing": None if spacing is None else [float(s) for s in spacing],
                **_display_meta(cxr.meta),
            }
        },
    }
    if spacing is not None:
        kwargs["scale"] = tuple(float(s) for s in spacing)
        kwargs["units"] = ("mm", "mm")
    return cxr.image, kwargs, "image"


def _display_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A reader's header fields as plain data for napari layer metadata (display only, not written to a file):
    :func:`~napari_patchdx.jsonvalues.json_value`, with any value JSON cannot hold shown as its ``str()``."""
    return json_value(dict(meta), "cxr meta", fallback=str)


def layers_for_paths(paths: Sequence[str | os.PathLike[str]]) -> list[LayerData]:
    """Layer data for every path (slides with their ground truth, X-rays, annotation files, heatmaps and CAMs),
    routed by :func:`napari_patchdx.io.detect.detect_kind`."""
    layers: list[LayerData] = []
    for p in map(Path, paths):
        kind = detect_kind(p)
        if kind == "slide":
            layers.extend(slide_file_layers(p))
        elif kind == "cxr":
            layers.extend(cxr_file_layers(p))
        elif kind == "annotations":
            layers.extend(annotation_file_layers(p))
        elif kind == "heatmap":
            layers.extend(heatmap_file_layers(p))
        elif kind == "cam":
            layers.extend(cam_file_layers(p))
    return layers


def slide_file_layers(path: Path, mpp: float | None = None) -> list[LayerData]:
    """A multiscale slide layer and its ground-truth layer ``"<name> ground truth"``: the ``<name>.xml`` /
    ``<name>.geojson`` beside it, or, when there is none (or it cannot be read: a warning says why), an empty
    layer to draw in (:func:`empty_annotation_layer`).

    ``mpp`` (level-0 micrometres per pixel) replaces the file's value, e.g. for a slide whose file lacks it."""
    slide = open_slide(path, mpp=mpp)
    layers = [slide_layer(slide)]
    name = f"{file_name(path)} ground truth"
    ann_path = annotations_beside(path)
    if ann_path is not None:
        try:
            annotations = read_annotations(ann_path).clip(*slide.shape)
        except Exception as exc:  # a broken annotation file must not hide the slide
            warnings.warn(f"{ann_path}: ground truth not shown: {exc}", UserWarning, stacklevel=2)
        else:
            return [*layers, annotation_layer(annotations, slide.mpp, name=name, slide_path=slide.path)]
    return [*layers, empty_annotation_layer(slide, name)]


def cxr_file_layers(path: Path) -> list[LayerData]:
    """A grayscale chest X-ray layer with its pixel spacing (mm) as scale; when a cohort's ``labels.csv`` lists the
    file, also its ground-truth boxes layer ``"<name> lesion boxes"`` from ``lesions.csv`` (empty when the image has
    no boxes; :func:`~napari_patchdx.layerdata.cxr_truth.cxr_truth_layer`)."""
    cxr = read_cxr(path)
    image = cxr_layer(cxr)
    truth = cohort_truth_layers(
        path, spacing=cxr.spacing, shape=cxr.image.shape, name=f"{image[1]['name']} lesion boxes"
    )
    return [image, *truth]


def annotation_file_layers(path: Path) -> list[LayerData]:
    """An annotation file as Shapes; aligned in micrometres when a slide with the same name sits beside it."""
    annotations = read_annotations(path)
    if not len(annotations.regions):
        raise InputFileError(path, "holds no polygon annotations (points and lines are not read)")
    mpp: Any = None
    slide_path: Path | None = None
    for sibling in sorted(path.parent.glob(path.stem + ".*")):
        if sibling.suffix.lower() in SLIDE_SUFFIXES | TIFF_SUFFIXES | DICOM_SUFFIXES:
            try:
                with open_slide(sibling) as slide:
                    mpp = slide.mpp
                    annotations = annotations.clip(*slide.shape)
                slide_path = sibling
                break
            except Exception:
                continue
    return [annotation_layer(annotations, mpp, name=f"{path.stem} ground truth", slide_path=slide_path)]


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
    """A Labels layer (1 = tissue) of a :class:`~napari_patchdx.sampling.tissue.TissueMask`, aligned to its slide."""
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
    """A Points layer of lesion points (a :class:`~napari_patchdx.evaluation.PointsTable`), coloured by probability.

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


# ---------------------------------------------------------------------------------------------------------------
# float maps: slide heatmaps and X-ray class activation maps
# ---------------------------------------------------------------------------------------------------------------

#: colormap of heatmap layers (probability 0 -> black, 1 -> pale yellow)
HEATMAP_COLORMAP = "inferno"
#: colormap of CAM layers
CAM_COLORMAP = "turbo"


def heatmap_layer(
    heatmap: np.ndarray,
    grid: Grid,
    name: str | None = None,
    slide: str | os.PathLike[str] | Slide | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    unreadable: Sequence[Sequence[int]] = (),
    opacity: float = 0.5,
) -> LayerData:
    """An Image layer of a slide heatmap, aligned to the slide's layer.

    Args:
        heatmap: float (rows, cols) probabilities in [0, 1], one per grid cell; NaN = not evaluated, drawn
            transparent. The array is used as is (not copied) when it is already float32, so a widget can fill it.
        grid: where the cells lie: cell ``(r, c)`` covers the level-0 block ``origin + [r, r + 1) * spacing``
            (a :class:`~napari_patchdx.inference.HeatmapResult`'s ``grid``); its ``mpp`` puts the layer in
            micrometres like :func:`slide_layer`, so a cell's centre lands on the centre of its level-0 block.
        name: layer name (default ``"<slide stem> heatmap"``, or ``"heatmap"``).
        slide: the slide file (or opened slide) the heatmap belongs to, recorded in the metadata.
        path: the heatmap file, when it was read from one.
        unreadable: level regions ``(level, y, x, h, w)`` of tiles that could not be decoded (kept in the metadata
            so a saved heatmap keeps them).
        opacity: layer opacity (the slide shows through).

    Colormap ``inferno`` with contrast limits fixed to (0, 1), so colours mean the same probability in every
    heatmap. ``metadata["patchdx"]`` holds ``kind = "heatmap"``, the grid (``Grid.to_dict``), the slide and path.
    """
    data = np.asarray(heatmap, dtype=np.float32)
    if data.ndim != 2 or tuple(data.shape) != tuple(grid.shape):
        raise ValueError(f"heatmap of shape {data.shape} does not match its grid of shape {tuple(grid.shape)}")
    slide_path = None
    if slide is not None:
        slide_path = str(slide.path) if isinstance(slide, Slide) else str(slide)
    if name is None:
        name = f"{file_name(slide_path)} heatmap" if slide_path else "heatmap"
    kwargs: dict[str, Any] = {
        "name": name,
        "colormap": HEATMAP_COLORMAP,
        "contrast_limits": [0.0, 1.0],
        "opacity": float(opacity),
        "blending": "translucent",
        "interpolation2d": "nearest",
        "units": _units(grid.mpp),
        "metadata": {
            "patchdx": {
                "kind": "heatmap",
                "grid": grid.to_dict(),
                "mpp": grid.mpp,
                "slide": slide_path,
                "path": None if path is None else str(path),
                "unreadable": [[int(v) for v in region] for region in unreadable],
                "values": "tumour probability; NaN = not evaluated",
            }
        },
        **grid.napari(),
    }
    return data, kwargs, "image"


def heatmap_file_layers(path: str | os.PathLike[str]) -> list[LayerData]:
    """A heatmap file (``<name>.ome.tif`` + sidecar ``<name>.json`` holding its grid) as an aligned heatmap layer.

    Raises:
        InputFileError: the sidecar is missing or holds no valid grid, or the image does not match the grid.
    """
    from ..io.float_maps import read_float_image

    path = Path(path)
    sidecar = float_map_sidecar(path)
    side = read_sidecar(path)
    if sidecar is None or side is None:
        where = sidecar.name if sidecar is not None else "<name>.json"
        raise InputFileError(
            path, f"heatmap sidecar {where} is missing or unreadable (it holds the grid that places the heatmap)"
        )
    if side.get("format") not in (None, HEATMAP_FORMAT):
        raise InputFileError(sidecar, f"is not a heatmap sidecar (format {side.get('format')!r})")
    try:
        grid = Grid.from_dict(side["grid"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputFileError(sidecar, f"holds no valid heatmap grid ({exc!r})") from None
    heatmap = read_float_image(path)
    if heatmap.shape != tuple(grid.shape):
        raise InputFileError(path, f"heatmap of shape {heatmap.shape} does not match its grid {tuple(grid.shape)}")
    name = float_map_name(path) or path.stem
    label = name[: -len(".heatmap")] if name.lower().endswith(".heatmap") else name
    try:
        unreadable = [[int(v) for v in region] for region in side.get("unreadable") or []]
    except (TypeError, ValueError):
        unreadable = []  # a damaged note about unreadable tiles does not hide the heatmap
    layer = heatmap_layer(
        heatmap, grid, name=f"{label} heatmap", slide=side.get("slide"), path=path, unreadable=unreadable
    )
    if side.get("kind") == "difference":  # a corrections round's after - before: diverging colours around 0
        data, kwargs, kind = layer
        label = label.removesuffix(".difference")
        layer = (
            data,
            {**kwargs, "name": f"{label} difference", "colormap": "PiYG", "contrast_limits": [-1.0, 1.0]},
            kind,
        )
    return [layer]


def cam_layers(
    prediction: Any,
    name: str | None = None,
    spacing: tuple[float, float] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    opacity: float = 0.5,
) -> list[LayerData]:
    """One Image layer per class of a chest X-ray prediction, aligned to the X-ray's layer.

    Args:
        prediction: a :class:`~napari_patchdx.inference.CxrPrediction` (``classes``, ``probabilities``, ``cams`` of
            shape (K, H, W) at the X-ray's native size, ``source``).
        name: the X-ray's name in the layer names (default: the source file's stem, or ``"x-ray"``).
        spacing: the X-ray's (row, col) pixel spacing in millimetres, as :func:`cxr_layer` uses it; None when the
            X-ray layer is in pixels. CAM pixel ``(i, j)`` is X-ray pixel ``(i, j)``, so both layers get the
            same transform.
        path: the CAM file, when read from one.
        opacity: layer opacity.

    Layer ``k`` is named ``"<name> CAM <class> (p=0.73)"``; its ``metadata["patchdx"]`` holds ``kind = "cam"``,
    ``class``, ``probability`` and all the image's ``probabilities`` (class -> probability). Contrast limits span
    the class's CAM (logit units). Only the most probable class is visible at first.
    """
    classes = [str(c) for c in prediction.classes]
    probabilities = [float(p) for p in np.asarray(prediction.probabilities, dtype=np.float64).reshape(-1)]
    cams = np.asarray(prediction.cams, dtype=np.float32)
    if cams.ndim == 2:
        cams = cams[None]
    if cams.ndim != 3 or cams.shape[0] != len(classes) or len(probabilities) != len(classes):
        raise ValueError(
            f"a prediction for {len(classes)} classes with {len(probabilities)} probabilities and CAMs of shape "
            f"{cams.shape}"
        )
    source = getattr(prediction, "source", None)
    if name is None:
        name = file_name(source) if source is not None else "x-ray"
    top = int(np.argmax(probabilities)) if probabilities else 0
    everything = dict(zip(classes, probabilities, strict=True))
    layers: list[LayerData] = []
    for k, (cls, p) in enumerate(zip(classes, probabilities, strict=True)):
        cam = cams[k]
        finite = cam[np.isfinite(cam)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if not hi > lo:
            hi = lo + 1.0
        kwargs: dict[str, Any] = {
            "name": f"{name} CAM {cls} (p={p:.2f})",
            "colormap": CAM_COLORMAP,
            "contrast_limits": [lo, hi],
            "opacity": float(opacity),
            "blending": "translucent",
            "visible": k == top,
            "metadata": {
                "patchdx": {
                    "kind": "cam",
                    "frame": "pixel",
                    "image": name,
                    "class": cls,
                    "class_index": k,
                    "probability": p,
                    "probabilities": everything,
                    "classes": classes,
                    "shape": [int(v) for v in cam.shape],
                    "spacing": None if spacing is None else [float(s) for s in spacing],
                    "source": None if source is None else str(source),
                    "path": None if path is None else str(path),
                    "values": "class activation map in logit units",
                }
            },
        }
        if spacing is not None:
            kwargs["scale"] = tuple(float(s) for s in spacing)
            kwargs["units"] = ("mm", "mm")
        layers.append((cam, kwargs, "image"))
    return layers


class _Cams:
    """The fields of a prediction that :func:`cam_layers` reads (so reading a CAM file does not import torch)."""

    def __init__(self, classes: list[str], probabilities: list[float], cams: np.ndarray, source: Path | None):
        self.classes = classes
        self.probabilities = probabilities
        self.cams = cams
        self.source = source


def cam_file_layers(path: str | os.PathLike[str]) -> list[LayerData]:
    """A CAM file (``<name>.ome.tif``, (class, Y, X) float32, + sidecar ``<name>.json`` with classes and
    probabilities) as one layer per class.

    The layers are scaled like the X-ray layer: by the sidecar's ``spacing`` (mm) when it has one, else by the
    pixel spacing of its ``source`` X-ray when that file is still there.

    Raises:
        InputFileError: the sidecar is missing or inconsistent with the image.
    """
    from ..io.float_maps import read_float_image

    path = Path(path)
    sidecar = float_map_sidecar(path)
    side = read_sidecar(path)
    if sidecar is None or side is None or side.get("format") != CAM_FORMAT:
        where = sidecar.name if sidecar is not None else "<name>.json"
        raise InputFileError(path, f"CAM sidecar {where} is missing or not a napari-patchdx CAM sidecar")
    try:
        classes = [str(c) for c in side["classes"]]
        probabilities = [float(p) for p in side["probabilities"]]
        shape = [int(v) for v in side["shape"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(sidecar, f"lacks valid classes / probabilities / shape ({exc!r})") from None
    cams = read_float_image(path)
    if cams.ndim == 2:
        cams = cams[None]
    if len(probabilities) != len(classes) or list(cams.shape) != [len(classes), *shape]:
        raise InputFileError(
            path,
            f"CAMs of shape {cams.shape} do not match their sidecar ({len(classes)} classes, "
            f"{len(probabilities)} probabilities, image {shape})",
        )
    source = Path(side["source"]) if side.get("source") else None
    spacing = _cam_spacing(side, source)
    name = float_map_name(path) or path.stem
    label = name[: -len(".cam")] if name.lower().endswith(".cam") else name
    return cam_layers(_Cams(classes, probabilities, cams, source), name=label, spacing=spacing, path=path)


def _cam_spacing(side: dict[str, Any], source: Path | None) -> tuple[float, float] | None:
    """Pixel spacing (mm) for CAM layers: the sidecar's, else the source X-ray's (read when it exists)."""
    spacing = side.get("spacing")
    if isinstance(spacing, list | tuple) and len(spacing) == 2:
        return (float(spacing[0]), float(spacing[1]))
    if "spacing" in side or source is None or not source.is_file():
        return None
    try:
        return read_cxr(source).spacing
    except Exception as exc:  # the CAMs still open, in pixels
        warnings.warn(
            f"{source}: pixel spacing not read ({exc}); the CAMs are shown in pixels", UserWarning, stacklevel=3
        )
        return None
