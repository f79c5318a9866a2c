"""npe2 writers: Shapes layers -> ASAP / CAMELYON16 XML and QuPath GeoJSON (level-0 coordinates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..geometry import world_to_level0


def shapes_to_annotations(data: list[np.ndarray], attributes: dict[str, Any]) -> Any:
    """Turn a Shapes layer's data and attributes into an :class:`~napari_patchdx.io.annotations.AnnotationSet`.

    The layer must say which frame its data are in: layers made by this plugin (ground truth, patches) hold
    continuous level-0 (y, x) and say so in ``metadata["patchdx"]["frame"] == "level0"``. For any other layer the
    slide's microns per pixel must be given as ``metadata["patchdx"]["mpp"]`` (world coordinates are then taken
    as micrometres) or ``metadata["patchdx"]["frame"] = "world_px"`` (world coordinates are level-0 pixels);
    otherwise the layer is refused rather than written at a wrong scale.
    """
    from ..io.annotations import from_layer_data

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
    from ..io.annotations import write_asap_xml as _write

    return [str(_write(shapes_to_annotations(data, attributes), Path(path)))]


def write_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Shapes layer as QuPath GeoJSON."""
    from ..io.annotations import write_geojson as _write

    return [str(_write(shapes_to_annotations(data, attributes), Path(path)))]
