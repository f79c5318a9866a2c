"""Tissue detection: synthetic slides with exact ground truth, a real IHC micrograph, geometry, artifacts."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2hsv
from skimage.draw import disk
from skimage.measure import points_in_poly
from skimage.transform import downscale_local_mean

from napari_patchdx.errors import ConfigError, InputFileError, MissingMetadataError
from napari_patchdx.geometry import Grid
from napari_patchdx.io.slides.open import open_slide
from napari_patchdx.sampling.tissue import NoTissueWarning, _hsv, detect_tissue, tissue_from_rgb
from napari_patchdx.sampling.tissue_config import TissueConfig
from napari_patchdx.sampling.tissue_mask import TissueMask
from napari_patchdx.synth.wsi.render import LABEL_NORMAL, LABEL_PEN, LABEL_TUMOR, label_region
from napari_patchdx.synth.wsi.slide import make_slide

from ..conftest import write_pyramid

IHC_PAD = 400  # level-0 px of glass around the IHC section (200 um at 0.5 um/px)


def _glass(rng: np.random.Generator, shape: tuple[int, int], colour: tuple[float, float, float] = (240, 240, 240)):
    """Empty glass as a scanner shows it: near-white with per-pixel noise (uint8 RGB)."""
    noise = rng.standard_normal((*shape, 1), dtype=np.float32) * np.float32(2.0)
    noise = noise + rng.standard_normal((*shape, 3), dtype=np.float32) * np.float32(1.5)
    noise += np.asarray(colour, dtype=np.float32) + np.float32(0.5)
    return np.clip(noise, 0, 255, out=noise).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _truth(slide, mask: TissueMask) -> np.ndarray:
    """Ground-truth labels of a synthetic slide at the mask's pixel centres."""
    sy, sx = mask.grid.spacing
    assert sy == pytest.approx(sx)
    return label_region(slide, 0, 0, mask.shape[0], mask.shape[1], downsample=sy)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pen_slide(tmp_path_factory: pytest.TempPathFactory):
    """3072 x 3072 px at 1.0 um/px, tumour, with green, blue and black marker strokes on the glass."""
    path = tmp_path_factory.mktemp("tissue") / "pen.tif"
    slide = make_slide(path, height=3072, width=3072, mpp=1.0, seed=8, tissue_fraction=0.3, pen_marks=True)
    assert {s.color for s in slide.spec.pens} == {"green", "blue", "black"}
    return slide


@pytest.fixture(scope="module")
def plain_slide(tmp_path_factory: pytest.TempPathFactory):
    """2048 x 2048 px at 0.5 um/px, tumour, no pen."""
    return make_slide(tmp_path_factory.mktemp("tissue") / "plain.tif", height=2048, width=2048, mpp=0.5, seed=1)


@pytest.fixture(scope="module")
def ihc_canvas(ihc_image: np.ndarray) -> np.ndarray:
    """scikit-image's real IHC micrograph (enlarged) inside a border of noisy glass, (2300, 2900, 3) uint8."""
    h, w = ihc_image.shape[:2]
    canvas = _glass(np.random.default_rng(0), (h + 2 * IHC_PAD, w + 2 * IHC_PAD))
    canvas[IHC_PAD : IHC_PAD + h, IHC_PAD : IHC_PAD + w] = ihc_image
    return canvas


@pytest.fixture(scope="module")
def ihc_padded(tmp_path_factory: pytest.TempPathFactory, ihc_canvas: np.ndarray) -> Path:
    """The padded IHC section as a JPEG tiled pyramid, 0.5 um/px in its resolution tags."""
    return write_pyramid(tmp_path_factory.mktemp("tissue") / "ihc_padded.tif", ihc_canvas, mpp=0.5)


# ---------------------------------------------------------------------------------------------- synthetic slides


