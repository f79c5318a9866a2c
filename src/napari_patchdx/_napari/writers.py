"""npe2 writers: Shapes layers -> ASAP / CAMELYON16 XML and QuPath GeoJSON (level-0 coordinates); heatmap and
CAM Image layers -> float32 OME-TIFF with the JSON sidecar that places them (:func:`write_float_ometiff`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_write_text
from ..errors import ConfigError
from ..geometry import Grid, world_to_level0
from ..io.names import CAM_FORMAT, HEATMAP_FORMAT, float_map_sidecar


def shapes_to_annotations(data: list[np.ndarray], attributes: dict[str, Any]) -> Any:
    """Turn a Shapes layer's data and attributes into an :class:`~napari_patchdx.io.annotations.AnnotationSet`.

    The layer must say which frame its data are in: layers made by this plugin (ground truth, patches) hold
    continuous level-0 (y, x) and say so in ``metadata["patchdx"]["frame"] == "level0"``. For any other layer the
    slide's microns per pixel must be given as ``metadata["patchdx"]["mpp"]`` (world coordinates are then taken
    as micrometres) or ``metadata["patchdx"]["frame"] = "world_px"`` (world coordinates are level-0 pixels);
    otherwise the layer is refused rather than written at a wrong scale.
    """
    from ..layerdata.shapes import from_layer_data

    meta = (attributes.get("metadata") or {}).get("patchdx", {})
    name = attributes.get("name", "shapes")
    frame = meta.get("frame")
    if frame == "level0":
        polygons = [np.asarray(d, dtype=np.float64)[:, -2:] for d in data]
    elif frame == "world_px" or meta.get("mpp"):
        scale = np.asarray(attributes.get("scale", (1.0, 1.0)), dtype=np.float64)[-2:]
        translate = np.asarray(attributes.get("translate", (0.0, 0.0)), dtype=np.float64)[-2:]
        mpp = None if frame == "world_px" else float(meta["mpp"])
        polygons = [world_to_level0(np.asarray(d, dtype=np.float64)[:, -2:] * scale + translate, mpp) for d in data]
    else:
        raise ConfigError(
            f"layer {name!r}: cannot tell the level-0 pixel size of its coordinates. Draw annotations in a "
            "ground-truth layer opened with the slide, or set layer.metadata['patchdx'] = {'mpp': <slide um/px>} "
            "(world in micrometres) or {'frame': 'world_px'} (world in level-0 pixels)"
        )
    features = attributes.get("features")
    if features is not None and hasattr(features, "to_dict"):
        features = {k: list(v) for k, v in features.to_dict(orient="list").items()}
    shape_types = attributes.get("shape_type")
    return from_layer_data(polygons, features or None, shape_types)


def write_asap_xml(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Shapes layer as ASAP / CAMELYON16 XML."""
    from ..io.annotations.asap import write_asap_xml as _write

    return [str(_write(shapes_to_annotations(data, attributes), Path(path)))]


def write_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Shapes layer as QuPath GeoJSON."""
    from ..io.annotations.geojson import write_geojson as _write

    return [str(_write(shapes_to_annotations(data, attributes), Path(path)))]


#: the sidecar versions written here (as :mod:`napari_patchdx.inference` writes them)
HEATMAP_SIDECAR_VERSION = 1
CAM_SIDECAR_VERSION = 1


def write_float_ometiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a heatmap or CAM Image layer as float32 OME-TIFF plus its JSON sidecar.

    ``path`` must end with ``.ome.tif`` / ``.ome.tiff``; the sidecar is ``<name>.json`` beside ``<name>.ome.tif``,
    in the format :mod:`napari_patchdx.inference` writes, so the file reopens through the reader in the same place:

    * heatmap layers (``metadata["patchdx"]["kind"] == "heatmap"``, or any float layer whose metadata has a
      ``grid``): the sidecar holds the grid (level-0 spacing, origin, mpp); the OME physical pixel size is the
      cell size in micrometres. If the layer was moved or rescaled in napari, the grid is taken from its current
      ``scale`` / ``translate`` (what is shown is what is saved). A float layer without a grid is accepted when its
      metadata gives the slide's ``mpp`` (world in micrometres) or ``frame = "world_px"`` (world in level-0 px).
    * CAM layers (``kind == "cam"``): one (1, Y, X) class map with the class name, its probability, the X-ray's
      shape, spacing and source in the sidecar.

    Raises:
        ConfigError: the layer is multiscale, RGB, not float, not 2-D, or its frame is unknown (a plain image layer
            with no patchdx metadata); the message names the layer and what to do.
    """
    name = str(meta.get("name", "layer"))
    target = Path(path)
    sidecar = float_map_sidecar(target)
    if sidecar is None:
        raise ConfigError(f"layer {name!r}: save heatmaps and CAMs as <name>.ome.tif (got {target.name})")
    if meta.get("multiscale") or isinstance(data, list | tuple):
        raise ConfigError(f"layer {name!r}: a multiscale image is not a heatmap or CAM; save it with another writer")
    if meta.get("rgb"):
        raise ConfigError(f"layer {name!r}: an RGB image is not a heatmap or CAM; save it with another writer")
    array = np.asarray(data)
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(
            f"layer {name!r}: {array.dtype} data is not a float map; this writer saves heatmaps and CAMs (float32)"
        )
    if array.ndim != 2:
        raise ConfigError(f"layer {name!r}: a heatmap or CAM is 2-D (Y, X), got shape {array.shape}")
    patchdx = dict((meta.get("metadata") or {}).get("patchdx") or {})
    if patchdx.get("kind") == "cam":
        return [str(p) for p in _write_cam(target, sidecar, array, patchdx, name)]
    grid = _layer_grid(array.shape, meta, patchdx, name)
    return [str(p) for p in _write_heatmap(target, sidecar, array, grid, patchdx, name)]


