"""The grid sampler (:func:`grid_table`): every patch on a regular grid over the tissue, for inference and
exhaustive patch sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .patches import PatchGeometry
from .sources import SlideSource
from .tables import patch_frame

__all__ = ["grid_table"]


def grid_table(
    source: SlideSource,
    geometry: PatchGeometry | None = None,
    *,
    stride: int | None = None,
    min_tissue: float = 0.25,
    labels: bool = True,
) -> pd.DataFrame:
    """Every patch on a regular grid whose cell holds at least ``min_tissue`` tissue.

    The grid has one cell per ``stride`` patch pixels (default: the central region, 128), so cell ``(row, col)``
    covers level-0 ``[row, row + 1) * stride * scale`` (same for columns) — exactly the cells of a heatmap — and its
    patch is centred on the cell's centre (patches at the border extend past the slide and read white there).
    Adds ``row`` and ``col`` columns to the patch table.
    """
    geometry = geometry or PatchGeometry()
    stride = int(stride or geometry.center_size)
    if stride < 1:
        raise ConfigError(f"stride must be >= 1 patch pixel, got {stride}")
    level, read_size, scale = geometry.plan(source.slide)
    h0, w0 = source.slide.shape
    step = stride * scale
    rows, cols = int(np.ceil(h0 / step)), int(np.ceil(w0 / step))
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    frac = source.tissue.boxes_fraction(rr * step, cc * step, step, step)
    keep = frac >= min_tissue
    rr, cc = rr[keep], cc[keep]
    foot = geometry.patch_size * scale
    # round half up: with stride == center_size the central region is exactly the cell
    ys = np.floor((rr + 0.5) * step - foot / 2 + 0.5)
    xs = np.floor((cc + 0.5) * step - foot / 2 + 0.5)
    lab = source.center_labels(ys, xs, geometry, scale) if labels else np.zeros(ys.shape, np.int8)
    table = patch_frame(
        [
            {
                "slide": str(source.path),
                "x": int(x),
                "y": int(y),
                "level": level,
                "size": read_size,
                "label": int(v),
                "split": source.split,
            }
            for y, x, v in zip(ys, xs, lab, strict=True)
        ]
    )
    table["row"] = rr.astype(np.int64)
    table["col"] = cc.astype(np.int64)
    return table
