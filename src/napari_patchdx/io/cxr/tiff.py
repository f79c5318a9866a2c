"""Single-image TIFF X-rays read with tifffile (gray, RGB or JPEG-compressed YCbCr; 1 to 16 bits).

Multi-page and pyramidal TIFFs are refused here: whole-slide images open with
:func:`napari_patchdx.io.slides.open_slide`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from ..tiffmeta import resolution_um
from .pixels import positive_spacing, scale_unsigned, to_gray

__all__ = ["read_tiff"]


def read_tiff(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    """(image in [0, 1], (row, col) spacing in mm or None, meta) of TIFF bytes ``data`` from ``path``."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            n_pages = len(tif.pages)
            series = tif.series
            levels = len(series[0].levels) if series else 1
            page = tif.pages.first
            if levels > 1 or page.subifds:
                raise InputFileError(
                    path,
                    f"pyramidal TIFF ({max(levels, 2)} levels) is not supported here; open whole-slide images "
                    "with open_slide",
                )
            if n_pages > 1:
                raise InputFileError(path, f"multi-page TIFF ({n_pages} pages); expected a single image")
            photometric = page.photometric.name if page.photometric is not None else "UNKNOWN"
            axes = page.axes
            bits = int(page.bitspersample)
            resolution = resolution_um(page)
            compression = page.compression.name if page.compression is not None else "NONE"
            tiled = page.is_tiled
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                arr = page.asarray()
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(path, f"cannot read TIFF: {type(exc).__name__}: {exc}") from exc

    # YCbCr is accepted JPEG-compressed with interleaved samples, which the JPEG decoder hands back as RGB;
    # tifffile returns any other YCbCr data unconverted.
    ycbcr_jpeg = photometric == "YCBCR" and compression == "JPEG" and not axes.startswith("S")
    if photometric not in ("MINISBLACK", "MINISWHITE", "RGB") and not ycbcr_jpeg:
        raise InputFileError(
            path,
            f"TIFF photometric interpretation {photometric} (compression {compression}) is not supported; "
            "expected grayscale, RGB or JPEG-compressed YCbCr",
        )
    # Bring samples last: (rows, cols) or (rows, cols, samples).
    arr = np.asarray(arr)
    if axes.startswith("S") and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.dtype == np.bool_:
        arr, bits = arr.astype(np.uint8), 1
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputFileError(path, f"TIFF samples are {arr.dtype}; expected 8- or 16-bit unsigned integers")
    gray, colour = to_gray(arr, path, "TIFF")
    if ycbcr_jpeg:
        colour = f"YCbCr (JPEG-decoded to RGB), {colour}"
    bits = bits if 1 <= bits <= arr.dtype.itemsize * 8 else arr.dtype.itemsize * 8
    image = scale_unsigned(gray, bits, path, "TIFF")
    inverted = photometric == "MINISWHITE"
    if inverted:
        image = 1.0 - image

    # Inch or centimetre resolution only; a writer's default 72 / 96 / 300 dpi says nothing about the detector.
    spacing = positive_spacing(resolution[0] / 1000.0, resolution[1] / 1000.0) if resolution else None
    meta = {
        "bits_stored": bits,
        "original_dtype": str(arr.dtype),
        "photometric_interpretation": photometric,
        "compression": compression,
        "tiled": bool(tiled),
        "colour_conversion": colour,
        "scale": f"/{2**bits - 1}",
        "inverted": inverted,
        "spacing_source": "TIFF resolution" if spacing is not None else None,
    }
    return image, spacing, meta
