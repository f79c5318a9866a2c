"""The synthetic whole-slide cohort: file format, ground truth, appearance, seams, lesion layout, determinism."""

from __future__ import annotations

import csv
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from scipy import ndimage
from skimage import measure
from skimage.filters import threshold_otsu

from napari_patchdx.io.annotations.model import EXCLUSION, TUMOR
from napari_patchdx.io.annotations.read import read_annotations
from napari_patchdx.synth import wsi as sw
from napari_patchdx.synth.wsi import nuclei, tiff_writer

TUMOUR_ARGS = {"height": 4096, "width": 4096, "mpp": 0.5, "seed": 11}
NORMAL_ARGS = {"height": 2048, "width": 2048, "mpp": 1.0, "seed": 12, "tumor": False, "pen_marks": True}
COHORT_ARGS = {"n_tumor": 1, "n_normal": 1, "seed": 2, "height": 2048, "width": 2048, "mpp": 1.0}


@pytest.fixture(scope="module")
def tumour_slide(tmp_path_factory: pytest.TempPathFactory) -> sw.SynthSlide:
    return sw.make_slide(tmp_path_factory.mktemp("tumour") / "tumour.tif", **TUMOUR_ARGS)


@pytest.fixture(scope="module")
def normal_slide(tmp_path_factory: pytest.TempPathFactory) -> sw.SynthSlide:
    return sw.make_slide(tmp_path_factory.mktemp("normal") / "normal.tif", **NORMAL_ARGS)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> sw.WsiCohort:
    return sw.make_wsi_cohort(tmp_path_factory.mktemp("cohort"), **COHORT_ARGS)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _min_gap_um(a: np.ndarray, b: np.ndarray, mpp: float) -> float:
    """Smallest vertex-to-vertex distance of two dense polygons, micrometres (independent of the module)."""
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    return float(d.min()) * mpp


def _extent_um(poly: np.ndarray, mpp: float) -> float:
    d = np.sqrt(((poly[:, None, :] - poly[None, :, :]) ** 2).sum(axis=2))
    return float(d.max()) * mpp


# ------------------------------------------------------------------------------------------------ format


def test_openslide_opens_the_pyramid(tumour_slide: sw.SynthSlide) -> None:
    with openslide.OpenSlide(str(tumour_slide.path)) as osr:
        n_levels = osr.level_count
        assert osr.properties["openslide.vendor"] == "generic-tiff"
        assert osr.level_count == len(tumour_slide.level_shapes) == 4  # 4096 -> 512
        assert osr.level_dimensions[0] == (4096, 4096)
        for k in range(1, osr.level_count):
            w, h = osr.level_dimensions[k]
            pw, ph = osr.level_dimensions[k - 1]
            assert (w, h) == (math.ceil(pw / 2), math.ceil(ph / 2))
            assert osr.level_downsamples[k] == pytest.approx(2**k)
        assert min(osr.level_dimensions[-1]) <= 512
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-9)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(0.5, rel=1e-9)
    with tifffile.TiffFile(tumour_slide.path) as tf:
        assert len(tf.pages) == n_levels  # one top-level page per level, no SubIFDs
        for k, page in enumerate(tf.pages):
            assert page.is_tiled and page.tile == (256, 256)
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert page.subfiletype == (1 if k else 0)
            assert page.shape == (*tumour_slide.level_shapes[k], 3)


def test_mpp_written_per_centimetre_and_read_back(tmp_path: Path) -> None:
    slide = sw.make_slide(tmp_path / "odd.tif", height=1024, width=768, mpp=0.243, seed=1, tumor=False)
    with openslide.OpenSlide(str(slide.path)) as osr:
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.243, rel=1e-6)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(0.243, rel=1e-6)
        assert osr.level_dimensions == ((768, 1024), (384, 512))
    with tifffile.TiffFile(slide.path) as tf:
        assert tf.pages[0].tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER


def test_file_pixels_are_the_rendered_pixels(tumour_slide: sw.SynthSlide) -> None:
    cy, cx = (int(v) for v in tumour_slide.lesions[0].centre)
    with openslide.OpenSlide(str(tumour_slide.path)) as osr:
        for level, ds in ((0, 1), (2, 4)):
            y0, x0 = (cy - 256 * ds) // (256 * ds) * 256 * ds, (cx - 256 * ds) // (256 * ds) * 256 * ds
            got = np.asarray(osr.read_region((x0, y0), level, (512, 512)).convert("RGB")).astype(int)
            want = sw.render_region(tumour_slide, y0, x0, 512, 512, ds).astype(int)
            psnr = 10 * np.log10(255**2 / np.mean((got - want) ** 2))
            assert psnr > 28  # JPEG quality 85, 4:2:0 chroma


