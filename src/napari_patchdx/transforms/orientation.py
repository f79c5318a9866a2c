"""The 8 orientations of the dihedral group of the square (4 quarter turns x mirror), for arrays and tensors.

:func:`orient` / :func:`unorient` act on numpy images (H, W, ...) and :func:`orient_torch` / :func:`unorient_torch`
on torch tensors (..., H, W), e.g. for test-time augmentation; :class:`~napari_patchdx.transforms.RandomOrientation`
is the random transform built on them.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ORIENTATIONS", "check_orientation", "orient", "orient_torch", "unorient", "unorient_torch"]

ORIENTATIONS = 8
"""Number of orientations in the dihedral group of the square (4 quarter turns, each with or without a mirror)."""


def check_orientation(k: int) -> int:
    """``k`` as an int, checked to be an orientation 0..7; ValueError otherwise."""
    k = operator.index(k)
    if not 0 <= k < ORIENTATIONS:
        raise ValueError(f"orientation k must be in 0..{ORIENTATIONS - 1}, got {k}")
    return k


def orient(image: np.ndarray, k: int) -> np.ndarray:
    """Orientation ``k`` of the dihedral group applied to an image's first two axes (rows, columns).

    Args:
        image: array of shape (H, W, ...).
        k: 0..7. ``k % 4`` quarter turns counter-clockwise (``np.rot90`` on axes (0, 1)), then a horizontal mirror
            (columns reversed) when ``k >= 4``. ``k = 0`` is the identity.

    Returns:
        A view of ``image`` (shape (W, H, ...) for odd ``k``). Copy it with ``np.ascontiguousarray`` before
        ``torch.from_numpy``, which refuses negative strides.
    """
    k = check_orientation(k)
    out = np.rot90(image, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def unorient(image: np.ndarray, k: int) -> np.ndarray:
    """Exact inverse of :func:`orient`: ``unorient(orient(x, k), k)`` equals ``x``. Returns a view."""
    k = check_orientation(k)
    if k >= 4:
        image = image[:, ::-1]
    return np.rot90(image, -(k % 4), axes=(0, 1))


def orient_torch(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`orient` for torch tensors of shape (..., H, W), e.g. NCHW batches (test-time augmentation).

    Same effect on the (H, W) plane as :func:`orient` on an (H, W, ...) array. Returns a new tensor.
    """
    import torch

    k = check_orientation(k)
    out = torch.rot90(tensor, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def unorient_torch(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """Exact inverse of :func:`orient_torch` (e.g. to map a heatmap or CAM back to the input's orientation)."""
    import torch

    k = check_orientation(k)
    if k >= 4:
        tensor = torch.flip(tensor, dims=(-1,))
    return torch.rot90(tensor, -(k % 4), dims=(-2, -1))
