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
  :func:`unsharp_mask`, :func:`gaussian_blur`, :func:`standardize`, :func:`hed_jitter`, :func:`macenko_normalize`).
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

Stain augmentation and normalisation
------------------------------------
:func:`slide_train_transforms` takes a colour treatment, ``stain`` (:data:`STAIN_MODES`): ``"liu"`` (the colour
jitter above, the default), ``"hed"``, ``"macenko"`` or ``"none"`` (orientations only).

* :class:`HEDJitter`: Tellez et al.'s stain augmentation: each haematoxylin, eosin and DAB channel of a colour
  deconvolution scaled by ``U(1 - sigma, 1 + sigma)`` and shifted by ``U(-sigma, sigma)`` (HED-light:
  ``sigma = 0.05``).
* :class:`MacenkoNormalize`: Macenko et al.'s stain normalisation to a :class:`StainReference` (two stain vectors
  and maximum concentrations, JSON-ready), with torchstain's estimate of each patch's stains; a patch with little
  tissue (a white one) is left unchanged. Deterministic: :func:`slide_eval_transforms` applies it to validation
  patches, and a checkpoint trained with it records the reference so that inference applies it too.

Chest X-ray patches (Park et al. 2019)
--------------------------------------
* :class:`SharpenOrBlur`: random unsharp-mask sharpening or Gaussian blurring, for robustness across vendors'
  processing.
* :class:`Standardize`: per-image standardisation (subtract the image's mean; optionally divide by its std).
* No flips by default: see :func:`cxr_train_transforms`.

Modules
-------
* :mod:`~napari_patchdx.transforms.orientation`: the 8 orientations (numpy and torch).
* :mod:`~napari_patchdx.transforms.colour`: colour adjustments with TF semantics, RGB <-> HSV.
* :mod:`~napari_patchdx.transforms.xray`: blur, unsharp mask, standardisation.
* :mod:`~napari_patchdx.transforms.stain`: HED jitter and Macenko normalisation, stain references.
* :mod:`~napari_patchdx.transforms.base`: the :class:`Transform` base class.
* :mod:`~napari_patchdx.transforms.compose`: the other :class:`Transform` classes, :class:`Compose`, the presets.
* :mod:`~napari_patchdx.transforms.checks`: argument checks shared by the above.
"""

from __future__ import annotations

from .base import Transform
from .colour import COLOR_OPS, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, hsv_to_rgb, rgb_to_hsv
from .compose import (
    STAIN_MODES,
    ColorJitterParams,
    ColorJitterTF,
    Compose,
    RandomOrientation,
    SharpenOrBlur,
    SharpenOrBlurParams,
    Standardize,
    cxr_eval_transforms,
    cxr_train_transforms,
    slide_eval_transforms,
    slide_train_transforms,
    transform_from_dict,
)
from .orientation import ORIENTATIONS, orient, orient_torch, unorient, unorient_torch
from .stain import (
    MACENKO_REFERENCE,
    HEDJitter,
    HEDJitterParams,
    MacenkoNormalize,
    StainReference,
    estimate_stains,
    fit_reference,
    hed_jitter,
    load_reference,
    macenko_normalize,
    write_reference,
)
from .xray import gaussian_blur, standardize, unsharp_mask

__all__ = [
    "COLOR_OPS",
    "MACENKO_REFERENCE",
    "ORIENTATIONS",
    "STAIN_MODES",
    "ColorJitterParams",
    "ColorJitterTF",
    "Compose",
    "HEDJitter",
    "HEDJitterParams",
    "MacenkoNormalize",
    "RandomOrientation",
    "SharpenOrBlur",
    "SharpenOrBlurParams",
    "StainReference",
    "Standardize",
    "Transform",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "cxr_eval_transforms",
    "cxr_train_transforms",
    "estimate_stains",
    "fit_reference",
    "gaussian_blur",
    "hed_jitter",
    "hsv_to_rgb",
    "load_reference",
    "macenko_normalize",
    "orient",
    "orient_torch",
    "rgb_to_hsv",
    "slide_eval_transforms",
    "slide_train_transforms",
    "standardize",
    "transform_from_dict",
    "unorient",
    "unorient_torch",
    "unsharp_mask",
    "write_reference",
]
