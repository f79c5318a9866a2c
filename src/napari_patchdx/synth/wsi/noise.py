"""Counter-based hashing and value noise: the seeded randomness every synthetic-slide pixel derives from.

A lattice point, a nucleus or a noise node is keyed by a hash of (slide key, integer coordinates), never by a
random stream, so any window regenerates exactly the values that overlap it, at every level.
"""

from __future__ import annotations

import hashlib

import numpy as np

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
MASK64 = (1 << 64) - 1
"""All 64 bits set: keeps seeds and salts within uint64."""


def derive_key(seed: int, name: str) -> int:
    """A 64-bit key from a seed and a name, stable across runs and platforms."""
    digest = hashlib.blake2b(f"{int(seed)}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _S30)
    x = x * _C1
    x = x ^ (x >> _S27)
    x = x * _C2
    return x ^ (x >> _S31)


def hash2(key: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint64 hash of (key, a, b) for integer arrays a, b (broadcast)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    h = _mix64(a.astype(np.uint64) * _GOLD + np.uint64(key & MASK64))
    h = _mix64(h ^ (b.astype(np.uint64) * _C1 + _GOLD))
    return np.atleast_1d(h)


def uniform(h: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) float64 from a base hash and a salt."""
    x = _mix64(h + np.uint64((salt * 0x9E3779B97F4A7C15) & MASK64))
    return (x >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def _smooth(f: np.ndarray) -> np.ndarray:
    return f * f * (3.0 - 2.0 * f)


def _noise_axis(coord: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    t = coord / scale
    i = np.floor(t).astype(np.int64)
    f = _smooth(t - i)
    lo = int(i.min())
    return i - lo, f, lo, int(i.max()) - lo + 2


def _noise_grid(key: int, ys: np.ndarray, xs: np.ndarray, scale: float) -> np.ndarray:
    """Value noise in [-1, 1] on the grid ys x xs (level-0 coordinates), lattice spacing ``scale``.

    Separable evaluation (element-wise only, so any window gives bit-identical values).
    """
    iy, fy, ly, ny = _noise_axis(ys, scale)
    ix, fx, lx, nx = _noise_axis(xs, scale)
    lat = uniform(hash2(key, np.arange(ly, ly + ny)[:, None], np.arange(lx, lx + nx)[None, :]), 0)
    lat = lat * 2.0 - 1.0
    rows = lat[iy] * (1.0 - fy)[:, None] + lat[iy + 1] * fy[:, None]
    return rows[:, ix] * (1.0 - fx)[None, :] + rows[:, ix + 1] * fx[None, :]


def _noise_points(key: int, py: np.ndarray, px: np.ndarray, scale: float) -> np.ndarray:
    """The same value noise as :func:`_noise_grid`, at scattered points."""
    ty, tx = py / scale, px / scale
    iy, ix = np.floor(ty).astype(np.int64), np.floor(tx).astype(np.int64)
    fy, fx = _smooth(ty - iy), _smooth(tx - ix)

    def lat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return uniform(hash2(key, a, b), 0) * 2.0 - 1.0

    top = lat(iy, ix) * (1.0 - fx) + lat(iy, ix + 1) * fx
    bottom = lat(iy + 1, ix) * (1.0 - fx) + lat(iy + 1, ix + 1) * fx
    return top * (1.0 - fy) + bottom * fy


def _fbm_direct(key: int, ys: np.ndarray, xs: np.ndarray, scale: float, octaves: int, ds: float) -> np.ndarray:
    out = np.zeros((len(ys), len(xs)))
    total = 0.0
    for o in range(octaves):
        s, amp = scale / 2**o, 0.5**o
        total += amp
        weight = min(1.0, max(0.0, s / ds - 1.0))  # fade an octave out as its lattice nears pixel size
        if weight > 0:
            out += (amp * weight) * _noise_grid(key + o, ys, xs, s)
    return out / total


def _coarse_axis(coord: np.ndarray, ds: float, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = (coord / ds - 0.5) / step
    k = np.floor(t).astype(np.int64)
    lo = int(k.min())
    nodes = (np.arange(lo, int(k.max()) + 2) * step + 0.5) * ds
    return k - lo, (t - k).astype(np.float32), nodes


def fbm_grid(key: int, ys: np.ndarray, xs: np.ndarray, scale: float, octaves: int, ds: float) -> np.ndarray:
    """Fractal value noise on a grid, normalised to about [-1, 1]; octaves finer than a pixel are left out.

    Smooth fields are evaluated on an absolute coarse grid (every 4th pixel of the level) and interpolated,
    so any window gives bit-identical values.
    """
    step = 4
    if scale / 2 ** (octaves - 1) < 16 * ds:
        return _fbm_direct(key, ys, xs, scale, octaves, ds).astype(np.float32)
    iy, fy, qy = _coarse_axis(ys, ds, step)
    ix, fx, qx = _coarse_axis(xs, ds, step)
    coarse = _fbm_direct(key, qy, qx, scale, octaves, ds).astype(np.float32)
    rows = coarse[iy] * (1.0 - fy)[:, None] + coarse[iy + 1] * fy[:, None]
    return rows[:, ix] * (1.0 - fx)[None, :] + rows[:, ix + 1] * fx[None, :]


def fbm_points(key: int, py: np.ndarray, px: np.ndarray, scale: float, octaves: int) -> np.ndarray:
    """Fractal value noise at points, all octaves (independent of the level being drawn)."""
    out = np.zeros(py.shape)
    total = 0.0
    for o in range(octaves):
        s, amp = scale / 2**o, 0.5**o
        total += amp
        out += amp * _noise_points(key + o, py, px, s)
    return out / total
