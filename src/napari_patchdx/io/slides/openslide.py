"""The OpenSlide backend: :class:`OpenSlideSlide` for the vendor formats tifffile does not read as slides.

``openslide`` is an optional dependency, imported only inside this backend (when a slide is opened or a format
is detected), never when the package is imported.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from .base import WHITE, Slide, TileReadError, to_rgb

__all__ = ["OpenSlideSlide", "openslide_format"]


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
            return np.full((height, width, 3), WHITE)
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
        return to_rgb(rgba, "unassociated")


def openslide_format(path: Path) -> str | None:
    """OpenSlide's name for the format of ``path`` (``"aperio"``, ``"hamamatsu"``, ...), or None if unreadable."""
    import openslide

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return openslide.OpenSlide.detect_format(str(path))
    except Exception:
        return None
