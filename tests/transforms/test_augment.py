"""Tests of the patch augmentations (napari_patchdx.transforms).

The colour functions are checked against a per-pixel Python port of TensorFlow's CPU kernels (AdjustSaturation,
AdjustHue) and against worked examples, not against their own helpers.
"""

from __future__ import annotations

import itertools
import json
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import color as skcolor

from napari_patchdx import transforms as A
from napari_patchdx.errors import ConfigError
from napari_patchdx.transforms import colour

# ----------------------------------------------------------------------------------------------- helpers


def smooth_rgb(shape: tuple[int, ...] = (48, 56, 3), seed: int = 0, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """A textured float32 image with every channel spanning [lo, hi] (no value at the clip limits)."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random(shape), (2.0, 2.0) + (0.0,) * (len(shape) - 2))
    x -= x.min(axis=(0, 1), keepdims=True)
    x /= x.max(axis=(0, 1), keepdims=True)
    return (lo + (hi - lo) * x).astype(np.float32)


def asymmetric(shape: tuple[int, ...]) -> np.ndarray:
    """An image with no symmetry at all: every pixel value distinct."""
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def laplacian_variance(image: np.ndarray) -> float:
    """High-frequency energy: variance of the Laplacian away from the borders."""
    return float(ndimage.laplace(image.astype(np.float64))[8:-8, 8:-8].var())


def _tf_rgb_to_hsv(r: float, g: float, b: float) -> tuple[float, float, float]:
    """Port of ``internal::rgb_to_hsv`` in TensorFlow's adjust_saturation_op.cc."""
    vv = max(r, g, b)
    rng = vv - min(r, g, b)
    s = rng / vv if vv > 0 else 0.0
    if rng <= 0:
        h = 0.0
    elif r == vv:
        h = (g - b) / (6 * rng)
    elif g == vv:
        h = (b - r) / (6 * rng) + 2 / 6
    else:
        h = (r - g) / (6 * rng) + 4 / 6
    if h < 0:
        h += 1
    return h, s, vv


def _tf_hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    """Port of ``internal::hsv_to_rgb`` in TensorFlow's adjust_saturation_op.cc."""
    c = s * v
    m = v - c
    dh = h * 6
    category = int(dh)
    fmodu = dh
    while fmodu <= 0:
        fmodu += 2
    while fmodu >= 2:
        fmodu -= 2
    x = c * (1 - abs(fmodu - 1))
    rgb = {0: (c, x, 0), 1: (x, c, 0), 2: (0, c, x), 3: (0, x, c), 4: (x, 0, c), 5: (c, 0, x)}.get(category, (0, 0, 0))
    return rgb[0] + m, rgb[1] + m, rgb[2] + m


def tf_saturation_pixel(rgb: np.ndarray, factor: float) -> tuple[float, float, float]:
    h, s, v = _tf_rgb_to_hsv(*(float(c) for c in rgb))
    return _tf_hsv_to_rgb(h, min(1.0, max(0.0, s * factor)), v)


def tf_hue_pixel(rgb: np.ndarray, delta: float) -> tuple[float, float, float]:
    """Port of ``rgb_to_hv_range`` / ``hv_range_to_rgb`` and the AdjustHue loop in TensorFlow's adjust_hue_op.cc."""
    r, g, b = (float(c) for c in rgb)
    if r < g:
        if b < r:
            vmax, vmid, vmin, cat = g, r, b, 1
        elif b > g:
            vmax, vmid, vmin, cat = b, g, r, 3
        else:
            vmax, vmid, vmin, cat = g, b, r, 2
    elif b < g:
        vmax, vmid, vmin, cat = r, g, b, 0
    elif b > r:
        vmax, vmid, vmin, cat = b, r, g, 4
    else:
        vmax, vmid, vmin, cat = r, b, g, 5
    if vmax == vmin:
        h = 0.0
    else:
        ratio = (vmid - vmin) / (vmax - vmin)
        h = cat + (ratio if cat % 2 == 0 else 1 - ratio)
    h += delta * 6
    while h < 0:
        h += 6
    while h >= 6:
        h -= 6
    cat = int(h)
    ratio = h - cat
    if cat % 2:
        ratio = 1 - ratio
    vmid = vmin + ratio * (vmax - vmin)
    return {
        0: (vmax, vmid, vmin),
        1: (vmid, vmax, vmin),
        2: (vmin, vmax, vmid),
        3: (vmin, vmid, vmax),
        4: (vmid, vmin, vmax),
    }.get(cat, (vmax, vmin, vmid))


def pixelwise(fn: Any, image: np.ndarray, param: float) -> np.ndarray:
    flat = image.reshape(-1, 3)
    return np.array([fn(p, param) for p in flat], dtype=np.float64).reshape(image.shape)


def tf_reference_jitter(image: np.ndarray, params: A.ColorJitterParams) -> np.ndarray:
    """TF-semantics colour jitter built from the ported kernels and the documented contrast formula."""
    x = image.astype(np.float64)
    for op in params.order:
        if op == "brightness":
            x = x + params.brightness_delta
        elif op == "saturation":
            x = pixelwise(tf_saturation_pixel, x, params.saturation_factor)
        elif op == "hue":
            x = pixelwise(tf_hue_pixel, x, params.hue_delta)
        else:
            mean = x.mean(axis=(0, 1))
            x = (x - mean) * params.contrast_factor + mean
    return np.clip(x, 0.0, 1.0)


def awkward_pixels() -> np.ndarray:
    """Random pixels well outside [0, 1] (as after a brightness step) plus the awkward cases."""
    rng = np.random.default_rng(7)
    special = [
        (0.5, 0.5, 0.5),
        (0.0, 0.0, 0.0),
        (-0.2, -0.2, -0.2),
        (-0.1, -0.5, -0.3),
        (0.3, -0.2, 0.1),
        (1.0, 1.0, 0.0),
        (0.2, 0.7, 0.7),
        (0.9, 0.1, 0.9),
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (1.2, 1.1, -0.1),
    ]
    pixels = np.concatenate([np.array(special), rng.uniform(-0.3, 1.3, (500, 3))])
    return pixels.astype(np.float32).reshape(8, 64, 3)


# ----------------------------------------------------------------------------------------------- orientations


@pytest.mark.parametrize("shape", [(4, 4), (5, 5, 3), (3, 5, 2)])
def test_orientations_pairwise_distinct(shape: tuple[int, ...]) -> None:
    x = asymmetric(shape)
    results = [A.orient(x, k) for k in range(A.ORIENTATIONS)]
    assert A.ORIENTATIONS == 8
    for a, b in itertools.combinations(range(8), 2):
        assert not np.array_equal(results[a], results[b]), (a, b)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (6, 6, 1)])
