"""QuPath GeoJSON annotations: reading (FeatureCollection, Feature, geometry or list of Features) and writing.

(x, y) appears only here, at the format boundary; regions hold level-0 (y, x).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..._fsutil import atomic_write_text
from ...errors import InputFileError
from .model import EXCLUSION, NORMAL, TUMOR, AnnotationSet, PathLike, Region, canonical_label, warn_user
from .polygon import is_degenerate, points_in_ring
from .writing import check_finite, hash_color, ring_xy

__all__ = ["parse_geojson", "write_geojson"]

_ASAP_CODE = re.compile(r"_\d+")
_GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
#: QuPath classification colours: its Tumor red and Ignore* grey, and green for normal tissue
_QUPATH_COLORS = {TUMOR: [200, 0, 0], EXCLUSION: [180, 180, 180], NORMAL: [52, 199, 89]}


class _GeometryError(Exception):
    """Invalid geometry inside one feature (turned into InputFileError with the feature index)."""


def parse_geojson(data: bytes, path: Path) -> list[Region]:
    """The regions of GeoJSON ``data`` read from ``path`` (see :func:`~.read.read_annotations`)."""
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # undecodable bytes, absurd nesting
        raise InputFileError(path, f"invalid JSON: {exc}") from None

    regions: list[Region] = []
    skipped: dict[str, int] = {}
    for index, feature in enumerate(_geojson_features(obj, path)):
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise InputFileError(path, f"feature {index}: properties is not a JSON object")
        group = _geojson_class(props)
        label = canonical_label(group)
        name = props.get("name")
        name = name if isinstance(name, str) else ""
        try:
            for exterior, holes in _geojson_polygons(feature.get("geometry"), skipped):
                regions.append(Region(exterior, holes, label, name, group))
        except _GeometryError as exc:
            raise InputFileError(path, f"feature {index}: {exc}") from None
    if skipped:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(skipped.items()))
        n = sum(skipped.values())
        if not regions:
            raise InputFileError(
                path,
                f"nothing usable: all {n} geometr{'y' if n == 1 else 'ies'} enclose no area ({kinds}); read as an "
                "empty ground truth, a tumour slide would train as normal. Draw the tumour as polygons",
            )
        warn_user(f"{path}: skipped {n} non-polygon geometr{'y' if n == 1 else 'ies'} ({kinds})", stacklevel=4)
    return regions


def _geojson_features(obj: Any, path: Path) -> list[Any]:
    def from_item(item: Any, where: str) -> Any:
        if isinstance(item, dict) and item.get("type") == "Feature":
            return item
        if isinstance(item, dict) and item.get("type") in _GEOMETRY_TYPES:
            return {"type": "Feature", "geometry": item, "properties": {}}
        raise InputFileError(path, f"{where} is not a GeoJSON Feature")

    if isinstance(obj, list):
        return [from_item(item, f"feature {i}") for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        kind = obj.get("type")
        if kind == "FeatureCollection":
            features = obj.get("features")
            if not isinstance(features, list):
                raise InputFileError(path, "FeatureCollection without a 'features' list")
            return [from_item(item, f"feature {i}") for i, item in enumerate(features)]
        if kind == "Feature" or kind in _GEOMETRY_TYPES:
            return [from_item(obj, "top-level object")]
    raise InputFileError(path, "not GeoJSON: expected a FeatureCollection, a Feature, a geometry or a list of Features")


def _geojson_class(props: Mapping[str, Any]) -> str:
    """The class name as written: classification.name / .names (QuPath), classification, class or label."""
    cls = props.get("classification")
    if isinstance(cls, dict):
        if isinstance(cls.get("name"), str):
            return cls["name"]
        names = cls.get("names")
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return ": ".join(names)
    elif isinstance(cls, str):
        return cls
    for key in ("class", "label"):
        if isinstance(props.get(key), str):
            return props[key]
    return ""


def _geojson_polygons(
    geometry: Any, skipped: dict[str, int], depth: int = 0
) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
    """Validated (exterior, holes) rings, (y, x) open, of every polygon in a geometry."""
    if geometry is None:
        skipped["null geometry"] = skipped.get("null geometry", 0) + 1
        return
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        raise _GeometryError("geometry is not a GeoJSON geometry object")
    kind = geometry["type"]
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list) or depth > 8:
            raise _GeometryError("GeometryCollection without a 'geometries' list")
        for member in members:
            yield from _geojson_polygons(member, skipped, depth + 1)
        return
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        yield _geojson_polygon(coords, "polygon")
    elif kind == "MultiPolygon":
        if not isinstance(coords, list):
            raise _GeometryError("MultiPolygon coordinates are not a list of polygons")
        if not coords:
            skipped["empty MultiPolygon"] = skipped.get("empty MultiPolygon", 0) + 1
        for part, polygon in enumerate(coords):
            yield _geojson_polygon(polygon, f"polygon {part}")
    else:
        skipped[kind] = skipped.get(kind, 0) + 1


def _geojson_polygon(rings: Any, what: str) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    if not isinstance(rings, list) or not rings:
        raise _GeometryError(f"{what}: coordinates must be a non-empty list of linear rings")
    exterior = _geojson_ring(rings[0], f"{what}, exterior ring")
    holes = []
    for k, ring in enumerate(rings[1:]):
        hole = _geojson_ring(ring, f"{what}, hole {k}")
        if not points_in_ring(hole, exterior).all():
            raise _GeometryError(f"{what}, hole {k} is not inside its exterior ring (wrong nesting)")
        holes.append(hole)
    return exterior, tuple(holes)


def _geojson_ring(ring: Any, what: str) -> np.ndarray:
    """A GeoJSON linear ring of [x, y] positions as an open (N, 2) (y, x) float64 ring."""
    if not isinstance(ring, list) or not all(isinstance(p, list) for p in ring):
        raise _GeometryError(f"{what} is not a list of [x, y] positions (wrong nesting)")
    if len(ring) < 4:
        raise _GeometryError(f"{what} has {len(ring)} positions; a closed linear ring needs at least 4")
    values = np.empty((len(ring), 2), dtype=np.float64)
    for k, pos in enumerate(ring):
        if len(pos) < 2:
            raise _GeometryError(f"{what}, position {k} has fewer than 2 coordinates")
        x, y = pos[0], pos[1]
        if type(x) not in (int, float) or type(y) not in (int, float):
            raise _GeometryError(f"{what}, position {k} has a non-numeric coordinate {pos[:2]!r}")
        try:
            fx, fy = float(x), float(y)
        except OverflowError:
            fx = fy = math.inf
        if not (math.isfinite(fx) and math.isfinite(fy)):
            raise _GeometryError(f"{what}, position {k} has a non-finite coordinate {pos[:2]!r}")
        values[k] = (fy, fx)
    if not np.array_equal(values[0], values[-1]):
        raise _GeometryError(f"{what} is not closed: its first and last positions differ")
    values = values[:-1]
    if is_degenerate(values):
        raise _GeometryError(f"{what} has zero area")
    return values


# writing


def _geojson_class_name(region: Region) -> str:
    if region.label == EXCLUSION:
        return "Exclusion"
    group = region.group.strip()
    if group and not _ASAP_CODE.fullmatch(group) and group.lower() != "none" and canonical_label(group) == region.label:
        return region.group
    if region.label == TUMOR:
        return "Tumor"
    return region.label[:1].upper() + region.label[1:]  # "normal" -> "Normal"


def write_geojson(annotations: AnnotationSet, path: PathLike, *, overwrite: bool = True) -> Path:
    """Write QuPath-style GeoJSON, atomically; returns the path written.

    A FeatureCollection with one Feature per region: Polygon geometry with closed rings of level-0 [x, y]
    positions (exterior first, then holes; vertex order kept as is, not re-oriented) and properties
    ``{"objectType": "annotation", "name": ..., "classification": {"name": ..., "color": [r, g, b]}}``
    (``name`` only when the region has one). The class name is the region's group when it is a real class
    name consistent with the label, ``"Tumor"`` for tumour regions from ASAP groups (``_0``, ``_1``),
    ``"Exclusion"`` for every exclusion region, else the capitalised label (``"Normal"`` for normal tissue).
    Coordinates keep full float precision.

    Raises:
        FileNotFoundError: the target directory does not exist. FileExistsError: the target exists and
        ``overwrite`` is False. ValueError: a vertex is not finite. Nothing is written in any of these cases.
    """
    check_finite(annotations)
    regions = list(annotations.regions)

    def write(fh: TextIO) -> None:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for index, region in enumerate(regions):
            cls = _geojson_class_name(region)
            color = _QUPATH_COLORS.get(canonical_label(cls), list(hash_color(cls)))
            props: dict[str, Any] = {"objectType": "annotation"}
            if region.name:
                props["name"] = region.name
            props["classification"] = {"name": cls, "color": color}
            rings = []
            for ring in (region.exterior, *region.holes):
                xy = ring_xy(ring)
                rings.append([*xy, xy[0]])
            feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings}, "properties": props}
            fh.write(("" if index == 0 else ",\n") + json.dumps(feature, allow_nan=False))
        fh.write("\n]}\n")

    return atomic_write_text(path, write, overwrite=overwrite)
