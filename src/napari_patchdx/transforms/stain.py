"""Stain augmentation and normalisation of H&E slide patches: HED jitter (Tellez et al.) and Macenko normalisation.

HED jitter (Tellez et al. 2018, 2019)
-------------------------------------
:class:`HEDJitter` separates a patch into haematoxylin, eosin and DAB channels by colour deconvolution (Ruifrok &
Johnston 2001, scikit-image's ``hed_from_rgb`` / ``rgb_from_hed`` matrices), multiplies each channel by
``alpha_i ~ U(1 - sigma, 1 + sigma)``, adds ``beta_i ~ U(-sigma, sigma)`` and recombines (:func:`hed_jitter`).
``sigma = 0.05`` is Tellez et al.'s "HED-light" (0.1 "medium", 0.2 "strong", in the authors' augmentation code).
As there, a patch whose mean intensity lies outside ``cutoff`` = (0.15, 0.85) (mostly glass, or mostly dark) is
left as it is.

The deconvolution is the one those values were chosen for (:func:`rgb_to_hed`): ``hed = -log(rgb + 2) @
hed_from_rgb`` with RGB in [0, 1], scikit-image's ``separate_stains`` of the time, which the authors' code keeps;
:func:`hed_to_rgb` inverts it exactly. Today's ``skimage.color.rgb2hed`` measures optical density in units of
ln(10^6) and clips negative stain amounts to 0, so there ``sigma = 0.05`` is another augmentation (on a
Beer-Lambert H&E patch a haematoxylin offset of 0.05 darkens tissue by about 38 of 255 levels and glass by 75, and a
factor of 1.05 changes tissue by about 2 levels; in the form used here they change tissue by about 17 and 21 levels)
and the round trip alone moves pixels by up to 5 levels.

Macenko normalisation (Macenko et al. 2009)
-------------------------------------------
:func:`estimate_stains` finds a patch's two stain vectors and maximum concentrations with torchstain's numpy Macenko
normaliser (``torchstain.normalizers.MacenkoNormalizer(backend="numpy")``): optical density ``OD = -log((RGB + 1) /
io)`` with RGB in 0..255; pixels with ``OD < beta`` in any channel are glass; the plane of the two main eigenvectors
of the tissue's OD; the stain vectors at the ``alpha``-th and ``(100 - alpha)``-th percentiles of the angle in that
plane (the one with the larger red component is haematoxylin); concentrations of every pixel by least squares; their
99th percentiles as the maxima (from every k-th pixel of a patch over 2**13 pixels). :func:`macenko_normalize`
re-mixes the patch's concentrations, scaled to the reference's maxima, with the reference's stain vectors, as
torchstain's ``normalize`` does (but in floating point, and undoing the ``+ 1`` of the OD so that a patch normalised
to its own stains comes back unchanged).

A :class:`StainReference` (two unit OD vectors and two maximum concentrations) is JSON-ready, so a checkpoint carries
the reference its model was trained with (:func:`fit_reference` fits one to patches, :func:`load_reference` reads one
from a JSON file, a checkpoint sidecar or an image, :func:`write_reference` writes one). :class:`MacenkoNormalize` is
the transform; it is deterministic and draws nothing from its generator.

A patch whose tissue (pixels that are not glass by the rule above) is under ``min_tissue`` of its pixels, or whose
estimate fails (too few distinct colours, a non-finite result), is returned unchanged: Macenko's estimate needs
stained pixels and a white patch has none. The estimate is made per patch, in training and at inference alike, so a
patch with one stain only (e.g. pink stroma without nuclei) gets a poorer estimate than a whole slide would: on
synthetic slides of two staining centres it brings 48 px patches from 18 to 4 levels (mean absolute RGB difference)
of the reference centre's rendering of the same tissue, and 128 px patches holding every kind of tissue to 0.3.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.color import hed_from_rgb, rgb_from_hed

from ..errors import ConfigError, InputFileError
from .base import Transform
from .checks import check_range, check_rgb

__all__ = [
    "HED_CHANNELS",
    "MACENKO_REFERENCE",
    "REFERENCE_PATCHES",
    "HEDJitter",
    "HEDJitterParams",
    "MacenkoNormalize",
    "StainReference",
    "estimate_stains",
    "fit_reference",
    "hed_jitter",
    "hed_to_rgb",
    "load_reference",
    "macenko_normalize",
    "rgb_to_hed",
    "tissue_fraction",
    "write_reference",
]

HED_CHANNELS: tuple[str, ...] = ("hematoxylin", "eosin", "dab")
"""The channels of :func:`rgb_to_hed`, in order."""

_OFFSET = 2.0
"""Added to RGB in [0, 1] before the logarithm of :func:`rgb_to_hed` (scikit-image's separate_stains of 2018)."""

_HED_FROM_RGB = np.asarray(hed_from_rgb, dtype=np.float32)
_RGB_FROM_HED = np.asarray(rgb_from_hed, dtype=np.float32)

REFERENCE_PATCHES = 64
"""Training patches a stain reference is fitted to when none is given (see :func:`fit_reference`)."""

_MAX_FIT_PIXELS = 1 << 20
"""At most this many pixels (a seeded random subset) enter :func:`fit_reference`."""

_MIN_TISSUE_PIXELS = 16
"""Fewest tissue pixels a Macenko estimate is made from, whatever ``min_tissue`` allows."""

_ESTIMATE_PIXELS = 1 << 13
"""A patch's stains are estimated from at most about this many of its pixels (every k-th, in raster order)."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# ----------------------------------------------------------------------------------------------- HED jitter


def rgb_to_hed(image: np.ndarray) -> np.ndarray:
    """Colour deconvolution into haematoxylin, eosin and DAB as Tellez et al. used it: ``-log(rgb + 2) @ hed_from_rgb``.

    Args:
        image: (..., 3) floating-point RGB in [0, 1].

    Returns:
        (..., 3) float32 H, E, D values (dimensionless, negative for these inputs; see the module docstring), not
        clipped, so that :func:`hed_to_rgb` inverts them exactly.
    """
    x = check_rgb(image, "rgb_to_hed")
    out = np.log(x.astype(np.float32) + np.float32(_OFFSET))
    out = out @ _HED_FROM_RGB
    return np.negative(out, out=out)


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hed`: ``exp(-hed @ rgb_from_hed) - 2``, float32, not clipped.

    Args:
        hed: (..., 3) H, E, D values as :func:`rgb_to_hed` gives them.
    """
    x = check_rgb(hed, "hed_to_rgb")
    out = np.negative(x.astype(np.float32)) @ _RGB_FROM_HED
    np.exp(out, out=out)
    out -= np.float32(_OFFSET)
    return out


def hed_jitter(image: np.ndarray, alpha: Sequence[float], beta: Sequence[float]) -> np.ndarray:
    """Scale and shift the H, E and D channels: ``hed * alpha + beta``, back to RGB, clipped to [0, 1].

    Args:
        image: (H, W, 3) floating-point RGB in [0, 1].
        alpha: three multipliers (H, E, D); 1 leaves a channel as it is.
        beta: three offsets in :func:`rgb_to_hed` units; 0 leaves a channel as it is.

    Returns:
        A new C-contiguous image, same shape and dtype as ``image``.
    """
    x = check_rgb(image, "hed_jitter")
    a = np.asarray(alpha, dtype=np.float32).reshape(3)
    b = np.asarray(beta, dtype=np.float32).reshape(3)
    hed = rgb_to_hed(x)
    hed *= a
    hed += b
    out = hed_to_rgb(hed)
    np.clip(out, 0.0, 1.0, out=out)
    return np.ascontiguousarray(out, dtype=x.dtype)


@dataclass(frozen=True)
class HEDJitterParams:
    """One draw of :class:`HEDJitter`."""

    alpha: tuple[float, float, float]
    """Multipliers of the H, E and D channels."""
    beta: tuple[float, float, float]
    """Offsets of the H, E and D channels (:func:`rgb_to_hed` units)."""


class HEDJitter(Transform):
    """Random stain augmentation in HED space (Tellez et al. 2018, 2019), then a clip to [0, 1].

    Draws ``alpha_i ~ U[1 - sigma, 1 + sigma)`` and ``beta_i ~ U[-sigma, sigma)`` for H, E and D (one call
    ``rng.random(6)``, made for every patch, so the stream of draws does not depend on the images) and applies
    :func:`hed_jitter`, unless the patch's mean intensity lies outside ``cutoff``: then the patch is returned as it
    is (a copy).

    Args:
        sigma: half-range of the multipliers and offsets, in [0, 1) (Tellez et al.'s HED-light: 0.05; medium 0.1,
            strong 0.2). 0 disables the transform (the patch is copied, not converted).
        cutoff: (low, high) mean intensity in [0, 1] of the patches that are augmented (Tellez et al.: 0.15, 0.85).
    """

    def __init__(self, sigma: float = 0.05, cutoff: Sequence[float] = (0.15, 0.85)) -> None:
        self.sigma = float(sigma)
        if not 0 <= self.sigma < 1:
            raise ConfigError(f"HED jitter sigma must be in [0, 1), got {sigma!r}")
        self.cutoff = check_range("cutoff", cutoff, 0.0, 1.0)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "cutoff": list(self.cutoff)}

    def sample_params(self, rng: np.random.Generator) -> HEDJitterParams:
        """Draw the multipliers and offsets (one call ``rng.random(6)``)."""
        u = 2.0 * rng.random(6) - 1.0  # U[-1, 1)
        alpha = tuple(float(1.0 + self.sigma * v) for v in u[:3])
        beta = tuple(float(self.sigma * v) for v in u[3:])
        return HEDJitterParams(alpha=alpha, beta=beta)  # type: ignore[arg-type]

    def apply(self, image: np.ndarray, params: HEDJitterParams) -> np.ndarray:
        """:func:`hed_jitter` with ``params`` when enabled and the patch's mean is inside ``cutoff``, else a copy."""
        x = check_rgb(image, "HEDJitter")
        if x.ndim != 3:
            raise ValueError(f"HEDJitter needs one (H, W, 3) image, got shape {x.shape}")
        low, high = self.cutoff
        if self.sigma == 0 or not low <= float(x.mean()) <= high:
            return np.array(x, order="C")
        return hed_jitter(x, params.alpha, params.beta)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.sample_params(rng))


