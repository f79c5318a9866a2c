"""The tifffile backend: :class:`TiffSlide` reads tiled pyramidal TIFF, OME-TIFF and Aperio SVS itself.

Each compressed tile is read with ``os.pread`` and decoded once through tifffile / imagecodecs into a small
byte-bounded LRU cache; regions are assembled in numpy. The pyramid (levels, kind, mpp) is parsed from the file's
series or, for generic TIFFs, from successively smaller tiled pages.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from ..tiffmeta import resolution_um
from .base import WHITE, Slide, TileReadError, to_rgb

__all__ = ["TiffSlide"]


class _TileCache:
    """Thread-safe LRU of decoded tiles, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        with self._lock:
            tile = self._items.get(key)
            if tile is not None:
                self._items.move_to_end(key)
            return tile

    def put(self, key: tuple[int, int], tile: np.ndarray) -> None:
        if tile.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = tile
            self._bytes += tile.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class _TiffLevel:
    """What is needed to read one tiled TIFF page without tifffile's file handle."""

    def __init__(self, page: Any) -> None:
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.tile = (int(page.tilelength), int(page.tilewidth))
        self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self.counts = np.asarray(page.databytecounts, dtype=np.int64)
        self.grid = (-(-self.shape[0] // self.tile[0]), -(-self.shape[1] // self.tile[1]))
        self.samples = int(page.samplesperpixel)
        self.jpegtables = page.jpegtables
        self.decode = page.decode
        self.compression = int(page.compression)
        extra = tuple(int(v) for v in page.extrasamples) if page.extrasamples else ()
        # the 4th sample is alpha only when ExtraSamples says so (1 associated, 2 unassociated); 0 is other data
        self.alpha = {1: "associated", 2: "unassociated"}.get(extra[0]) if extra else None
        if self.offsets.size < self.grid[0] * self.grid[1]:
            raise ValueError(
                f"{self.offsets.size} tiles stored for a {self.grid[0]}x{self.grid[1]} tile grid (planar data?)"
            )


class TiffSlide(Slide):
    """Tiled pyramidal TIFF / OME-TIFF / SVS read directly with tifffile + imagecodecs.

    Each compressed tile is read with ``os.pread`` (thread-safe, no shared file position) and decoded once; decoded
    tiles live in an LRU cache of ``cache_bytes`` (default 128 MiB). ``tiles_decoded_per_level`` counts decodes.
    """

    backend = "tifffile"

    def __init__(self, path: Path, mpp: float | None = None, cache_bytes: int = 128 << 20) -> None:
        import tifffile

        super().__init__(path, mpp)
        self._cache = _TileCache(cache_bytes)
        self._fd: int | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        try:
            with tifffile.TiffFile(path) as tif:
                pages, kind, file_mpp, props = _tiff_pyramid(tif)
                levels = [_TiffLevel(p) for p in pages]
        except InputFileError:
            raise
        except Exception as exc:  # tifffile raises many types for broken files
            raise InputFileError(path, f"not a readable tiled TIFF slide ({type(exc).__name__}: {exc})") from exc
        size = path.stat().st_size
        for k, lv in enumerate(levels):
            end = int((lv.offsets + lv.counts).max()) if lv.offsets.size else 0
            if end > size:
                raise InputFileError(
                    path,
                    f"file is truncated: level {k} tile data ends at byte {end} but the file has {size} bytes",
                )
            if lv.samples not in (1, 3, 4):
                raise InputFileError(path, f"level {k} has {lv.samples} samples per pixel; only RGB(A) or gray")
        self._levels = levels
        self.tiles_decoded_per_level = [0] * len(levels)
        self.level_shapes = tuple(lv.shape for lv in levels)
        self.tile_shapes = tuple(lv.tile for lv in levels)
        self.properties = {"tiff.kind": kind, **props}
        self._finish_init(file_mpp)

    def _fileno(self) -> int:
        with self._lock:
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDONLY)
                self._pid = os.getpid()
                self._cache.clear()
            return self._fd

    def close(self) -> None:
        """Close the file descriptor (the slide reopens it on the next read)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._cache.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    @property
    def tiles_decoded(self) -> int:
        """Compressed tiles decoded so far, all levels (``tiles_decoded_per_level`` splits it)."""
        return sum(self.tiles_decoded_per_level)

    def tile(self, level: int, ty: int, tx: int) -> np.ndarray:
        """Decoded tile ``(ty, tx)`` of ``level`` as uint8 (tile_h, tile_w, 3), padded as stored in the file."""
        key = (level, ty * self._levels[level].grid[1] + tx)
        tile = self._cache.get(key)
        if tile is None:
            tile = self._decode_tile(level, ty, tx)
            self._cache.put(key, tile)
        return tile

    def _decode_tile(self, level: int, ty: int, tx: int) -> np.ndarray:
        lv = self._levels[level]
        index = ty * lv.grid[1] + tx
        th, tw = lv.tile
        count = int(lv.counts[index])
        if count == 0:  # sparse tile: nothing stored, OpenSlide shows it transparent -> white
            return np.full((th, tw, 3), WHITE)
        try:
            data = os.pread(self._fileno(), count, int(lv.offsets[index]))
            if len(data) != count:
                raise OSError(f"read {len(data)} of {count} bytes")
            seg, _, _ = lv.decode(data, index, jpegtables=lv.jpegtables)
        except Exception as exc:
            raise TileReadError(self.path, level, (ty * th, tx * tw, th, tw), f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            self.tiles_decoded_per_level[level] += 1
        seg = np.asarray(seg).reshape(seg.shape[-3], seg.shape[-2], seg.shape[-1])
        if seg.dtype != np.uint8:
            raise TileReadError(self.path, level, (ty * th, tx * tw, th, tw), f"{seg.dtype} samples; need 8-bit")
        if seg.shape[:2] != (th, tw):  # some writers store short edge tiles
            pad = np.full((th, tw, seg.shape[2]), WHITE)
            pad[: seg.shape[0], : seg.shape[1]] = seg[:th, :tw]
            seg = pad
        return to_rgb(seg, lv.alpha)

    def _read(self, level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        lv = self._levels[level]
        out = np.full((height, width, 3), WHITE)
        H, W = lv.shape
        th, tw = lv.tile
        r0, r1 = max(row, 0), min(row + height, H)
        c0, c1 = max(col, 0), min(col + width, W)
        if r0 >= r1 or c0 >= c1:
            return out
        for ty in range(r0 // th, (r1 - 1) // th + 1):
            ya, yb = max(r0, ty * th), min(r1, (ty + 1) * th)
            for tx in range(c0 // tw, (c1 - 1) // tw + 1):
                xa, xb = max(c0, tx * tw), min(c1, (tx + 1) * tw)
                tile = self.tile(level, ty, tx)
                out[ya - row : yb - row, xa - col : xb - col] = tile[
                    ya - ty * th : yb - ty * th, xa - tx * tw : xb - tx * tw
                ]
        return out


def _tiff_pyramid(tif: Any) -> tuple[list[Any], str, float | None, dict[str, str]]:
    """Levels (TiffPages, largest first), kind, mpp and properties of a TIFF we can read as a slide."""
    props: dict[str, str] = {}
    if tif.is_ome:
        kind = "ome"
        series = tif.series[0]
        pages = [lvl.keyframe for lvl in series.levels]
        if len(series.shape) > len(pages[0].shape):
            raise ValueError(f"OME series of shape {series.shape}: only one RGB plane per slide is supported")
        mpp = _ome_mpp(tif.ome_metadata or "")
    elif tif.is_svs:
        kind = "svs"
        series = tif.series[0]
        pages = [lvl.keyframe for lvl in series.levels]
        desc = tif.pages.first.description or ""
        m = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", desc)
        mpp = float(m.group(1)) if m else None
        props["aperio.ImageDescription"] = desc[:2000]
    else:
        kind = "generic"
        first = tif.pages.first
        series = tif.series[0] if tif.series else None
        if series is not None and len(series.levels) > 1:
            pages = [lvl.keyframe for lvl in series.levels]
        else:
            pages = [first]
            for page in tif.pages[1:]:
                page = page.keyframe if hasattr(page, "keyframe") else page
                prev = pages[-1]
                if (
                    page.is_tiled
                    and page.samplesperpixel == first.samplesperpixel
                    and page.imagelength < prev.imagelength
                    and page.imagewidth < prev.imagewidth
                ):
                    pages.append(page)
        um = resolution_um(first)
        mpp = (um[0] + um[1]) / 2 if um else None
    if not pages[0].is_tiled:
        raise ValueError("level 0 is not tiled (a plain image, not a whole-slide image)")
    pages = [p for p in pages if p.is_tiled]
    for p in pages:
        if p.planarconfig == 2 and p.samplesperpixel > 1:
            raise ValueError("planar (separate) sample layout is not supported for slides")
        if p.bitspersample != 8:
            raise ValueError(f"{p.bitspersample}-bit samples; whole-slide images must be 8-bit RGB or gray")
        if int(p.photometric) not in (1, 2, 6):  # MINISBLACK, RGB, YCBCR
            raise ValueError(f"photometric {p.photometric.name} is not supported (need RGB, YCbCr or gray)")
    props["tiff.compression"] = str(pages[0].compression.name if hasattr(pages[0].compression, "name") else "")
    if mpp is not None and not (np.isfinite(mpp) and mpp > 0):
        mpp = None
    return pages, kind, mpp, props


def _ome_mpp(xml: str) -> float | None:
    """Microns per pixel from an OME-XML Pixels element (PhysicalSizeX/Y with their units)."""
    if not xml:
        return None
    factors = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
    vals = []
    for axis in ("X", "Y"):
        m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', xml)
        if not m:
            continue
        u = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', xml)
        vals.append(float(m.group(1)) * factors.get(u.group(1) if u else "µm", 1.0))
    return float(np.mean(vals)) if vals else None
