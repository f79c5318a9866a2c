"""The tissue mask (:class:`TissueMask`): a low-resolution boolean mask laid over a slide's level 0, and its files.

A mask holds the boolean mask plus its :class:`~napari_patchdx.geometry.Grid` (level-0 pixels per mask pixel), the
threshold used and the config. :meth:`TissueMask.box_fraction` / :meth:`TissueMask.boxes_fraction` give the exact
tissue fraction of any level-0 box in O(1) from an integral image. :meth:`TissueMask.save` writes the mask as PNG or
TIFF plus a JSON sidecar with the geometry, atomically; :meth:`TissueMask.load` reads it back.

Coordinates follow the project's convention: level-0 pixels, ordered (y, x) = (row, col).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_write_bytes
from ..errors import ConfigError, InputFileError
from ..geometry import Grid
from .tissue_config import TissueConfig

__all__ = ["MASK_SUFFIXES", "TissueMask"]

MASK_SUFFIXES = (".png", ".tif", ".tiff")
"""File suffixes :meth:`TissueMask.save` and :meth:`TissueMask.load` understand."""

_SIDECAR_FORMAT = "napari-patchdx tissue mask"
_SIDECAR_VERSION = 1


@dataclass(eq=False)
class TissueMask:
    """A tissue mask laid over a slide's level 0.

    Attributes:
        mask: bool (rows, cols), True where there is tissue; read-only (build a new TissueMask to change it).
        grid: where the mask lies: mask pixel ``(r, c)`` covers level-0 ``[r * sy, (r + 1) * sy) x
            [c * sx, (c + 1) * sx)`` with ``(sy, sx) = grid.spacing`` (level-0 pixels per mask pixel), origin
            (0, 0), ``grid.mpp`` the slide's level-0 micrometres per pixel. ``grid.napari()`` gives the layer
            transform.
        threshold: the saturation threshold used, in [0, 1]: above it a pixel is tissue on its own (paler
            pixels join only where connected to such tissue, see :class:`TissueConfig`).
        config: the settings it was made with.
        source: the slide it was computed from, if known.
    """

    mask: np.ndarray
    grid: Grid
    threshold: float
    config: TissueConfig = field(default_factory=TissueConfig)
    source: Path | None = None

    def __post_init__(self) -> None:
        mask = np.array(self.mask, dtype=bool)  # a private copy: the integral image must stay valid
        if mask.ndim != 2 or 0 in mask.shape:
            raise ValueError(f"a tissue mask is a non-empty 2-D array, got shape {mask.shape}")
        if tuple(self.grid.shape) != mask.shape:
            raise ValueError(f"mask shape {mask.shape} differs from its grid's shape {tuple(self.grid.shape)}")
        mask.flags.writeable = False
        self.mask = mask
        self.threshold = float(self.threshold)
        if self.source is not None:
            self.source = Path(self.source)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the mask."""
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    @property
    def fraction(self) -> float:
        """Fraction of the slide area (the whole mask) that is tissue, in [0, 1]."""
        return float(self.mask.mean())

    @property
    def area_um2(self) -> float | None:
        """Tissue area in square micrometres, or None when the slide's mpp is unknown."""
        if self.grid.mpp is None:
            return None
        sy, sx = self.grid.spacing
        return float(self.mask.sum()) * sy * sx * self.grid.mpp**2

    @cached_property
    def _integral(self) -> np.ndarray:
        """(rows + 1, cols + 1) float64 summed-area table: ``I[r, c]`` = tissue pixels in ``[0, r) x [0, c)``."""
        out = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), dtype=np.float64)
        np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.int64), axis=1, out=out[1:, 1:])
        return out

    def _cumulative(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Tissue area (in mask pixels) of ``[0, u) x [0, v)`` for continuous mask coordinates (clipped).

        The area under a piecewise-constant image is piecewise bilinear, and bilinear interpolation of the
        summed-area table at ``(u, v)`` is exactly it: partial pixels count in proportion to their overlap.
        """
        rows, cols = self.mask.shape
        u = np.clip(u, 0.0, rows)
        v = np.clip(v, 0.0, cols)
        i = np.minimum(np.floor(u).astype(np.int64), rows - 1)
        j = np.minimum(np.floor(v).astype(np.int64), cols - 1)
        a = u - i
        b = v - j
        t = self._integral
        return (
            t[i, j] * (1 - a) * (1 - b)
            + t[i + 1, j] * a * (1 - b)
            + t[i, j + 1] * (1 - a) * b
            + t[i + 1, j + 1] * a * b
        )

    def boxes_fraction(
        self, ys: np.ndarray, xs: np.ndarray, height: float | np.ndarray, width: float | np.ndarray
    ) -> np.ndarray:
        """Tissue fraction of many level-0 boxes at once, O(1) per box.

        Args:
            ys, xs: level-0 (y, x) of each box's top-left corner (pixels; broadcast together).
            height, width: box size in level-0 pixels (scalars or arrays broadcast with ``ys``), positive.

        Returns:
            float64 array of the broadcast shape: the area-weighted fraction of each box covered by tissue
            (mask pixels cut by the box edge count in proportion to their overlap; the part of a box outside the
            slide counts as no tissue), in [0, 1].
        """
        ys, xs, h, w = np.broadcast_arrays(
            np.asarray(ys, dtype=np.float64),
            np.asarray(xs, dtype=np.float64),
            np.asarray(height, dtype=np.float64),
            np.asarray(width, dtype=np.float64),
        )
        if not (np.all(h > 0) and np.all(w > 0)):
            raise ValueError("box height and width must be positive")
        if not (np.isfinite(ys).all() and np.isfinite(xs).all() and np.isfinite(h).all() and np.isfinite(w).all()):
            raise ValueError("box coordinates must be finite")
        (oy, ox), (sy, sx) = self.grid.origin, self.grid.spacing
        u0, u1 = (ys - oy) / sy, (ys + h - oy) / sy
        v0, v1 = (xs - ox) / sx, (xs + w - ox) / sx
        area = self._cumulative(u1, v1) - self._cumulative(u0, v1) - self._cumulative(u1, v0) + self._cumulative(u0, v0)
        return np.clip(area / ((u1 - u0) * (v1 - v0)), 0.0, 1.0)

    def box_fraction(self, y0: float, x0: float, height: float, width: float) -> float:
        """Tissue fraction of the level-0 box ``[y0, y0 + height) x [x0, x0 + width)`` (pixels), in [0, 1]."""
        return float(self.boxes_fraction(np.asarray(y0), np.asarray(x0), height, width))

    # -- files ------------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar's content: geometry, threshold, settings, source and package version."""
        from ..versions import __version__

        return {
            "format": _SIDECAR_FORMAT,
            "format_version": _SIDECAR_VERSION,
            "napari_patchdx_version": __version__,
            "geometry": self.grid.to_dict(),
            "threshold": self.threshold,
            "tissue_fraction": self.fraction,
            "config": self.config.to_dict(),
            "source": None if self.source is None else str(self.source),
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the mask as ``path`` (PNG or TIFF by suffix, 0 / 255 uint8) and its sidecar ``path + ".json"``.

        Each file is written under a temporary name beside its target and renamed into place, the image first,
        so a sidecar that exists belongs to a complete image. TIFFs also carry the mask's physical resolution
        in their resolution tags when the mpp is known.

        Args:
            path: ``*.png``, ``*.tif`` or ``*.tiff``.
            overwrite: replace an existing mask or sidecar; without it, either existing raises FileExistsError.

        Returns:
            ``path``.
        """
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in MASK_SUFFIXES:
            raise ValueError(f"{target}: a tissue mask is saved as {' / '.join(MASK_SUFFIXES)}, not {suffix!r}")
        sidecar = _sidecar(target)
        if not target.parent.is_dir():
            raise FileNotFoundError(f"{target}: cannot write, directory {target.parent} does not exist")
        if not overwrite:
            for p in (target, sidecar):
                if p.exists():
                    raise FileExistsError(f"{p}: already exists (pass overwrite=True to replace it)")
        pixels = self.mask.astype(np.uint8) * np.uint8(255)
        buf = io.BytesIO()
        if suffix == ".png":
            from PIL import Image

            Image.fromarray(pixels, mode="L").save(buf, format="PNG", optimize=True)
        else:
            import tifffile

            kwargs: dict[str, Any] = {}
            if self.grid.mpp is not None:
                sy, sx = self.grid.spacing
                kwargs = {
                    "resolution": (1e4 / (sx * self.grid.mpp), 1e4 / (sy * self.grid.mpp)),
                    "resolutionunit": "CENTIMETER",
                }
            tifffile.imwrite(
                buf,
                pixels,
                photometric="minisblack",
                compression="zlib",
                metadata=None,
                software="napari-patchdx",
                **kwargs,
            )
        text = json.dumps(self.metadata(), indent=2) + "\n"
        atomic_write_bytes(target, buf.getvalue())
        atomic_write_bytes(sidecar, text.encode("utf-8"))
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TissueMask:
        """Read a mask written by :meth:`save` (the image and its ``.json`` sidecar).

        Raises:
            InputFileError: naming the file, when the image or its sidecar is missing, unreadable or invalid,
                or when the image's shape differs from the geometry in the sidecar.
        """
        target = Path(path)
        sidecar = _sidecar(target)
        if not target.is_file():
            raise InputFileError(target, "no such file" if not target.exists() else "is not a file")
        if not sidecar.is_file():
            raise InputFileError(
                target,
                f"its geometry sidecar {sidecar.name} is missing; a tissue mask is an image plus <image>.json "
                "as written by TissueMask.save",
            )
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFileError(sidecar, f"not a readable JSON sidecar ({type(exc).__name__}: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != _SIDECAR_FORMAT:
            raise InputFileError(sidecar, f'not a tissue-mask sidecar (no "format": "{_SIDECAR_FORMAT}")')
        try:
            grid = Grid.from_dict(meta["geometry"])
            threshold = float(meta["threshold"])
            config = TissueConfig.from_dict(meta.get("config") or {})
        except ConfigError as exc:
            raise InputFileError(sidecar, f"invalid settings: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputFileError(sidecar, f"invalid geometry or threshold ({type(exc).__name__}: {exc})") from exc
        pixels = _read_mask_image(target)
        if pixels.shape != tuple(grid.shape):
            raise InputFileError(
                target,
                f"image is {pixels.shape[0]} x {pixels.shape[1]} px but its sidecar {sidecar.name} describes "
                f"{grid.shape[0]} x {grid.shape[1]}",
            )
        source = meta.get("source")
        return cls(pixels > 0, grid, threshold, config, Path(source) if source else None)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_mask_image(path: Path) -> np.ndarray:
    """The mask image as a 2-D array (any non-zero value is tissue)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            pixels = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                pixels = np.asarray(im.convert("L") if im.mode not in ("1", "L", "I", "I;16") else im)
    except Exception as exc:
        raise InputFileError(path, f"cannot read the mask image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., :3].max(axis=2)
    if pixels.ndim != 2:
        raise InputFileError(path, f"a tissue mask is a single-channel 2-D image, got shape {pixels.shape}")
    return pixels
