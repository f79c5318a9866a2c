"""Chest X-ray filters (Park et al. 2019): Gaussian blur, unsharp-mask sharpening and per-image standardisation.

Deterministic functions with explicit parameters; :class:`~napari_patchdx.transforms.SharpenOrBlur` and
:class:`~napari_patchdx.transforms.Standardize` are the transforms built on them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from .checks import check_float, check_gray

__all__ = ["gaussian_blur", "standardize", "unsharp_mask"]


def _spatial_sigma(image: np.ndarray, sigma: float) -> tuple[float, ...]:
    return (sigma, sigma) if image.ndim == 2 else (sigma, sigma, 0.0)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over rows and columns (channels are not mixed); borders reflect. Not clipped.

    Args:
        image: (H, W) or (H, W, C) floating-point image.
        sigma: standard deviation of the Gaussian in pixels (> 0).

    Returns:
        Blurred image, same shape and dtype.
    """
    x = check_gray(image, "gaussian_blur")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
    return ndimage.gaussian_filter(x, _spatial_sigma(x, float(sigma)), mode="reflect")


def unsharp_mask(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """Unsharp-mask sharpening ``x + amount * (x - gaussian(x, sigma))``. Not clipped.

    Args:
        image: (H, W) or (H, W, C) floating-point image.
        sigma: standard deviation of the Gaussian in pixels (> 0); sets which detail scale is boosted.
        amount: gain of the high-pass detail (dimensionless, >= 0; 0 is the identity).

    Returns:
        Sharpened image, same shape and dtype.
    """
    x = check_gray(image, "unsharp_mask")
    detail = np.subtract(x, gaussian_blur(x, sigma), order="C")
    detail *= float(amount)
    detail += x
    return detail


def standardize(image: np.ndarray, mode: Literal["mean", "meanstd"] = "mean", eps: float = 1e-6) -> np.ndarray:
    """Per-image standardisation (Park et al. 2019): subtract the image's mean; ``"meanstd"`` also divides by its std.

    The mean and std are taken over all pixels and channels of the image (accumulated in float64).

    Args:
        image: floating-point image of any shape.
        mode: ``"mean"`` (zero mean, Park et al.) or ``"meanstd"`` (zero mean, unit standard deviation).
        eps: lower bound of the divisor in intensity units, so a flat image gives zeros, not NaN.

    Returns:
        Standardised image, same shape and dtype (values no longer in [0, 1]).
    """
    x = check_float(image, "standardize")
    if mode not in ("mean", "meanstd"):
        raise ValueError(f"mode must be 'mean' or 'meanstd', got {mode!r}")
    out = np.subtract(x, x.mean(dtype=np.float64).astype(x.dtype), order="C")
    if mode == "meanstd":
        out /= np.asarray(max(float(out.std(dtype=np.float64)), float(eps)), dtype=x.dtype)
    return out
