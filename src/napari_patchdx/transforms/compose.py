"""Transform classes: the random transforms, :class:`Compose`, the preset pipelines (the :class:`Transform` base is in
:mod:`~napari_patchdx.transforms.base`, the stain transforms in :mod:`~napari_patchdx.transforms.stain`).

A transform is called as ``transform(image, rng)``; a random one draws its parameters with ``sample_params(rng)``
and applies them with ``apply(image, params)``. ``repr()`` shows its parameters, ``to_dict()`` gives a JSON-ready
config for run manifests and :func:`transform_from_dict` rebuilds the transform from it. The presets are
:func:`slide_train_transforms` (Liu et al. 2017; or the stain treatments of :data:`STAIN_MODES`) with
:func:`slide_eval_transforms`, :func:`cxr_train_transforms` and :func:`cxr_eval_transforms` (Park et al. 2019).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from .base import Transform
from .checks import check_gray, check_range, check_rgb
from .colour import COLOR_OPS, apply_color
from .orientation import ORIENTATIONS, check_orientation, orient
from .stain import HEDJitter, MacenkoNormalize, StainReference
from .xray import gaussian_blur, standardize, unsharp_mask

__all__ = [
    "STAIN_MODES",
    "ColorJitterParams",
    "ColorJitterTF",
    "Compose",
    "RandomOrientation",
    "SharpenOrBlur",
    "SharpenOrBlurParams",
    "Standardize",
    "Transform",
    "cxr_eval_transforms",
    "cxr_train_transforms",
    "slide_eval_transforms",
    "slide_train_transforms",
    "transform_from_dict",
]

STAIN_MODES: tuple[str, ...] = ("none", "liu", "hed", "macenko")
"""Colour treatments of slide patches (:func:`slide_train_transforms`): ``none`` (orientations only), ``liu``
(Liu et al.'s TF colour jitter), ``hed`` (Tellez et al.'s HED jitter), ``macenko`` (Macenko normalisation to a
reference, also at validation and inference)."""


class RandomOrientation(Transform):
    """Applies :func:`orient` with ``k`` drawn uniformly from ``ks`` (all 8 orientations by default).

    Args:
        ks: the allowed orientations (0..7); ``(0, 4)`` gives random horizontal flips only.
        copy: return a C-contiguous copy, ready for ``torch.from_numpy`` (which refuses the negative strides of a
            view). ``False`` returns a view, for when the next transform makes a new array anyway (e.g.
            :class:`ColorJitterTF`, :class:`SharpenOrBlur`, :class:`Standardize`): saves a patch-sized copy.
    """

    def __init__(self, ks: Sequence[int] = tuple(range(ORIENTATIONS)), copy: bool = True) -> None:
        ks = tuple(check_orientation(k) for k in ks)
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
        x = check_rgb(image, "ColorJitterTF")
        ops = [(op, params.value(op)) for op in params.order if self._enabled(op)]
        return apply_color(x, ops, clip=True)

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
        self.sigma_range = check_range("sigma_range", sigma_range, 0.0, float("inf"))
        if not self.sigma_range[0] > 0:
            raise ConfigError(f"sigma_range must be > 0 pixels, got {sigma_range!r}")
        self.amount_range = check_range("amount_range", amount_range, 0.0, float("inf"))

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
        x = check_gray(image, "SharpenOrBlur")
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
    cls.__name__: cls
    for cls in (
        RandomOrientation,
        ColorJitterTF,
        HEDJitter,
        MacenkoNormalize,
        SharpenOrBlur,
        Standardize,
        Compose,
    )
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


def slide_train_transforms(
    color: ColorJitterTF | None = None,
    *,
    stain: str = "liu",
    hed_sigma: float = 0.05,
    reference: StainReference | None = None,
) -> Compose:
    """Training augmentation for whole-slide patches: the 8 orientations and the colour treatment ``stain``.

    * ``"liu"`` (default, Liu et al.): TF colour jitter, ``color`` or ``ColorJitterTF()`` (Liu et al.'s ranges).
    * ``"hed"``: :class:`HEDJitter` with ``sigma = hed_sigma`` (Tellez et al.'s HED-light: 0.05).
    * ``"macenko"``: :class:`MacenkoNormalize` to ``reference`` (None: Macenko's standard target,
      :data:`~napari_patchdx.transforms.MACENKO_REFERENCE`), and no colour jitter: the model then sees
      normalised patches, as at validation and inference (:func:`slide_eval_transforms`), and the four treatments
      stay distinct arms of a comparison. The patch is normalised as read, before it is oriented, as at inference
      (where the 8 orientations of test-time augmentation come after the normalisation).
    * ``"none"``: the orientations only.

    The orientation is a view that the colour jitter reads directly (it writes a new C-contiguous array), so the
    patch is copied once; with ``"none"`` and ``"macenko"`` the orientation makes the copy.

    Raises:
        ConfigError: an unknown ``stain``, ``color`` with a ``stain`` other than ``"liu"``, or a bad ``hed_sigma``.
    """
    if stain not in STAIN_MODES:
        raise ConfigError(f"stain must be one of {', '.join(map(repr, STAIN_MODES))}, got {stain!r}")
    if color is not None and stain != "liu":
        raise ConfigError(f"a colour jitter (color=) applies to stain='liu' only, not {stain!r}")
    if stain == "none":
        return Compose([RandomOrientation()])
    if stain == "hed":
        return Compose([RandomOrientation(copy=False), HEDJitter(hed_sigma)])
    if stain == "macenko":
        return Compose([MacenkoNormalize(reference), RandomOrientation()])
    return Compose([RandomOrientation(copy=False), color if color is not None else ColorJitterTF()])


def slide_eval_transforms(stain: str = "liu", reference: StainReference | None = None) -> Compose | None:
    """Validation / inference preprocessing of slide patches that a model trained with ``stain`` needs.

    ``Compose([MacenkoNormalize(reference)])`` for ``"macenko"``; None (the patches as read) otherwise.
    """
    if stain not in STAIN_MODES:
        raise ConfigError(f"stain must be one of {', '.join(map(repr, STAIN_MODES))}, got {stain!r}")
    return Compose([MacenkoNormalize(reference)]) if stain == "macenko" else None


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
