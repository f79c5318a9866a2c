"""Tissue detection: a low-resolution mask of where a slide holds tissue worth cutting patches from.

The mask is computed at a coarse resolution chosen in micrometres per pixel (``TissueConfig.target_mpp``,
8 um/px by default), never by pyramid level number, so it means the same thing for a 0.25 um/px and a
1.0 um/px scan. The algorithm (:func:`tissue_from_rgb`) works on an RGB overview at a known pixel size:

1. HSV (the numbers of ``skimage.color.rgb2hsv``). Stained tissue is coloured (H&E pink / purple, IHC brown /
   blue); empty glass, the white fill outside the scanned area, dust and shadows are grey: low saturation.
2. Marker ink is not tissue: green / blue ink (a hue range plus saturation and value floors; H&E and IHC-DAB
   colours are outside them) and black ink or black fill (dark and unsaturated) are found, grown by
   ``pen_margin_um`` so a stroke's blurred rim goes too, and excluded from everything below.
3. Saturation threshold: Otsu's over the non-ink pixels, floored by ``min_saturation`` and by the glass's own
   saturation plus ``glass_margin`` (the glass: bright pixels below Otsu's split), so that neither a blank
   slide nor tinted glass becomes tissue by splitting its noise in two.
4. Pale tissue (``grow_pale``): pixels above the floor, or darker than the glass by an optical density of
   ``pale_od`` (pale IHC stroma is grey, not coloured), join the tissue where they are connected to it and
   broader than the closing disk; thin grey lines (coverslip edges, bubble rims) do not.
5. Morphology with sizes in micrometres converted at the overview's pixel size: a closing (a disk of diameter
   ``closing_um``) bridges gaps between cells and fibres, holes below ``min_hole_um2`` are filled (fat,
   small lumens, cracks), pieces below ``min_object_um2`` are removed (dust, debris, specks).

:func:`detect_tissue` reads a slide's overview with bounded memory (``Slide.thumbnail`` reads the smallest
pyramid level at least as large, band by band) and returns a :class:`TissueMask`: the boolean mask plus its
:class:`~napari_patchdx.geometry.Grid` (level-0 pixels per mask pixel), the threshold used and the config.
:meth:`TissueMask.box_fraction` / :meth:`TissueMask.boxes_fraction` give the exact tissue fraction of any
level-0 box in O(1) from an integral image. :meth:`TissueMask.save` writes the mask as PNG or TIFF plus a JSON
sidecar with the geometry, atomically; :meth:`TissueMask.load` reads it back.

Coordinates follow the project's convention: level-0 pixels, ordered (y, x) = (row, col).
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_write_bytes
from ..errors import ConfigError, InputFileError
from ..geometry import Grid
from ..io.slides import Slide, open_slide

__all__ = [
    "MASK_SUFFIXES",
    "NoTissueWarning",
    "TissueConfig",
    "TissueMask",
    "detect_tissue",
    "tissue_from_rgb",
]

MASK_SUFFIXES = (".png", ".tif", ".tiff")
"""File suffixes :meth:`TissueMask.save` and :meth:`TissueMask.load` understand."""

_SIDECAR_FORMAT = "napari-patchdx tissue mask"
_SIDECAR_VERSION = 1
_MAX_MASK_SIDE = 16384  # a mask is an overview: 16384 px at 8 um/px is 131 mm, longer than any glass slide
_GLASS_MIN_VALUE = 0.7  # pixels at least this bright (HSV value) and below the Otsu threshold sample the glass
_GLASS_SAMPLE = 1 << 18  # glass pixels sampled for its median saturation and colour
_BAND_PIXELS = 1 << 20  # HSV is computed in bands of about this many pixels (bounded float temporaries)


class NoTissueWarning(UserWarning):
    """A slide has no tissue at all by the current settings (so no patches will come from it)."""


# ================================================================================================ config


def _check_number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"tissue.{name}: must be a number, got {value!r}")
    v = float(value)
    below = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or below or v > hi:
        bracket = "(" if lo_open else "["
        raise ConfigError(f"tissue.{name}: must be within {bracket}{lo:g}, {hi:g}], got {value!r}")
    return v


@dataclass(frozen=True)
class TissueConfig:
    """Settings of tissue detection. Every size is physical (micrometres), so they hold at any scan resolution.

    Attributes:
        target_mpp: resolution of the mask, micrometres per mask pixel (default 8: a 25 mm section gives a
            3125 px mask, fine enough to outline tissue to within about 10 um, cheap to compute and store).
        threshold: saturation in [0, 1] above which a pixel is tissue on its own; None (default) computes it
            per slide: Otsu's threshold over the saturation of the non-ink pixels, floored as below.
        min_saturation: floor of the threshold (default 0.07). Glass is grey: its saturation in an 8 um/px
            overview is about 0.01-0.04, eosin-stained stroma 0.15 and more. The floor keeps a blank slide
            blank.
        glass_margin: the threshold is also at least the glass's median saturation plus this (default 0.05),
            so tinted glass (a colour cast of 0.08-0.1) does not become tissue either.
        grow_pale: let pale tissue connected to the tissue join it (default True): pixels whose saturation is
            above the floor, or whose optical density relative to the glass is above ``pale_od``, in regions
            broader than the closing disk.
        pale_od: mean optical density (log10, over R, G, B) above which a pixel is darker than the glass
            (default 0.05, i.e. about 11 % less light; glass noise is under 0.01, pale IHC stroma about 0.08).
            0 turns the optical-density cue off.
        closing_um: diameter of the disk of the morphological closing, micrometres (default 50): gaps between
            cells, fibres and thin tears narrower than this are bridged; sections farther apart stay apart.
            0 disables the closing.
        min_object_um2: tissue pieces smaller than this area are dropped, square micrometres (default 10,000,
            about a 100 um square): dust, debris and specks (mostly under 50 um across) are an order of
            magnitude smaller, a biopsy fragment or lymph-node slice is orders larger, and every piece kept
            can hold at least one 299 px patch at 0.25 um/px (75 um square).
        min_hole_um2: holes in tissue smaller than this area are filled, square micrometres (default 20,000,
            about a 140 um square): fat cells (50-150 um across), small vessels and gland lumens, cracks;
            larger holes (big vessels, cysts, gaps between sections) stay out.
        reject_pen: find marker ink and keep it out of the mask (default True).
        green_hue: (low, high) hue range of green / cyan ink, degrees (default 70-190). No H&E or IHC-DAB
            colour lies in it.
        green_min_saturation: minimum saturation of green ink (default 0.2; glass is below 0.05).
        blue_hue: (low, high) hue range of blue ink, degrees (default 190-250). Hematoxylin lies here too,
            hence the saturation and value floors below.
        blue_min_saturation: minimum saturation of blue ink (default 0.45; blue marker is about 0.6, IHC
            counterstain under 0.3 and dense H&E hematoxylin under 0.45 at 8 um/px).
        blue_min_value: minimum HSV value (brightness) of blue ink (default 0.45; blue marker is bright,
            hematoxylin that saturated is darker).
        black_max_value: black ink (and black fill outside the scan) is darker than this HSV value
            (default 0.3) ...
        black_max_saturation: ... and less saturated than this (default 0.25; dark stained tissue is above 0.3).
        pen_margin_um: ink areas are grown by this distance before being excluded, micrometres (default 25),
            so the blurred rim of a stroke, a mix of ink and glass colours, is not taken for tissue.
    """

    target_mpp: float = 8.0
    threshold: float | None = None
    min_saturation: float = 0.07
    glass_margin: float = 0.05
    grow_pale: bool = True
    pale_od: float = 0.05
    closing_um: float = 50.0
    min_object_um2: float = 10_000.0
    min_hole_um2: float = 20_000.0
    reject_pen: bool = True
    green_hue: tuple[float, float] = (70.0, 190.0)
    green_min_saturation: float = 0.2
    blue_hue: tuple[float, float] = (190.0, 250.0)
    blue_min_saturation: float = 0.45
    blue_min_value: float = 0.45
    black_max_value: float = 0.3
    black_max_saturation: float = 0.25
    pen_margin_um: float = 25.0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("target_mpp", _check_number("target_mpp", self.target_mpp, 0.0, 1e4, lo_open=True))
        if self.threshold is not None:
            put("threshold", _check_number("threshold", self.threshold, 0.0, 1.0))
        for name in (
            "min_saturation",
            "green_min_saturation",
            "blue_min_saturation",
            "blue_min_value",
            "black_max_value",
            "black_max_saturation",
        ):
            put(name, _check_number(name, getattr(self, name), 0.0, 1.0))
        if self.min_saturation >= 1.0:
            raise ConfigError(f"tissue.min_saturation: must be below 1, got {self.min_saturation!r}")
        for name in ("closing_um", "pen_margin_um"):
            put(name, _check_number(name, getattr(self, name), 0.0, 1e5))
        for name in ("min_object_um2", "min_hole_um2"):
            put(name, _check_number(name, getattr(self, name), 0.0, 1e12))
        put("glass_margin", _check_number("glass_margin", self.glass_margin, 0.0, 1.0))
        put("pale_od", _check_number("pale_od", self.pale_od, 0.0, 5.0))
        for name in ("reject_pen", "grow_pale"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise ConfigError(f"tissue.{name}: must be true or false, got {value!r}")
            put(name, bool(value))
        for name in ("green_hue", "blue_hue"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
                raise ConfigError(f"tissue.{name}: must be a (low, high) pair of hues in degrees, got {value!r}")
            lo = _check_number(f"{name}[0]", value[0], 0.0, 360.0)
            hi = _check_number(f"{name}[1]", value[1], 0.0, 360.0)
            if lo >= hi:
                raise ConfigError(f"tissue.{name}: low hue must be below high hue, got {value!r}")
            put(name, (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples become lists)."""
        d = asdict(self)
        for name in ("green_hue", "blue_hue"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TissueConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"tissue: settings must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"tissue: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)


