"""Sample conversions every X-ray format reader shares: to gray, unsigned integers to [0, 1], valid spacing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputFileError

__all__ = ["positive_spacing", "scale_unsigned", "to_gray"]

# ITU-R BT.601 luma weights, the ones Pillow's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def to_gray(arr: np.ndarray, path: Path, what: str) -> tuple[np.ndarray, str]:
    """Reduce (rows, cols[, channels]) to (rows, cols): alpha dropped, RGB converted to BT.601 luminance."""
    if arr.ndim == 2:
        return arr, "grayscale"
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        return arr[..., 0], "grayscale" if arr.shape[2] == 1 else "grayscale (alpha dropped)"
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        gray = arr[..., :3].astype(np.float64) @ _LUMA
        note = "RGB -> luminance" if arr.shape[2] == 3 else "RGBA -> luminance (alpha dropped)"
        return gray, note
    raise InputFileError(path, f"{what} decodes to shape {arr.shape}; expected a single 2-D image")


def scale_unsigned(arr: np.ndarray, bits: int, path: Path, what: str) -> np.ndarray:
    """Map unsigned integers of ``bits`` significant bits (8 -> /255, 16 -> /65535) to float [0, 1]."""
    if not 1 <= bits <= 16:
        raise InputFileError(path, f"{what} has {bits} bits per sample; expected 1 to 16")
    return arr.astype(np.float64) / float(2**bits - 1)


def positive_spacing(row: float, col: float) -> tuple[float, float] | None:
    """Return (row, col) when both are finite and > 0, else None."""
    if all(math.isfinite(v) and v > 0 for v in (row, col)):
        return (float(row), float(col))
    return None