def test_unorient_is_the_exact_inverse(shape: tuple[int, ...]) -> None:
    x = smooth_rgb((*shape[:2], 3))[..., : shape[2]] if len(shape) == 3 else smooth_rgb((*shape, 3))[..., 0]
    for k in range(8):
        np.testing.assert_array_equal(A.unorient(A.orient(x, k), k), x)
        np.testing.assert_array_equal(A.orient(A.unorient(x, k), k), x)


def test_orient_conventions() -> None:
    a = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(A.orient(a, 0), a)
    np.testing.assert_array_equal(A.orient(a, 1), [[2, 4], [1, 3]])  # a quarter turn counter-clockwise
    np.testing.assert_array_equal(A.orient(a, 2), [[4, 3], [2, 1]])
    np.testing.assert_array_equal(A.orient(a, 4), [[2, 1], [4, 3]])  # horizontal mirror: columns reversed
    np.testing.assert_array_equal(A.orient(a, 5), np.rot90(a)[:, ::-1])
    x = asymmetric((3, 5, 2))
    assert A.orient(x, 1).shape == (5, 3, 2)
    np.testing.assert_array_equal(A.orient(x, 1)[..., 1], np.rot90(x[..., 1]))  # channels follow their pixel


def test_orient_composes_like_the_dihedral_group() -> None:
    x = asymmetric((5, 5))
    variants = [A.orient(x, k) for k in range(8)]
    np.testing.assert_array_equal(A.orient(A.orient(x, 1), 1), A.orient(x, 2))
    np.testing.assert_array_equal(A.orient(A.orient(x, 3), 1), x)
    np.testing.assert_array_equal(A.orient(A.orient(x, 4), 4), x)
    np.testing.assert_array_equal(A.orient(A.orient(x, 1), 4), A.orient(x, 5))  # by definition: turn, then mirror
    np.testing.assert_array_equal(A.orient(A.orient(x, 4), 1), A.orient(x, 7))  # R M = M R^-1
    table = np.empty((8, 8), dtype=int)
    for a, b in itertools.product(range(8), repeat=2):
        composed = A.orient(A.orient(x, a), b)
        matches = [c for c in range(8) if np.array_equal(composed, variants[c])]
        assert len(matches) == 1, (a, b)
        table[a, b] = matches[0]
    for row in (*table, *table.T):  # a Latin square: every element has a unique inverse, the set is closed
        assert sorted(row) == list(range(8))
    np.testing.assert_array_equal(table[0], range(8))
    np.testing.assert_array_equal(table[:, 0], range(8))
    assert (table != table.T).any()  # not abelian