@pytest.mark.parametrize("which", ["plain_slide", "pen_slide"])
def test_mask_matches_ground_truth_tissue(which: str, request: pytest.FixtureRequest) -> None:
    slide = request.getfixturevalue(which)
    with open_slide(slide.path) as s:
        tm = detect_tissue(s)
    labels = _truth(slide, tm)
    truth = (labels == LABEL_NORMAL) | (labels == LABEL_TUMOR)
    assert truth.any() and tm.source == slide.path
    assert _iou(tm.mask, truth) > 0.97
    # every tumour pixel is inside the mask (patches of lesions must not be lost)
    assert tm.mask[labels == LABEL_TUMOR].mean() > 0.995
    assert tm.fraction == pytest.approx(truth.mean(), abs=0.02)
    assert tm.config == TissueConfig() and 0.07 <= tm.threshold < 0.3


def test_pen_strokes_are_not_tissue(pen_slide) -> None:
    tm = detect_tissue(pen_slide.path)
    labels = _truth(pen_slide, tm)
    pen = labels == LABEL_PEN
    assert pen.sum() > 1000
    assert tm.mask[pen].mean() < 0.02
    # each ink separately
    cy, cx = tm.grid.centres(np.arange(tm.shape[0]), np.arange(tm.shape[1]))
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    centres = np.stack([yy.ravel(), xx.ravel()], axis=1)
    for stroke in pen_slide.spec.pens:
        inside = points_in_poly(centres, stroke.polygon).reshape(tm.shape) & pen
        assert inside.sum() > 100, stroke.color
        assert tm.mask[inside].mean() < 0.02, stroke.color
    # the rejection is what keeps them out: without it most ink is taken for tissue
    raw = detect_tissue(pen_slide.path, TissueConfig(reject_pen=False))
    assert raw.mask[pen].mean() > 0.5


def test_blank_slide_gives_empty_mask_and_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    glass = _glass(rng, (1024, 1536))
    for _ in range(40):  # grey dust specks, 16 um across
        y, x = rng.integers(0, 1000, 2)
        glass[y : y + 16, x : x + 16] = rng.integers(60, 160)
    path = write_pyramid(tmp_path / "blank.tif", glass, mpp=1.0)
    with pytest.warns(NoTissueWarning, match=r"blank\.tif.*no tissue"):
        tm = detect_tissue(path)
    assert tm.shape == (128, 192)
    assert not tm.mask.any() and tm.fraction == 0.0
    assert tm.box_fraction(0, 0, 1024, 1536) == 0.0


@pytest.mark.parametrize("colour", [(240, 240, 240), (246, 238, 222), (220, 230, 243), (200, 200, 200)])
def test_blank_or_tinted_glass_is_not_tissue(colour: tuple[int, int, int]) -> None:
    glass = _glass(np.random.default_rng(2), (300, 400), colour)
    mask, threshold = tissue_from_rgb(glass, 8.0)
    assert not mask.any()
    s = rgb2hsv(glass)[..., 1]
    assert threshold > np.percentile(s, 99.9)


def test_black_fill_outside_the_scan_is_not_tissue() -> None:
    rng = np.random.default_rng(3)
    img = _glass(rng, (300, 300))
    rr, cc = disk((150, 150), 80)
    img[rr, cc] = (190, 110, 170)  # eosin-pink section
    img[:, 250:] = 0  # scanner fill
    mask, _ = tissue_from_rgb(img, 8.0)
    assert not mask[:, 247:].any()
    assert mask[rr, cc].mean() > 0.98


# ---------------------------------------------------------------------------------------------- real microscopy


