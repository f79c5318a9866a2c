"""Patch augmentations: small picklable callables with one job each, deterministic given a random generator.

Conventions
-----------
* Images are floating-point arrays (float32 in practice) with intensities in [0, 1], channels last: RGB slide
  patches ``(H, W, 3)``, chest X-ray patches ``(H, W)`` or ``(H, W, 1)``. Outputs keep the input's dtype.
* Every random transform is called as ``transform(image, rng)`` with a :class:`numpy.random.Generator` and draws
  all its randomness from that generator, so the same generator state gives the same output. Give each sample
  its own generator in DataLoader workers (e.g. ``np.random.default_rng([seed, epoch, index])``), never a global
  one. A transform draws its parameters with ``sample_params(rng)`` and applies them with ``apply(image, params)``;
  both are public so tests and manifests can see exactly what was drawn.
* Every random transform has a deterministic core function with explicit parameters (:func:`orient`,
  :func:`adjust_brightness`, :func:`adjust_saturation`, :func:`adjust_hue`, :func:`adjust_contrast`,
  :func:`unsharp_mask`, :func:`gaussian_blur`, :func:`standardize`).
* Transforms are plain classes (no lambdas, no closures) so they pickle into worker processes. ``repr()`` shows
  their parameters, ``to_dict()`` gives a JSON-ready config for run manifests and :func:`transform_from_dict`
  rebuilds the transform from it.

Whole-slide patches (Liu et al. 2017)
-------------------------------------
* :class:`RandomOrientation`: one of the 8 orientations of the dihedral group (4 quarter turns x mirror).
* :class:`ColorJitterTF`: colour jitter with TensorFlow ``tf.image`` semantics, reproduced here in numpy:
  brightness is an *additive* delta (torchvision's ``ColorJitter`` brightness is multiplicative, a different
  augmentation), saturation multiplies HSV saturation and clips it to [0, 1], hue rotates HSV hue, contrast scales
  each channel about its mean over the image; the result is clipped to [0, 1] at the end, as in Liu et al. and
  TF-slim's inception preprocessing.
* Positional jitter (up to 8 px in Liu et al.) is *not* a transform here: it belongs to the patch sampler, which
  shifts the window it reads from the slide. Shifting an already-cut patch would need pixels it does not have.

Chest X-ray patches (Park et al. 2019)
--------------------------------------
* :class:`SharpenOrBlur`: random unsharp-mask sharpening or Gaussian blurring, for robustness across vendors'
  processing.
* :class:`Standardize`: per-image standardisation (subtract the image's mean; optionally divide by its std).
* No flips by default: see :func:`cxr_train_transforms`.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import ndimage

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "COLOR_OPS",
    "ORIENTATIONS",
    "ColorJitterParams",
    "ColorJitterTF",
    "Compose",
    "RandomOrientation",
    "SharpenOrBlur",
    "SharpenOrBlurParams",
    "Standardize",
    "Transform",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "cxr_eval_transforms",
    "cxr_train_transforms",
    "gaussian_blur",
    "hsv_to_rgb",
    "orient",
    "orient_torch",
    "rgb_to_hsv",
    "slide_train_transforms",
    "standardize",
    "transform_from_dict",
    "unorient",
    "unorient_torch",
    "unsharp_mask",
]

ORIENTATIONS = 8
"""Number of orientations in the dihedral group of the square (4 quarter turns, each with or without a mirror)."""

COLOR_OPS: tuple[str, ...] = ("brightness", "saturation", "hue", "contrast")
"""The four colour adjustments of :class:`ColorJitterTF`, in its ``order="fixed"`` order (TF-slim's ordering 0)."""


# ----------------------------------------------------------------------------------------------- validation


def _check_k(k: int) -> int:
    k = operator.index(k)
    if not 0 <= k < ORIENTATIONS:
        raise ValueError(f"orientation k must be in 0..{ORIENTATIONS - 1}, got {k}")
    return k


def _check_float(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"{what} needs a floating-point image with intensities in [0, 1], got dtype {image.dtype} "
            "(convert uint8 with image.astype(np.float32) / 255)"
        )
    return image


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    image = _check_float(image, what)
    if image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"{what} needs an RGB image of shape (..., H, W, 3), got shape {image.shape}")
    return image