def test_orient_rejects_bad_k() -> None:
    with pytest.raises(ValueError):
        A.orient(np.zeros((2, 2)), 8)
    with pytest.raises(ValueError):
        A.unorient_torch(torch.zeros(2, 2), -1)
    with pytest.raises(TypeError):
        A.orient(np.zeros((2, 2)), 1.5)  # type: ignore[arg-type]


def test_torch_orientations_match_numpy() -> None:
    rng = np.random.default_rng(1)
    nchw = rng.random((2, 3, 5, 7)).astype(np.float32)
    tensor = torch.from_numpy(nchw)
    hw_first = nchw.transpose(2, 3, 0, 1)  # orient() turns axes 0 and 1
    for k in range(8):
        expected = np.ascontiguousarray(A.orient(hw_first, k)).transpose(2, 3, 0, 1)
        turned = A.orient_torch(tensor, k)
        np.testing.assert_array_equal(turned.numpy(), expected)
        assert torch.equal(A.unorient_torch(turned, k), tensor)
        np.testing.assert_array_equal(
            A.unorient_torch(turned, k).numpy(), A.unorient(expected.transpose(2, 3, 0, 1), k).transpose(2, 3, 0, 1)
        )
    plane = torch.arange(12.0).reshape(3, 4)
    for k in range(8):
        np.testing.assert_array_equal(A.orient_torch(plane, k).numpy(), A.orient(plane.numpy(), k))


def test_random_orientation() -> None:
    x = smooth_rgb((9, 13, 3))
    t = A.RandomOrientation()
    ks = [t.sample_params(np.random.default_rng(s)) for s in range(800)]
    counts = np.bincount(ks, minlength=8)
    assert counts.min() > 60 and counts.max() < 140  # uniform over the 8 orientations
    out1, out2 = t(x, np.random.default_rng(5)), t(x, np.random.default_rng(5))
    np.testing.assert_array_equal(out1, out2)
    for k in range(8):
        for image in (x, x[..., 0], x[..., :1], np.asfortranarray(x)):
            out = t.apply(image, k)
            np.testing.assert_array_equal(out, A.orient(image, k))
            assert out.flags.c_contiguous and out.dtype == image.dtype
            assert not np.shares_memory(out, image)
            torch.from_numpy(out)  # no negative strides
    view = A.RandomOrientation(copy=False).apply(x, 6)
    assert np.shares_memory(view, x)
    flips = A.RandomOrientation(ks=(0, 4))
    assert {flips.sample_params(np.random.default_rng(s)) for s in range(50)} == {0, 4}
    with pytest.raises(ConfigError):
        A.RandomOrientation(ks=())


# ----------------------------------------------------------------------------------------------- colour: examples

TF_DOC_IMAGE = np.array([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[7.0, 8.0, 9.0], [10.0, 11.0, 12.0]]], dtype=np.float32)


