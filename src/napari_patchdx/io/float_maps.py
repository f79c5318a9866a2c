"""Float images (heatmaps, class activation maps) as pyramidal OME-TIFF.

One writer for every float map the package saves — the slide heatmaps of :mod:`napari_patchdx.inference`, the
X-ray CAMs and the napari writers of heatmap / CAM layers — so they all open the same way in napari, QuPath or
Fiji: float32, zlib-compressed, tiled when large, with NaN-aware half-size levels as SubIFDs, and the physical
pixel size in the OME metadata.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_path
from ..errors import InputFileError

__all__ = ["nan_reduce", "read_float_image", "write_float_image"]

#: images larger than this (either side) get reduced levels
PYRAMID_MIN = 2048


def nan_reduce(image: np.ndarray) -> np.ndarray:
    """Half-size NaN-aware mean of 2 x 2 blocks over the last two axes (edge blocks may be partial)."""
    *lead, h, w = image.shape
    pad = np.full((*lead, h + h % 2, w + w % 2), np.nan, dtype=np.float32)
    pad[..., :h, :w] = image
    blocks = pad.reshape(*lead, pad.shape[-2] // 2, 2, pad.shape[-1] // 2, 2)
    valid = np.isfinite(blocks)
    axes = (-3, -1)
    count = valid.sum(axis=axes)
    total = np.where(valid, blocks, 0).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def write_float_image(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    pixel_size_um: tuple[float, float] | None = None,
    channel_names: Sequence[str] | None = None,
    pyramid_min: int = PYRAMID_MIN,
) -> Path:
    """Write a float map atomically as OME-TIFF and return its path.

    Args:
        path: the ``.ome.tif`` to write (replaced atomically: a crash never leaves half a file).
        data: ``(Y, X)`` or ``(C, Y, X)`` values (stored float32; NaN = no value).
        pixel_size_um: ``(y, x)`` micrometres per pixel of ``data``, written as the OME physical size.
        channel_names: one name per channel of a ``(C, Y, X)`` image (e.g. the CAM classes).
        pyramid_min: images larger than this on either side get NaN-aware half-size levels as SubIFDs.
    """
    import tifffile

    path = Path(path)
    image = np.asarray(data, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"{path}: a float map is (Y, X) or (C, Y, X), got shape {image.shape}")
    axes = "YX" if image.ndim == 2 else "CYX"
    levels = [image]
    while max(levels[-1].shape[-2:]) > pyramid_min:
        levels.append(nan_reduce(levels[-1]))
    metadata: dict[str, Any] = {"axes": axes, "Name": path.name}
    if pixel_size_um is not None:
        metadata.update(
            PhysicalSizeY=float(pixel_size_um[0]),
            PhysicalSizeX=float(pixel_size_um[1]),
            PhysicalSizeYUnit="µm",
            PhysicalSizeXUnit="µm",
        )
    if channel_names is not None:
        if image.ndim != 3 or len(channel_names) != image.shape[0]:
            raise ValueError(f"{path}: {len(channel_names)} channel names for an image of shape {image.shape}")
        metadata["Channel"] = {"Name": [str(n) for n in channel_names]}
    tiled = {"tile": (256, 256)} if max(image.shape[-2:]) > 256 else {}
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, ome=True) as tw:
        tw.write(
            levels[0], subifds=len(levels) - 1, metadata=metadata, photometric="minisblack", compression="zlib", **tiled
        )
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, photometric="minisblack", compression="zlib", **tiled)
    return path


def read_float_image(path: str | os.PathLike[str], level: int = 0) -> np.ndarray:
    """One level (0 = full size) of a float map written by :func:`write_float_image`, as float32."""
    import tifffile

    path = Path(path)
    try:
        return np.asarray(tifffile.imread(path, level=level), dtype=np.float32)
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
        raise InputFileError(path, f"not a readable float OME-TIFF ({exc})") from exc
