"""Whole-slide images: one interface over two backends.

* :class:`TiffSlide` reads tiled, pyramidal TIFFs itself (generic tiled TIFF, OME-TIFF, Aperio SVS): it decodes
  each compressed tile exactly once through tifffile / imagecodecs, keeps decoded tiles in a small LRU cache and
  assembles regions in numpy. It is faster than OpenSlide's cairo compositing and is what "read each byte once"
  inference builds on.
* :class:`OpenSlideSlide` wraps OpenSlide for the vendor formats tifffile does not understand as slides
  (ndpi, mrxs, scn, bif, vms, Philips TIFF, ...).

Coordinates: level-0 pixels, (y, x) = (row, col). Region reads return ``uint8`` RGB arrays of shape
``(height, width, 3)``; areas outside the image or transparent in the file are white.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError, MissingMetadataError
from ...geometry import Grid
from ..tiffmeta import TIFF_MAGIC, resolution_um

__all__ = [
    "OpenSlideSlide",
    "Slide",
    "TiffSlide",
    "TileReadError",
    "is_pyramidal_tiff",
    "open_slide",
]

_WHITE = np.uint8(255)


class TileReadError(InputFileError):
    """A compressed tile could not be read or decoded. ``level`` and ``region`` say where (level pixels)."""

    def __init__(self, path: Path, level: int, region: tuple[int, int, int, int], problem: str) -> None:
        self.level = level
        self.region = region
        y, x, h, w = region
        super().__init__(path, f"level {level} tile at (y={y}, x={x}, h={h}, w={w}) is unreadable: {problem}")


class Slide(ABC):
    """A multi-resolution RGB slide.

    Attributes:
        path: the file.
        backend: ``"tifffile"`` or ``"openslide"``.
        level_shapes: (height, width) of every level, level 0 first.
        level_downsamples: level-0 pixels per level pixel, per level (OpenSlide's definition: the mean of the
            height and width ratios).
        tile_shapes: (tile_height, tile_width) per level, the natural read/chunk unit.
        mpp: level-0 microns per pixel (mean of x and y), or None when the file does not say and none was given.
        properties: raw metadata (vendor properties, TIFF tags of interest).
    """

    backend: str = ""

    def __init__(self, path: Path, mpp: float | None) -> None:
        self.path = path
        self._mpp_override = mpp
        self.level_shapes: tuple[tuple[int, int], ...] = ()
        self.level_downsamples: tuple[float, ...] = ()
        self.tile_shapes: tuple[tuple[int, int], ...] = ()
        self.mpp: float | None = None
        self.properties: dict[str, str] = {}

    def _finish_init(self, file_mpp: float | None) -> None:
        if self._mpp_override is not None:
            if not (np.isfinite(self._mpp_override) and self._mpp_override > 0):
                raise InputFileError(self.path, f"mpp must be a positive number, got {self._mpp_override!r}")
            self.mpp = float(self._mpp_override)
        else:
            self.mpp = file_mpp
        h0, w0 = self.level_shapes[0]
        self.level_downsamples = tuple((h0 / h + w0 / w) / 2.0 for h, w in self.level_shapes)

    # -- geometry ---------------------------------------------------------------------------------------------
    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_shapes)

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (height, width) in pixels."""
        return self.level_shapes[0]

    def require_mpp(self, purpose: str = "this step") -> float:
        """Microns per pixel, or a clear error asking for it when the file does not say."""
        if self.mpp is None:
            raise MissingMetadataError(
                self.path,
                f"microns per pixel are unknown (no resolution metadata in the file) and {purpose} needs them; "
                "pass mpp=... (e.g. open_slide(path, mpp=0.25), or --mpp on the command line)",
            )
        return self.mpp

    def level_grid(self, level: int) -> Grid:
        """The :class:`~napari_patchdx.geometry.Grid` of a level (its pixels over level 0)."""
        self._check_level(level)
        h0, w0 = self.level_shapes[0]
        h, w = self.level_shapes[level]
        return Grid((h, w), (h0 / h, w0 / w), (0.0, 0.0), self.mpp)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The most detailed level whose downsample does not exceed ``downsample`` (level 0 at worst)."""
        best = 0
        for k, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + 1e-6):
                best = k
        return best

    def level_for_mpp(self, target_mpp: float) -> tuple[int, float]:
        """Level to read for a target resolution, and the extra downsample left to apply after reading.

        Returns ``(level, residual)`` where ``level_downsample * residual * mpp == target_mpp``.
        """
        mpp = self.require_mpp(f"working at {target_mpp} um/px")
        want = target_mpp / mpp
        level = self.best_level_for_downsample(want)
        return level, want / self.level_downsamples[level]

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.level_count:
            raise IndexError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")

    # -- pixels -----------------------------------------------------------------------------------------------
    def read_region(self, y: int, x: int, height: int, width: int, level: int = 0) -> np.ndarray:
        """Read ``height x width`` pixels of ``level`` whose top-left corner is level-0 pixel ``(y, x)``.

        Same semantics as OpenSlide's ``read_region((x, y), level, (width, height))`` with the level offset
        rounded down to a whole level pixel. Returns uint8 (height, width, 3); outside the image is white.
        """
        self._check_level(level)
        ds = self.level_downsamples[level]
        return self.read_level_region(level, int(np.floor(y / ds)), int(np.floor(x / ds)), height, width)

    def read_level_region(self, level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Read a block given in the level's own pixel coordinates. uint8 (height, width, 3)."""
        self._check_level(level)
        if height < 0 or width < 0:
            raise ValueError(f"{self.path}: negative region size {height}x{width}")
        return self._read(level, int(row), int(col), int(height), int(width))

    @abstractmethod
    def _read(self, level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Backend read in level pixel coordinates, white outside the image."""

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """An RGB thumbnail whose longer side is at most ``max_size`` pixels (uint8, (h, w, 3)).

        Reads the smallest level that is still at least as large as the thumbnail, band by band, so memory
        stays bounded even for a slide without a pyramid.
        """
        from skimage.transform import resize

        h0, w0 = self.shape
        factor = max(h0, w0) / max_size
        level = self.best_level_for_downsample(max(factor, 1.0))
        h, w = self.level_shapes[level]
        out_h = max(1, round(h0 / max(factor, 1.0)))
        out_w = max(1, round(w0 / max(factor, 1.0)))
        if h * w <= 4 * 4096 * 4096:
            full = self._read(level, 0, 0, h, w)
            if (h, w) == (out_h, out_w):
                return full
            return (resize(full, (out_h, out_w, 3), order=1, anti_aliasing=True) * 255 + 0.5).astype(np.uint8)
        bands = []
        th = self.tile_shapes[level][0]
        band_rows = max(th, int(np.ceil(h / out_h)) * 8)
        done = 0
        for r in range(0, h, band_rows):
            rows = min(band_rows, h - r)
            target = round((r + rows) * out_h / h) - done
            if target <= 0:
                continue
            band = self._read(level, r, 0, rows, w)
            bands.append(resize(band, (target, out_w, 3), order=1, anti_aliasing=True))
            done += target
        return (np.concatenate(bands, axis=0) * 255 + 0.5).astype(np.uint8)

    def to_dask(self, level: int = 0) -> Any:
        """A lazy dask array (height, width, 3) uint8 of ``level``, one chunk per file tile."""
        import dask.array as da

        self._check_level(level)
        arr = _LevelArray(self, level)
        th, tw = self.tile_shapes[level]
        st = os.stat(self.path)
        key = (str(self.path), self.backend, st.st_size, st.st_mtime_ns)
        name = f"patchdx-slide-{abs(hash(key))}-L{level}"
        return da.from_array(
            arr,
            chunks=(th, tw, 3),
            name=name,
            asarray=False,
            fancy=False,
            lock=False,
            meta=np.empty((0, 0, 0), dtype=np.uint8),
        )

    def pyramid(self) -> list[Any]:
        """Every level as a dask array, largest first (napari multiscale layer data)."""
        return [self.to_dask(k) for k in range(self.level_count)]

    def metadata(self) -> dict[str, Any]:
        """A JSON-ready summary (for napari layer metadata and run manifests)."""
        return {
            "path": str(self.path),
            "backend": self.backend,
            "level_shapes": [list(s) for s in self.level_shapes],
            "level_downsamples": list(self.level_downsamples),
            "tile_shapes": [list(s) for s in self.tile_shapes],
            "mpp": self.mpp,
            "mpp_source": "argument" if self._mpp_override is not None else ("file" if self.mpp else None),
            "vendor": self.properties.get("openslide.vendor", self.properties.get("tiff.kind", "")),
        }

    # -- lifecycle --------------------------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release the file handle."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A slide travels between processes (DataLoader workers, dask) as its path; each process opens its own.
        return {"path": self.path, "mpp": self._mpp_override}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["mpp"])  # type: ignore[misc]

    def __repr__(self) -> str:
        h, w = self.shape
        return f"<{type(self).__name__} {self.path.name} {w}x{h} levels={self.level_count} mpp={self.mpp}>"


class _LevelArray:
    """Array-like view of one level for dask.from_array (shape, dtype, ndim, __getitem__ with slices)."""

    def __init__(self, slide: Slide, level: int) -> None:
        self.slide = slide
        self.level = level
        h, w = slide.level_shapes[level]
        self.shape = (h, w, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        spatial = []
        squeeze = []
        for axis, k in enumerate(key[:2]):
            if isinstance(k, slice):
                spatial.append(k)
                squeeze.append(False)
            else:  # an integer index
                i = int(k) + (self.shape[axis] if int(k) < 0 else 0)
                spatial.append(slice(i, i + 1))
                squeeze.append(True)
        (y0, y1, sy), (x0, x1, sx) = (s.indices(n) for s, n in zip(spatial, self.shape[:2], strict=True))
        if sy < 0 or sx < 0:
            raise IndexError("negative steps are not supported")
        block = self.slide._read(self.level, y0, x0, max(0, y1 - y0), max(0, x1 - x0))[::sy, ::sx, key[2]]
        if squeeze[1]:
            block = block[:, 0]
        if squeeze[0]:
            block = block[0]
        return block


# ---------------------------------------------------------------------------------------------------------------
# tifffile backend
# ---------------------------------------------------------------------------------------------------------------


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
            return np.full((th, tw, 3), _WHITE)
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
            pad = np.full((th, tw, seg.shape[2]), _WHITE)
            pad[: seg.shape[0], : seg.shape[1]] = seg[:th, :tw]
            seg = pad
        return _to_rgb(seg, lv.alpha)

    def _read(self, level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        lv = self._levels[level]
        out = np.full((height, width, 3), _WHITE)
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


def _to_rgb(seg: np.ndarray, alpha: str | None) -> np.ndarray:
    """(h, w, s) uint8 with s in 1..4 -> RGB composited on white (``alpha``: None, associated, unassociated)."""
    s = seg.shape[2]
    if s == 1:
        return np.repeat(seg, 3, axis=2)
    if s == 2:  # gray + extra sample
        gray = _to_rgb(seg[:, :, :1], None)
        return _to_rgb(np.concatenate([gray, seg[:, :, 1:2]], axis=2), alpha) if alpha else gray
    if s == 3 or alpha is None:
        return np.ascontiguousarray(seg[:, :, :3])
    rgb = seg[:, :, :3].astype(np.float32)
    a = seg[:, :, 3:4].astype(np.float32) / 255.0
    if alpha == "associated":  # premultiplied colour
        rgb = rgb + 255.0 * (1.0 - a)
    else:
        rgb = rgb * a + 255.0 * (1.0 - a)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


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


# ---------------------------------------------------------------------------------------------------------------
# OpenSlide backend
# ---------------------------------------------------------------------------------------------------------------


class OpenSlideSlide(Slide):
    """OpenSlide for the vendor formats (ndpi, mrxs, scn, bif, vms, svs, generic tiled TIFF, ...)."""

    backend = "openslide"

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        import openslide

        super().__init__(path, mpp)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        try:
            self._osr = openslide.OpenSlide(str(path))
        except Exception as exc:
            raise InputFileError(path, f"OpenSlide cannot open it ({type(exc).__name__}: {exc})") from exc
        osr = self._osr
        self.properties = dict(osr.properties)
        self.level_shapes = tuple((int(h), int(w)) for w, h in osr.level_dimensions)
        tiles = []
        for k in range(osr.level_count):
            tw = int(self.properties.get(f"openslide.level[{k}].tile-width", 512) or 512)
            th = int(self.properties.get(f"openslide.level[{k}].tile-height", 512) or 512)
            tiles.append((th, tw))
        self.tile_shapes = tuple(tiles)
        file_mpp = None
        try:
            mx = float(self.properties.get("openslide.mpp-x", "nan"))
            my = float(self.properties.get("openslide.mpp-y", "nan"))
            vals = [v for v in (mx, my) if np.isfinite(v) and v > 0]
            file_mpp = float(np.mean(vals)) if vals else None
        except ValueError:
            file_mpp = None
        self._finish_init(file_mpp)
        # OpenSlide's own downsamples can differ slightly from the shape ratio; use its values for reads.
        self.level_downsamples = tuple(float(d) for d in osr.level_downsamples)

    def _handle(self) -> Any:
        with self._lock:
            if self._osr is None or self._pid != os.getpid():  # closed, or a forked child: open a fresh handle
                import openslide

                self._osr = openslide.OpenSlide(str(self.path))
                self._pid = os.getpid()
            return self._osr

    def close(self) -> None:
        """Close the OpenSlide handle."""
        if getattr(self, "_osr", None) is not None and self._pid == os.getpid():
            self._osr.close()
        self._osr = None

    def _read(self, level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        if height == 0 or width == 0:
            return np.full((height, width, 3), _WHITE)
        ds = self.level_downsamples[level]
        x0 = col if level == 0 else round(col * ds)
        y0 = row if level == 0 else round(row * ds)
        try:
            img = self._handle().read_region((x0, y0), level, (width, height))
        except Exception as exc:
            raise TileReadError(self.path, level, (row, col, height, width), f"{type(exc).__name__}: {exc}") from exc
        rgba = np.asarray(img)
        alpha = rgba[:, :, 3]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[:, :, :3])
        return _to_rgb(rgba, "unassociated")


# ---------------------------------------------------------------------------------------------------------------
# opening
# ---------------------------------------------------------------------------------------------------------------


def _check_file(path: Path) -> bytes:
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a slide file")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(path, "file is empty (0 bytes)")
    with open(path, "rb") as f:
        return f.read(16)


def is_pyramidal_tiff(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a TIFF we treat as a whole-slide image rather than a single (X-ray) image.

    Slides: vendor TIFF formats (ndpi, scn, Philips, SVS, BIF), and 8-bit tiled TIFFs that are colour (3-4 samples)
    or carry a pyramid. Everything else — 12/16-bit or float images, untiled images, single-level tiled gray
    images — goes to the chest X-ray reader. Never raises: broken or non-TIFF files give False.
    """
    import tifffile

    try:
        p = Path(path)
        if _check_file(p)[:4] not in TIFF_MAGIC:
            return False
        with tifffile.TiffFile(p) as tif:
            if tif.is_ndpi or tif.is_scn or tif.is_philips or tif.is_svs:
                return True
            if tif.is_bif:
                return True
            first = tif.pages.first
            if not first.is_tiled or first.bitspersample != 8:
                return False
            if first.samplesperpixel >= 3:
                return True
            if tif.series and len(tif.series[0].levels) > 1:
                return True
            if len(tif.pages) > 1:
                second = tif.pages[1]
                return bool(second.imagewidth < first.imagewidth and second.imagelength < first.imagelength)
            return False
    except Exception:
        return False


def open_slide(
    path: str | os.PathLike[str],
    mpp: float | None = None,
    backend: str = "auto",
) -> Slide:
    """Open a whole-slide image.

    Args:
        path: the slide file (svs, ndpi, mrxs, scn, bif, vms, tiled / pyramidal TIFF, OME-TIFF, ...).
        mpp: level-0 microns per pixel; overrides what the file says (needed when it says nothing).
        backend: ``"auto"`` (tifffile for tiled TIFF pyramids it understands — generic, OME, SVS — else
            OpenSlide), ``"tifffile"`` or ``"openslide"``.

    Raises:
        InputFileError: the file is missing, empty, truncated, or not a slide either backend can read.
    """
    p = Path(path)
    head = _check_file(p)
    if backend not in ("auto", "tifffile", "openslide"):
        raise ValueError(f"backend must be 'auto', 'tifffile' or 'openslide', got {backend!r}")
    if backend == "openslide":
        return OpenSlideSlide(p, mpp)
    if backend == "tifffile":
        return TiffSlide(p, mpp)
    if head[:4] in TIFF_MAGIC:
        if not _vendor_tiff(p):
            # a plain TIFF we cannot read as a slide (wrong bit depth, untiled, truncated, ...) is not handed to
            # OpenSlide, which would open some of them and then show wrong pixels
            return TiffSlide(p, mpp)
        if _openslide_format(p) is not None:
            return OpenSlideSlide(p, mpp)
        raise InputFileError(p, "vendor TIFF that OpenSlide cannot read")
    if _openslide_format(p) is not None:
        return OpenSlideSlide(p, mpp)
    raise InputFileError(
        p,
        f"not a whole-slide image that OpenSlide or tifffile can read (file starts with {head[:8]!r})",
    )


def _vendor_tiff(path: Path) -> bool:
    """TIFF-based vendor formats whose geometry only OpenSlide interprets correctly."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ndpi or tif.is_scn or tif.is_philips or tif.is_bif)
    except Exception:
        return False


def _openslide_format(path: Path) -> str | None:
    import openslide

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return openslide.OpenSlide.detect_format(str(path))
    except Exception:
        return None
