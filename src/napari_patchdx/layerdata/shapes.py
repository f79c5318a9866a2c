"""napari Shapes layer data <-> :class:`~napari_patchdx.io.annotations.AnnotationSet` (numpy and pandas; no napari).

:func:`to_layer_data` gives one polygon per exterior and per hole with a features table; :func:`annotation_features`
turns that table into the layer's features (the class a categorical column, so napari's features table offers a
drop-down of :data:`DRAW_CLASSES`); :func:`from_layer_data` rebuilds the annotation set from a Shapes layer's data,
features and shape types (the inverse).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..io.annotations.model import EXCLUSION, NORMAL, TUMOR, AnnotationSet, PathLike, Region, canonical_label, warn_user
from ..io.annotations.polygon import ellipse_polygon, is_degenerate, open_ring

__all__ = ["DRAW_CLASSES", "FEATURE_DEFAULTS", "annotation_features", "from_layer_data", "to_layer_data"]

#: The classes a user picks from when drawing ground truth (the ``label`` feature's first categories).
DRAW_CLASSES = (TUMOR, EXCLUSION, NORMAL)

#: Feature values of a shape the user draws: a new tumour region, never a hole of an existing one.
FEATURE_DEFAULTS: dict[str, Any] = {"label": TUMOR, "name": "", "group": "", "role": "exterior", "region": -1}

_FEATURE_COLUMNS = ("label", "name", "group", "role", "region")


def to_layer_data(annotations: AnnotationSet) -> tuple[list[np.ndarray], dict[str, list[Any]]]:
    """Polygons and a features table for a napari Shapes layer (pure numpy; napari is not imported).

    Returns:
        ``(data, features)``: one writable (N, 2) float64 (y, x) level-0 polygon per exterior and per hole,
        region by region, exterior first; ``features`` has one row per polygon with columns ``label``,
        ``name``, ``group``, ``role`` (``"exterior"`` / ``"hole"``) and ``region`` (index into
        ``annotations.regions``). Add them with ``shape_type="polygon"`` and the features as
        :func:`annotation_features` gives them; give the layer ``feature_defaults=FEATURE_DEFAULTS`` so shapes
        the user draws become new tumour regions in :func:`from_layer_data`.
    """
    data: list[np.ndarray] = []
    features: dict[str, list[Any]] = {"label": [], "name": [], "group": [], "role": [], "region": []}
    for index, region in enumerate(annotations.regions):
        for role, ring in (("exterior", region.exterior), *(("hole", h) for h in region.holes)):
            data.append(np.array(ring, dtype=np.float64))
            features["label"].append(region.label)
            features["name"].append(region.name)
            features["group"].append(region.group)
            features["role"].append(role)
            features["region"].append(index)
    return data, features


def annotation_features(features: Mapping[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """A Shapes layer's features table from :func:`to_layer_data`'s columns (None: an empty table).

    ``label`` becomes a pandas Categorical whose categories are :data:`DRAW_CLASSES` followed by any other label
    present (in order of appearance), so napari's features table offers the classes in a drop-down and a new shape
    takes :data:`FEATURE_DEFAULTS`' tumour. ``region`` is int64; the other columns are text.
    """
    columns = {k: list(v) for k, v in (features or {}).items()}
    n = len(columns.get("label", ()))
    labels = [str(v) for v in columns.get("label", [])]
    categories = list(dict.fromkeys([*DRAW_CLASSES, *labels]))
    frame = pd.DataFrame(
        {
            "label": pd.Categorical(labels, categories=categories),
            **{k: pd.Series(columns.get(k, [""] * n), dtype=object) for k in ("name", "group", "role")},
            "region": pd.Series(columns.get("region", [-1] * n), dtype=np.int64),
        }
    )
    extra = [k for k in columns if k not in _FEATURE_COLUMNS]
    for key in extra:
        frame[key] = pd.Series(columns[key])
    return frame


def _feature_columns(features: Any, n: int) -> dict[str, list[Any]]:
    if features is None:
        return {}
    if hasattr(features, "columns") and hasattr(features, "to_dict"):  # a pandas DataFrame (layer.features)
        columns = {str(k): list(v) for k, v in features.to_dict(orient="list").items()}
    elif isinstance(features, Mapping):
        columns = {str(k): list(v) for k, v in features.items()}
    else:
        raise TypeError(f"features must be a mapping of columns or a DataFrame, got {type(features).__name__}")
    for key, values in columns.items():
        if len(values) != n:
            raise ValueError(f"features column {key!r} has {len(values)} rows for {n} shapes")
    return columns


def _clean_str(value: Any) -> str:
    """A feature value as text; "" for a missing one (None, NaN, or pandas' NA in a categorical / string column)."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _clean_index(value: Any) -> int | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f) or f < 0 or f != int(f):
        return None
    return int(f)


def from_layer_data(
    data: Sequence[ArrayLike],
    features: Mapping[str, Sequence[Any]] | Any | None = None,
    shape_types: Sequence[str] | str | None = None,
    source: PathLike | None = None,
) -> AnnotationSet:
    """Rebuild an :class:`AnnotationSet` from napari Shapes data (the inverse of :func:`to_layer_data`).

    Args:
        data: shapes as (N, D) arrays of level-0 vertices; the last two columns are (y, x).
        features: columns per shape (a mapping or the layer's DataFrame; categorical columns as napari's
            features table edits them are read as their values). ``role`` ``"hole"`` rows become holes
            of the exterior with the same ``region`` value (holes without one are dropped with a warning); an
            exterior whose ``region`` is missing, negative or already used starts a new region. ``label`` (any
            class name, see :func:`canonical_label`), else ``group``, gives the class (a missing or empty label
            and group: ``"tumor"``); ``name`` the name. Without features every shape is a ``"tumor"`` region.
        shape_types: napari shape type per shape (or one for all), default ``"polygon"``. ``"rectangle"``,
            ``"polygon"`` and ``"path"`` / ``"line"`` vertices are used as a closed polygon; an ``"ellipse"``
            (its 4 bounding-box corners) becomes a 64-vertex polygon. Shapes with fewer than 3 distinct
            vertices or zero area (every line) are skipped with one warning.
        source: recorded as the set's source (used in warnings).

    Raises:
        ValueError: a shape is not an (N, >= 2) finite array, an ellipse does not have 4 corners, or a column /
            shape type list has the wrong length. TypeError: unsupported ``features`` object.
    """
    n = len(data)
    src = Path(source) if source is not None else None
    where = str(src) if src is not None else "shapes layer"
    columns = _feature_columns(features, n)
    if shape_types is None or isinstance(shape_types, str):
        types = [(shape_types or "polygon").lower()] * n
    else:
        types = [str(t).lower() for t in shape_types]
        if len(types) != n:
            raise ValueError(f"{len(types)} shape types for {n} shapes")

    polygons: list[np.ndarray | None] = []
    skipped = 0
    for i, (shape, kind) in enumerate(zip(data, types, strict=True)):
        arr = np.asarray(shape, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
            raise ValueError(f"{where}: shape {i} is not an (N, 2) array of (y, x) vertices: shape {arr.shape}")
        arr = arr[:, -2:]
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: shape {i} has non-finite vertices")
        if kind == "ellipse":
            if arr.shape[0] != 4:
                raise ValueError(f"{where}: ellipse {i} needs its 4 bounding-box corners, got {arr.shape[0]}")
            arr = ellipse_polygon(arr)
        elif kind not in ("rectangle", "polygon", "path", "line"):
            raise ValueError(f"{where}: shape {i} has unsupported shape type {kind!r}")
        arr = open_ring(arr)
        if is_degenerate(arr):
            polygons.append(None)
            skipped += 1
        else:
            polygons.append(arr)

    def column(key: str, i: int) -> Any:
        return columns[key][i] if key in columns else None

    specs: list[tuple[np.ndarray, list[np.ndarray], str, str, str]] = []
    by_region: dict[int, int] = {}
    pending_holes: list[tuple[int, int | None]] = []
    for i, poly in enumerate(polygons):
        if poly is None:
            continue
        region_id = _clean_index(column("region", i))
        if _clean_str(column("role", i)).strip().lower() == "hole":
            pending_holes.append((i, region_id))
            continue
        label_text = _clean_str(column("label", i)).strip()
        group = _clean_str(column("group", i))
        label = canonical_label(label_text) if label_text else canonical_label(group)
        specs.append((poly, [], label, _clean_str(column("name", i)), group))
        if region_id is not None and region_id not in by_region:
            by_region[region_id] = len(specs) - 1
    orphans = 0
    for i, region_id in pending_holes:
        if region_id is None or region_id not in by_region:
            orphans += 1
            continue
        hole = polygons[i]
        assert hole is not None
        specs[by_region[region_id]][1].append(hole)
    if skipped:
        warn_user(f"{where}: skipped {skipped} shape(s) with fewer than 3 distinct vertices or zero area")
    if orphans:
        warn_user(f"{where}: dropped {orphans} hole shape(s) whose exterior is missing")
    regions = [Region(ext, tuple(holes), label, name, group) for ext, holes, label, name, group in specs]
    return AnnotationSet(regions, source=src)