def test_real_ihc_section_is_tissue_and_its_glass_border_is_not(ihc_padded: Path, ihc_image: np.ndarray) -> None:
    with open_slide(ihc_padded) as s:
        tm = detect_tissue(s)
    h, w = ihc_image.shape[:2]
    cy, cx = tm.grid.centres(np.arange(tm.shape[0]), np.arange(tm.shape[1]))
    # distance (level-0 px) of each mask pixel centre outside the section's rectangle
    dy = np.maximum(np.maximum(IHC_PAD - cy, cy - (IHC_PAD + h)), 0)[:, None]
    dx = np.maximum(np.maximum(IHC_PAD - cx, cx - (IHC_PAD + w)), 0)[None, :]
    outside = np.hypot(dy, dx)
    sy = tm.grid.spacing[0]
    assert not tm.mask[outside > 1.5 * sy].any()  # glass border: nothing beyond the blurred edge pixel
    section = outside == 0
    assert tm.mask[section].mean() > 0.85  # most of the section, pale stroma included
    assert tm.box_fraction(IHC_PAD, IHC_PAD, h, w) > 0.85
    # the DAB-stained epithelium (brown: hue < 60 degrees, clearly saturated) is all in
    with open_slide(ihc_padded) as s:
        rgb = s.thumbnail(max(tm.shape))
    hue, sat, _ = _hsv(rgb)
    dab = (hue < 60) & (sat > 0.3) & section
    assert dab.sum() > 1000
    assert tm.mask[dab].mean() > 0.99


def test_ihc_stain_is_not_taken_for_ink(ihc_image: np.ndarray) -> None:
    # the whole micrograph at 2 um/px: hematoxylin counterstain (blue) and DAB (brown) are never ink
    from napari_patchdx.sampling.tissue import _ink

    small = downscale_local_mean(ihc_image, (4, 4, 1)).astype(np.uint8)
    hue, sat, val = _hsv(small)
    assert _ink(hue, sat, val, TissueConfig()).mean() < 0.002


# ---------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("mpp", [0.25, 0.5, 1.0])
def test_mask_resolution_is_chosen_by_mpp(ihc_padded: Path, mpp: float) -> None:
    with open_slide(ihc_padded, mpp=mpp) as s:
        tm = detect_tissue(s)
        h0, w0 = s.shape
        assert s.tiles_decoded_per_level[0] == 0  # level 0 is never read for the overview
    for spacing in tm.grid.spacing:
        assert spacing * mpp == pytest.approx(8.0, rel=0.1)
    assert tm.grid.mpp == mpp and tm.grid.origin == (0.0, 0.0)
    assert tm.shape == (round(h0 / tm.grid.spacing[0]), round(w0 / tm.grid.spacing[1]))
    assert tm.grid.extent[2:] == pytest.approx((h0, w0))
    assert tm.grid.napari()["scale"] == pytest.approx((8.0, 8.0), rel=0.1)
    coarse = detect_tissue(open_slide(ihc_padded, mpp=mpp), TissueConfig(target_mpp=16.0))
    assert coarse.grid.spacing[0] * mpp == pytest.approx(16.0, rel=0.1)


def test_same_physical_content_at_two_scan_resolutions(
    tmp_path: Path, ihc_canvas: np.ndarray, ihc_padded: Path
) -> None:
    fine = ihc_padded  # 0.5 um/px
    half = downscale_local_mean(ihc_canvas, (2, 2, 1)).round().astype(np.uint8)
    coarse = write_pyramid(tmp_path / "coarse.tif", half, mpp=1.0)
    a, b = detect_tissue(fine), detect_tissue(coarse)
    assert a.shape == b.shape
    assert a.grid.spacing[0] * 0.5 == pytest.approx(b.grid.spacing[0] * 1.0)
    assert _iou(a.mask, b.mask) > 0.95


def _scene(um_per_px: float) -> tuple[np.ndarray, dict[str, tuple[float, float, float]]]:
    """Eosin-pink discs on glass, drawn at ``um_per_px``; returns the image and the features in micrometres."""
    features = {  # name: (centre y, centre x, radius), micrometres
        "section": (800.0, 800.0, 400.0),
        "small_hole": (700.0, 700.0, 55.0),  # 9,500 um2 < min_hole_um2: filled
        "big_hole": (950.0, 900.0, 100.0),  # 31,400 um2 > min_hole_um2: stays a hole
        "speck": (300.0, 1800.0, 40.0),  # 5,000 um2 < min_object_um2: removed
        "fragment": (1800.0, 1800.0, 80.0),  # 20,100 um2 > min_object_um2: kept
    }
    side = round(2400 / um_per_px)
    img = _glass(np.random.default_rng(4), (side, side))
    for name, (y, x, r) in features.items():
        rr, cc = disk((y / um_per_px, x / um_per_px), r / um_per_px, shape=img.shape[:2])
        img[rr, cc] = (240, 240, 240) if "hole" in name else (205, 120, 175)
    return img, features