# ================================================================================================ the mask


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
        from .. import __version__

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


# ================================================================================================ algorithm


def _disk(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(bool)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, [0, 360)), saturation and value ([0, 1]) of a uint8 RGB image, as float32.

    The same numbers as ``skimage.color.rgb2hsv`` (hue x 360), computed band by band in float32 so the
    temporaries stay small; several times faster on a large overview.
    """
    rows, cols = rgb.shape[:2]
    hue = np.empty((rows, cols), dtype=np.float32)
    sat = np.empty((rows, cols), dtype=np.float32)
    val = np.empty((rows, cols), dtype=np.float32)
    step = max(1, _BAND_PIXELS // max(cols, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for r0 in range(0, rows, step):
            band = rgb[r0 : r0 + step]
            r, g, b = (band[..., k].astype(np.float32) for k in range(3))
            mx = np.maximum(np.maximum(r, g), b)
            delta = mx - np.minimum(np.minimum(r, g), b)
            val[r0 : r0 + step] = mx / np.float32(255.0)
            sat[r0 : r0 + step] = np.where(mx > 0, delta / mx, np.float32(0.0))
            h = np.where(b == mx, 4.0 + (r - g) / delta, np.where(g == mx, 2.0 + (b - r) / delta, (g - b) / delta))
            h = np.mod(h * np.float32(60.0), np.float32(360.0))
            hue[r0 : r0 + step] = np.where(delta > 0, h, np.float32(0.0))
    return hue, sat, val


def _ink(hue: np.ndarray, sat: np.ndarray, val: np.ndarray, config: TissueConfig) -> np.ndarray:
    """Marker ink (green, blue, black) and black fill, before growing by the margin."""
    g0, g1 = config.green_hue
    b0, b1 = config.blue_hue
    green = (hue >= g0) & (hue < g1) & (sat >= config.green_min_saturation)
    blue = (hue >= b0) & (hue < b1) & (sat >= config.blue_min_saturation) & (val >= config.blue_min_value)
    black = (val < config.black_max_value) & (sat < config.black_max_saturation)
    return green | blue | black


def _otsu(values: np.ndarray) -> float | None:
    """Otsu's threshold of values in [0, 1] (256-bin histogram), or None when they take a single value."""
    from skimage.filters import threshold_otsu

    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    if np.count_nonzero(counts) < 2:
        return None
    centres = (edges[:-1] + edges[1:]) / 2
    return float(threshold_otsu(hist=(counts, centres)))


