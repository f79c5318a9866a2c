"""npe2 writers: Shapes layers -> ASAP / CAMELYON16 XML and QuPath GeoJSON, Points layers -> CAMELYON16 CSV and
QuPath GeoJSON detections (all in level-0 pixels); heatmap and CAM Image layers -> float32 OME-TIFF with the JSON
sidecar that places them (:func:`write_float_ometiff`).

A vector layer's frame (how its coordinates map to level-0 pixels) is resolved once, by :func:`layer_frame`, for
every writer and widget that turns a layer back into slide coordinates.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._fsutil import atomic_write_text
from ..errors import ConfigError
from ..geometry import Grid, world_to_level0
from ..io.names import CAM_FORMAT, HEATMAP_FORMAT, float_map_sidecar

#: how a vector layer's data map to level-0 pixels: ``"level0"`` (the data are continuous level-0 (y, x)) or
#: ``"world"`` (``data * scale + translate`` are world coordinates: micrometres when the mpp is known, else level-0
#: pixels)
Frame = Literal["level0", "world"]

_WHAT_TO_DO = (
    "Open the slide and draw the layer over it (napari's new-layer buttons, with the slide layer selected, make such "
    "a layer), or set layer.metadata['patchdx'] = {'mpp': <slide um/px>} (world in micrometres) or "
    "{'frame': 'world_px'} (world in level-0 pixels)"
)


def layer_frame(data: Any, attributes: dict[str, Any], viewer: Any = None) -> tuple[Frame, float | None]:
    """The frame of a Shapes or Points layer's data: ``("level0", None)`` or ``("world", mpp)``.

    In order:

    * layers made by this plugin (ground truth, patches, lesion points) hold continuous level-0 (y, x) and say so in
      ``metadata["patchdx"]["frame"] == "level0"``;
    * ``metadata["patchdx"]["mpp"]`` (world coordinates in micrometres at that many microns per level-0 pixel) or
      ``metadata["patchdx"]["frame"] == "world_px"`` (world coordinates in level-0 pixels);
    * any other layer (e.g. one added with napari's own new-layer button) takes the frame of the slides it lies
      over in the viewer: the slide layers (``metadata["patchdx"]["kind"] == "slide"``) whose world extent its
      points or vertices overlap (every slide when the layer is empty) must share one mpp, which gives the world
      unit (micrometres, or level-0 pixels for slides without an mpp).

    Args:
        data: the layer's data (Points: (n, D) array; Shapes: list of (k, D) vertex arrays), last two axes (y, x).
        attributes: the layer's attributes as ``layer.as_layer_data_tuple()[1]`` gives them (``name``,
            ``metadata``, ``scale``, ``translate``, ``rotate``, ``shear``, ``affine``).
        viewer: the napari viewer that holds the layer (default: :func:`napari.current_viewer`); only consulted
            for layers that do not say their frame.

    Raises:
        ConfigError: a world-frame layer that is rotated, sheared or has an affine transform; a layer whose frame
            cannot be resolved (not in the viewer, over no slide, or over slides of different pixel sizes). The
            message names the layer and says what to do.
    """
    meta = (attributes.get("metadata") or {}).get("patchdx") or {}
    name = attributes.get("name", "layer")
    if meta.get("frame") == "level0":
        return "level0", None
    _check_plain_transform(attributes, name)
    if meta.get("frame") == "world_px":
        return "world", None
    if meta.get("mpp"):
        return "world", float(meta["mpp"])
    return "world", _slide_mpp_under(data, attributes, name, viewer)


def _check_plain_transform(attributes: dict[str, Any], name: str) -> None:
    """Refuse a layer whose world is more than ``data * scale + translate`` (the writers would misplace it)."""

    def identity(value: Any, zero: bool) -> bool:
        if value is None:
            return True
        arr = np.asarray(value, dtype=np.float64)
        if zero or arr.ndim == 0:  # shear values, or a rotation given as an angle
            return bool(np.allclose(arr, 0.0))
        return bool(np.allclose(arr, np.eye(arr.shape[0])))

    rotate, shear, affine = (attributes.get(k) for k in ("rotate", "shear", "affine"))
    if not (identity(rotate, False) and identity(shear, True) and identity(affine, False)):
        raise ConfigError(
            f"layer {name!r} is rotated, sheared or has an affine transform; its coordinates cannot be written in "
            "slide pixels. Reset its rotate / shear / affine to the identity (e.g. layer.affine = None) and save again"
        )


def _world_box(data: Any, attributes: dict[str, Any]) -> np.ndarray | None:
    """(2, 2) world [[y0, x0], [y1, x1]] box of a layer's points or vertices, or None when it has none."""
    parts = [np.asarray(d, dtype=np.float64) for d in (data if isinstance(data, list | tuple) else [data])]
    parts = [d.reshape(-1, d.shape[-1])[:, -2:] for d in parts if d.ndim >= 1 and d.size and d.shape[-1] >= 2]
    if not parts:
        return None
    yx = np.concatenate(parts)
    scale, translate = _scale_translate(attributes)
    world = yx * scale + translate
    return np.stack([world.min(axis=0), world.max(axis=0)])


