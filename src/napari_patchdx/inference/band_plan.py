"""The reading plan of a slide's grid: bands of cell rows, split into column blocks of whole tiles.

A block is one tile-aligned rectangle of the read level holding all its patches' read windows; the plan also says,
for every level tile, the last block that needs it, so that a decoded tile is kept exactly as long as it is needed
(see :mod:`napari_patchdx.inference` for the reading scheme).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.slides.base import Slide

#: Default column-block width, in tiles of the read level.
BLOCK_WIDTH_TILES = 16


@dataclass
class Block:
    """One column block of a band: its cells and the tile-aligned level rectangle holding their read windows."""

    ordinal: int  # position in reading order, over all bands
    index: np.ndarray  # cell positions (into the cell arrays), in processing order
    rect: tuple[int, int, int, int]  # level rows [a, b), cols [c, d), tile-aligned (may extend past the level)


@dataclass
class Band:
    """One band of cell rows ``[row0, row1)``: its cells in processing order (block by block, row-major within a
    block) and its column blocks, left to right."""

    row0: int
    row1: int
    index: np.ndarray
    blocks: list[Block]


def touched_tiles(
    ly: np.ndarray, lx: np.ndarray, size: int, tile: tuple[int, int], level_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(patch i, tile row, tile col)`` such that read window ``i`` (top-left ``(ly[i], lx[i])``, ``size``
    level pixels square) overlaps that level tile inside the image. Windows entirely outside touch nothing."""
    th, tw = tile
    h, w = level_shape
    y0, y1 = np.maximum(ly, 0), np.minimum(ly + size, h)
    x0, x1 = np.maximum(lx, 0), np.minimum(lx + size, w)
    i = np.flatnonzero((y1 > y0) & (x1 > x0))
    ty0, tx0 = y0[i] // th, x0[i] // tw
    ny, nx = (y1[i] - 1) // th - ty0 + 1, (x1[i] - 1) // tw - tx0 + 1
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for dy in range(int(ny.max(initial=0))):
        for dx in range(int(nx.max(initial=0))):
            sel = (dy < ny) & (dx < nx)
            parts.append((i[sel], ty0[sel] + dy, tx0[sel] + dx))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(p).astype(np.int64) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def plan_bands(
    rows: np.ndarray,
    ly: np.ndarray,
    lx: np.ndarray,
    n_rows: int,
    first_row: int,
    per_band: int,
    read_size: int,
    tile: tuple[int, int],
    level_shape: tuple[int, int],
    block_width: int,
) -> tuple[list[Band], np.ndarray]:
    """Bands of ``per_band`` cell rows from ``first_row`` on, split into column blocks of ``block_width`` level
    pixels (a cell belongs to the block holding its window's left edge), and for every level tile the ordinal of
    the last block that needs it (-1: none), so that each tile can be kept exactly as long as it is needed."""
    th, tw = tile
    order = np.argsort(rows, kind="stable")  # tables are row-major: cells stay row-major within a row band
    sorted_rows = rows[order]
    ordinal = np.full(len(rows), -1, np.int64)
    bands: list[Band] = []
    n = 0
    for start in range(first_row, n_rows, per_band):
        end = min(start + per_band, n_rows)
        index = order[np.searchsorted(sorted_rows, start) : np.searchsorted(sorted_rows, end)]
        blocks: list[Block] = []
        if index.size:
            key = np.maximum(lx[index], 0) // block_width  # windows sticking out on the left join block 0
            perm = np.argsort(key, kind="stable")
            index, key = index[perm], key[perm]
            for part in np.split(index, np.flatnonzero(np.diff(key)) + 1):
                y, x = ly[part], lx[part]
                rect = (
                    int(y.min()) // th * th,
                    -(-(int(y.max()) + read_size) // th) * th,
                    int(x.min()) // tw * tw,
                    -(-(int(x.max()) + read_size) // tw) * tw,
                )
                blocks.append(Block(n, part, rect))
                ordinal[part] = n
                n += 1
        bands.append(Band(start, end, index, blocks))
    h, w = level_shape
    last_use = np.full((-(-h // th), -(-w // tw)), -1, np.int64)
    planned = np.flatnonzero(ordinal >= 0)
    i, ty, tx = touched_tiles(ly[planned], lx[planned], read_size, tile, level_shape)
    np.maximum.at(last_use, (ty, tx), ordinal[planned][i])
    return bands, last_use


def tile_shape(slide: Slide, level: int) -> tuple[int, int]:
    """``(height, width)`` of ``slide``'s tiles at ``level`` (256 x 256 for an untiled slide)."""
    th, tw = slide.tile_shapes[level] if slide.tile_shapes else (256, 256)
    return int(th), int(tw)


def default_band_rows(slide: Slide, level: int, step_level: float) -> int:
    """Cell rows per band: about two tiles of the read level."""
    return max(1, round(2 * tile_shape(slide, level)[0] / step_level))
