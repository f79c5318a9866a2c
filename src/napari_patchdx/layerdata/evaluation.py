"""napari layer data for evaluation results, built without importing napari (like :mod:`napari_patchdx.layerdata`).

* :func:`outcome_points_layer`: lesion points coloured by how the CAMELYON16 protocol counts them (hit, false
  positive, ITC-ignored), with the outcome, probability, lesion label and first-hit flag as features.
* :func:`grid_from_layer` and :func:`points_from_layer`: the inverse direction, a heatmap layer's
  :class:`~napari_patchdx.geometry.Grid` and a Points layer's :class:`~napari_patchdx.evaluation.PointsTable` in
  level-0 (y, x), from a layer's data, features, metadata, scale and translate, so the Evaluate widget can
  evaluate what the viewer holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluation.outcomes import OUTCOME_COLORS, OUTCOMES, PointOutcomes
from ..evaluation.points import PointsTable
from ..geometry import Grid, vector_transform, world_to_level0

__all__ = ["grid_from_layer", "outcome_points_layer", "points_from_layer"]

LayerData = tuple[Any, dict[str, Any], str]


def _rgba(color: str) -> list[float]:
    from matplotlib.colors import to_rgba

    return [float(v) for v in to_rgba(color)]


def outcome_points_layer(
    points: PointsTable,
    outcomes: PointOutcomes,
    mpp: float | None,
    *,
    name: str = "outcomes",
    diameter_um: float = 100.0,
    top_k: int = 2000,
) -> LayerData:
    """A Points layer of lesion points coloured by outcome: hit green, false positive red, ITC-ignored orange.

    Args:
        points: the slide's lesion points (level-0 (y, x), most probable first).
        outcomes: their outcomes (:func:`napari_patchdx.evaluation.classify_points`), aligned with ``points``.
        mpp: the slide's level-0 microns per pixel (world units are then micrometres, as the slide layer's), or
            None (level-0 pixels).
        name: the layer name.
        diameter_um: drawn diameter in micrometres (level-0 pixels when ``mpp`` is None).
        top_k: only the ``top_k`` most probable points are shown, so the viewer stays fast.

    Features: ``outcome`` (one of :data:`napari_patchdx.evaluation.OUTCOMES`), ``probability``, ``lesion`` (the
    evaluation-mask label, 0 = none) and ``first_hit`` (the detection that counts for its lesion). Face colours are
    set per point from :data:`napari_patchdx.evaluation.OUTCOME_COLORS`; ``metadata["patchdx"]`` has
    ``kind = "outcome_points"``, ``frame = "level0"``, the colours, and the counts of all (not only shown) points.
    """
    if len(outcomes) != len(points):
        raise ConfigError(f"{len(outcomes)} outcomes for {len(points)} points")
    k = min(int(top_k), len(points))
    data = points.yx[:k] if k else np.zeros((0, 2))
    kinds = [str(v) for v in outcomes.outcome[:k]]
    colors = np.array([_rgba(OUTCOME_COLORS[v]) for v in kinds], dtype=np.float32).reshape(-1, 4)
    size = diameter_um / mpp if mpp else diameter_um
    kwargs: dict[str, Any] = {
        "name": name,
        "features": {
            "outcome": kinds,
            "probability": np.asarray(points.probability[:k], dtype=np.float64),
            "lesion": np.asarray(outcomes.lesion[:k], dtype=np.int64),
            "first_hit": np.asarray(outcomes.first_hit[:k], dtype=bool),
        },
        "face_color": colors if k else "white",
        "border_color": "white",
        "border_width": 0.1,
        "size": size,
        "units": ("um", "um") if mpp else ("pixel", "pixel"),
        "metadata": {
            "patchdx": {
                "kind": "outcome_points",
                "frame": "level0",
                "mpp": mpp,
                "shown": k,
                "total": len(points),
                "counts": outcomes.counts(),
                "colors": {o: OUTCOME_COLORS[o] for o in OUTCOMES},
            }
        },
        **vector_transform(mpp),
    }
    return data, kwargs, "points"


def grid_from_layer(
    metadata: Mapping[str, Any],
    scale: tuple[float, ...],
    translate: tuple[float, ...],
    shape: tuple[int, ...],
) -> Grid:
    """Where a heatmap layer's cells lie in level 0.

    ``metadata["patchdx"]["grid"]`` (as :func:`napari_patchdx.layerdata.heatmap_layer` records it) when present;
    otherwise the inverse of :func:`napari_patchdx.geometry.napari_transform` from the layer's ``scale`` and
    ``translate`` (last two axes), with ``metadata["patchdx"]["mpp"]`` as the world unit (micrometres; level-0
    pixels when absent).
    """
    meta = metadata.get("patchdx", {}) if isinstance(metadata, Mapping) else {}
    if isinstance(meta.get("grid"), Mapping):
        return Grid.from_dict(dict(meta["grid"]))
    mpp = meta.get("mpp")
    unit = float(mpp) if mpp else 1.0
    sy, sx = (float(v) / unit for v in tuple(scale)[-2:])
    ty, tx = (float(v) / unit for v in tuple(translate)[-2:])
    origin = (ty - 0.5 * sy + 0.5, tx - 0.5 * sx + 0.5)
    rows, cols = (int(v) for v in tuple(shape)[-2:])
    return Grid((rows, cols), (sy, sx), origin, float(mpp) if mpp else None)


def points_from_layer(
    data: np.ndarray,
    features: Mapping[str, Any] | Any,
    metadata: Mapping[str, Any],
    scale: tuple[float, ...],
    translate: tuple[float, ...],
) -> PointsTable:
    """A Points layer as a :class:`PointsTable` in level-0 (y, x) with its ``probability`` feature.

    Layers made by this plugin hold level-0 (y, x) (``metadata["patchdx"]["frame"] == "level0"``); any other layer
    is taken in world coordinates (data times ``scale`` plus ``translate``) in micrometres when
    ``metadata["patchdx"]["mpp"]`` is given, else in level-0 pixels. Without a ``probability`` feature every
    point gets probability 1.

    Raises:
        ConfigError: the probabilities are not finite numbers in [0, 1].
    """
    meta = metadata.get("patchdx", {}) if isinstance(metadata, Mapping) else {}
    yx = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1] if np.ndim(data) == 2 else 2)[:, -2:]
    if meta.get("frame") != "level0":
        s = np.asarray(tuple(scale)[-2:], dtype=np.float64)
        t = np.asarray(tuple(translate)[-2:], dtype=np.float64)
        mpp = meta.get("mpp")
        yx = world_to_level0(yx * s + t, float(mpp) if mpp else None)
    prob: Any = None
    if features is not None and "probability" in features:
        prob = np.asarray(features["probability"], dtype=np.float64).reshape(-1)
    if prob is None:
        prob = np.ones(len(yx))
    if len(prob) != len(yx):
        raise ConfigError(f"{len(prob)} probabilities for {len(yx)} points")
    if not (np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()):
        raise ConfigError("the points' probability feature must hold finite numbers in [0, 1]")
    return PointsTable(y=yx[:, 0], x=yx[:, 1], probability=prob)
