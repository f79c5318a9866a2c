"""Reading a chest X-ray: :func:`read_cxr` detects the format from the content and returns a :class:`CxrImage`."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from ..tiffmeta import TIFF_MAGIC
from .dicom import read_dicom
from .jpeg import read_jpeg
from .png import PNG_SIGNATURE, read_png
from .tiff import read_tiff

__all__ = ["CxrImage", "detect_format", "read_cxr"]

#: File name extensions and the format each one claims. Other extensions (or none, common for DICOM) claim
#: nothing, and the content alone decides.
_SUFFIX_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".dcm": "DICOM",
    ".dicom": "DICOM",
    ".dic": "DICOM",
}


@dataclass(eq=False)
class CxrImage:
    """One chest radiograph, ready for display and analysis.

    Attributes:
        image: float32 array (rows, cols) in [0, 1] at the file's native shape; bright = dense (bone white,
            air black) whatever the file's photometric convention.
        spacing: (row, col) pixel spacing in millimetres, or None when the file carries none (or zero).
        meta: key header fields: always ``format`` ("PNG", "JPEG", "TIFF", "DICOM"), ``bits_stored``,
            ``original_dtype``, ``spacing_source`` ("PixelSpacing", "ImagerPixelSpacing/ERMF",
            "ImagerPixelSpacing", "TIFF resolution", "PNG pHYs" or None) and ``inverted`` (whether the reader
            inverted the stored values); DICOM adds modality, photometric interpretation, manufacturer, view
            position, transfer syntax, rescale, the VOI step used and more. No patient-identifying field is
            copied.
        path: the file read, or None.
    """

    image: np.ndarray
    spacing: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of ``image``."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))


# --------------------------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------------------------


def _looks_like_raw_dicom(head: bytes) -> bool:
    """True for a DICOM data set written without the 128-byte preamble and "DICM" (pre-Part-10 files).

    Such files start with a group 0x0002 or 0x0008 element: little-endian followed by a two-letter explicit
    VR or by a small implicit-VR length, or big-endian followed by a two-letter VR.
    """
    if len(head) < 8:
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    if head[:2] in (b"\x00\x02", b"\x00\x08"):
        return explicit
    if head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    return explicit or struct.unpack("<I", head[4:8])[0] < 1024


def detect_format(head: bytes) -> str | None:
    """Return "DICOM", "PNG", "JPEG" or "TIFF" from a file's first bytes (at least 132 of them), else None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] in TIFF_MAGIC:
        return "TIFF"
    if _looks_like_raw_dicom(head):
        return "DICOM"
    return None


def read_cxr(path: str | os.PathLike[str]) -> CxrImage:
    """Read a chest X-ray from a PNG, JPEG, TIFF or DICOM file.

    Args:
        path: the file. Its format is taken from its content; an extension claiming another format is an error.

    Returns:
        A :class:`CxrImage`: float32 (rows, cols) image in [0, 1], bright = dense, native shape; (row, col)
        spacing in millimetres or None; header fields in ``meta``.

    Raises:
        InputFileError: the file is missing, empty, truncated, corrupt, of an unrecognised or unsupported kind
            (multi-frame, colour DICOM, multi-page or pyramidal TIFF, ...), named as another format than its
            content, or needs a decoder that is not installed. The message starts with the path.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file")
    if p.is_dir():
        raise InputFileError(p, "is a directory, not an image file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(p, f"cannot read the file: {exc.strerror or exc}") from exc
    if not data:
        raise InputFileError(p, "file is empty (0 bytes)")

    fmt = detect_format(data[:132])
    claimed = _SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        start = data[:8].hex(" ")
        problem = f"content is not PNG, JPEG, TIFF or DICOM (first bytes: {start}; {len(data)} bytes in all)"
        if claimed is not None:
            problem += f", although the name claims {claimed} ({p.suffix})"
        raise InputFileError(p, problem)
    if claimed is not None and claimed != fmt:
        raise InputFileError(
            p, f"content is {fmt} but the name claims {claimed} ({p.suffix}); rename the file to match"
        )

    reader = {"PNG": read_png, "JPEG": read_jpeg, "TIFF": read_tiff, "DICOM": read_dicom}[fmt]
    image, spacing, meta = reader(p, data)
    image = np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)
    if image.ndim != 2 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputFileError(p, f"decoded pixel array has shape {image.shape}; expected a 2-D image")
    if not np.isfinite(image).all():
        raise InputFileError(p, "decoded pixel values are not all finite")
    meta = {"format": fmt, **meta}
    meta.setdefault("inverted", False)
    meta.setdefault("spacing_source", None)
    return CxrImage(image=image, spacing=spacing, meta=meta, path=p)
