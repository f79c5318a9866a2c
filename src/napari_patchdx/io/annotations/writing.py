"""What the ASAP XML and GeoJSON writers share: (x, y) vertex order, the finite check, colours of new classes."""

from __future__ import annotations

import zlib

import numpy as np

from .model import AnnotationSet

__all__ = ["check_finite", "hash_color", "ring_xy"]


def ring_xy(ring: np.ndarray) -> list[list[float]]:
    """Open ring as a list of [x, y] floats (the file-format order)."""
    return ring[:, ::-1].tolist()


def hash_color(name: str) -> tuple[int, int, int]:
    """A stable (r, g, b) colour, each channel in 64..191, for a class name without a fixed colour."""
    h = zlib.crc32(name.encode("utf-8"))
    return (64 + (h & 0x7F), 64 + ((h >> 8) & 0x7F), 64 + ((h >> 16) & 0x7F))


def check_finite(annotations: AnnotationSet) -> None:
    """ValueError naming the region unless every vertex of ``annotations`` is finite (nothing is written then)."""
    for i, region in enumerate(annotations.regions):
        for ring in (region.exterior, *region.holes):
            if not np.isfinite(ring).all():
                raise ValueError(f"{annotations._where()}: region {i} has non-finite vertices; nothing written")
