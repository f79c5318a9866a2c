"""Polygon tools of the slide layout: distances and gaps between outlines, containment, irregular blobs.

Polygons are (N, 2) float64 open rings of level-0 (y, x) pixels.
"""

from __future__ import annotations

import math

import numpy as np

from ...io.annotations.polygon import points_in_polygon


def dist_to_boundary(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance (level-0 px) from each (y, x) point to the nearest polygon edge."""
    a = poly
    ab = np.roll(poly, -1, axis=0) - a
    len2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    out = np.empty(len(points))
    for s in range(0, len(points), 512):
        p = points[s : s + 512]
        ap = p[:, None, :] - a[None, :, :]
        t = np.clip((ap * ab[None]).sum(axis=2) / len2[None], 0.0, 1.0)
        d = ap - t[..., None] * ab[None]
        out[s : s + 512] = np.sqrt((d**2).sum(axis=2)).min(axis=1)
    return out


def polygon_extent(poly: np.ndarray) -> float:
    """Largest vertex-to-vertex distance (level-0 px)."""
    d = poly[:, None, :] - poly[None, :, :]
    return float(np.sqrt((d**2).sum(axis=2)).max())


def polygon_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest edge-to-edge distance of two polygons (0 when they touch or overlap)."""
    if points_in_polygon(a, b).any() or points_in_polygon(b, a).any():
        return 0.0
    return float(min(dist_to_boundary(a, b).min(), dist_to_boundary(b, a).min()))


def gap_at_least(a: np.ndarray, b: np.ndarray, distance: float) -> bool:
    """Whether two star-shaped polygons (about their vertex means) are at least ``distance`` apart."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    ra, rb = np.hypot(*(a - ca).T), np.hypot(*(b - cb).T)
    d = float(np.hypot(*(ca - cb)))
    if d - ra.max() - rb.max() >= distance:
        return True
    if d < ra.min() + rb.min():
        return False
    return polygon_gap(a, b) >= distance


def inside_with_margin(poly: np.ndarray, container: np.ndarray, margin: float) -> bool:
    """Whether a star-shaped polygon lies inside ``container`` at least ``margin`` from its edge."""
    c = poly.mean(axis=0)
    if not points_in_polygon(c[None], container)[0]:
        return False
    r = np.hypot(*(poly - c).T)
    d = float(dist_to_boundary(c[None], container)[0])
    if d >= r.max() + margin:
        return True
    if d < r.min() + margin:
        return False
    return bool(points_in_polygon(poly, container).all() and dist_to_boundary(poly, container).min() >= margin)


def blob(
    rng: np.random.Generator,
    n: int,
    *,
    aspect: float,
    roughness: float,
    harmonics: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Radial profile of a smooth irregular blob of unit mean radius: (angles, radii)."""
    th = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    angle = rng.uniform(0.0, math.pi)
    a, b = math.sqrt(aspect), 1.0 / math.sqrt(aspect)
    ell = 1.0 / np.sqrt((np.cos(th - angle) / a) ** 2 + (np.sin(th - angle) / b) ** 2)
    wobble = np.ones(n)
    for k in range(2, harmonics + 1):
        wobble += roughness * rng.normal() / k**1.1 * np.cos(k * th + rng.uniform(0, 2 * math.pi))
    r = ell * np.clip(wobble, 0.55, None)
    return th, r


def ring(centre: tuple[float, float], th: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(N, 2) (y, x) outline of the radial profile (angles ``th``, radii ``r``) about ``centre``."""
    return np.stack([centre[0] + r * np.sin(th), centre[1] + r * np.cos(th)], axis=1)


def band(line: np.ndarray, width: float, caps: bool = False) -> np.ndarray:
    """(N, 2) (y, x) outline of a band ``width`` wide (level-0 px) along the polyline ``line`` (M, 2), M >= 2.

    With ``caps`` the ends are rounded (a marker stroke); otherwise cut square.
    """
    tangent = np.gradient(line, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    hw = 0.5 * width
    left, right = line + hw * normal, line - hw * normal
    if not caps:
        return np.concatenate([left, right[::-1]])
    t = np.linspace(0.0, math.pi, 9)[1:-1]
    end = line[-1] + hw * (np.cos(t)[:, None] * normal[-1] + np.sin(t)[:, None] * tangent[-1])
    start = line[0] + hw * (np.cos(t)[:, None] * (-normal[0]) - np.sin(t)[:, None] * tangent[0])
    return np.concatenate([left, end, right[::-1], start])
