"""The :class:`Slide` interface every backend implements, and what the backends share.

:class:`Slide` holds the level geometry (shapes, downsamples, tile shapes, mpp) and everything built on the
backend's one primitive, ``_read`` in level pixel coordinates: region reads, thumbnails, lazy dask levels. Also
here: :class:`TileReadError`, white for what lies outside the image, and :func:`to_rgb` (samples composited on white).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError, MissingMetadataError
from ...geometry import Grid

__all__ = ["WHITE", "Slide", "TileReadError", "to_rgb"]

#: The value of every sample outside the image or transparent in the file.
WHITE = np.uint8(255)


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


def to_rgb(seg: np.ndarray, alpha: str | None) -> np.ndarray:
    """(h, w, s) uint8 with s in 1..4 -> RGB composited on white (``alpha``: None, associated, unassociated)."""
    s = seg.shape[2]
    if s == 1:
        return np.repeat(seg, 3, axis=2)
    if s == 2:  # gray + extra sample
        gray = to_rgb(seg[:, :, :1], None)
        return to_rgb(np.concatenate([gray, seg[:, :, 1:2]], axis=2), alpha) if alpha else gray
    if s == 3 or alpha is None:
        return np.ascontiguousarray(seg[:, :, :3])
    rgb = seg[:, :, :3].astype(np.float32)
    a = seg[:, :, 3:4].astype(np.float32) / 255.0
    if alpha == "associated":  # premultiplied colour
        rgb = rgb + 255.0 * (1.0 - a)
    else:
        rgb = rgb * a + 255.0 * (1.0 - a)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