@pytest.mark.parametrize("um_per_px", [4.0, 8.0, 12.0])
def test_morphology_sizes_are_in_micrometres(um_per_px: float) -> None:
    img, features = _scene(um_per_px)
    mask, _ = tissue_from_rgb(img, um_per_px)

    def at(name: str) -> bool:
        y, x, _ = features[name]
        return bool(mask[int(y / um_per_px), int(x / um_per_px)])

    assert at("section") and at("fragment") and at("small_hole")
    assert not at("big_hole") and not at("speck")
    # the same thresholds, moved across the features' sizes, flip them at every resolution
    mask2, _ = tissue_from_rgb(img, um_per_px, TissueConfig(min_object_um2=2_000, min_hole_um2=50_000))
    y, x, _ = features["speck"]
    assert mask2[int(y / um_per_px), int(x / um_per_px)]
    y, x, _ = features["big_hole"]
    assert mask2[int(y / um_per_px), int(x / um_per_px)]


def test_closing_bridges_gaps_narrower_than_closing_um() -> None:
    um = 4.0
    img = _glass(np.random.default_rng(5), (200, 300))
    img[50:150, 40:140] = (205, 120, 175)
    img[50:150, 146:260] = (205, 120, 175)  # a 24 um gap
    y = 100
    assert tissue_from_rgb(img, um)[0][y, 143]  # bridged by the default 50 um closing
    assert not tissue_from_rgb(img, um, TissueConfig(closing_um=16))[0][y, 143]


# ---------------------------------------------------------------------------------------------- box fractions


def _brute_fraction(mask: np.ndarray, spacing: tuple[float, float], y0: float, x0: float, h: float, w: float):
    """Area-weighted tissue fraction of a level-0 box, from the overlap of every mask pixel with it."""
    sy, sx = spacing
    r = np.arange(mask.shape[0])
    c = np.arange(mask.shape[1])
    oy = np.clip(np.minimum(y0 + h, (r + 1) * sy) - np.maximum(y0, r * sy), 0, None)
    ox = np.clip(np.minimum(x0 + w, (c + 1) * sx) - np.maximum(x0, c * sx), 0, None)
    return float(oy @ mask.astype(np.float64) @ ox / (h * w))


def test_box_fraction_equals_brute_force() -> None:
    rng = np.random.default_rng(6)
    mask = rng.random((60, 80)) < 0.4
    spacing = (7.3, 9.1)
    tm = TissueMask(mask, Grid(mask.shape, spacing, (0.0, 0.0), 0.5), 0.12)
    ys = rng.uniform(-100, 60 * 7.3, 300)
    xs = rng.uniform(-100, 80 * 9.1, 300)
    hs = rng.uniform(0.5, 300, 300)
    ws = rng.uniform(0.5, 300, 300)
    fast = tm.boxes_fraction(ys, xs, hs, ws)
    brute = np.array([_brute_fraction(mask, spacing, *b) for b in zip(ys, xs, hs, ws, strict=True)])
    np.testing.assert_allclose(fast, brute, rtol=0, atol=1e-9)
    assert tm.box_fraction(ys[0], xs[0], hs[0], ws[0]) == pytest.approx(brute[0], abs=1e-9)
    # integer spacing: count level-0 pixels of the upsampled mask
    tm4 = TissueMask(mask, Grid(mask.shape, (4.0, 4.0), (0.0, 0.0), 0.5), 0.12)
    full = np.repeat(np.repeat(mask, 4, 0), 4, 1)
    for y0, x0, h, w in [(0, 0, 240, 320), (13, 27, 64, 64), (101, 5, 3, 200), (230, 310, 10, 10)]:
        assert tm4.box_fraction(y0, x0, h, w) == pytest.approx(full[y0 : y0 + h, x0 : x0 + w].mean(), abs=1e-12)
    # scalar height / width broadcast; the part of a box outside the slide is not tissue
    assert tm4.boxes_fraction(np.array([0.0, 10.0]), np.array([0.0, 20.0]), 8, 8).shape == (2,)
    full_mask = TissueMask(np.ones((10, 10), bool), Grid((10, 10), (4.0, 4.0), (0.0, 0.0), 0.5), 0.1)
    assert full_mask.box_fraction(-20, 0, 40, 40) == pytest.approx(0.5)
    assert full_mask.box_fraction(100, 100, 5, 5) == 0.0
    with pytest.raises(ValueError, match="positive"):
        tm4.box_fraction(0, 0, 0, 5)


