"""PNG X-rays: the chunk list checked (lengths, CRCs, IEND), decoded with imagecodecs, pHYs as spacing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from .pixels import positive_spacing, scale_unsigned, to_gray

__all__ = ["PNG_SIGNATURE", "read_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


def _png_chunks(path: Path, data: bytes) -> dict[str, bytes]:
    """Walk the chunk list, checking lengths and CRCs; return the first payload of each chunk type."""
    chunks: dict[str, bytes] = {}
    pos = len(PNG_SIGNATURE)
    seen_end = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise InputFileError(path, f"PNG is truncated: a chunk header is cut off at byte {pos}")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            name = ctype.decode("latin-1")
            raise InputFileError(
                path, f"PNG is truncated: chunk {name!r} needs {length} bytes but the file ends at {len(data)}"
            )
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
        name = ctype.decode("latin-1")
        if zlib.crc32(ctype + payload) & 0xFFFFFFFF != crc:
            raise InputFileError(path, f"PNG is corrupt: CRC mismatch in chunk {name!r} at byte {pos}")
        chunks.setdefault(name, payload)
        pos = end
        if name == "IEND":
            seen_end = True
            break
    if "IHDR" not in chunks:
        raise InputFileError(path, "PNG has no IHDR header chunk")
    if not seen_end:
        raise InputFileError(path, "PNG is truncated: the IEND chunk is missing")
    if "IDAT" not in chunks:
        raise InputFileError(path, "PNG has no image data (no IDAT chunk)")
    return chunks


def read_png(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    """(image in [0, 1], (row, col) spacing in mm or None, meta) of PNG bytes ``data`` from ``path``."""
    import imagecodecs

    chunks = _png_chunks(path, data)
    if "acTL" in chunks and len(chunks["acTL"]) >= 4:
        frames = struct.unpack(">I", chunks["acTL"][:4])[0]
        raise InputFileError(path, f"animated PNG ({frames} frames); expected a single image")
    ihdr = chunks["IHDR"]
    if len(ihdr) != 13:
        raise InputFileError(path, f"PNG IHDR chunk has {len(ihdr)} bytes; expected 13")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", ihdr[:10])
    try:
        arr = imagecodecs.png_decode(data)
    except Exception as exc:
        raise InputFileError(path, f"cannot decode PNG: {exc}") from exc
    if arr.shape[:2] != (height, width):
        raise InputFileError(path, f"PNG decodes to {arr.shape[:2]} but its header says {(height, width)}")
    gray, colour = to_gray(arr, path, "PNG")
    # Bit depths below 8 are expanded to the full 8-bit range by the decoder; palettes expand to 8-bit RGB.
    bits = 16 if arr.dtype == np.uint16 else 8
    image = scale_unsigned(gray, bits, path, "PNG")

    spacing = None
    source = None
    phys = chunks.get("pHYs")
    if phys is not None and len(phys) == 9:
        ppu_x, ppu_y, unit = struct.unpack(">IIB", phys)
        if unit == 1 and ppu_x > 0 and ppu_y > 0:  # pixels per metre
            spacing = positive_spacing(1000.0 / ppu_y, 1000.0 / ppu_x)
            source = "PNG pHYs" if spacing is not None else None
    meta = {
        "bits_stored": bit_depth,
        "original_dtype": str(arr.dtype),
        "png_colour_type": _PNG_COLOUR_TYPES.get(colour_type, str(colour_type)),
        "colour_conversion": colour,
        "scale": f"/{2**bits - 1}",
        "spacing_source": source,
    }
    return image, spacing, meta