# ----------------------------------------------------------------------------------------------- Macenko


@dataclass(frozen=True)
class StainReference:
    """Two stain vectors and their maximum concentrations: a Macenko target, or one patch's estimate.

    Attributes:
        hematoxylin: unit optical-density vector (R, G, B) of haematoxylin: OD per unit concentration.
        eosin: unit optical-density vector (R, G, B) of eosin.
        max_concentrations: (haematoxylin, eosin) 99th percentiles of the concentrations, > 0.
    """

    hematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    max_concentrations: tuple[float, float]

    def __post_init__(self) -> None:
        for name in ("hematoxylin", "eosin", "max_concentrations"):
            value = getattr(self, name)
            n = 2 if name == "max_concentrations" else 3
            try:
                values = tuple(float(v) for v in value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"stain reference {name} must be {n} numbers, got {value!r}") from exc
            if len(values) != n or not all(np.isfinite(values)):
                raise ConfigError(f"stain reference {name} must be {n} finite numbers, got {value!r}")
            if name == "max_concentrations" and not min(values) > 0:
                raise ConfigError(f"stain reference max_concentrations must be positive, got {value!r}")
            object.__setattr__(self, name, values)

    def matrix(self) -> np.ndarray:
        """(3, 2) float64 stain matrix: rows R, G, B; columns haematoxylin, eosin (torchstain's ``HERef``)."""
        return np.array([self.hematoxylin, self.eosin], dtype=np.float64).T

    def to_dict(self) -> dict[str, list[float]]:
        """``{"hematoxylin": [r, g, b], "eosin": [r, g, b], "max_concentrations": [h, e]}``."""
        return {
            "hematoxylin": list(self.hematoxylin),
            "eosin": list(self.eosin),
            "max_concentrations": list(self.max_concentrations),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StainReference:
        """The reference of :meth:`to_dict`; ConfigError for anything else."""
        keys = ("hematoxylin", "eosin", "max_concentrations")
        if not isinstance(values, Mapping) or sorted(values) != sorted(keys):
            raise ConfigError(f"a stain reference is a mapping with keys {', '.join(keys)}, got {values!r}")
        return cls(values["hematoxylin"], values["eosin"], values["max_concentrations"])

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, max_concentrations: Sequence[float]) -> StainReference:
        """From a (3, 2) stain matrix (columns haematoxylin, eosin) and the two maxima."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (3, 2):
            raise ConfigError(f"a stain matrix has shape (3, 2), got {m.shape}")
        return cls(tuple(m[:, 0]), tuple(m[:, 1]), tuple(max_concentrations))  # type: ignore[arg-type]


MACENKO_REFERENCE = StainReference(
    hematoxylin=(0.5626, 0.7201, 0.4062), eosin=(0.2159, 0.8012, 0.5581), max_concentrations=(1.9705, 1.0308)
)
"""The standard target of Macenko's reference implementation (torchstain's defaults)."""


def _rgb255(image: np.ndarray) -> np.ndarray:
    """(N, 3) float64 RGB on the 0..255 scale from a uint8 image or a float image in [0, 1]."""
    x = np.asarray(image)
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"stain normalisation needs RGB images of shape (..., 3), got shape {x.shape}")
    if x.dtype == np.uint8:
        return x.reshape(-1, 3).astype(np.float64)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"stain normalisation needs uint8 RGB or floating-point RGB in [0, 1], got dtype {x.dtype}")
    return x.reshape(-1, 3).astype(np.float64) * 255.0


def _optical_density(rgb255: np.ndarray, io: float) -> np.ndarray:
    """torchstain's optical density ``-log((RGB + 1) / io)`` of (N, 3) RGB on the 0..255 scale."""
    return -np.log((rgb255 + 1.0) / io)


