"""The patch stream: batches of cut patches, band after band, from a background reader thread.

:func:`open_stream` plans the bands and blocks and starts reading them; :func:`iter_slide_patches` is the public
iterator over a grid table's patches, read as inference reads them.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError
from ..io.slides.base import Slide, TileReadError
from .band_plan import BLOCK_WIDTH_TILES, Band, default_band_rows, plan_bands, tile_shape
from .patch_reader import PatchReader

if TYPE_CHECKING:
    import pandas as pd


class _Stopped(Exception):
    """The stream was closed while a reader thread waited."""


class PatchStream:
    """Band after band, block after block, batches of cut patches from a background thread.

    Iterating yields ``("batch", band, cell positions, uint8 batch, buffer)`` — release the buffer with
    :meth:`release` once the batch is used — and ``("band", band, errors)`` after a band's last batch. Batches
    hold up to ``batch_size`` consecutive cells of a band (never two bands): NCHW contiguous on CPU (as models
    expect), or an NCHW view of an NHWC buffer in pinned memory for CUDA (channels-last, copied without
    blocking). At most ``prefetch`` batches wait ready; batch buffers are recycled unless ``recycle`` is off
    (then every batch gets a fresh buffer the consumer may keep).
    """

    def __init__(
        self,
        reader: PatchReader,
        bands: list[Band],
        *,
        batch_size: int,
        prefetch: int,
        pinned: bool,
        pool: ThreadPoolExecutor | None,
        recycle: bool,
    ) -> None:
        self.reader = reader
        self.bands = bands
        self.batch_size = batch_size
        self.nchw = reader.chw
        self.pinned = pinned
        self.pool = pool
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._free: queue.Queue = queue.Queue()
        self._buffers = 0
        # in the queue, being cut, held by the consumer; without recycling every batch gets a new buffer
        self._max_buffers = max(1, prefetch) + 5 if recycle else None
        self._lock = threading.Lock()
        self.wait_s = 0.0
        self.patches = 0
        self._thread = threading.Thread(target=self._run, name="patchdx-read", daemon=True)
        self._thread.start()

    # -- reader side -------------------------------------------------------------------------------------------
    def _put(self, item: tuple) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _buffer(self) -> torch.Tensor:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._max_buffers is None or self._buffers < self._max_buffers:
                self._buffers += 1
                ps = self.reader.patch_size
                shape = (self.batch_size, 3, ps, ps) if self.nchw else (self.batch_size, ps, ps, 3)
                return torch.empty(shape, dtype=torch.uint8, pin_memory=self.pinned)
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def _cut(self, segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int) -> torch.Tensor:
        buf = self._buffer()
        self.reader.cut(segments, buf.numpy()[:n])
        return buf

    def _emit(self, band: int, segments: list, parts: list[np.ndarray], n: int) -> None:
        job = functools.partial(self._cut, segments, n)
        item: Future | torch.Tensor = self.pool.submit(job) if self.pool is not None else job()
        self._put(("batch", band, np.concatenate(parts), item))

    def _run(self) -> None:
        try:
            for bi, band in enumerate(self.bands):
                errors: list[TileReadError] = []
                segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
                parts: list[np.ndarray] = []
                count = 0
                for block in band.blocks:
                    if self._stop.is_set():
                        return
                    buf, errs = self.reader.fill(block)
                    errors += errs
                    a, _, c, _ = block.rect
                    pos = block.index[self.reader.ok(block)]
                    ys, xs = self.reader.ly[pos] - a, self.reader.lx[pos] - c
                    s = 0
                    while s < len(pos):
                        take = min(self.batch_size - count, len(pos) - s)
                        segments.append((buf, ys[s : s + take], xs[s : s + take]))
                        parts.append(pos[s : s + take])
                        count += take
                        s += take
                        if count == self.batch_size:
                            self._emit(bi, segments, parts, count)
                            segments, parts, count = [], [], 0
                    del buf
                if count:
                    self._emit(bi, segments, parts, count)
                    segments, parts = [], []
                self._put(("band", bi, errors))
            self._put(("end",))
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, which raises it
            with contextlib.suppress(_Stopped):
                self._put(("error", exc))

    # -- consumer side -----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple]:
        while True:
            t0 = time.perf_counter()
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the patch reader thread stopped without finishing") from None
                self.wait_s += time.perf_counter() - t0
                continue
            kind = item[0]
            if kind == "batch":
                _, band, cells, result = item
                buf = result.result() if isinstance(result, Future) else result
                self.wait_s += time.perf_counter() - t0
                self.patches += len(cells)
                view = buf[: len(cells)]
                yield ("batch", band, cells, view if self.nchw else view.permute(0, 3, 1, 2), buf)
            elif kind == "band":
                self.wait_s += time.perf_counter() - t0
                yield item
            elif kind == "error":
                raise item[1]
            else:
                return

    def release(self, buf: torch.Tensor) -> None:
        """Give a batch buffer back for reuse (after the model has consumed it)."""
        if self._max_buffers is not None:
            self._free.put(buf)

    def close(self) -> None:
        """Stop the reader and wait for its threads."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            self._thread.join(timeout=0.05)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def open_stream(
    slide: Slide,
    level: int,
    read_size: int,
    patch_size: int,
    rows: np.ndarray,
    ly: np.ndarray,
    lx: np.ndarray,
    n_rows: int,
    first_row: int,
    per_band: int,
    *,
    batch_size: int,
    block_width: int | None,
    prefetch: int,
    read_threads: int,
    nhwc: bool,
    pinned: bool,
    recycle: bool = True,
) -> PatchStream:
    """Plan the bands and blocks and start reading them."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if prefetch < 1:
        raise ConfigError(f"prefetch must be >= 1 batch, got {prefetch}")
    if read_threads < 1:
        raise ConfigError(f"read_threads must be >= 1, got {read_threads}")
    tile = tile_shape(slide, level)
    tw = tile[1]
    width = int(block_width) if block_width is not None else BLOCK_WIDTH_TILES * tw
    if width < 1:
        raise ConfigError(f"block_width must be >= 1 level pixel, got {block_width}")
    width = -(-width // tw) * tw  # whole tiles
    bands, last_use = plan_bands(
        rows, ly, lx, n_rows, first_row, per_band, read_size, tile, slide.level_shapes[level], width
    )
    pool = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="patchdx-cut") if read_threads > 1 else None
    reader = PatchReader(slide, level, read_size, patch_size, ly, lx, last_use, pool, chw=not nhwc)
    return PatchStream(
        reader, bands, batch_size=batch_size, prefetch=prefetch, pinned=pinned, pool=pool, recycle=recycle
    )


def iter_slide_patches(
    slide: Slide,
    table: pd.DataFrame,
    *,
    patch_size: int | None = None,
    batch_size: int = 32,
    band_rows: int | None = None,
    block_width: int | None = None,
    prefetch: int = 4,
    read_threads: int = 1,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The patches of a grid table in batches, read as inference reads them (each tile decoded once).

    Args:
        slide: the opened slide the table was made for.
        table: a patch table from :func:`napari_patchdx.sampling.balanced.grid_table` (columns ``row``, ``col``,
            ``y``, ``x`` in level-0 pixels, and ``level`` / ``size``: the read level and window side, the same
            for every row).
        patch_size: side of the delivered patches (windows are resized to it); default the window side.
        batch_size: patches per batch (batches never mix bands, so the last of a band may be smaller).
        band_rows: cell rows per band (default about two tiles of the read level).
        block_width: column-block width in level pixels (default 16 tiles).
        prefetch: batches read ahead in the background.
        read_threads: threads decoding and cutting in parallel (1 = the background thread alone).

    Yields ``(positions, batch)``: positions into ``table`` (row order) and uint8 (n, 3, P, P) RGB patches.
    Patches touching an undecodable tile are skipped with a warning naming the tile.
    """
    if len(table) == 0:
        return
    levels, sizes = table["level"].unique(), table["size"].unique()
    if len(levels) != 1 or len(sizes) != 1:
        raise ConfigError("iter_slide_patches needs one read level and one window size for the whole table")
    level, read_size = int(levels[0]), int(sizes[0])
    rows = table["row"].to_numpy(np.int64)
    ds = slide.level_downsamples[level]
    ly = np.floor(table["y"].to_numpy(np.float64) / ds).astype(np.int64)
    lx = np.floor(table["x"].to_numpy(np.float64) / ds).astype(np.int64)
    if band_rows is None:
        span = int(rows.max() - rows.min())
        step = (ly.max() - ly.min()) / span if span else float(tile_shape(slide, level)[0])
        band_rows = default_band_rows(slide, level, max(float(step), 1.0))
    stream = open_stream(
        slide, level, read_size, int(patch_size or read_size), rows, ly, lx, int(rows.max()) + 1,
        int(rows.min()), int(band_rows), batch_size=batch_size, block_width=block_width, prefetch=prefetch,
        read_threads=read_threads, nhwc=False, pinned=False, recycle=False,
    )  # fmt: skip
    try:
        for msg in stream:
            if msg[0] == "batch":
                yield msg[2], msg[3]  # a fresh buffer per batch: the caller may keep it
            else:
                for exc in msg[2]:
                    warnings.warn(f"{exc}; the patches touching it are skipped", UserWarning, stacklevel=2)
    finally:
        stream.close()