def _layer_grid(shape: tuple[int, ...], meta: dict[str, Any], patchdx: dict[str, Any], name: str) -> Grid:
    """The grid of a float layer: its metadata grid when the layer still sits where that grid puts it, else the
    grid its current ``scale`` / ``translate`` describe (world in micrometres when the mpp is known)."""
    scale = np.asarray(meta.get("scale", (1.0, 1.0)), dtype=np.float64)[-2:]
    translate = np.asarray(meta.get("translate", (0.0, 0.0)), dtype=np.float64)[-2:]
    if patchdx.get("grid") is not None:
        try:
            saved = Grid.from_dict(patchdx["grid"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"layer {name!r}: metadata['patchdx']['grid'] is not a valid grid ({exc!r})") from None
        mpp = saved.mpp
        t = saved.napari()
        if (
            tuple(saved.shape) == tuple(shape)
            and np.allclose(t["scale"], scale)
            and np.allclose(t["translate"], translate)
        ):
            return saved
    elif patchdx.get("frame") == "world_px":
        mpp = None
    elif patchdx.get("mpp"):
        mpp = float(patchdx["mpp"])
    else:
        raise ConfigError(
            f"layer {name!r}: not a heatmap or CAM layer of napari-patchdx, so its place on a slide is unknown. "
            "Save heatmaps opened or computed by napari-patchdx, or set layer.metadata['patchdx'] = "
            "{'mpp': <slide um/px>} (world in micrometres) or {'frame': 'world_px'} (world in level-0 pixels)"
        )
    unit = 1.0 if mpp is None else float(mpp)
    spacing = scale / unit
    origin = translate / unit + 0.5 - 0.5 * spacing  # inverse of geometry.napari_transform
    if not (spacing > 0).all():
        raise ConfigError(f"layer {name!r}: scale {tuple(scale)} must be positive to place a heatmap")
    return Grid(
        (int(shape[0]), int(shape[1])),
        (float(spacing[0]), float(spacing[1])),
        (float(origin[0]), float(origin[1])),
        mpp,
    )


def _write_heatmap(
    path: Path, side: Path, data: np.ndarray, grid: Grid, patchdx: dict[str, Any], name: str
) -> list[Path]:
    from ..io.float_maps import write_float_image

    size = None if grid.mpp is None else (grid.spacing[0] * grid.mpp, grid.spacing[1] * grid.mpp)
    write_float_image(path, data, pixel_size_um=size)
    sidecar = {
        "format": HEATMAP_FORMAT,
        "version": HEATMAP_SIDECAR_VERSION,
        "slide": patchdx.get("slide"),
        "grid": grid.to_dict(),
        "values": patchdx.get("values") or "float map per grid cell; NaN = no value",
        "unreadable": list(patchdx.get("unreadable") or []),
        "layer": name,
    }
    atomic_write_text(side, json.dumps(sidecar, indent=1))
    return [path, side]


def _write_cam(path: Path, side: Path, data: np.ndarray, patchdx: dict[str, Any], name: str) -> list[Path]:
    from ..io.float_maps import write_float_image

    cls, probability = patchdx.get("class"), patchdx.get("probability")
    if cls is None or probability is None:
        raise ConfigError(f"layer {name!r}: a CAM layer needs metadata['patchdx'] 'class' and 'probability'")
    write_float_image(path, data[None], channel_names=[str(cls)])
    sidecar = {
        "format": CAM_FORMAT,
        "version": CAM_SIDECAR_VERSION,
        "classes": [str(cls)],
        "probabilities": [float(probability)],
        "shape": [int(v) for v in data.shape],
        "source": patchdx.get("source"),
        "spacing": patchdx.get("spacing"),
        "values": "class activation map in logit units, at the X-ray's native size (row, col)",
        "layer": name,
    }
    atomic_write_text(side, json.dumps(sidecar, indent=1))
    return [path, side]