def test_tf_worked_examples() -> None:
    """The (out-of-range) example image of the tf.image docstrings, results worked out from TF's kernels."""
    x = TF_DOC_IMAGE
    np.testing.assert_allclose(A.adjust_brightness(x, 0.1), x + np.float32(0.1), rtol=0, atol=0)
    np.testing.assert_allclose(
        A.adjust_saturation(x, 0.5), [[[2, 2.5, 3], [5, 5.5, 6]], [[8, 8.5, 9], [11, 11.5, 12]]], atol=1e-5
    )
    np.testing.assert_allclose(
        A.adjust_hue(x, 0.2), [[[2.4, 1, 3], [5.4, 4, 6]], [[8.4, 7, 9], [11.4, 10, 12]]], atol=1e-5
    )
    np.testing.assert_allclose(
        A.adjust_contrast(x, 2.0),
        [[[-3.5, -2.5, -1.5], [2.5, 3.5, 4.5]], [[8.5, 9.5, 10.5], [14.5, 15.5, 16.5]]],
        atol=1e-5,
    )


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.75, 1.0, 1.25, 3.0, -0.5])
def test_saturation_matches_tf_kernel(factor: float) -> None:
    pixels = awkward_pixels()
    np.testing.assert_allclose(
        A.adjust_saturation(pixels, factor), pixelwise(tf_saturation_pixel, pixels, factor), atol=1e-5
    )


@pytest.mark.parametrize("delta", [0.0, 0.04, -0.04, 0.2, 1 / 3, -0.5, 0.5, 0.97, 1.0, -1.3])
def test_hue_matches_tf_kernel(delta: float) -> None:
    pixels = awkward_pixels()
    np.testing.assert_allclose(A.adjust_hue(pixels, delta), pixelwise(tf_hue_pixel, pixels, delta), atol=1e-5)


def test_hsv_conversion_matches_skimage_and_round_trips() -> None:
    x = smooth_rgb((20, 30, 3), seed=3)
    hsv = A.rgb_to_hsv(x)
    np.testing.assert_allclose(hsv, skcolor.rgb2hsv(x), atol=1e-6)
    np.testing.assert_allclose(A.hsv_to_rgb(hsv), x, atol=1e-6)
    assert hsv.dtype == np.float32 and (hsv[..., 0] >= 0).all() and (hsv[..., 0] < 1).all()
    np.testing.assert_array_equal(A.rgb_to_hsv(np.array([0.2, 0.2, 0.2], np.float32)), np.float32([0.0, 0.0, 0.2]))
    np.testing.assert_allclose(A.rgb_to_hsv(np.array([0.0, 0.0, 1.0], np.float32)), [2 / 3, 1.0, 1.0], atol=1e-7)


# ----------------------------------------------------------------------------------------------- colour: properties


def test_brightness_is_additive_not_multiplicative() -> None:
    x = smooth_rgb(lo=0.1, hi=0.8)
    out = A.adjust_brightness(x, 0.1)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out - x, 0.1, atol=1e-6)
    assert np.abs(out - x * 1.1).max() > 0.01  # torchvision-style multiplicative brightness would differ
    jitter = A.ColorJitterTF(brightness=0.2, saturation=0, hue=0, contrast=0)
    bright = smooth_rgb(lo=0.5, hi=0.95)
    out = jitter.apply(bright, A.ColorJitterParams(0.1, 1.0, 0.0, 1.0))
    np.testing.assert_allclose(out, np.minimum(bright + 0.1, 1.0), atol=1e-6)  # additive, then clipped at 1
    assert (out == 1.0).any()


def test_saturation_properties() -> None:
    x = smooth_rgb(seed=1)
    gray = A.adjust_saturation(x, 0.0)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(gray[..., 0], x.max(axis=-1))  # the value (max channel) is kept exactly
    np.testing.assert_allclose(A.adjust_saturation(x, 1.0), x, atol=1e-6)
    hsv, hsv2 = A.rgb_to_hsv(x), A.rgb_to_hsv(A.adjust_saturation(x, 2.0))
    np.testing.assert_allclose(hsv2[..., 1], np.minimum(2 * hsv[..., 1], 1.0), atol=1e-5)
    np.testing.assert_allclose(hsv2[..., 2], hsv[..., 2], atol=1e-6)
    colored = hsv[..., 1] > 0.05
    np.testing.assert_allclose(hsv2[..., 0][colored], hsv[..., 0][colored], atol=1e-5)