def _check_gray(image: np.ndarray, what: str) -> np.ndarray:
    image = _check_float(image, what)
    if image.ndim not in (2, 3):
        raise ValueError(f"{what} needs an image of shape (H, W) or (H, W, C), got shape {image.shape}")
    return image


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from exc
    if not low <= lo <= hi <= high:
        raise ConfigError(f"{name} must be a (low, high) pair with {low} <= low <= high <= {high}, got {value!r}")
    return lo, hi


# ----------------------------------------------------------------------------------------------- orientations


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
    k = _check_k(k)
    out = np.rot90(image, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def unorient(image: np.ndarray, k: int) -> np.ndarray:
    """Exact inverse of :func:`orient`: ``unorient(orient(x, k), k)`` equals ``x``. Returns a view."""
    k = _check_k(k)
    if k >= 4:
        image = image[:, ::-1]
    return np.rot90(image, -(k % 4), axes=(0, 1))


def orient_torch(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`orient` for torch tensors of shape (..., H, W), e.g. NCHW batches (test-time augmentation).

    Same effect on the (H, W) plane as :func:`orient` on an (H, W, ...) array. Returns a new tensor.
    """
    import torch

    k = _check_k(k)
    out = torch.rot90(tensor, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def unorient_torch(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """Exact inverse of :func:`orient_torch` (e.g. to map a heatmap or CAM back to the input's orientation)."""
    import torch

    k = _check_k(k)
    if k >= 4:
        tensor = torch.flip(tensor, dims=(-1,))
    return torch.rot90(tensor, -(k % 4), dims=(-2, -1))


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


def _apply_color(image: np.ndarray, ops: Sequence[tuple[str, float]], clip: bool) -> np.ndarray:
    """Colour adjustments on an (..., H, W, 3) image of any strides; returns a new C-contiguous array."""
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
    x = _check_float(image, "rgb_to_hsv")
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
    x = _check_float(hsv, "hsv_to_rgb")
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
    return _check_float(image, "adjust_brightness") + float(delta)


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
    return _apply_color(_check_rgb(image, "adjust_saturation"), [("saturation", factor)], clip=False)


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
    return _apply_color(_check_rgb(image, "adjust_hue"), [("hue", delta)], clip=False)


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
    return _apply_color(_check_rgb(image, "adjust_contrast"), [("contrast", factor)], clip=False)


# ----------------------------------------------------------------------------------------------- X-ray filters


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
    x = _check_gray(image, "gaussian_blur")
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
    x = _check_gray(image, "unsharp_mask")
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
    x = _check_float(image, "standardize")
    if mode not in ("mean", "meanstd"):
        raise ValueError(f"mode must be 'mean' or 'meanstd', got {mode!r}")
    out = np.subtract(x, x.mean(dtype=np.float64).astype(x.dtype), order="C")
    if mode == "meanstd":
        out /= np.asarray(max(float(out.std(dtype=np.float64)), float(eps)), dtype=x.dtype)
    return out


# ----------------------------------------------------------------------------------------------- transforms


class Transform(ABC):
    """Base of every transform: ``transform(image, rng) -> image``, a ``repr`` and a JSON-ready ``to_dict``."""

    @abstractmethod
    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply the transform; all randomness comes from ``rng``."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready) that rebuild this transform."""

    def to_dict(self) -> dict[str, Any]:
        """``{"type": class name, **constructor arguments}``, for run manifests; see :func:`transform_from_dict`."""
        return {"type": type(self).__name__, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class RandomOrientation(Transform):
    """Applies :func:`orient` with ``k`` drawn uniformly from ``ks`` (all 8 orientations by default).

    Args:
        ks: the allowed orientations (0..7); ``(0, 4)`` gives random horizontal flips only.
        copy: return a C-contiguous copy, ready for ``torch.from_numpy`` (which refuses the negative strides of a
            view). ``False`` returns a view, for when the next transform makes a new array anyway (e.g.
            :class:`ColorJitterTF`, :class:`SharpenOrBlur`, :class:`Standardize`): saves a patch-sized copy.
    """

    def __init__(self, ks: Sequence[int] = tuple(range(ORIENTATIONS)), copy: bool = True) -> None:
        ks = tuple(_check_k(k) for k in ks)
        if not ks:
            raise ConfigError("RandomOrientation needs at least one orientation in ks")
        self.ks = ks
        self.copy = bool(copy)

    def params(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "copy": self.copy}

    def sample_params(self, rng: np.random.Generator) -> int:
        """The orientation ``k`` to apply (one integer draw from ``rng``)."""
        return self.ks[int(rng.integers(len(self.ks)))]

    def apply(self, image: np.ndarray, k: int) -> np.ndarray:
        """:func:`orient`, copied to a new C-contiguous array when ``copy`` is set (also for ``k = 0``)."""
        if not self.copy:
            return orient(image, k)
        if image.ndim == 3 and image.flags.c_contiguous and image.size:
            # Move whole pixels (all channels) as single records: numpy copies a transposed (H, W) array of
            # records much faster than an (H, W, C) array whose innermost run is only C values long.
            pixels = image.view(np.dtype((np.void, image.shape[2] * image.itemsize)))[..., 0]
            out = np.array(orient(pixels, k), order="C")
            return out.view(image.dtype).reshape(*out.shape, image.shape[2])
        return np.array(orient(image, k), order="C")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.sample_params(rng))


@dataclass(frozen=True)
class ColorJitterParams:
    """One draw of :class:`ColorJitterTF`: the four adjustment parameters and the order they are applied in."""

    brightness_delta: float
    """Additive brightness offset, intensity units."""
    saturation_factor: float
    """Saturation multiplier."""
    hue_delta: float
    """Hue rotation, turns."""
    contrast_factor: float
    """Contrast multiplier."""
    order: tuple[str, ...] = COLOR_OPS
    """Names from :data:`COLOR_OPS` in application order."""

    def value(self, op: str) -> float:
        """The parameter of adjustment ``op`` ("brightness", "saturation", "hue" or "contrast")."""
        values = {
            "brightness": self.brightness_delta,
            "saturation": self.saturation_factor,
            "hue": self.hue_delta,
            "contrast": self.contrast_factor,
        }
        if op not in values:
            raise ValueError(f"unknown colour adjustment {op!r}; known: {COLOR_OPS}")
        return values[op]


class ColorJitterTF(Transform):
    """Random colour jitter with TensorFlow semantics (Liu et al. 2017), then a clip to [0, 1].

    Draws ``delta_b ~ U[-brightness, brightness]`` (additive), ``f_s ~ U[1 - saturation, 1 + saturation]``,
    ``delta_h ~ U[-hue, hue]`` (turns) and ``f_c ~ U[1 - contrast, 1 + contrast]``, applies
    :func:`adjust_brightness`, :func:`adjust_saturation`, :func:`adjust_hue` and :func:`adjust_contrast` in a
    uniformly random order (``order="random"``, one of the 24 permutations) or in the order of :data:`COLOR_OPS`
    (``order="fixed"``: the order Liu et al. list them in and TF-slim's inception ordering 0; the paper does not say
    whether the order was randomised), without clipping in between (as TF does), and clips the result to [0, 1].
    A range of 0 disables that adjustment (it is skipped, not applied with its neutral value).

    Args:
        brightness: maximum brightness delta, intensity units, >= 0 (Liu et al.: 64/255).
        saturation: saturation factor half-range, in [0, 1] (Liu et al.: 0.25).
        hue: maximum hue delta, turns, in [0, 0.5] (Liu et al.: 0.04).
        contrast: contrast factor half-range, in [0, 1] (Liu et al.: 0.75).
        order: ``"random"`` or ``"fixed"``.
    """

    def __init__(
        self,
        brightness: float = 64 / 255,
        saturation: float = 0.25,
        hue: float = 0.04,
        contrast: float = 0.75,
        order: Literal["random", "fixed"] = "random",
    ) -> None:
        self.brightness = float(brightness)
        self.saturation = float(saturation)
        self.hue = float(hue)
        self.contrast = float(contrast)
        self.order = order
        if not self.brightness >= 0:
            raise ConfigError(f"brightness must be >= 0 (intensity units), got {brightness!r}")
        for name, value, high in (("saturation", self.saturation, 1.0), ("hue", self.hue, 0.5)):
            if not 0 <= value <= high:
                raise ConfigError(f"{name} must be in [0, {high}], got {value!r}")
        if not 0 <= self.contrast <= 1:
            raise ConfigError(f"contrast must be in [0, 1], got {contrast!r}")
        if order not in ("random", "fixed"):
            raise ConfigError(f"order must be 'random' or 'fixed', got {order!r}")

    def params(self) -> dict[str, Any]:
        return {
            "brightness": self.brightness,
            "saturation": self.saturation,
            "hue": self.hue,
            "contrast": self.contrast,
            "order": self.order,
        }

    def sample_params(self, rng: np.random.Generator) -> ColorJitterParams:
        """Draw the four parameters (one call ``rng.random(4)``), then the order (``rng.permutation(4)``, random)."""
        u = 2.0 * rng.random(4) - 1.0  # U[-1, 1)
        order = COLOR_OPS if self.order == "fixed" else tuple(COLOR_OPS[i] for i in rng.permutation(4))
        return ColorJitterParams(
            brightness_delta=float(self.brightness * u[0]),
            saturation_factor=float(1.0 + self.saturation * u[1]),
            hue_delta=float(self.hue * u[2]),
            contrast_factor=float(1.0 + self.contrast * u[3]),
            order=order,
        )

    def _enabled(self, op: str) -> bool:
        return getattr(self, op) > 0

    def apply(self, image: np.ndarray, params: ColorJitterParams) -> np.ndarray:
        """Apply the adjustments of ``params`` in ``params.order`` (skipping disabled ones), then clip to [0, 1]."""
        x = _check_rgb(image, "ColorJitterTF")
        ops = [(op, params.value(op)) for op in params.order if self._enabled(op)]
        return _apply_color(x, ops, clip=True)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.sample_params(rng))


@dataclass(frozen=True)
class SharpenOrBlurParams:
    """One draw of :class:`SharpenOrBlur`."""

    mode: Literal["sharpen", "blur", "identity"]
    sigma: float
    """Gaussian standard deviation, pixels."""
    amount: float
    """Unsharp-mask gain (used by ``"sharpen"`` only)."""


class SharpenOrBlur(Transform):
    """Random unsharp-mask sharpening or Gaussian blur (Park et al. 2019), then a clip to [0, 1].

    With probability ``p_sharpen`` :func:`unsharp_mask` with ``sigma ~ U(sigma_range)`` and
    ``amount ~ U(amount_range)``; with probability ``p_blur`` :func:`gaussian_blur` with ``sigma ~ U(sigma_range)``;
    otherwise the image unchanged. Works on (H, W) and (H, W, C) images; channels are filtered separately.

    Args:
        p_sharpen: probability of sharpening, in [0, 1].
        p_blur: probability of blurring, in [0, 1]; ``p_sharpen + p_blur <= 1``.
        sigma_range: (low, high) Gaussian standard deviation in pixels, 0 < low <= high.
        amount_range: (low, high) unsharp-mask gain, 0 <= low <= high.
    """

    def __init__(
        self,
        p_sharpen: float = 0.25,
        p_blur: float = 0.25,
        sigma_range: Sequence[float] = (0.5, 1.5),
        amount_range: Sequence[float] = (0.3, 1.0),
    ) -> None:
        self.p_sharpen = float(p_sharpen)
        self.p_blur = float(p_blur)
        if not (0 <= self.p_sharpen <= 1 and 0 <= self.p_blur <= 1 and self.p_sharpen + self.p_blur <= 1):
            raise ConfigError(f"need 0 <= p_sharpen, p_blur and p_sharpen + p_blur <= 1, got {p_sharpen}, {p_blur}")
        self.sigma_range = _check_range("sigma_range", sigma_range, 0.0, float("inf"))
        if not self.sigma_range[0] > 0:
            raise ConfigError(f"sigma_range must be > 0 pixels, got {sigma_range!r}")
        self.amount_range = _check_range("amount_range", amount_range, 0.0, float("inf"))

    def params(self) -> dict[str, Any]:
        return {
            "p_sharpen": self.p_sharpen,
            "p_blur": self.p_blur,
            "sigma_range": list(self.sigma_range),
            "amount_range": list(self.amount_range),
        }

    def sample_params(self, rng: np.random.Generator) -> SharpenOrBlurParams:
        """Draw the mode, sigma and amount (always one call ``rng.random(3)``, whatever the mode)."""
        u = rng.random(3)
        if u[0] < self.p_sharpen:
            mode: Literal["sharpen", "blur", "identity"] = "sharpen"
        elif u[0] < self.p_sharpen + self.p_blur:
            mode = "blur"
        else:
            mode = "identity"
        s0, s1 = self.sigma_range
        a0, a1 = self.amount_range
        return SharpenOrBlurParams(mode, float(s0 + (s1 - s0) * u[1]), float(a0 + (a1 - a0) * u[2]))

    def apply(self, image: np.ndarray, params: SharpenOrBlurParams) -> np.ndarray:
        """Apply the drawn filter and clip to [0, 1] (always returns a new array)."""
        x = _check_gray(image, "SharpenOrBlur")
        if params.mode == "sharpen":
            out = unsharp_mask(x, params.sigma, params.amount)
        elif params.mode == "blur":
            out = gaussian_blur(x, params.sigma)
        else:
            return np.clip(x, 0.0, 1.0, order="C")
        return np.clip(out, 0.0, 1.0, out=out)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.sample_params(rng))


class Standardize(Transform):
    """Per-image standardisation, :func:`standardize` (deterministic: ``rng`` is accepted and not used).

    Args:
        eps: lower bound of the std divisor, intensity units (``"meanstd"`` only).
        mode: ``"mean"`` (subtract the image's mean, Park et al.) or ``"meanstd"`` (also divide by its std).
    """

    def __init__(self, eps: float = 1e-6, mode: Literal["mean", "meanstd"] = "mean") -> None:
        self.eps = float(eps)
        self.mode = mode
        if not self.eps > 0:
            raise ConfigError(f"eps must be > 0, got {eps!r}")
        if mode not in ("mean", "meanstd"):
            raise ConfigError(f"mode must be 'mean' or 'meanstd', got {mode!r}")

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "mode": self.mode}

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return standardize(image, self.mode, self.eps)


