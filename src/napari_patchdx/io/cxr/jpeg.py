"""JPEG X-rays (baseline, extended, progressive and lossless): the frame header checked, decoded with imagecodecs."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from .pixels import scale_unsigned, to_gray

__all__ = ["read_jpeg"]

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_PROCESS = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless"}


def _jpeg_frame(path: Path, data: bytes) -> tuple[int, int, int, int, int, int]:
    """Walk the marker segments up to the first scan.

    Returns (SOF marker, precision, rows, cols, components, offset of the first start-of-scan marker).
    Segment lengths are followed, so the bytes of an embedded thumbnail (APP1) are never mistaken for markers.
    """
    pos = 2
    frame: tuple[int, int, int, int, int] | None = None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InputFileError(path, f"JPEG is corrupt: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if pos + 2 + length > len(data):
            break
        if marker in _SOF_MARKERS and length >= 8:
            precision, rows, cols, comps = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            frame = (marker, precision, rows, cols, comps)
        if marker == 0xDA:
            if frame is None:
                break
            return (*frame, pos)
        pos += 2 + length
    if frame is None:
        raise InputFileError(path, "JPEG is truncated or corrupt: no start-of-frame header found")
    raise InputFileError(path, "JPEG is truncated: the file ends before the first scan")


def read_jpeg(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    """(image in [0, 1], (row, col) spacing in mm or None, meta) of JPEG bytes ``data`` from ``path``."""
    import imagecodecs

    marker, precision, rows, cols, comps, scan = _jpeg_frame(path, data)
    if data.rfind(b"\xff\xd9") < scan:
        raise InputFileError(path, "JPEG is truncated: the end-of-image marker (FF D9) is missing")
    if comps == 4:
        raise InputFileError(path, "CMYK / 4-component JPEG is not supported; expected grayscale or RGB")
    if rows == 0 or cols == 0:
        raise InputFileError(path, f"JPEG header gives an empty image ({rows} x {cols})")
    arr: np.ndarray | None = None
    errors = []
    for decode in (imagecodecs.jpeg8_decode, imagecodecs.ljpeg_decode):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                arr = np.asarray(decode(data))
            break
        except Exception as exc:
            errors.append(f"{decode.__name__}: {exc}")
    if arr is None:
        raise InputFileError(path, f"cannot decode JPEG ({precision}-bit, {comps} components): {errors}")
    if arr.shape[:2] != (rows, cols):
        raise InputFileError(path, f"JPEG decodes to {arr.shape[:2]} but its header says {(rows, cols)}")
    gray, colour = to_gray(arr, path, "JPEG")
    image = scale_unsigned(gray, precision, path, "JPEG")
    meta = {
        "bits_stored": precision,
        "original_dtype": str(arr.dtype),
        "jpeg_process": _JPEG_PROCESS.get(marker, f"SOF{marker - 0xC0}"),
        "colour_conversion": colour,
        "scale": f"/{2**precision - 1}",
        "spacing_source": None,
    }
    return image, None, meta