def test_hue_properties() -> None:
    x = smooth_rgb(seed=2)
    hsv = A.rgb_to_hsv(x)
    for delta in (0.04, -0.04, 0.3, 0.75):
        out = A.adjust_hue(x, delta)
        np.testing.assert_array_equal(out.max(axis=-1), x.max(axis=-1))  # value kept exactly
        out_hsv = A.rgb_to_hsv(out)
        np.testing.assert_allclose(out_hsv[..., 1], hsv[..., 1], atol=1e-5)  # saturation kept
        turned = (hsv[..., 0] + delta) % 1.0
        gap = np.abs(out_hsv[..., 0] - turned)
        np.testing.assert_allclose(np.minimum(gap, 1 - gap), 0.0, atol=1e-4)  # hue rotated by delta turns
    for full_turn in (1.0, -1.0, 2.0):
        np.testing.assert_allclose(A.adjust_hue(x, full_turn), x, atol=1e-5)
    np.testing.assert_allclose(A.adjust_hue(A.adjust_hue(x, 0.5), 0.5), x, atol=1e-5)
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 1.0
    np.testing.assert_allclose(A.adjust_hue(red, 1 / 3), np.broadcast_to([0.0, 1.0, 0.0], (2, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(A.adjust_hue(red, 2 / 3), np.broadcast_to([0.0, 0.0, 1.0], (2, 2, 3)), atol=1e-6)


def test_contrast_properties() -> None:
    x = smooth_rgb(seed=4)
    mean = x.astype(np.float64).mean(axis=(0, 1))
    np.testing.assert_allclose(A.adjust_contrast(x, 1.0), x, atol=1e-6)
    np.testing.assert_allclose(A.adjust_contrast(x, 0.0), np.broadcast_to(mean, x.shape), atol=1e-6)
    np.testing.assert_allclose(A.adjust_contrast(x, 1.75), (x - mean) * 1.75 + mean, atol=1e-6)
    batch = np.stack([x, smooth_rgb(seed=5)])
    flat = A.adjust_contrast(batch, 0.0)
    for i in range(2):  # means are per image and per channel
        np.testing.assert_allclose(flat[i], np.broadcast_to(batch[i].mean(axis=(0, 1)), x.shape), atol=1e-6)


def test_colour_functions_check_their_input() -> None:
    with pytest.raises(TypeError):
        A.adjust_hue(np.zeros((4, 4, 3), np.uint8), 0.1)
    with pytest.raises(ValueError):
        A.adjust_saturation(np.zeros((4, 4), np.float32), 1.0)
    with pytest.raises(ValueError):
        A.adjust_contrast(np.zeros((4, 4, 4), np.float32), 1.0)


def test_colour_functions_do_not_modify_their_input() -> None:
    x = smooth_rgb()
    before = x.copy()
    for fn, value in (
        (A.adjust_brightness, 0.1),
        (A.adjust_saturation, 0.5),
        (A.adjust_hue, 0.1),
        (A.adjust_contrast, 0.5),
    ):
        out = fn(x, value)
        assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------------------------- ColorJitterTF


def test_color_jitter_draws_from_the_documented_ranges() -> None:
    jitter = A.ColorJitterTF()
    rng = np.random.default_rng(11)
    draws = [jitter.sample_params(rng) for _ in range(3000)]
    for name, lo, hi in (
        ("brightness_delta", -64 / 255, 64 / 255),
        ("saturation_factor", 0.75, 1.25),
        ("hue_delta", -0.04, 0.04),
        ("contrast_factor", 0.25, 1.75),
    ):
        values = np.array([getattr(d, name) for d in draws])
        assert values.min() >= lo and values.max() <= hi, name
        span = hi - lo
        assert values.min() < lo + 0.01 * span and values.max() > hi - 0.01 * span, name  # the whole range is used
        assert abs(values.mean() - (lo + hi) / 2) < 0.03 * span, name  # uniform: centred
    orders = {d.order for d in draws}
    assert len(orders) == 24 and all(sorted(o) == sorted(A.COLOR_OPS) for o in orders)
    fixed = A.ColorJitterTF(order="fixed")
    assert {fixed.sample_params(rng).order for _ in range(20)} == {A.COLOR_OPS}
    assert A.COLOR_OPS == ("brightness", "saturation", "hue", "contrast")


def test_color_jitter_is_reproducible_and_in_range() -> None:
    x = smooth_rgb((64, 64, 3), seed=8)
    before = x.copy()
    jitter = A.ColorJitterTF()
    a = jitter(x, np.random.default_rng(3))
    b = jitter(x, np.random.default_rng(3))
    c = jitter(x, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a, jitter.apply(x, jitter.sample_params(np.random.default_rng(3))))
    np.testing.assert_array_equal(x, before)
    for seed in range(30):
        out = jitter(x, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.shape == x.shape and out.flags.c_contiguous
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_color_jitter_matches_tf_reference_in_every_order() -> None:
    x = smooth_rgb((6, 7, 3), seed=9, lo=0.0, hi=1.0)
    jitter = A.ColorJitterTF()
    for values in ((0.25, 1.25, 0.04, 1.75), (-0.25, 0.75, -0.04, 0.25)):
        for order in itertools.permutations(A.COLOR_OPS):
            params = A.ColorJitterParams(*values, order=order)
            np.testing.assert_allclose(jitter.apply(x, params), tf_reference_jitter(x, params), atol=2e-5)


def test_color_jitter_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blockwise pass (two passes around contrast) gives the result of a single block."""
    x = smooth_rgb((41, 30, 3), seed=10)
    jitter = A.ColorJitterTF()
    params = [jitter.sample_params(np.random.default_rng(s)) for s in range(6)]
    params.append(A.ColorJitterParams(0.2, 1.2, 0.03, 1.5, order=("saturation", "contrast", "hue", "brightness")))
    whole = [jitter.apply(x, p) for p in params]
    monkeypatch.setattr(colour, "_BLOCK", 64)  # 2 rows per block, a short last block
    for p, expected in zip(params, whole, strict=True):
        np.testing.assert_allclose(jitter.apply(x, p), expected, atol=1e-5)  # only the mean's summation order moves
        np.testing.assert_allclose(jitter.apply(A.orient(x, 3), p), A.orient(expected, 3), atol=1e-5)


def test_color_jitter_disabled_adjustments() -> None:
    x = smooth_rgb(seed=12, lo=-0.1, hi=1.1)
    off = A.ColorJitterTF(brightness=0, saturation=0, hue=0, contrast=0)
    np.testing.assert_array_equal(off(x, np.random.default_rng(0)), np.clip(x, 0, 1))
    only_hue = A.ColorJitterTF(brightness=0, saturation=0, hue=0.1, contrast=0)
    params = only_hue.sample_params(np.random.default_rng(1))
    assert params.brightness_delta == 0 and params.saturation_factor == 1 and params.contrast_factor == 1
    np.testing.assert_allclose(only_hue.apply(x, params), np.clip(A.adjust_hue(x, params.hue_delta), 0, 1), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"brightness": -0.1}, {"saturation": 1.5}, {"hue": 0.6}, {"contrast": 1.2}, {"order": "sometimes"}],
)
def test_color_jitter_rejects_bad_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        A.ColorJitterTF(**kwargs)


# ----------------------------------------------------------------------------------------------- X-ray transforms


def cxr_patch(seed: int = 0) -> np.ndarray:
    """A textured gray patch in [0.3, 0.7], so sharpening does not reach the clip limits."""
    return smooth_rgb((96, 96, 1), seed=seed, lo=0.3, hi=0.7)[..., 0]


def test_sharpen_and_blur_change_high_frequency_energy() -> None:
    x = cxr_patch()
    base = laplacian_variance(x)
    sharpened = [laplacian_variance(A.unsharp_mask(x, 1.0, amount)) for amount in (0.3, 0.6, 1.0)]
    assert base < sharpened[0] < sharpened[1] < sharpened[2]
    blurred = [laplacian_variance(A.gaussian_blur(x, sigma)) for sigma in (0.5, 1.0, 1.5)]
    assert base > blurred[0] > blurred[1] > blurred[2]
    np.testing.assert_allclose(A.unsharp_mask(x, 1.0, 0.0), x, atol=1e-7)
    sharpen = A.SharpenOrBlur(p_sharpen=1.0, p_blur=0.0)
    blur = A.SharpenOrBlur(p_sharpen=0.0, p_blur=1.0)
    identity = A.SharpenOrBlur(p_sharpen=0.0, p_blur=0.0)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        assert laplacian_variance(sharpen(x, rng)) > 1.05 * base
        assert laplacian_variance(blur(x, rng)) < 0.95 * base
        np.testing.assert_array_equal(identity(x, rng), x)
    for out in (sharpen(x, np.random.default_rng(0)), blur(x, np.random.default_rng(0))):
        assert out.dtype == np.float32 and abs(float(out.mean()) - float(x.mean())) < 0.01


def test_sharpen_or_blur_draws_and_shapes() -> None:
    t = A.SharpenOrBlur()
    rng = np.random.default_rng(2)
    draws = [t.sample_params(rng) for _ in range(4000)]
    modes = [d.mode for d in draws]
    for mode, p in (("sharpen", 0.25), ("blur", 0.25), ("identity", 0.5)):
        assert abs(modes.count(mode) / len(modes) - p) < 0.03
    assert all(0.5 <= d.sigma <= 1.5 and 0.3 <= d.amount <= 1.0 for d in draws)
    x = cxr_patch(1)
    for params in (A.SharpenOrBlurParams("sharpen", 1.2, 0.8), A.SharpenOrBlurParams("blur", 0.7, 0.0)):
        flat = t.apply(x, params)
        np.testing.assert_allclose(t.apply(x[..., None], params)[..., 0], flat, atol=1e-7)
        rgb = np.stack([x, np.zeros_like(x), x[::-1]], axis=-1)
        out = t.apply(rgb, params)
        np.testing.assert_array_equal(out[..., 1], 0.0)  # channels are filtered separately
        np.testing.assert_allclose(out[..., 0], flat, atol=1e-7)
    bright = np.clip(x + 0.5, 0, 1)
    out = t.apply(bright, A.SharpenOrBlurParams("sharpen", 1.5, 1.0))
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(t(x, np.random.default_rng(9)), t(x, np.random.default_rng(9)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p_sharpen": 0.7, "p_blur": 0.4},
        {"p_blur": -0.1},
        {"sigma_range": (0.0, 1.0)},
        {"sigma_range": (2.0, 1.0)},
        {"amount_range": (-1.0, 1.0)},
        {"amount_range": (1.0,)},
    ],
)
def test_sharpen_or_blur_rejects_bad_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        A.SharpenOrBlur(**kwargs)


def test_standardize() -> None:
    x = cxr_patch(2)
    mean_only = A.Standardize()
    out = mean_only(x, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == x.shape
    assert abs(float(out.mean(dtype=np.float64))) < 1e-6
    np.testing.assert_allclose(out.std(), x.std(), rtol=1e-5)  # "mean" leaves the spread alone (Park et al.)
    np.testing.assert_array_equal(mean_only(x, None), out)  # deterministic: the rng is not used
    both = A.Standardize(mode="meanstd")(x[..., None], np.random.default_rng(0))
    assert both.shape == (96, 96, 1)
    assert abs(float(both.mean(dtype=np.float64))) < 1e-6
    assert abs(float(both.std(dtype=np.float64)) - 1.0) < 1e-5
    flat = A.Standardize(mode="meanstd")(np.full((8, 8), 0.4, np.float32), None)
    np.testing.assert_array_equal(flat, 0.0)
    with pytest.raises(ConfigError):
        A.Standardize(mode="minmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        A.Standardize(eps=0.0)


# ----------------------------------------------------------------------------------------------- Compose, pipelines


class AddConstant(A.Transform):
    """Test transform: adds a constant."""

    def __init__(self, value: float) -> None:
        self.value = value

    def params(self) -> dict[str, Any]:
        return {"value": self.value}

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return image + self.value


class RecordDraw(A.Transform):
    """Test transform: adds one uniform draw from the rng."""

    def params(self) -> dict[str, Any]:
        return {}

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return image + rng.random()


def test_compose_applies_in_order_with_one_rng() -> None:
    x = np.full((4, 4), 0.8, np.float32)
    clip = A.SharpenOrBlur(p_sharpen=0, p_blur=0)  # a pure clip to [0, 1]
    np.testing.assert_allclose(A.Compose([AddConstant(0.5), clip])(x, np.random.default_rng(0)), 1.0)
    np.testing.assert_allclose(A.Compose([clip, AddConstant(0.5)])(x, np.random.default_rng(0)), 1.3)
    out = A.Compose([RecordDraw(), RecordDraw()])(np.zeros(1), np.random.default_rng(5))
    np.testing.assert_allclose(out, np.random.default_rng(5).random(2).sum())
    image = smooth_rgb(seed=13)
    rng1, rng2 = np.random.default_rng(6), np.random.default_rng(6)
    expected = A.ColorJitterTF()(A.RandomOrientation()(image, rng2), rng2)
    np.testing.assert_array_equal(A.slide_train_transforms()(image, rng1), expected)
    assert len(A.slide_train_transforms()) == 2
    with pytest.raises(ConfigError):
        A.Compose([np.flipud])  # type: ignore[list-item]


def test_pipelines() -> None:
    patch = smooth_rgb((299, 299, 3), seed=14)
    slide = A.slide_train_transforms()
    assert [type(t) for t in slide] == [A.RandomOrientation, A.ColorJitterTF]
    out = slide(patch, np.random.default_rng(0))
    assert out.shape == (299, 299, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out.min() >= 0 and out.max() <= 1
    assert torch.from_numpy(out).shape == (299, 299, 3)
    cxr = cxr_patch(3)
    train = A.cxr_train_transforms()
    assert [type(t) for t in train] == [A.SharpenOrBlur, A.Standardize]
    flip = A.cxr_train_transforms(hflip=True).transforms[0]
    assert isinstance(flip, A.RandomOrientation) and flip.ks == (0, 4)
    for seed in range(4):
        out = A.cxr_train_transforms(hflip=True)(cxr, np.random.default_rng(seed))
        assert abs(float(out.mean(dtype=np.float64))) < 1e-6 and out.flags.c_contiguous
    np.testing.assert_array_equal(A.cxr_eval_transforms()(cxr, np.random.default_rng(0)), A.standardize(cxr))


ALL_TRANSFORMS = [
    A.RandomOrientation(),
    A.RandomOrientation(ks=(0, 4), copy=False),
    A.ColorJitterTF(order="fixed", hue=0.1),
    A.SharpenOrBlur(p_sharpen=0.5, sigma_range=(1.0, 2.0)),
    A.Standardize(mode="meanstd"),
    A.slide_train_transforms(),
    A.cxr_train_transforms(hflip=True),
    A.cxr_eval_transforms(),
]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transforms_pickle_and_serialise(transform: A.Transform) -> None:
    clone = pickle.loads(pickle.dumps(transform))
    assert clone == transform and repr(clone) == repr(transform)
    rgb = isinstance(transform, A.Compose) and any(isinstance(t, A.ColorJitterTF) for t in transform)
    rgb = rgb or isinstance(transform, A.ColorJitterTF)
    image = smooth_rgb((32, 32, 3), seed=15) if rgb else cxr_patch(4)
    np.testing.assert_array_equal(transform(image, np.random.default_rng(1)), clone(image, np.random.default_rng(1)))
    config = json.loads(json.dumps(transform.to_dict()))
    assert config["type"] == type(transform).__name__
    assert A.transform_from_dict(config) == transform


def test_repr_and_config_show_the_parameters() -> None:
    jitter = A.ColorJitterTF()
    assert repr(jitter) == (
        f"ColorJitterTF(brightness={64 / 255!r}, saturation=0.25, hue=0.04, contrast=0.75, order='random')"
    )
    assert A.SharpenOrBlur().to_dict() == {
        "type": "SharpenOrBlur",
        "p_sharpen": 0.25,
        "p_blur": 0.25,
        "sigma_range": [0.5, 1.5],
        "amount_range": [0.3, 1.0],
    }
    assert repr(A.cxr_eval_transforms()) == "Compose([Standardize(eps=1e-06, mode='mean')])"
    params = A.ColorJitterTF().sample_params(np.random.default_rng(0))
    assert pickle.loads(pickle.dumps(params)) == params
    with pytest.raises(ConfigError):
        A.transform_from_dict({"type": "Unknown"})
    with pytest.raises(ConfigError):
        A.transform_from_dict({"type": "Standardize", "sigma": 1})
