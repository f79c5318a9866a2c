"""Grayscale PNG encoding with the pixel spacing in a pHYs chunk."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def png_bytes(arr: np.ndarray, spacing_mm: float | None = None) -> bytes:
    """Encode a 2-D uint8/uint16 array as grayscale PNG, with a pHYs chunk (pixels per metre) if spacing given."""
    import imagecodecs

    data = bytes(imagecodecs.png_encode(np.ascontiguousarray(arr), level=6))
    if spacing_mm is None:
        return data
    ppm = max(1, round(1000.0 / spacing_mm))
    payload = struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + b"pHYs" + payload + struct.pack(">I", zlib.crc32(b"pHYs" + payload))
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]