class Compose(Transform):
    """Applies ``transforms`` in order, all drawing from the same ``rng``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = tuple(transforms)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise ConfigError(f"Compose takes Transform instances, got {t!r}")

    def params(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms]}

    def __repr__(self) -> str:
        return f"Compose([{', '.join(repr(t) for t in self.transforms)}])"

    def __len__(self) -> int:
        return len(self.transforms)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.transforms)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            image = t(image, rng)
        return image


_REGISTRY: dict[str, type[Transform]] = {
    cls.__name__: cls for cls in (RandomOrientation, ColorJitterTF, SharpenOrBlur, Standardize, Compose)
}


def transform_from_dict(config: Mapping[str, Any]) -> Transform:
    """Rebuild a transform from its :meth:`Transform.to_dict` (e.g. read back from a run manifest).

    Raises:
        ConfigError: unknown ``type`` or bad arguments.
    """
    kwargs = dict(config)
    name = kwargs.pop("type", None)
    cls = _REGISTRY.get(name)  # type: ignore[arg-type]
    if cls is None:
        raise ConfigError(f"unknown transform type {name!r}; known: {sorted(_REGISTRY)}")
    if cls is Compose:
        return Compose([transform_from_dict(t) for t in kwargs.get("transforms", [])])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for {name}: {exc}") from exc


# ----------------------------------------------------------------------------------------------- pipelines


def slide_train_transforms(color: ColorJitterTF | None = None) -> Compose:
    """Training augmentation for whole-slide patches (Liu et al.): 8 orientations, then TF colour jitter.

    The orientation is a view that the colour jitter reads directly (it always writes a new C-contiguous array),
    so the patch is copied once.

    Args:
        color: the colour jitter; ``ColorJitterTF()`` (Liu et al.'s ranges, random order) by default.
    """
    return Compose([RandomOrientation(copy=False), color if color is not None else ColorJitterTF()])


def cxr_train_transforms(hflip: bool = False, sharpen_blur: SharpenOrBlur | None = None) -> Compose:
    """Training augmentation for chest X-ray patches (Park et al.): random sharpen / blur, then standardisation.

    No rotations: radiographs are acquired upright. No horizontal flips by default either: a PA chest film is
    lateralised (heart, aortic knob and gastric bubble on the patient's left, the right dome higher), a mirrored
    film is a situs-inversus image the model never meets at test time, and mirroring would teach it to ignore the
    side cues that help localise. ``hflip=True`` adds random mirroring (``RandomOrientation(ks=(0, 4))``) for data
    whose labels and lesions carry no side information, e.g. small lesion-centred patches.

    Args:
        hflip: add random horizontal flips (probability 1/2) before the filters.
        sharpen_blur: the filter transform; ``SharpenOrBlur()`` by default.
    """
    steps: list[Transform] = [RandomOrientation(ks=(0, 4), copy=False)] if hflip else []
    steps += [sharpen_blur if sharpen_blur is not None else SharpenOrBlur(), Standardize()]
    return Compose(steps)


def cxr_eval_transforms() -> Compose:
    """Evaluation preprocessing for chest X-rays: per-image standardisation only."""
    return Compose([Standardize()])