def test_background_tiles_are_one_reused_jpeg(tumour_slide: sw.SynthSlide) -> None:
    with tifffile.TiffFile(tumour_slide.path) as tf, open(tumour_slide.path, "rb") as fh:
        page = tf.pages[0]
        ny = -(-page.shape[0] // 256)
        labels = sw.label_region(tumour_slide, 0, 0, ny, ny, 256)  # one centre per tile: a cheap pre-filter
        blobs = set()
        for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
            ty, tx = divmod(index, ny)
            if (
                labels[ty, tx] == sw.LABEL_BACKGROUND
                and not sw.label_region(tumour_slide, ty * 256, tx * 256, 256, 256).any()
            ):
                fh.seek(offset)
                blobs.add(fh.read(count))
        assert len(blobs) == 1
        tile = page.decode(blobs.pop(), 0, jpegtables=page.jpegtables)[0].reshape(256, 256, 3)
    assert 233 <= tile.mean() <= 247
    assert tile.std() < 3.0


def test_background_is_near_white_and_holds_no_tissue(tumour_slide: sw.SynthSlide) -> None:
    with openslide.OpenSlide(str(tumour_slide.path)) as osr:
        level = osr.level_count - 1
        w, h = osr.level_dimensions[level]
        thumb = np.asarray(osr.read_region((0, 0), level, (w, h)).convert("RGB")).astype(float)
    ds = 2**level
    labels = sw.label_region(tumour_slide, 0, 0, h, w, ds)
    inner_bg = ndimage.binary_erosion(labels == sw.LABEL_BACKGROUND, iterations=3)
    inner_tissue = ndimage.binary_erosion(labels != sw.LABEL_BACKGROUND, iterations=3)
    bg = thumb[inner_bg]
    assert 233 < bg.mean() < 247 and bg.min() > 220
    assert (bg.max(axis=1) - bg.min(axis=1)).mean() < 4  # grey, not coloured
    assert thumb[inner_tissue].mean() < 200
    # the tissue covers about the requested fraction of the slide
    level0 = sw.label_region(tumour_slide, 0, 0, 512, 512, 8)
    assert (level0 != sw.LABEL_BACKGROUND).mean() == pytest.approx(0.4, abs=0.05)


# ---------------------------------------------------------------------------------------- ground truth


def test_annotations_match_the_drawn_tumour_exactly(tumour_slide: sw.SynthSlide) -> None:
    assert tumour_slide.annotation_path == tumour_slide.path.with_suffix(".xml")
    ann = read_annotations(tumour_slide.annotation_path)
    assert [r.label for r in ann.regions] == [r.label for r in tumour_slide.regions.regions]
    assert {r.group for r in ann.regions if r.label == TUMOR} == {"_0"}
    assert {r.group for r in ann.regions if r.label == EXCLUSION} == {"_2"}
    for got, want in zip(ann.regions, tumour_slide.regions.regions, strict=True):
        np.testing.assert_allclose(got.exterior, want.exterior, atol=1e-9)
    h, w = tumour_slide.height, tumour_slide.width
    mask = ann.rasterize((h, w), 1)
    assert mask.sum() > 0
    np.testing.assert_array_equal(mask, sw.label_region(tumour_slide, 0, 0, h, w) == sw.LABEL_TUMOR)
    for ds in (4, 32):
        n = h // ds
        np.testing.assert_array_equal(
            ann.rasterize((n, n), ds), sw.label_region(tumour_slide, 0, 0, n, n, ds) == sw.LABEL_TUMOR
        )


def test_any_window_matches_the_rasterised_annotations(tumour_slide: sw.SynthSlide) -> None:
    """Slides and annotations share one polygon fill, so even unaligned windows agree pixel for pixel."""
    cy, cx = tumour_slide.lesions[0].centre
    for dy, dx, ds in ((-300.25, -411.5, 1.0), (-500.0, -350.0, 3.0), (-777.5, -123.0, 8.0)):
        y0, x0 = cy + dy, cx + dx
        want = tumour_slide.regions.rasterize((256, 256), ds, origin=(y0, x0))
        assert want.any() and not want.all()
        np.testing.assert_array_equal(sw.label_region(tumour_slide, y0, x0, 256, 256, ds) == sw.LABEL_TUMOR, want)


def _hematoxylin(slide: sw.SynthSlide, rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin concentration by colour deconvolution with the slide's own stain vectors."""
    st = slide.spec.stain
    stains = np.stack([st.hematoxylin * st.h_scale, st.eosin * st.e_scale], axis=1)
    od = -np.log(np.clip(rgb.astype(np.float64), 1, 255) / st.background)
    return (od.reshape(-1, 3) @ np.linalg.pinv(stains).T)[:, 0].reshape(rgb.shape[:2])


def test_tumour_differs_in_nuclei_not_colour_and_matches_the_mask(tumour_slide: sw.SynthSlide) -> None:
    size, block = 2048, 128  # level-0 window around the macro-metastasis, 64 um blocks
    cy, cx = (int(v) for v in tumour_slide.lesions[0].centre)
    y0 = int(np.clip(cy - size // 2, 0, tumour_slide.height - size))
    x0 = int(np.clip(cx - size // 2, 0, tumour_slide.width - size))
    with openslide.OpenSlide(str(tumour_slide.path)) as osr:
        rgb = np.asarray(osr.read_region((x0, y0), 0, (size, size)).convert("RGB"))
    labels = sw.label_region(tumour_slide, y0, x0, size, size)
    tumour = ndimage.binary_erosion(labels == sw.LABEL_TUMOR, iterations=20)
    normal = ndimage.binary_erosion(labels == sw.LABEL_NORMAL, iterations=20)
    assert tumour.sum() > 1e5 and normal.sum() > 1e5

    # mean colour: close (stain variation between slides is larger)
    assert np.abs(rgb[tumour].mean(axis=0) - rgb[normal].mean(axis=0)).max() < 15

    # nuclear morphology: segment nuclei (dark hematoxylin, holes of vesicular nuclei filled)
    nuclei = ndimage.binary_opening(ndimage.binary_fill_holes(_hematoxylin(tumour_slide, rgb) > 0.9))
    lab, n = ndimage.label(nuclei)
    area_um2 = np.bincount(lab.ravel())[1:] * tumour_slide.mpp**2
    centres = np.array(ndimage.center_of_mass(nuclei, lab, np.arange(1, n + 1))).astype(int)
    real = area_um2 >= 10
    in_tumour = tumour[centres[:, 0], centres[:, 1]] & real
    in_normal = normal[centres[:, 0], centres[:, 1]] & real
    med_t, med_n = np.median(area_um2[in_tumour]), np.median(area_um2[in_normal])
    assert 70 < med_t < 250  # 10-18 um nuclei
    assert med_t > 1.8 * med_n
    density_t = in_tumour.sum() / (tumour.sum() * tumour_slide.mpp**2)
    density_n = in_normal.sum() / (normal.sum() * tumour_slide.mpp**2)
    assert density_n > 1.8 * density_t  # lymphocytes are small and crowded

    # the rasterised ground truth (one value per 64 um block) matches where nuclei look like tumour
    blocks = size // block
    count = np.zeros((blocks, blocks))
    np.add.at(count, (centres[real, 0] // block, centres[real, 1] // block), 1)
    truth = read_annotations(tumour_slide.annotation_path).rasterize((blocks, blocks), block, origin=(y0, x0))
    tissue = sw.label_region(tumour_slide, y0, x0, blocks, blocks, block) != sw.LABEL_BACKGROUND
    looks_tumour = count < threshold_otsu(count[tissue])
    assert (looks_tumour[tissue] == truth[tissue]).mean() > 0.8
    frac = (labels == sw.LABEL_TUMOR).reshape(blocks, block, blocks, block).mean(axis=(1, 3))
    assert looks_tumour[frac == 1].mean() > 0.9


# ----------------------------------------------------------------------------------------------- seams


@pytest.mark.parametrize("ds", [1, 2, 4, 16])
def test_tiles_join_exactly(tumour_slide: sw.SynthSlide, ds: int) -> None:
    cy, cx = (int(v) for v in tumour_slide.lesions[0].centre)
    step = 256 * ds
    y0, x0 = (cy // step) * step - step, (cx // step) * step - step
    whole = sw.render_region(tumour_slide, y0, x0, 512, 512, ds)
    tiles = [
        [sw.render_region(tumour_slide, y0 + i * step, x0 + j * step, 256, 256, ds) for j in range(2)] for i in range(2)
    ]
    np.testing.assert_array_equal(whole, np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0))


def test_no_visible_seams_in_the_file(tumour_slide: sw.SynthSlide) -> None:
    cy, cx = (int(v) for v in tumour_slide.lesions[0].centre)
    y0, x0 = (cy // 256 - 2) * 256, (cx // 256 - 2) * 256
    with openslide.OpenSlide(str(tumour_slide.path)) as osr:
        img = np.asarray(osr.read_region((x0, y0), 0, (1024, 1024)).convert("RGB")).astype(float)
    for axis in (0, 1):
        step = np.abs(np.diff(img, axis=axis)).mean(axis=2)  # step[k] is between rows/cols k and k+1
        step = step.mean(axis=1 - axis)
        k = np.arange(step.size)
        tile_border = step[(k % 256) == 255]
        block_border = step[((k % 8) == 7) & ((k % 256) != 255)]  # JPEG 8 x 8 block edges inside tiles
        inside = step[(k % 8) != 7]
        assert tile_border.mean() < 1.25 * block_border.mean()
        assert tile_border.mean() < 1.5 * inside.mean()


# -------------------------------------------------------------------------------------------- lesions


def test_lesion_sizes_itc_pair_and_exclusion(tumour_slide: sw.SynthSlide) -> None:
    mpp = tumour_slide.mpp
    tumours = [r.exterior for r in tumour_slide.regions.regions if r.label == TUMOR]
    exclusions = [r.exterior for r in tumour_slide.regions.regions if r.label == EXCLUSION]
    lesions = tumour_slide.lesions
    assert len(lesions) == len(tumours) >= 5
    for lesion, poly in zip(lesions, tumours, strict=True):
        assert lesion.extent_um == pytest.approx(_extent_um(poly, mpp), rel=1e-9)
        assert lesion.is_itc == (lesion.extent_um < 200)
    extents = [les.extent_um for les in lesions]
    assert max(extents) > 500 and min(extents) < 200  # macro-metastasis down to isolated tumour cells
    assert any(les.is_itc for les in lesions)

    # one pair closer than 75 um (one lesion in CAMELYON16), every other pair well apart
    close = [
        (i, j)
        for i in range(len(tumours))
        for j in range(i + 1, len(tumours))
        if _min_gap_um(tumours[i], tumours[j], mpp) < 75
    ]
    assert len(close) == 1
    i, j = close[0]
    assert _min_gap_um(tumours[i], tumours[j], mpp) > 0
    assert lesions[i].merge_group == lesions[j].merge_group
    assert lesions[i].kind == lesions[j].kind == "pair"
    assert len({les.merge_group for les in lesions}) == len(lesions) - 1

    # the CAMELYON16 evaluation mask (level-5-like grid, 37.5 um growth) merges the pair and keeps the ITC
    ds = 16
    n = tumour_slide.height // ds
    mask = read_annotations(tumour_slide.annotation_path).rasterize((n, n), ds)
    grown = ndimage.distance_transform_edt(~mask) < 37.5 / (mpp * ds)
    lab = measure.label(ndimage.binary_fill_holes(grown), connectivity=2)
    centre_label = [lab[int(les.centre[0] / ds), int(les.centre[1] / ds)] for les in lesions]
    assert centre_label[i] == centre_label[j] != 0
    itc = next(k for k, les in enumerate(lesions) if les.is_itc and les.kind == "itc")
    region = next(p for p in measure.regionprops(lab) if p.label == centre_label[itc])
    assert region.axis_major_length * ds * mpp < 275

    # the exclusion region lies inside the macro-metastasis and is drawn as normal tissue
    assert len(exclusions) == 1
    host = next(k for k, les in enumerate(lesions) if les.has_exclusion)
    assert lesions[host].kind == "macro"
    inside = measure.points_in_poly(exclusions[0], tumours[host])
    assert inside.all()
    (ey0, ex0), (ey1, ex1) = exclusions[0].min(axis=0), exclusions[0].max(axis=0)
    cy, cx = exclusions[0].mean(axis=0)
    labels = sw.label_region(tumour_slide, int(cy) - 8, int(cx) - 8, 16, 16)
    assert (labels == sw.LABEL_NORMAL).all()
    win = sw.label_region(tumour_slide, int(ey0), int(ex0), int(ey1 - ey0), int(ex1 - ex0))
    assert (win == sw.LABEL_NORMAL).any() and (win == sw.LABEL_TUMOR).any()


def test_tumours_lie_inside_tissue(tumour_slide: sw.SynthSlide) -> None:
    for region in tumour_slide.regions.regions:
        assert any(measure.points_in_poly(region.exterior, t).all() for t in tumour_slide.tissue)
    labels = sw.label_region(tumour_slide, 0, 0, 1024, 1024, 4)
    tumour = labels == sw.LABEL_TUMOR
    tissue = sw.label_region(tumour_slide.spec, 0, 0, 1024, 1024, 4) != sw.LABEL_BACKGROUND
    assert tumour.any() and not (tumour & ~tissue).any()


def test_nuclei_are_sized_in_micrometres() -> None:
    def lymphocyte_area_um2(px_um: float) -> float:
        return float(nuclei.bank("lymph", px_um).body.sum(axis=(1, 2)).mean()) * px_um**2

    assert lymphocyte_area_um2(0.25) == pytest.approx(lymphocyte_area_um2(1.0), rel=0.05)
    assert math.pi * 3.0**2 < lymphocyte_area_um2(0.5) < math.pi * 4.0**2  # 6-8 um across


def test_larger_slides_get_larger_tumours() -> None:
    small = sw.make_slide_spec(height=2048, width=2048, mpp=1.0, seed=4)
    large = sw.make_slide_spec(height=8192, width=8192, mpp=0.5, seed=4)
    macro_small = _extent_um(small.tumors[0], small.mpp)
    macro_large = _extent_um(large.tumors[0], large.mpp)
    assert macro_large > macro_small and 500 < macro_large <= 2000


# ------------------------------------------------------------------------------ normal slides, pen marks


def test_normal_slide_has_no_tumour_and_no_xml(normal_slide: sw.SynthSlide) -> None:
    assert normal_slide.label == "normal"
    assert normal_slide.annotation_path is None
    assert not normal_slide.path.with_suffix(".xml").exists()
    assert len(normal_slide.regions) == 0 and normal_slide.lesions == []
    labels = sw.label_region(normal_slide, 0, 0, 512, 512, 4)
    assert not (labels == sw.LABEL_TUMOR).any() and (labels == sw.LABEL_NORMAL).any()


def test_pen_marks_are_drawn_on_the_glass_only(normal_slide: sw.SynthSlide, tumour_slide: sw.SynthSlide) -> None:
    assert tumour_slide.pen_marks == []
    assert len(normal_slide.pen_marks) >= 1
    for stroke in normal_slide.pen_marks:
        for section in normal_slide.tissue:
            assert not measure.points_in_poly(stroke, section).any()
            assert not measure.points_in_poly(section, stroke).any()
    ds = 4
    n = normal_slide.height // ds
    labels = sw.label_region(normal_slide, 0, 0, n, n, ds)
    pen = labels == sw.LABEL_PEN
    assert pen.sum() > 200
    with openslide.OpenSlide(str(normal_slide.path)) as osr:
        img = np.asarray(osr.read_region((0, 0), 2, (n, n)).convert("RGB")).astype(float)
    ink = img[ndimage.binary_erosion(pen, iterations=2)]
    glass = img[ndimage.binary_erosion(labels == sw.LABEL_BACKGROUND, iterations=2)]
    assert ink.mean() < glass.mean() - 60  # clearly inked
    colours = {s.color for s in normal_slide.spec.pens}
    assert colours <= {"green", "blue", "black"}


# ------------------------------------------------------------------------- cohort, determinism, safety


def test_cohort_files_and_csv(cohort: sw.WsiCohort) -> None:
    assert [s.path.name for s in cohort.slides] == ["tumor_000.tif", "normal_000.tif"]
    with open(cohort.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["slide", "label", "file", "annotation", "height", "width", "mpp", "n_lesions", "n_itc"]
    assert [r["label"] for r in rows] == ["tumor", "normal"]
    for row, slide in zip(rows, cohort.slides, strict=True):
        assert (cohort.root / row["file"]).is_file()
        assert int(row["height"]) == slide.height == 2048 and float(row["mpp"]) == slide.mpp == 1.0
        assert int(row["n_lesions"]) == len(slide.lesions)
        assert int(row["n_itc"]) == sum(les.is_itc for les in slide.lesions)
    assert rows[0]["annotation"] == "tumor_000.xml" and (cohort.root / "tumor_000.xml").is_file()
    assert rows[1]["annotation"] == "" and int(rows[1]["n_lesions"]) == 0
    assert not list(cohort.root.glob(".*"))  # no temporary files left behind


def test_same_seed_gives_byte_identical_files(cohort: sw.WsiCohort, tmp_path: Path) -> None:
    again = sw.make_wsi_cohort(tmp_path, **COHORT_ARGS)
    for a, b in zip(cohort.slides, again.slides, strict=True):
        assert _sha256(a.path) == _sha256(b.path)
        if a.annotation_path is not None:
            assert b.annotation_path is not None
            assert _sha256(a.annotation_path) == _sha256(b.annotation_path)
    assert cohort.csv.read_bytes() == again.csv.read_bytes()
    other = sw.make_slide_spec(height=2048, width=2048, mpp=1.0, seed=cohort.slides[0].seed + 1)
    assert not np.array_equal(other.tissue[0], cohort.slides[0].spec.tissue[0])


def test_existing_files_are_reused_or_refused(cohort: sw.WsiCohort) -> None:
    before = {p: p.stat().st_mtime_ns for p in cohort.root.iterdir()}
    again = sw.make_wsi_cohort(cohort.root, **COHORT_ARGS)  # same arguments: found, not rewritten
    assert [s.path for s in again.slides] == [s.path for s in cohort.slides]
    assert {p: p.stat().st_mtime_ns for p in cohort.root.iterdir()} == before
    with pytest.raises(FileExistsError, match=r"tumor_000\.tif"):
        sw.make_wsi_cohort(cohort.root, **{**COHORT_ARGS, "seed": 3})
    with pytest.raises(FileExistsError):
        sw.make_slide(cohort.slides[1].path, height=2048, width=2048, mpp=1.0, seed=99, tumor=False)
    assert {p: p.stat().st_mtime_ns for p in cohort.root.iterdir()} == before


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = tiff_writer._encode

    def failing_encode(tile: np.ndarray, quality: int) -> bytes:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return original(tile, quality)

    monkeypatch.setattr(tiff_writer, "_encode", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        sw.make_slide(tmp_path / "cut.tif", height=2048, width=2048, mpp=1.0, seed=1, tumor=False)
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_and_removes_stale_ground_truth(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    tumour = sw.make_slide(path, height=1536, width=1536, mpp=1.0, seed=5)
    assert tumour.annotation_path is not None and tumour.annotation_path.exists()
    normal = sw.make_slide(path, height=1536, width=1536, mpp=1.0, seed=5, tumor=False, overwrite=True)
    assert normal.annotation_path is None and not path.with_suffix(".xml").exists()


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tissue_fraction"):
        sw.make_slide_spec(height=2048, width=2048, tissue_fraction=0.9)
    with pytest.raises(ValueError, match="tile"):
        sw.make_slide_spec(height=2048, width=2048, tile=100)
    with pytest.raises(ValueError, match="quality"):
        sw.make_slide(tmp_path / "q.tif", height=2048, width=2048, quality=0)
    with pytest.raises(ValueError, match="h and w"):
        sw.render_region(sw.make_slide_spec(height=512, width=512, tumor=False), 0, 0, 0, 10)


@pytest.mark.slow
def test_gigapixel_mostly_empty_slide_reuses_one_background_tile(large_slide: Path) -> None:
    """100,000 x 100,000 px, 0.2 % tissue (conftest's session slide): background tiles are one JPEG written once
    per tile position, so the file stays small; speed and memory are measured in benchmarks/read_regions.py."""
    import tifffile

    with openslide.OpenSlide(str(large_slide)) as osr:
        assert osr.level_dimensions[0] == (100_000, 100_000) and osr.level_count == 9
        assert min(osr.level_dimensions[-1]) <= 512
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    with tifffile.TiffFile(large_slide) as tif, open(large_slide, "rb") as fh:
        page = tif.pages.first
        counts = np.asarray(page.databytecounts)
        background = np.bincount(counts).argmax()
        assert (counts == background).mean() > 0.95
        sample = np.flatnonzero(counts == background)[:: max(1, int((counts == background).sum()) // 20)]
        tiles = set()
        for i in sample:
            fh.seek(int(page.dataoffsets[i]))
            tiles.add(fh.read(int(counts[i])))
        assert len(tiles) == 1
    assert large_slide.stat().st_size < 600 * 2**20
