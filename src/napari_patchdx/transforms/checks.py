"""Argument checks shared by the transforms: floating-point images, RGB and grey image shapes, (low, high) ranges.

Each check returns the value it accepted (an image as an array, a range as a pair of floats) and raises with a
message naming ``what`` (the function or transform being called) or ``name`` (the setting) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["check_float", "check_gray", "check_range", "check_rgb"]


def check_float(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` as an array, checked to be floating-point; TypeError naming ``what`` otherwise."""
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"{what} needs a floating-point image with intensities in [0, 1], got dtype {image.dtype} "
            "(convert uint8 with image.astype(np.float32) / 255)"
        )
    return image


def check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` checked to be a floating-point RGB image of shape (..., H, W, 3), for ``what``."""
    image = check_float(image, what)
    if image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"{what} needs an RGB image of shape (..., H, W, 3), got shape {image.shape}")
    return image


def check_gray(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` checked to be a floating-point (H, W) or (H, W, C) image, for ``what``."""
    image = check_float(image, what)
    if image.ndim not in (2, 3):
        raise ValueError(f"{what} needs an image of shape (H, W) or (H, W, C), got shape {image.shape}")
    return image


def check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """Setting ``name`` as a ``(lo, hi)`` pair of floats with ``low <= lo <= hi <= high``; ConfigError otherwise."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from exc
    if not low <= lo <= hi <= high:
        raise ConfigError(f"{name} must be a (low, high) pair with {low} <= low <= high <= {high}, got {value!r}")
    return lo, hi