def tissue_fraction(image: np.ndarray, io: float = 240.0, beta: float = 0.15) -> float:
    """Share of pixels that are tissue by Macenko's rule: optical density at least ``beta`` in every channel.

    Args:
        image: (..., 3) uint8 RGB, or floating-point RGB in [0, 1].
        io: the transmitted light intensity (glass), 0..255 scale.
        beta: the OD threshold (dimensionless).
    """
    od = _optical_density(_rgb255(image), io)
    return float((od >= beta).all(axis=1).mean()) if len(od) else 0.0


_BLAS: list[Any] = []
"""The process's threadpoolctl controller, made on first use."""


def _one_blas_thread() -> Any:
    """A context that runs BLAS / LAPACK on one thread: the least squares of a patch's estimate is small, and
    threads only cost (on two busy cores torchstain's fit took about 40 ms threaded, 3 ms on one thread)."""
    from threadpoolctl import ThreadpoolController

    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _estimate(rgb255: np.ndarray, io: float, alpha: float, beta: float) -> StainReference | None:
    """torchstain's Macenko estimate on (N, 3) RGB 0..255, or None when it fails or is not finite."""
    import torchstain

    normalizer = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    with np.errstate(all="ignore"), _one_blas_thread():
        try:
            normalizer.fit(rgb255.reshape(-1, 1, 3), Io=io, alpha=alpha, beta=beta)
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return None
    matrix = np.asarray(normalizer.HERef, dtype=np.float64)
    maxima = np.asarray(normalizer.maxCRef, dtype=np.float64)
    if matrix.shape != (3, 2) or not np.isfinite(matrix).all() or not np.isfinite(maxima).all() or maxima.min() <= 0:
        return None
    return StainReference.from_matrix(matrix, maxima)


