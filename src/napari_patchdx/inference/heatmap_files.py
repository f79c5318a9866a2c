"""Heatmap files: where a slide's heatmap lives, and writing / reading the float OME-TIFF with its JSON sidecar."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..geometry import Grid
from ..io.float_maps import read_float_image, write_float_image

HEATMAP_VERSION = 1


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def read_heatmap(path: str | os.PathLike[str]) -> tuple[np.ndarray, Grid, dict[str, Any]]:
    """A written heatmap (``.heatmap.ome.tif`` / ``.ome.tiff``): float32 (rows, cols), its grid, and its sidecar."""
    from ..io.names import float_map_sidecar

    path = Path(path)
    side_path = float_map_sidecar(path) or path.with_suffix(".json")
    sidecar = read_json(side_path)
    if sidecar is None or "grid" not in sidecar:
        raise InputFileError(path, f"its heatmap sidecar {side_path.name} is missing or unreadable")
    heatmap = read_float_image(path)
    return heatmap, Grid.from_dict(sidecar["grid"]), sidecar


def write_heatmap(path: Path, heatmap: np.ndarray, grid: Grid) -> None:
    """float32 OME-TIFF, pyramidal when large, with the cell size in micrometres when the slide's mpp is known."""
    size = (grid.spacing[0] * grid.mpp, grid.spacing[1] * grid.mpp) if grid.mpp is not None else None
    write_float_image(path, heatmap, pixel_size_um=size)