def _optical_density(rgb: np.ndarray, glass_rgb: np.ndarray) -> np.ndarray:
    """Mean optical density over R, G, B relative to the glass colour (Beer-Lambert, log10), float32."""
    levels = np.maximum(np.arange(256, dtype=np.float64), 1.0)
    out = np.zeros(rgb.shape[:2], dtype=np.float32)
    for c in range(3):
        lut = (-np.log10(levels / max(float(glass_rgb[c]), 1.0)) / 3.0).astype(np.float32)
        out += lut[rgb[..., c]]
    return out


def _grow(core: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The connected components (8-connected) of ``candidates | core`` that contain a pixel of ``core``."""
    from scipy import ndimage

    labels, n = ndimage.label(candidates | core, structure=np.ones((3, 3), dtype=bool))
    keep = np.zeros(n + 1, dtype=bool)
    keep[labels[core]] = True
    keep[0] = False
    return keep[labels]


def _closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing by a disk; outside the image counts as neither tissue nor gap (no shrinking at edges)."""
    from scipy import ndimage

    fp = _disk(radius)
    grown = ndimage.binary_dilation(mask, structure=fp, border_value=0)
    return ndimage.binary_erosion(grown, structure=fp, border_value=1)


def _opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening by a disk (removes parts narrower than the disk); the image edge does not erode."""
    from scipy import ndimage

    fp = _disk(radius)
    shrunk = ndimage.binary_erosion(mask, structure=fp, border_value=1)
    return ndimage.binary_dilation(shrunk, structure=fp, border_value=0)


def _fill_small_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill background components (4-connected) not touching the border whose area is below ``max_area_px``."""
    from scipy import ndimage

    if max_area_px <= 0:
        return mask
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask
    area = np.bincount(labels.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = area < max_area_px
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def _remove_small_objects(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    """Drop tissue components (8-connected) whose area is below ``min_area_px``."""
    from scipy import ndimage

    if min_area_px <= 0 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = area >= min_area_px
    keep[0] = False
    return keep[labels]


def tissue_from_rgb(rgb: np.ndarray, um_per_px: float, config: TissueConfig | None = None) -> tuple[np.ndarray, float]:
    """Tissue mask of an RGB overview whose pixels are ``um_per_px`` micrometres wide.

    Steps (see the module docstring): marker ink and its margin are excluded; the saturation threshold is
    Otsu's over the non-ink pixels, at least ``min_saturation`` and at least the glass's saturation plus
    ``glass_margin`` (the glass being the bright pixels below Otsu's threshold); with ``grow_pale``, pale
    tissue (saturation above that floor, or optical density above ``pale_od`` relative to the glass colour)
    that is connected to tissue above the threshold and broader than the closing disk joins it; then closing,
    hole filling and small-object removal with sizes converted from micrometres at ``um_per_px``.

    Args:
        rgb: uint8 (rows, cols, 3) image (an RGBA image is composited over white first).
        um_per_px: size of one pixel of ``rgb`` in micrometres; every size in ``config`` is converted with it.
        config: settings (defaults: :class:`TissueConfig`).

    Returns:
        ``(mask, threshold)``: bool (rows, cols), True on tissue, and the saturation threshold above which a
        pixel is tissue on its own.
    """
    from scipy import ndimage

    config = config if config is not None else TissueConfig()
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or 0 in rgb.shape[:2]:
        raise ValueError(f"expected a non-empty uint8 RGB image (rows, cols, 3), got {rgb.dtype} {rgb.shape}")
    if isinstance(um_per_px, bool) or not isinstance(um_per_px, int | float | np.integer | np.floating):
        raise ValueError(f"um_per_px must be a positive number, got {um_per_px!r}")
    if not (math.isfinite(um_per_px) and um_per_px > 0):
        raise ValueError(f"um_per_px must be a positive number, got {um_per_px!r}")
    if rgb.shape[2] == 4:
        alpha = rgb[..., 3:].astype(np.float32) / 255.0
        rgb = (rgb[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)

    hue, sat, val = _hsv(rgb)
    excluded = np.zeros(sat.shape, dtype=bool)
    if config.reject_pen:
        ink = _ink(hue, sat, val, config)
        if ink.any():
            margin = round(config.pen_margin_um / um_per_px)
            excluded = ndimage.binary_dilation(ink, structure=_disk(margin)) if margin >= 1 else ink
    del hue
    valid = ~excluded

    # Thresholds. The glass sample: bright pixels on the low side of Otsu's split.
    otsu = _otsu(sat[valid]) if valid.any() else None
    glass = valid & (val >= _GLASS_MIN_VALUE) & (sat <= (otsu if otsu is not None else config.min_saturation))
    del val
    glass_px = np.flatnonzero(glass)
    glass_px = glass_px[:: max(1, glass_px.size // _GLASS_SAMPLE)]  # a regular sample is plenty for medians
    floor = config.min_saturation
    if glass_px.size:
        floor = max(floor, float(np.median(sat.ravel()[glass_px])) + config.glass_margin)
    if config.threshold is not None:
        threshold = config.threshold
    else:
        threshold = floor if otsu is None else max(otsu, floor)

    mask = (sat > threshold) & valid
    radius = round(config.closing_um / (2.0 * um_per_px))
    if config.grow_pale and mask.any():
        pale = sat > min(floor, threshold)
        if config.pale_od > 0 and glass_px.size:
            glass_rgb = np.median(rgb.reshape(-1, 3)[glass_px], axis=0)
            pale |= _optical_density(rgb, glass_rgb) > config.pale_od
        pale &= valid
        if radius >= 1:
            pale = _opening(_closing(pale, radius), radius)  # lacy stroma stays, thin lines (coverslip edges) go
        mask = _grow(mask, pale)
    del sat, glass, glass_px

    px_area = float(um_per_px) ** 2
    if radius >= 1 and mask.any():
        mask = _closing(mask, radius)
    mask = _fill_small_holes(mask, config.min_hole_um2 / px_area)
    mask &= valid
    mask = _remove_small_objects(mask, config.min_object_um2 / px_area)
    return mask, float(threshold)


def detect_tissue(slide: Slide | str | os.PathLike[str], config: TissueConfig | None = None) -> TissueMask:
    """Find the tissue on a slide, at about ``config.target_mpp`` micrometres per mask pixel.

    The overview is read with :meth:`Slide.thumbnail`, which decodes the smallest pyramid level at least as
    large as the mask, band by band: level 0 of a large slide is never read whole. The mask's grid spacing is
    the exact level-0 pixels per mask pixel along y and x.

    Args:
        slide: an open :class:`~napari_patchdx.io.slides.Slide` (or a path, opened and closed here).
        config: settings (defaults: :class:`TissueConfig`).

    Returns:
        The :class:`TissueMask`, with ``source`` the slide's path.

    Raises:
        MissingMetadataError: the slide's microns per pixel are unknown (pass ``mpp=`` to ``open_slide``).

    Warns:
        NoTissueWarning: no tissue at all was found (so no patches will come from this slide).
    """
    config = config if config is not None else TissueConfig()
    if isinstance(slide, Slide):
        result = _detect(slide, config)
    else:
        with open_slide(slide) as opened:
            result = _detect(opened, config)
    if not result.mask.any():
        warnings.warn(
            f"{result.source}: no tissue found (saturation threshold {result.threshold:.3f}); no patches will be "
            "taken from this slide",
            NoTissueWarning,
            stacklevel=2,
        )
    return result


def _detect(slide: Slide, config: TissueConfig) -> TissueMask:
    mpp = slide.require_mpp("tissue detection")
    h0, w0 = slide.shape
    side = max(1, math.ceil(max(h0, w0) * mpp / config.target_mpp))
    side = min(side, max(h0, w0))  # never upsample past level 0
    if side > _MAX_MASK_SIDE:
        raise ConfigError(
            f"tissue.target_mpp: {config.target_mpp} um/px would make a {side} px mask of {slide.path}; "
            f"a tissue mask is an overview, use a coarser target_mpp (at most {_MAX_MASK_SIDE} px per side)"
        )
    rgb = slide.thumbnail(max_size=side)
    rows, cols = rgb.shape[:2]
    spacing = (h0 / rows, w0 / cols)
    um_per_px = mpp * math.sqrt(spacing[0] * spacing[1])
    mask, threshold = tissue_from_rgb(rgb, um_per_px, config)
    return TissueMask(mask, Grid((rows, cols), spacing, (0.0, 0.0), mpp), threshold, config, slide.path)
