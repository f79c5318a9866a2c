"""Rendering one chest radiograph: anatomy, lesions and acquisition, with each lesion's exact mask."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ...errors import ConfigError
from .acquisition import MASK_TRUNCATE, Vendor
from .anatomy import Anatomy
from .anatomy_layers import render_anatomy
from .data_model import CXR_CLASSES, Lesion, check_contrast
from .drawing import resample
from .lesions import LESION_SPECS, LesionContext
from .pose import Pose


def _choose_classes(rng: np.random.Generator, lesions: Sequence[str] | None, p_normal: float) -> list[str]:
    if lesions is not None:
        if isinstance(lesions, str):
            lesions = [lesions]
        bad = [c for c in lesions if c not in CXR_CLASSES]
        if bad:
            raise ConfigError(f"unknown lesion class(es) {bad}; expected some of {CXR_CLASSES}")
        return list(lesions)
    if rng.random() < p_normal:
        return []
    k = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    return [CXR_CLASSES[i] for i in sorted(rng.choice(len(CXR_CLASSES), size=k, replace=False))]


def render_cxr(
    seed: int,
    size: int = 1024,
    *,
    lesions: Sequence[str] | None = None,
    contrast: Mapping[str, float] | None = None,
    p_normal: float = 0.5,
) -> tuple[np.ndarray, list[Lesion], dict[str, Any]]:
    """Render one synthetic chest PA radiograph.

    Args:
        seed: any non-negative integer; the image is a pure function of (seed, size, lesions, contrast).
        size: side in pixels (the image is size x size); the field of view is 350-430 mm, so the pixel
            spacing is ``info["spacing_mm"]``.
        lesions: None draws the findings at random (normal with probability ``p_normal``, else 1-3 distinct
            classes); a sequence of class names (repeats allowed) places exactly those; ``[]`` renders the
            same patient without lesions (identical pixels outside the lesion masks).
        contrast: per-class strength overriding :data:`DEFAULT_CONTRAST` (same keys and units).
        p_normal: probability of a normal image when ``lesions`` is None.

    Returns:
        ``(image, lesions, info)``: float32 (size, size) image in [0, 1], bright = dense; the :class:`Lesion`
        list (full-size masks, half-open (y0, x0, y1, x1) boxes in pixels); and ``info`` with ``spacing_mm``
        ((row, col) mm/pixel), ``fov_mm``, ``labels`` ({class: 0/1}), ``normal``, ``lung_mask`` (bool, size x
        size), ``mask_dilation_px`` (how far the vendor filter spreads a lesion's change), ``lung_edge_px`` (how
        far the lungs' soft edge, which lesions may touch, reaches beyond ``lung_mask``), ``pose``, ``vendor``
        and ``contrast``.

    Raises:
        ConfigError: unknown class, bad contrast, size out of [64, 8192] or negative seed.
    """
    seed = int(seed)
    size = int(size)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if not 64 <= size <= 8192:
        raise ConfigError(f"size must be between 64 and 8192 pixels, got {size}")
    if not 0.0 <= p_normal <= 1.0:
        raise ConfigError(f"p_normal must be in [0, 1], got {p_normal}")
    strength = check_contrast(contrast)

    rng_anat = np.random.default_rng([seed, 1])
    rng_les = np.random.default_rng([seed, 2])
    rng_vendor = np.random.default_rng([seed, 3])
    rng_noise = np.random.default_rng([seed, 4])

    anat = Anatomy.draw(rng_anat)
    pose = Pose.draw(rng_anat)
    vendor = Vendor.draw(rng_vendor, size)
    classes = _choose_classes(rng_les, lesions, p_normal)
    specs = [LESION_SPECS[c](rng_les, anat, pose, strength[c]) for c in classes]

    work = size // 2 if size >= 512 else size
    layers = render_anatomy(anat, pose, work, rng_anat)
    anatomy_density = layers.base - layers.lungdef + layers.vessels
    d_lo, d_hi = (float(x) for x in np.percentile(anatomy_density[::2, ::2], [0.3, 99.9]))
    d_hi += 0.05 * (d_hi - d_lo)
    d_span = max(d_hi - d_lo, 1e-3)

    density = resample(anatomy_density, size)
    spacing = anat.mm_per_unit(pose) / pose.scale / size  # fov_mm / size
    supports: list[tuple[str, tuple[int, int, int, int], np.ndarray]] = []
    for i, spec in enumerate(specs):
        umin, umax, vmin, vmax = spec.bounds
        r0, r1, c0, c1 = pose.box(umin, umax, vmin, vmax, size)
        if r1 <= r0 or c1 <= c0:
            continue
        bu, bv = pose.grid(r0, r1, c0, c1, size)
        lung_w = resample(layers.lung_soft, size, r0, r1, c0, c1)
        lung_w[lung_w < 0.01] = 0.0  # keeps masks tight: the far tail of the soft edge is left alone
        ctx = LesionContext(
            anat=anat,
            pose=pose,
            n=size,
            layers=layers,
            box=(r0, r1, c0, c1),
            u=bu,
            v=bv,
            lung_w=lung_w,
            lung=lung_w > 0,
            rng=np.random.default_rng([seed, 100 + i]),
            spacing_mm=spacing,
        )
        delta, support = spec.field(ctx)
        density[r0:r1, c0:c1] += delta.astype(np.float32)
        supports.append((spec.cls, (r0, r1, c0, c1), support))

    # Acquisition: heel effect, quantum-like noise (stronger where dense), vendor filter, display curve.
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    density += vendor.heel[0] * ramp[None, :] + vendor.heel[1] * ramp[:, None]
    white = rng_noise.standard_normal((size, size), dtype=np.float32)
    white = ndimage.gaussian_filter(white, vendor.noise_corr_px, truncate=MASK_TRUNCATE)
    white /= max(float(white.std()), 1e-6)
    level = np.clip((density - d_lo) / d_span, 0.0, 1.5)
    density += (vendor.noise * d_span) * (0.5 + level) * white
    density = vendor.apply_filter(density)
    image = vendor.curve((density - d_lo) / d_span).astype(np.float32)

    radius = vendor.radius
    out_lesions: list[Lesion] = []
    for cls_name, (r0, r1, c0, c1), support in supports:
        mask = np.zeros((size, size), dtype=bool)
        mask[r0:r1, c0:c1] = support
        if radius:
            a0, a1 = max(0, r0 - radius), min(size, r1 + radius)
            b0, b1 = max(0, c0 - radius), min(size, c1 + radius)
            mask[a0:a1, b0:b1] = ndimage.maximum_filter(mask[a0:a1, b0:b1], size=2 * radius + 1)
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        out_lesions.append(Lesion(cls=cls_name, box=box, mask=mask))

    fu, fv = pose.grid(0, size, 0, size, size)
    present = {les.cls for les in out_lesions}
    info: dict[str, Any] = {
        "seed": seed,
        "size": size,
        "spacing_mm": (spacing, spacing),
        "fov_mm": anat.fov_mm,
        "normal": not out_lesions,
        "labels": {c: int(c in present) for c in CXR_CLASSES},
        "lung_mask": anat.lung(fu, fv),
        "mask_dilation_px": radius,
        "lung_edge_px": math.ceil(layers.edge_px * size / work),
        "pose": {
            "angle_deg": math.degrees(pose.angle),
            "scale": pose.scale,
            "offset": (pose.dy * size, pose.dx * size),
        },
        "vendor": {
            "filter": vendor.filter,
            "sigma_px": vendor.sigma_px,
            "amount": vendor.amount,
            "gamma": vendor.gamma,
            "s_curve": vendor.s_curve,
            "noise": vendor.noise,
        },
        "contrast": strength,
    }
    return image, out_lesions, info
