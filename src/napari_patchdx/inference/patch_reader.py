"""Reading a planned block: its needed tiles decoded once (kept for later blocks while needed), patches cut from it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..io.slides.base import Slide, TileReadError
from ..io.slides.tiff import TiffSlide
from ..sampling.datasets import resize_patch
from .band_plan import Block, tile_shape, touched_tiles


class PatchReader:
    """Fills block buffers in reading order and cuts patches from them.

    Buffers are in the layout of the batches: planar ``(3, rows, cols)`` for NCHW batches (each pixel is then
    transposed once, as its tile is placed, rather than once per overlapping patch), ``(rows, cols, 3)`` for NHWC.
    Only what patches read is filled: the needed tiles, and white outside the image. A needed tile comes from the
    ``frontier`` when an earlier block decoded it, else from the slide (:meth:`TiffSlide.tile` straight from its
    decoder; other backends one ``read_level_region`` per horizontal run of tiles, tile by tile again only when a
    run fails); it stays in the frontier until the last block that needs it. A tile that cannot be decoded is
    remembered as bad and never read again; the patches touching it are skipped.
    """

    def __init__(
        self,
        slide: Slide,
        level: int,
        read_size: int,
        patch_size: int,
        ly: np.ndarray,
        lx: np.ndarray,
        last_use: np.ndarray,
        pool: ThreadPoolExecutor | None,
        chw: bool,
    ) -> None:
        self.slide = slide
        self.level = level
        self.read_size = read_size
        self.patch_size = patch_size
        self.ly, self.lx = ly, lx
        self.tile = tile_shape(slide, level)
        self.level_shape = slide.level_shapes[level]
        self.last_use = last_use
        self.pool = pool
        self.chw = chw
        self.tiff = isinstance(slide, TiffSlide) and tuple(slide.tile_shapes[level]) == self.tile
        self.frontier: dict[tuple[int, int], np.ndarray] = {}
        self.frontier_bytes = 0
        self.bad: dict[tuple[int, int], TileReadError] = {}
        self.stats = {"blocks": 0, "tiles_read": 0, "tiles_reused": 0, "max_block_bytes": 0, "max_frontier_bytes": 0}

    def _tiles(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return touched_tiles(self.ly[index], self.lx[index], self.read_size, self.tile, self.level_shape)

    def _view(self, buf: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Buffer pixels ``[y0, y1) x [x0, x1)`` (buffer coordinates) in either layout."""
        return buf[:, y0:y1, x0:x1] if self.chw else buf[y0:y1, x0:x1]

    def _put(self, buf: np.ndarray, y0: int, x0: int, rgb: np.ndarray) -> None:
        """Place an (h, w, 3) RGB array at buffer pixel ``(y0, x0)``."""
        h, w = rgb.shape[:2]
        self._view(buf, y0, y0 + h, x0, x0 + w)[...] = rgb.transpose(2, 0, 1) if self.chw else rgb

    def _tile_rect(self, y: int, x: int) -> tuple[int, int, int, int]:
        """Level pixels ``[y0, y1) x [x0, x1)`` of tile ``(y, x)`` inside the image."""
        th, tw = self.tile
        h, w = self.level_shape
        return y * th, min((y + 1) * th, h), x * tw, min((x + 1) * tw, w)

    def fill(self, block: Block) -> tuple[np.ndarray, list[TileReadError]]:
        """The block's buffer and the tiles that failed to decode in it."""
        a, b, c, d = block.rect
        th, tw = self.tile
        h, w = self.level_shape
        buf = np.empty((3, b - a, d - c) if self.chw else (b - a, d - c, 3), dtype=np.uint8)
        # outside the image is white (the rest a patch reads is all in needed tiles)
        for y0, y1, x0, x1 in (
            (a, min(b, 0), c, d), (max(a, h), b, c, d), (a, b, c, min(d, 0)), (a, b, max(c, w), d),
        ):  # fmt: skip
            if y1 > y0 and x1 > x0:
                self._view(buf, y0 - a, y1 - a, x0 - c, x1 - c)[...] = 255
        _, ty, tx = self._tiles(block.index)
        gx = self.last_use.shape[1]
        keys = np.unique(ty * gx + tx)
        needed = list(zip((keys // gx).tolist(), (keys % gx).tolist(), strict=True))
        to_read = np.zeros(((b - a) // th, (d - c) // tw), dtype=bool)
        for y, x in needed:
            if (y, x) in self.bad:
                continue
            kept = self.frontier.get((y, x))
            if kept is not None:
                y0, y1, x0, x1 = self._tile_rect(y, x)
                self._view(buf, y0 - a, y1 - a, x0 - c, x1 - c)[...] = kept
                self.stats["tiles_reused"] += 1
            else:
                to_read[y - a // th, x - c // tw] = True
        self.stats["tiles_read"] += int(to_read.sum())
        errors = self._read_runs(buf, a, c, to_read)
        for y, x in needed:  # keep what later blocks need, forget what they do not
            if self.last_use[y, x] > block.ordinal:
                if (y, x) not in self.frontier and (y, x) not in self.bad:
                    y0, y1, x0, x1 = self._tile_rect(y, x)
                    kept = self._view(buf, y0 - a, y1 - a, x0 - c, x1 - c).copy()
                    self.frontier[(y, x)] = kept
                    self.frontier_bytes += kept.nbytes
            else:
                kept = self.frontier.pop((y, x), None)
                if kept is not None:
                    self.frontier_bytes -= kept.nbytes
        self.stats["blocks"] += 1
        self.stats["max_block_bytes"] = max(self.stats["max_block_bytes"], buf.nbytes)
        self.stats["max_frontier_bytes"] = max(self.stats["max_frontier_bytes"], self.frontier_bytes)
        return buf, errors

    def _read_runs(self, buf: np.ndarray, a: int, c: int, to_read: np.ndarray) -> list[TileReadError]:
        runs = []
        for r in range(to_read.shape[0]):
            if not to_read[r].any():
                continue
            edges = np.flatnonzero(np.diff(np.concatenate(([0], to_read[r].astype(np.int8), [0]))))
            runs += [(r, int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]
        if self.pool is not None and len(runs) > 1:
            results = list(self.pool.map(lambda run: self._read_run(buf, a, c, *run), runs))
        else:
            results = [self._read_run(buf, a, c, *run) for run in runs]
        return [exc for errors in results for exc in errors]

    def _read_run(self, buf: np.ndarray, a: int, c: int, r: int, s: int, e: int) -> list[TileReadError]:
        """Tiles ``s .. e - 1`` of buffer tile row ``r`` (their parts inside the image)."""
        th, tw = self.tile
        ty = a // th + r
        errors = []
        if self.tiff:  # straight from the decoder, tile by tile
            for k in range(s, e):
                tx = c // tw + k
                y0, y1, x0, x1 = self._tile_rect(ty, tx)
                try:
                    tile = self.slide.tile(self.level, ty, tx)  # type: ignore[attr-defined]
                except TileReadError as exc:
                    errors.append(exc)
                    self.bad[(ty, tx)] = exc
                    continue
                self._put(buf, y0 - a, x0 - c, tile[: y1 - y0, : x1 - x0])
            return errors
        y0, y1, _, _ = self._tile_rect(ty, c // tw + s)
        x0, x1 = c + s * tw, min(c + e * tw, self.level_shape[1])
        try:
            self._put(buf, y0 - a, x0 - c, self.slide.read_level_region(self.level, y0, x0, y1 - y0, x1 - x0))
            return []
        except TileReadError:
            pass
        for k in range(s, e):  # decoded tiles are in the backend's cache: only the bad ones fail again
            ya, yb, xa, xb = self._tile_rect(ty, c // tw + k)
            try:
                self._put(buf, ya - a, xa - c, self.slide.read_level_region(self.level, ya, xa, yb - ya, xb - xa))
            except TileReadError as exc:
                errors.append(exc)
                self.bad[(ty, c // tw + k)] = exc
        return errors

    def ok(self, block: Block) -> np.ndarray:
        """bool per cell of the block: its window touches no bad tile."""
        ok = np.ones(len(block.index), dtype=bool)
        if self.bad:
            i, ty, tx = self._tiles(block.index)
            hit = np.fromiter(
                ((y, x) in self.bad for y, x in zip(ty.tolist(), tx.tolist(), strict=True)), bool, len(ty)
            )
            ok[i[hit]] = False
        return ok

    def cut(self, segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], out: np.ndarray) -> None:
        """Cut the windows ``(buffer, ys, xs)`` (buffer pixels) into ``out`` (the buffers' layout) in order,
        resized to the patch size."""
        rs, ps = self.read_size, self.patch_size
        k = 0
        for buf, ys, xs in segments:
            for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
                patch = self._view(buf, y, y + rs, x, x + rs)
                if rs != ps:
                    rgb = np.ascontiguousarray(patch.transpose(1, 2, 0) if self.chw else patch)
                    patch = resize_patch(rgb, ps)
                    patch = patch.transpose(2, 0, 1) if self.chw else patch
                out[k] = patch
                k += 1
