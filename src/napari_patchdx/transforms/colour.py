"""Colour adjustments with TensorFlow ``tf.image`` semantics, reproduced in numpy (Liu et al. 2017's colour jitter).

Brightness is an *additive* delta (torchvision's ``ColorJitter`` brightness is multiplicative, a different
augmentation), saturation multiplies HSV saturation and clips it to [0, 1], hue rotates HSV hue, contrast scales each
channel about its mean over the image (:func:`adjust_brightness`, :func:`adjust_saturation`, :func:`adjust_hue`,
:func:`adjust_contrast`); :func:`apply_color` applies a sequence of them in one blockwise pass, and
:func:`rgb_to_hsv` / :func:`hsv_to_rgb` convert with TF's conventions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checks import check_float, check_rgb

__all__ = [
    "COLOR_OPS",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_color",
    "hsv_to_rgb",
    "rgb_to_hsv",
]

COLOR_OPS: tuple[str, ...] = ("brightness", "saturation", "hue", "contrast")
"""The four colour adjustments of :class:`ColorJitterTF`, in its ``order="fixed"`` order (TF-slim's ordering 0)."""


# ----------------------------------------------------------------------------------------------- colour (TF semantics)
#
# Implementation notes. The colour adjustments run as one fused pass over the image in blocks of rows (two passes
# when contrast, which needs the image mean, sits between other adjustments): each block is copied into a small
# *planar* buffer (3, rows, W), adjusted in place, and written to the output. Compared with whole-image numpy
# expressions this avoids multi-megabyte temporaries (a fresh one costs page faults on every call), keeps the
# working set in cache, and works on contiguous planes rather than the interleaved channels of an (H, W, 3) array
# (several times faster in numpy). Branches are blended arithmetically because np.where and masked assignment are
# slow on irregular masks. The source may be any strided view (e.g. a rotated patch), so no copy is needed first.

_BLOCK = 16384
"""Pixels per block of the colour pass (64 KiB float32 temporaries)."""


def _max_chroma(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel maximum over the channels and chroma = maximum - minimum (new arrays)."""
    vmax = np.maximum(r, g)
    np.maximum(vmax, b, out=vmax)
    chroma = np.minimum(r, g)
    np.minimum(chroma, b, out=chroma)
    np.subtract(vmax, chroma, out=chroma)
    return vmax, chroma


def _hue_sixths(r: np.ndarray, g: np.ndarray, b: np.ndarray, vmax: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Hue in sixths of a turn, in (-1, 5], with TF's case order (red, then green, then blue is the maximum).

    Gray pixels (chroma 0) get hue 0: their channel differences are 0 and red counts as the maximum.
    """
    inv = np.maximum(chroma, np.finfo(chroma.dtype).tiny)
    np.divide(1.0, inv, out=inv)
    h = r - g  # blue is the maximum: 4 + (r - g) / chroma
    h *= inv
    h += 4.0
    tmp = np.subtract(b, r)  # green is the maximum: 2 + (b - r) / chroma
    tmp *= inv
    tmp += 2.0
    tmp -= h
    tmp *= vmax == g
    h += tmp
    np.subtract(g, b, out=tmp)  # red is the maximum: (g - b) / chroma
    tmp *= inv
    tmp -= h
    tmp *= vmax == r
    h += tmp
    return h


def _rgb_from_hue(h6: np.ndarray, vmax: np.ndarray, chroma: np.ndarray, out: np.ndarray) -> None:
    """Write into ``out`` (3, ...) the RGB with maximum ``vmax``, ``max - min = chroma`` and hue ``h6`` (sixths).

    Channel c is ``vmax - chroma * clip(min(k, 4 - k), 0, 1)`` with ``k = (n_c + h6) mod 6``, n = (5, 3, 1); any
    real ``h6`` works (the formula has period 6).
    """
    k = h6 + _HUE_OFFSETS.astype(h6.dtype).reshape((3,) + (1,) * h6.ndim)
    t = np.multiply(k, 1.0 / 6.0)
    np.floor(t, out=t)
    t *= 6.0
    k -= t
    np.subtract(4.0, k, out=t)
    np.minimum(t, k, out=t)
    np.clip(t, 0.0, 1.0, out=t)
    t *= chroma
    np.subtract(vmax, t, out=out)


_HUE_OFFSETS = np.array([5.0, 3.0, 1.0])
"""Offsets n of :func:`_rgb_from_hue` for the red, green and blue channels (sixths of a turn)."""


def _k_brightness(p: np.ndarray, delta: float) -> None:
    """In place on planar RGB ``p`` (3, ...): add ``delta``."""
    p += delta


def _k_saturation(p: np.ndarray, factor: float) -> None:
    """In place on planar RGB ``p`` (3, ...): TF's saturation scaling in closed form (see adjust_saturation)."""
    vmax, chroma = _max_chroma(p[0], p[1], p[2])
    new_chroma = chroma * max(factor, 0.0)  # TF clips the scaled saturation at 0
    positive = np.maximum(vmax, 0.0)  # saturation is 0 where the value is <= 0 ...
    np.minimum(new_chroma, positive, out=new_chroma)  # ... and at most 1: chroma <= value
    np.maximum(chroma, np.finfo(p.dtype).tiny, out=chroma)
    np.divide(new_chroma, chroma, out=new_chroma)
    p -= vmax  # x' = vmax + (x - vmax) * new_chroma / chroma
    p *= new_chroma
    p += vmax


def _k_hue(p: np.ndarray, delta: float) -> None:
    """In place on planar RGB ``p`` (3, ...): rotate the hue by ``delta`` turns keeping max and min channels."""
    vmax, chroma = _max_chroma(p[0], p[1], p[2])
    h6 = _hue_sixths(p[0], p[1], p[2], vmax, chroma)
    h6 += 6.0 * (delta % 1.0)
    _rgb_from_hue(h6, vmax, chroma, p)


_PIXEL_KERNELS = {"brightness": _k_brightness, "saturation": _k_saturation, "hue": _k_hue}


def _color_image(src: np.ndarray, ops: Sequence[tuple[str, float]], clip: bool, out: np.ndarray) -> None:
    """Apply colour adjustments ``(name, parameter)`` in order to one (H, W, 3) image, writing ``out``."""
    segments: list[list[tuple[str, float]]] = [[]]  # per-pixel adjustments between contrast steps
    contrasts: list[float] = []
    for op, value in ops:
        if op == "contrast":
            contrasts.append(float(value))
            segments.append([])
        elif op in _PIXEL_KERNELS:
            segments[-1].append((op, float(value)))
        else:
            raise ValueError(f"unknown colour adjustment {op!r}; known: {COLOR_OPS}")
    height, width = src.shape[0], src.shape[1]
    rows = max(1, _BLOCK // max(width, 1))
    buf = np.empty((3, min(rows, height), width), dtype=out.dtype)
    mean: np.ndarray | None = None
    for i, segment in enumerate(segments):
        reader = src if i == 0 else out
        last = i == len(segments) - 1
        sums = np.zeros(3, dtype=np.float64)
        for r0 in range(0, height, rows):
            block = reader[r0 : r0 + rows]
            p = buf[:, : block.shape[0]]
            for c in range(3):
                p[c] = block[..., c]
            if mean is not None:  # the pending contrast step: (x - mean) * factor + mean
                p -= mean
                p *= contrasts[i - 1]
                p += mean
            for op, value in segment:
                _PIXEL_KERNELS[op](p, value)
            if not last:
                sums += p.reshape(3, -1).sum(axis=1)
            elif clip:
                np.clip(p, 0.0, 1.0, out=p)
            for c in range(3):
                out[r0 : r0 + rows, :, c] = p[c]
        mean = (sums / max(height * width, 1)).astype(out.dtype).reshape(3, 1, 1)


def apply_color(image: np.ndarray, ops: Sequence[tuple[str, float]], clip: bool) -> np.ndarray:
    """Colour adjustments on an (..., H, W, 3) image of any strides; returns a new C-contiguous array.

    Args:
        image: (..., H, W, 3) floating-point RGB.
        ops: ``(name, parameter)`` pairs applied in order, names from :data:`COLOR_OPS` (see the ``adjust_*``
            functions for the parameters).
        clip: clip the result to [0, 1] at the end.
    """
    out = np.empty(image.shape, dtype=image.dtype)
    for idx in np.ndindex(image.shape[:-3]):
        _color_image(image[idx], ops, clip, out[idx])
    return out


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """RGB to HSV with TensorFlow's conventions (vectorised; any real RGB values, not only [0, 1]).

    Args:
        image: (..., 3) floating-point RGB.

    Returns:
        (..., 3) array of hue in turns [0, 1) (0 = red, 1/3 = green, 2/3 = blue), saturation
        ``(max - min) / max`` (0 where max <= 0) and value ``max`` over the channels; same dtype as the input.
        Gray pixels (max == min) get hue 0.
    """
    x = check_float(image, "rgb_to_hsv")
    if x.shape[-1:] != (3,):
        raise ValueError(f"rgb_to_hsv needs an array of shape (..., 3), got shape {x.shape}")
    flat = x.reshape(-1, 3)
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    vmax, chroma = _max_chroma(r, g, b)
    hue = _hue_sixths(r, g, b, vmax, chroma)
    hue *= 1.0 / 6.0
    hue -= np.floor(hue)
    hue[hue >= 1.0] = 0.0  # a tiny negative hue can round up to 1.0
    sat = np.zeros_like(chroma)
    np.divide(chroma, vmax, out=sat, where=vmax > 0)
    return np.stack([hue, sat, vmax], axis=-1).reshape(x.shape)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv` (hue in turns, wrapped modulo 1; saturation and value used as given).

    Args:
        hsv: (..., 3) floating-point hue, saturation, value.

    Returns:
        (..., 3) RGB, same dtype as the input.
    """
    x = check_float(hsv, "hsv_to_rgb")
    if x.shape[-1:] != (3,):
        raise ValueError(f"hsv_to_rgb needs an array of shape (..., 3), got shape {x.shape}")
    flat = x.reshape(-1, 3)
    h, s, v = flat[:, 0], flat[:, 1], flat[:, 2]
    planar = np.empty((3, flat.shape[0]), dtype=x.dtype)
    _rgb_from_hue(h * 6.0, np.array(v), s * v, planar)
    return planar.T.reshape(x.shape)


def adjust_brightness(image: np.ndarray, delta: float) -> np.ndarray:
    """``tf.image.adjust_brightness`` for float images: adds ``delta`` to every channel (no clipping).

    Args:
        image: floating-point image, intensities in [0, 1].
        delta: additive offset in intensity units (fraction of full scale); Liu et al. draw it from
            U[-64/255, 64/255].

    Returns:
        ``image + delta``, same shape and dtype.
    """
    return check_float(image, "adjust_brightness") + float(delta)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """``tf.image.adjust_saturation``: multiplies HSV saturation by ``factor`` and clips it to [0, 1].

    Computed in closed form without a full HSV round trip: hue and value (max channel) are kept and the chroma
    ``max - min`` becomes ``clip(chroma * factor, 0, max)``. As in TF's kernel, pixels whose value is <= 0 get
    saturation 0 (gray at their value). No clipping of the output intensities.

    Args:
        image: (..., H, W, 3) floating-point RGB.
        factor: saturation multiplier, >= 0 (negative values act like 0, as in TF); Liu et al. draw it from
            U[0.75, 1.25]. 0 gives a gray image, 1 leaves in-range pixels unchanged.

    Returns:
        Adjusted RGB, same shape and dtype.
    """
    return apply_color(check_rgb(image, "adjust_saturation"), [("saturation", factor)], clip=False)


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """``tf.image.adjust_hue``: rotates HSV hue by ``delta`` turns, keeping each pixel's max and min channel.

    Value (max channel) and chroma (max - min), hence saturation, are unchanged; works for any real RGB values,
    like TF's kernel. No clipping.

    Args:
        image: (..., H, W, 3) floating-point RGB.
        delta: hue rotation in turns (1.0 = a full turn, wraps around; 1/3 turns red into green); Liu et al. draw
            it from U[-0.04, 0.04].

    Returns:
        Adjusted RGB, same shape and dtype.
    """
    return apply_color(check_rgb(image, "adjust_hue"), [("hue", delta)], clip=False)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """``tf.image.adjust_contrast``: ``(x - mean) * factor + mean`` with the mean of each channel over the image.

    Args:
        image: (..., H, W, 3) floating-point RGB; means are taken over H and W separately for each channel (and
            each image of a batch), as float32 pairwise sums over blocks of rows added up in float64.
        factor: contrast multiplier (dimensionless); Liu et al. draw it from U[0.25, 1.75]. 1 is the identity,
            0 gives the per-channel mean image.

    Returns:
        Adjusted image, same shape and dtype, not clipped.
    """
    return apply_color(check_rgb(image, "adjust_contrast"), [("contrast", factor)], clip=False)