# ---------------------------------------------------------------------------------------------- artifact


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_save_load_round_trip(tmp_path: Path, plain_slide, suffix: str) -> None:
    cfg = TissueConfig(closing_um=40.0, min_object_um2=5_000.0)
    tm = detect_tissue(plain_slide.path, cfg)
    path = tm.save(tmp_path / f"mask{suffix}")
    sidecar = tmp_path / f"mask{suffix}.json"
    assert path.is_file() and sidecar.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, sidecar.name])  # no temporaries left
    meta = json.loads(sidecar.read_text())
    assert meta["geometry"] == tm.grid.to_dict() and meta["threshold"] == tm.threshold
    assert meta["source"] == str(plain_slide.path) and meta["napari_patchdx_version"]
    back = TissueMask.load(path)
    np.testing.assert_array_equal(back.mask, tm.mask)
    assert back.grid == tm.grid and back.threshold == tm.threshold
    assert back.config == cfg and back.source == plain_slide.path
    assert back.box_fraction(0, 0, 700, 900) == pytest.approx(tm.box_fraction(0, 0, 700, 900))
    # the image itself is 0 / 255, readable by any viewer
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            assert set(np.unique(np.asarray(im))) <= {0, 255}
    # nothing is overwritten silently
    with pytest.raises(FileExistsError, match="overwrite"):
        tm.save(path)
    tm.save(path, overwrite=True)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "orphan.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    with pytest.raises(InputFileError, match=r"orphan\.png.*orphan\.png\.json"):
        TissueMask.load(png)
    with pytest.raises(InputFileError, match=r"missing\.png: no such file"):
        TissueMask.load(tmp_path / "missing.png")
    sidecar = tmp_path / "orphan.png.json"
    sidecar.write_text("{not json")
    with pytest.raises(InputFileError, match=r"orphan\.png\.json"):
        TissueMask.load(png)
    tm = TissueMask(np.ones((4, 6), bool), Grid((4, 6), (16.0, 16.0), (0.0, 0.0), 0.5), 0.1)
    sidecar.write_text(json.dumps(tm.metadata()))
    with pytest.raises(InputFileError, match=r"orphan\.png: image is 8 x 8 px but .* 4 x 6"):
        TissueMask.load(png)
    meta = tm.metadata()
    meta["config"] = {"closing_um": -1}
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="closing_um"):
        TissueMask.load(png)
    with pytest.raises(ValueError, match=r"\.jpg"):
        tm.save(tmp_path / "mask.jpg")