def _scale_translate(attributes: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The last two axes of a layer's ``scale`` and ``translate``."""
    scale = np.asarray(attributes.get("scale", (1.0, 1.0)), dtype=np.float64)[-2:]
    translate = np.asarray(attributes.get("translate", (0.0, 0.0)), dtype=np.float64)[-2:]
    return scale, translate


def _slide_mpp_under(data: Any, attributes: dict[str, Any], name: str, viewer: Any) -> float | None:
    """The mpp of the slides a layer lies over in ``viewer`` (None: slides without an mpp, world in pixels)."""
    if viewer is None:
        import napari

        viewer = napari.current_viewer()
    unknown = f"layer {name!r}: cannot tell the level-0 pixel size of its coordinates"
    if viewer is None or name not in viewer.layers:
        raise ConfigError(f"{unknown}: it is not in a napari viewer showing its slide. {_WHAT_TO_DO}")
    slides = [layer for layer in viewer.layers if layer.metadata.get("patchdx", {}).get("kind") == "slide"]
    box = _world_box(data, attributes)
    if box is not None:
        slides = [s for s in slides if _overlaps(box, np.asarray(s.extent.world, dtype=np.float64)[:, -2:])]
    if not slides:
        raise ConfigError(f"{unknown}: it lies over no slide in the viewer. {_WHAT_TO_DO}")
    mpps = {s.name: s.metadata["patchdx"].get("mpp") for s in slides}
    first = next(iter(mpps.values()))
    same = all(
        (m is None and first is None) or (m is not None and first is not None and np.isclose(m, first, rtol=1e-6))
        for m in mpps.values()
    )
    if not same:
        listed = ", ".join(f"{n!r}: {'unknown' if m is None else f'{m:g}'} um/px" for n, m in mpps.items())
        raise ConfigError(
            f"{unknown}: it lies over slides of different pixel sizes ({listed}). Remove the other slides from the "
            "viewer, or set layer.metadata['patchdx'] = {'mpp': <its slide's um/px>}"
        )
    return None if first is None else float(first)


def _overlaps(box: np.ndarray, extent: np.ndarray) -> bool:
    """Whether two (2, 2) [[lo_y, lo_x], [hi_y, hi_x]] world boxes overlap (touching counts)."""
    return bool(np.all(box[0] <= extent[1]) and np.all(extent[0] <= box[1]))


def shapes_to_annotations(data: list[np.ndarray], attributes: dict[str, Any], viewer: Any = None) -> Any:
    """Turn a Shapes layer's data and attributes into an :class:`~napari_patchdx.io.annotations.AnnotationSet`
    with vertices in continuous level-0 (y, x) pixels.

    The layer's frame is resolved by :func:`layer_frame` (plugin layers hold level-0 coordinates; any other layer
    needs its slide's mpp, from its metadata or from the slides it lies over in ``viewer``); a layer whose frame
    cannot be resolved is refused rather than written at a wrong scale.
    """
    from ..layerdata.shapes import from_layer_data

    frame, mpp = layer_frame(data, attributes, viewer)
    if frame == "level0":
        polygons = [np.asarray(d, dtype=np.float64)[:, -2:] for d in data]
    else:
        scale, translate = _scale_translate(attributes)
        polygons = [world_to_level0(np.asarray(d, dtype=np.float64)[:, -2:] * scale + translate, mpp) for d in data]
    features = attributes.get("features")
    if features is not None and hasattr(features, "to_dict"):
        features = {k: list(v) for k, v in features.to_dict(orient="list").items()}
    shape_types = attributes.get("shape_type")
    return from_layer_data(polygons, features or None, shape_types)


def _refuse_visibly(write: Any) -> list[str]:
    """Run an npe2 writer body; a refusal (ConfigError) is also issued as a warning before it propagates.

    napari's *File > Save Selected Layers* shows the error itself, but ``viewer.layers.save(...)`` turns any
    ValueError of a writer into "no writer found"; the warning keeps the reason visible there.
    """
    try:
        return write()
    except ConfigError as exc:
        warnings.warn(str(exc), UserWarning, stacklevel=3)
        raise


def write_asap_xml(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Shapes layer as ASAP / CAMELYON16 XML (vertices in level-0 pixels)."""
    from ..io.annotations.asap import write_asap_xml as _write

    return _refuse_visibly(lambda: [str(_write(shapes_to_annotations(data, attributes), Path(path)))])


def write_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Shapes layer as QuPath GeoJSON annotations (vertices in level-0 pixels)."""
    from ..io.annotations.geojson import write_geojson as _write

    return _refuse_visibly(lambda: [str(_write(shapes_to_annotations(data, attributes), Path(path)))])


def points_to_table(data: Any, attributes: dict[str, Any], viewer: Any = None) -> Any:
    """A Points layer as a :class:`~napari_patchdx.evaluation.PointsTable` in continuous level-0 (y, x) pixels.

    The frame comes from :func:`layer_frame` (lesion-point layers of this plugin hold level-0 coordinates; a layer
    added by hand over a slide takes that slide's mpp; otherwise the layer is refused). Each point's probability is
    the layer's ``probability`` feature when it has one, else 1.0 (a point placed by hand is a sure detection);
    the conversion itself is :func:`napari_patchdx.layerdata.evaluation.points_from_layer`, as the Evaluate widget
    uses it. A plugin layer that shows only the most probable of a slide's points (``metadata["patchdx"]["total"]``
    larger than the layer) is written as shown, with a warning.

    Raises:
        ConfigError: the frame cannot be resolved (see :func:`layer_frame`), or the probabilities are not finite
            numbers in [0, 1]; the message names the layer.
    """
    from ..layerdata.evaluation import points_from_layer

    name = attributes.get("name", "points")
    frame, mpp = layer_frame(data, attributes, viewer)
    scale, translate = _scale_translate(attributes)
    try:
        table = points_from_layer(
            np.asarray(data, dtype=np.float64),
            attributes.get("features"),
            {"patchdx": {"frame": frame, "mpp": mpp}},
            tuple(scale),
            tuple(translate),
        )
    except ConfigError as exc:
        raise ConfigError(f"layer {name!r}: {exc}") from None
    meta = (attributes.get("metadata") or {}).get("patchdx") or {}
    total = meta.get("total")
    if isinstance(total, int) and total > len(table):
        warnings.warn(
            f"layer {name!r} holds {len(table)} of its slide's {total} lesion points (the most probable ones); the "
            f"file gets those {len(table)}. The evaluation's points/ folder holds them all",
            UserWarning,
            stacklevel=2,
        )
    return table


def write_points_csv(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Points layer as a CAMELYON16 CSV (rows ``probability,X,Y``, X and Y the
    level-0 pixel holding each point), written by :meth:`~napari_patchdx.evaluation.PointsTable.to_camelyon_csv`
    as the evaluate stage writes ``points/<name>.csv``. Probabilities: the layer's ``probability`` feature, else
    1.0 (see :func:`points_to_table`)."""
    return _refuse_visibly(lambda: [str(points_to_table(data, attributes).to_camelyon_csv(Path(path)))])


def write_points_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Points layer as QuPath GeoJSON detections (``[x, y]`` in continuous level-0
    pixels, the probability as a measurement), written by :meth:`~napari_patchdx.evaluation.PointsTable.to_geojson`
    as the evaluate stage writes ``points/<name>.geojson``. Probabilities: the layer's ``probability`` feature,
    else 1.0 (see :func:`points_to_table`)."""
    return _refuse_visibly(lambda: [str(points_to_table(data, attributes).to_geojson(Path(path)))])


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
    scale, translate = _scale_translate(meta)
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
