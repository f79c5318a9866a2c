"""Periodic stroma textures (wavy collagen fibres, fine grain) and their pyramids, sampled at any level."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def _pyramid(tex: np.ndarray) -> tuple[np.ndarray, ...]:
    levels = [tex.astype(np.float32)]
    while levels[-1].shape[0] > 1:
        t = levels[-1]
        levels.append(t.reshape(t.shape[0] // 2, 2, t.shape[1] // 2, 2).mean(axis=(1, 3)))
    return tuple(levels)


def _periodic_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Periodic Gaussian-filtered white noise (sigma in px), unit deviation."""
    k2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2.0 * math.pi**2 * k2 * sigma**2))
    return f.real / f.real.std()


@lru_cache(maxsize=8)
def fibre_texture(mpp: float) -> tuple[np.ndarray, ...]:
    """Periodic (1024 px) wavy collagen-fibre texture at level-0 resolution, zero mean, and its pyramid.

    Fibres about 1.5 um wide and tens of um long, bent by a smooth periodic displacement field.
    """
    from scipy import ndimage

    size = 1024
    rng = np.random.default_rng(20170308)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.fftfreq(size)[None, :]
    along, across = 9.0 / mpp, 0.7 / mpp
    g = np.exp(-2.0 * math.pi**2 * (ky**2 * across**2 + kx**2 * along**2))
    straight = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * g).real
    straight /= straight.std()
    amp = 45.0 / mpp
    dy = _periodic_field(rng, size, 70.0 / mpp) * amp
    dx = _periodic_field(rng, size, 70.0 / mpp) * amp
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    warped = ndimage.map_coordinates(straight, [yy + dy, xx + dx], order=1, mode="grid-wrap")
    fib = np.tanh(1.4 * warped)
    fib -= fib.mean()
    return _pyramid(fib / fib.std())


@lru_cache(maxsize=8)
def grain_texture(mpp: float) -> tuple[np.ndarray, ...]:
    """Periodic (512 px) isotropic fine granular texture (about 1 um), zero mean, unit deviation."""
    size = 512
    rng = np.random.default_rng(20190101)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.fftfreq(size)[None, :]
    sigma = 0.5 / mpp
    g = np.exp(-2.0 * math.pi**2 * (kx**2 + ky**2) * sigma**2)
    tex = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * g).real
    tex -= tex.mean()
    return _pyramid(tex / tex.std())


def sample_periodic(
    pyr: tuple[np.ndarray, ...], ys: np.ndarray, xs: np.ndarray, ds: float, offset: tuple[int, int]
) -> np.ndarray:
    """Sample a periodic texture pyramid at level-0 pixel centres ys x xs drawn at downsample ``ds``."""
    k = max(0, math.floor(math.log2(ds) + 1e-9))
    if k >= len(pyr) - 1:
        return np.zeros((len(ys), len(xs)), dtype=np.float32)
    tex = pyr[k]
    n = tex.shape[0]
    step = 2**k
    iy = (np.floor(ys / step).astype(np.int64) + offset[0] // step) % n
    ix = (np.floor(xs / step).astype(np.int64) + offset[1] // step) % n
    return tex[np.ix_(iy, ix)]