def test_unknown_mpp_asks_for_it(tmp_path: Path, ihc_canvas: np.ndarray) -> None:
    path = write_pyramid(tmp_path / "nompp.tif", ihc_canvas[::2, ::2].copy(), mpp=None)
    with open_slide(path) as s:
        assert s.mpp is None
        with pytest.raises(MissingMetadataError, match=r"nompp\.tif.*tissue detection.*mpp="):
            detect_tissue(s)
    with open_slide(path, mpp=1.0) as s:  # given on opening, it works
        tm = detect_tissue(s)
    assert tm.grid.mpp == 1.0 and tm.mask.any()


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_mpp", 0.0),
        ("target_mpp", float("nan")),
        ("threshold", 1.5),
        ("min_saturation", -0.1),
        ("min_saturation", 1.0),
        ("closing_um", -5.0),
        ("min_object_um2", float("inf")),
        ("min_hole_um2", "big"),
        ("pale_od", -0.01),
        ("reject_pen", "yes"),
        ("green_hue", (190.0, 70.0)),
        ("blue_hue", (190.0, 400.0)),
        ("blue_hue", 200.0),
        ("pen_margin_um", True),
    ],
)
def test_bad_config_raises_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TissueConfig(**{field: value})


def test_config_round_trips_through_json() -> None:
    cfg = TissueConfig(target_mpp=4.0, threshold=0.2, green_hue=(80, 180), reject_pen=False)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TissueConfig.from_dict(d) == cfg
    assert TissueConfig.from_dict({}) == TissueConfig()
    with pytest.raises(ConfigError, match=r"unknown setting.*colour"):
        TissueConfig.from_dict({"colour": "pink"})


def test_explicit_threshold_is_used() -> None:
    img, _ = _scene(8.0)
    _, otsu = tissue_from_rgb(img, 8.0)
    mask, thr = tissue_from_rgb(img, 8.0, TissueConfig(threshold=0.95))
    assert thr == 0.95 and not mask.any() and otsu < 0.5


# ---------------------------------------------------------------------------------------------- internals


def test_hsv_matches_skimage() -> None:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (64, 97, 3), dtype=np.uint8)
    img[:4] = 128  # grey: hue 0
    img[4:8, :, 1] = img[4:8, :, 0]  # ties between channels
    img[8:10] = 0  # black: saturation 0
    hue, sat, val = _hsv(img)
    ref = rgb2hsv(img)
    np.testing.assert_allclose(hue / 360.0, ref[..., 0], atol=1e-6)
    np.testing.assert_allclose(sat, ref[..., 1], atol=1e-6)
    np.testing.assert_allclose(val, ref[..., 2], atol=1e-6)


def test_tissue_from_rgb_checks_its_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        tissue_from_rgb(np.zeros((8, 8, 3), np.float32), 8.0)
    with pytest.raises(ValueError, match="uint8"):
        tissue_from_rgb(np.zeros((8, 8), np.uint8), 8.0)
    with pytest.raises(ValueError, match="um_per_px"):
        tissue_from_rgb(np.zeros((8, 8, 3), np.uint8), 0.0)
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent: white, no tissue
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask, _ = tissue_from_rgb(rgba, 8.0)
    assert not mask.any()


def test_mask_is_read_only_and_checked() -> None:
    tm = TissueMask(np.zeros((4, 5), bool), Grid((4, 5), (2.0, 2.0)), 0.1)
    with pytest.raises(ValueError):
        tm.mask[0, 0] = True
    with pytest.raises(ValueError, match="grid"):
        TissueMask(np.zeros((4, 5), bool), Grid((5, 4), (2.0, 2.0)), 0.1)
    assert tm.area_um2 is None and math.isclose(tm.fraction, 0.0)


def test_real_he_slide(cmu_svs: Path) -> None:
    """OpenSlide's CMU-1 H&E region (real Aperio SVS): tissue is the stained, saturated part; glass is not."""
    from skimage.color import rgb2hsv
    from skimage.transform import resize

    slide = open_slide(cmu_svs)
    tissue = detect_tissue(slide)
    assert 0.3 < tissue.fraction < 0.5
    thumb = slide.thumbnail(max(tissue.mask.shape))
    hsv = rgb2hsv(resize(thumb, tissue.mask.shape, order=1))
    inside, outside = hsv[tissue.mask], hsv[~tissue.mask]
    assert inside[:, 1].mean() > outside[:, 1].mean() + 0.15  # stained tissue is saturated
    assert outside[:, 2].mean() > 0.85  # what is left out is bright glass