def estimate_stains(
    image: np.ndarray, *, io: float = 240.0, alpha: float = 1.0, beta: float = 0.15, min_tissue: float = 0.05
) -> StainReference | None:
    """A patch's stain vectors and maximum concentrations by Macenko's method (torchstain), or None.

    Args:
        image: (H, W, 3) uint8 RGB, or floating-point RGB in [0, 1].
        io: transmitted light intensity (glass), 0..255 scale (Macenko: 240).
        alpha: percentile (in %) of the angles that picks the stain vectors (Macenko: 1).
        beta: OD below which a channel counts as glass (Macenko: 0.15).
        min_tissue: least share of tissue pixels (and at least 16 pixels) for an estimate.

    Returns:
        The estimate, or None when the patch has too little tissue or the estimate fails. Patches over 2**13
        pixels are estimated from every k-th pixel (raster order), 2**12 to 2**13 of them: the percentiles the
        estimate rests on barely move, and it is several times faster (a 299 x 299 patch uses every 11th pixel).
    """
    rgb = _rgb255(image)
    return _estimate_patch(rgb, _optical_density(rgb, io), io, alpha, beta, min_tissue)


def _estimate_patch(
    rgb: np.ndarray, od: np.ndarray, io: float, alpha: float, beta: float, min_tissue: float
) -> StainReference | None:
    """:func:`estimate_stains` of (N, 3) RGB on the 0..255 scale whose optical density ``od`` is known."""
    tissue = int((od >= beta).all(axis=1).sum())
    if tissue < max(_MIN_TISSUE_PIXELS, min_tissue * len(rgb)):
        return None
    step = -(-len(rgb) // _ESTIMATE_PIXELS)  # ceil
    return _estimate(rgb[::step], io, alpha, beta)


def macenko_normalize(
    image: np.ndarray,
    reference: StainReference = MACENKO_REFERENCE,
    *,
    source: StainReference | None = None,
    io: float = 240.0,
    alpha: float = 1.0,
    beta: float = 0.15,
    min_tissue: float = 0.05,
) -> np.ndarray:
    """Macenko normalisation of one patch to ``reference``; the patch unchanged when there is no estimate.

    Args:
        image: (H, W, 3) floating-point RGB in [0, 1].
        reference: the target stain vectors and maxima.
        source: the patch's own stains; None = :func:`estimate_stains` of the patch (with ``io``, ``alpha``,
            ``beta``, ``min_tissue``).
        io, alpha, beta, min_tissue: see :func:`estimate_stains`.

    Returns:
        A new C-contiguous image in [0, 1], same shape and dtype as ``image``: every pixel's concentrations
        (least squares on the source stains) times ``reference max / source max``, mixed with the reference's
        stain vectors, ``RGB = io * exp(-OD) - 1`` clipped to 0..255, divided by 255. An unchanged copy when
        ``source`` is None and the patch has no estimate.
    """
    x = check_rgb(image, "macenko_normalize")
    if x.ndim != 3:
        raise ValueError(f"macenko_normalize needs one (H, W, 3) image, got shape {x.shape}")
    rgb = _rgb255(x)
    od = _optical_density(rgb, io)
    if source is None:
        source = _estimate_patch(rgb, od, io, alpha, beta, min_tissue)
        if source is None:
            return np.array(x, order="C")
    scale = np.asarray(reference.max_concentrations) / np.asarray(source.max_concentrations)
    # concentrations by least squares (torchstain: lstsq), scaled to the reference's maxima, re-mixed: one (3, 3)
    # linear map of the optical density, OD' = OD @ (pinv(S_source).T * scale) @ S_reference.T
    mix = (np.linalg.pinv(source.matrix()).T * scale) @ reference.matrix().T
    with np.errstate(all="ignore"), _one_blas_thread():
        out = od @ mix
        np.negative(out, out=out)
        np.exp(out, out=out)
        out *= io
        out -= 1.0
    if not np.isfinite(out).all():
        return np.array(x, order="C")
    np.clip(out, 0.0, 255.0, out=out)
    out *= 1.0 / 255.0
    return out.reshape(x.shape).astype(x.dtype)


class MacenkoNormalize(Transform):
    """Macenko stain normalisation to a reference (:func:`macenko_normalize`); deterministic.

    ``rng`` is accepted and not used (nothing is drawn, so the draws of the other transforms do not depend on
    whether it is in a pipeline). A patch with too little tissue, or no estimate, is returned unchanged (a copy).

    Args:
        reference: the target, a :class:`StainReference` or its ``to_dict``; None = :data:`MACENKO_REFERENCE`.
        io: transmitted light intensity (glass), 0..255 scale (Macenko: 240).
        alpha: percentile (in %) of the angles that picks the stain vectors (Macenko: 1).
        beta: OD below which a channel counts as glass (Macenko: 0.15).
        min_tissue: least share of tissue pixels for a patch to be normalised, in [0, 1].
    """

    def __init__(
        self,
        reference: StainReference | Mapping[str, Any] | None = None,
        io: float = 240.0,
        alpha: float = 1.0,
        beta: float = 0.15,
        min_tissue: float = 0.05,
    ) -> None:
        if reference is None:
            reference = MACENKO_REFERENCE
        self.reference = reference if isinstance(reference, StainReference) else StainReference.from_dict(reference)
        self.io = float(io)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.min_tissue = float(min_tissue)
        if not 0 < self.io <= 255:
            raise ConfigError(f"io (glass intensity, 0..255) must be in (0, 255], got {io!r}")
        if not 0 <= self.alpha < 50:
            raise ConfigError(f"alpha (percentile of the stain angles) must be in [0, 50), got {alpha!r}")
        if not self.beta > 0:
            raise ConfigError(f"beta (optical density of glass) must be > 0, got {beta!r}")
        if not 0 <= self.min_tissue <= 1:
            raise ConfigError(f"min_tissue must be in [0, 1], got {min_tissue!r}")

    def params(self) -> dict[str, Any]:
        return {
            "reference": self.reference.to_dict(),
            "io": self.io,
            "alpha": self.alpha,
            "beta": self.beta,
            "min_tissue": self.min_tissue,
        }

    def estimate(self, image: np.ndarray) -> StainReference | None:
        """The patch's own stains with this transform's settings (:func:`estimate_stains`), or None."""
        return estimate_stains(image, io=self.io, alpha=self.alpha, beta=self.beta, min_tissue=self.min_tissue)

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return macenko_normalize(
            image,
            self.reference,
            io=self.io,
            alpha=self.alpha,
            beta=self.beta,
            min_tissue=self.min_tissue,
        )


def fit_reference(
    images: Iterable[np.ndarray], *, io: float = 240.0, alpha: float = 1.0, beta: float = 0.15, seed: int = 0
) -> StainReference:
    """A Macenko reference fitted to the pixels of ``images`` taken together (e.g. training patches).

    Every image contributes all its pixels (glass too: the maxima are percentiles over all pixels, as when a patch
    is normalised); above 2**20 pixels a random subset drawn with ``seed`` is used.

    Args:
        images: (H, W, 3) uint8 RGB, or floating-point RGB in [0, 1]; any sizes.
        io, alpha, beta: see :func:`estimate_stains`.
        seed: seed of the pixel subset.

    Raises:
        ConfigError: no image, too little tissue, or no estimate.
    """
    parts = [_rgb255(image) for image in images]
    if not parts:
        raise ConfigError("no image to fit a stain reference to")
    rgb = np.concatenate(parts)
    if len(rgb) > _MAX_FIT_PIXELS:
        rgb = rgb[np.sort(np.random.default_rng(seed).choice(len(rgb), _MAX_FIT_PIXELS, replace=False))]
    tissue = int((_optical_density(rgb, io) >= beta).all(axis=1).sum())
    if tissue < max(_MIN_TISSUE_PIXELS, 0.01 * len(rgb)):
        raise ConfigError(
            f"cannot fit a stain reference: {tissue} of {len(rgb)} pixels are stained tissue (optical density >= "
            f"{beta} in every channel); give a reference image or file with tissue in it"
        )
    reference = _estimate(rgb, io, alpha, beta)
    if reference is None:
        raise ConfigError("cannot fit a stain reference: Macenko's estimate failed on these images")
    return reference


def write_reference(path: str | os.PathLike[str], reference: StainReference) -> Path:
    """Write ``reference`` as a JSON file (:meth:`StainReference.to_dict`) that :func:`load_reference` reads."""
    from ..jsonvalues import write_json

    return write_json(path, reference.to_dict())


def load_reference(path: str | os.PathLike[str], **fit: Any) -> StainReference:
    """A stain reference from a file.

    Args:
        path: a JSON file with a :meth:`StainReference.to_dict` (as :func:`write_reference` writes it), a checkpoint
            sidecar of a model trained with Macenko normalisation (its reference is reused), or an image (PNG,
            JPEG, TIFF, BMP, WebP) of stained tissue that a reference is fitted to (:func:`fit_reference`).
        fit: ``io``, ``alpha``, ``beta`` for fitting to an image.

    Raises:
        InputFileError: naming ``path``: missing, unreadable, or holding no reference.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "stain reference not found (a JSON reference, a checkpoint sidecar or an image)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFileError(path, f"is not a readable JSON stain reference ({exc})") from None
        if isinstance(data, Mapping) and isinstance(data.get("normalization"), Mapping):  # a checkpoint sidecar
            transform = data["normalization"].get("transform")
            if not isinstance(transform, Mapping) or not isinstance(transform.get("reference"), Mapping):
                raise InputFileError(path, "is a checkpoint sidecar without a stain reference (no Macenko training)")
            data = transform["reference"]
        try:
            return StainReference.from_dict(data)
        except ConfigError as exc:
            raise InputFileError(path, str(exc)) from None
    if suffix not in _IMAGE_SUFFIXES:
        raise InputFileError(
            path, f"is not a stain reference: expected a .json file or an image ({', '.join(_IMAGE_SUFFIXES)})"
        )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputFileError(path, f"is not a readable image ({exc})") from None
    try:
        return fit_reference([rgb], **fit)
    except ConfigError as exc:
        raise InputFileError(path, str(exc)) from None
