"""The hard synthetic whole-slide profile: reproducible, exact tumour ground truth, mimics and artefacts that are
not tumour, micro-metastasis and ITC sizes, two centres with different colours, and the default profile unchanged."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_patchdx.io.annotations.model import EXCLUSION, TUMOR
from napari_patchdx.io.annotations.read import read_annotations
from napari_patchdx.synth import wsi as sw
from napari_patchdx.synth.wsi.frame import make_frame, polygon_mask
from napari_patchdx.synth.wsi.ground_truth import slide_lesions
from napari_patchdx.synth.wsi.polygons import band, polygon_gap

SIZE, MPP = 1536, 1.0  # 1.5 mm slides: the smallest the hard layout is made for
COHORT_ARGS = {"n_tumor": 2, "n_normal": 2, "seed": 3, "height": SIZE, "width": SIZE, "mpp": MPP, "profile": "hard"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> sw.WsiCohort:
    return sw.make_wsi_cohort(tmp_path_factory.mktemp("hard"), **COHORT_ARGS)


def _spec(seed: int, centre: str = "A", tumor: bool = True) -> sw.SlideSpec:
    return sw.make_slide_spec(height=SIZE, width=SIZE, mpp=MPP, seed=seed, profile="hard", centre=centre, tumor=tumor)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------- default unchanged


def test_default_profile_is_unchanged() -> None:
    """Checksums of a small default slide (pixels at two levels, labels, geometry, stain), taken with the
    generator before the hard profile was added: the default cohort every other test uses is bit-identical."""
    spec = sw.make_slide_spec(height=1024, width=1024, mpp=1.0, seed=5, pen_marks=True)
    h = hashlib.sha256()
    for ds in (1, 4):
        n = 1024 // ds
        h.update(sw.render_region(spec, 0, 0, n, n, ds).tobytes())
        h.update(sw.label_region(spec, 0, 0, n, n, ds).tobytes())
    for p in (*spec.tissue, *spec.tumors, *spec.exclusions, *(s.polygon for s in spec.pens)):
        h.update(np.ascontiguousarray(p, dtype="<f8").tobytes())
    st = spec.stain
    h.update(np.asarray([*st.hematoxylin, *st.eosin, st.h_scale, st.e_scale, *st.background], dtype="<f8").tobytes())
    assert h.hexdigest() == "97e2d61de0240f653de28f212e6c88366b7bc95367aaa7830bafb90ef1462cce"
    assert spec.profile == "default" and spec.centre == "" and not spec.mimics and not spec.artefacts
    normal = sw.make_slide_spec(height=1024, width=1024, mpp=1.0, seed=6, tumor=False)
    digest = hashlib.sha256(sw.render_region(normal, 0, 0, 512, 512, 2).tobytes()).hexdigest()
    assert digest == "10eda3d60e869532046acbcc1b5023b03be2c0b9b9b098232c40d113c7c9ab9a"


def test_default_cohort_csv_keeps_its_columns(tmp_path: Path) -> None:
    cohort = sw.make_wsi_cohort(tmp_path, n_tumor=0, n_normal=1, seed=1, height=1024, width=1024, mpp=1.0)
    header = cohort.csv.read_text(encoding="utf-8").splitlines()[0]
    assert header == "slide,label,file,annotation,height,width,mpp,n_lesions,n_itc"


# ------------------------------------------------------------------------------------------- cohort


def test_cohort_csv_records_profile_and_centre(cohort: sw.WsiCohort) -> None:
    with open(cohort.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        *("slide", "label", "file", "annotation", "height", "width", "mpp", "n_lesions", "n_itc"),
        *("profile", "centre"),
    ]
    assert [(r["slide"], r["centre"]) for r in rows] == [
        ("tumor_000", "A"),
        ("tumor_001", "B"),
        ("normal_000", "A"),
        ("normal_001", "B"),
    ]
    for row, slide in zip(rows, cohort.slides, strict=True):
        assert row["profile"] == "hard" == slide.spec.profile and row["centre"] == slide.spec.centre
        assert (cohort.root / row["file"]).is_file()
        assert int(row["n_lesions"]) == len(slide.lesions) and int(row["n_itc"]) == slide.n_itc
        with tifffile.TiffFile(cohort.root / row["file"]) as tf:
            assert f"profile=hard; centre={row['centre']}" in tf.pages[0].description


def test_hard_profile_is_reproducible_from_the_seed(cohort: sw.WsiCohort, tmp_path: Path) -> None:
    first = cohort.slides[0]
    again = sw.make_slide(
        tmp_path / "again.tif", height=SIZE, width=SIZE, mpp=MPP, seed=first.seed, profile="hard", centre="A"
    )
    assert _sha256(again.path) == _sha256(first.path)
    assert again.annotation_path is not None and first.annotation_path is not None
    assert _sha256(again.annotation_path) == _sha256(first.annotation_path)
    a, b = first.spec, again.spec
    assert a.tumor_contrast == b.tumor_contrast and a.tumor_kinds == b.tumor_kinds
    assert [m.kind for m in a.mimics] == [m.kind for m in b.mimics]
    for ma, mb in zip(a.mimics, b.mimics, strict=True):
        np.testing.assert_array_equal(ma.polygon, mb.polygon)
    # reusing the written cohort: the same arguments find the same files
    assert _sha256(sw.make_wsi_cohort(cohort.root, **COHORT_ARGS).csv) == _sha256(cohort.csv)
    # another seed, another slide; the same seed in the other centre: the same layout, another stain
    other = _spec(first.seed + 1)
    assert not np.array_equal(other.tissue[0], a.tissue[0])
    b_centre = _spec(first.seed, centre="B")
    np.testing.assert_array_equal(b_centre.tissue[0], a.tissue[0])
    assert not np.allclose(b_centre.stain.hematoxylin, a.stain.hematoxylin, atol=0.02)


# --------------------------------------------------------------------------------------- tumour truth


def test_ground_truth_is_exactly_the_tumour_drawn(cohort: sw.WsiCohort) -> None:
    for slide in cohort.tumor_slides:
        assert slide.annotation_path is not None
        found = read_annotations(slide.annotation_path)
        tumours = [r.exterior for r in found.regions if r.label == TUMOR]
        exclusions = [r.exterior for r in found.regions if r.label == EXCLUSION]
        assert len(found.regions) == len(slide.spec.tumors) + len(slide.spec.exclusions)  # nothing else
        for got, want in zip(tumours, slide.spec.tumors, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        for got, want in zip(exclusions, slide.spec.exclusions, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        for ds in (1, 4):
            n = SIZE // ds
            labels = sw.label_region(slide, 0, 0, n, n, ds)
            np.testing.assert_array_equal(labels == sw.LABEL_TUMOR, found.rasterize((n, n), ds))
    low = [les for s in cohort.tumor_slides for les in s.lesions if les.contrast < 1]
    assert low and all(0.3 <= les.contrast <= 0.65 for les in low)  # low-contrast tumours are annotated too


def test_micrometastases_and_itcs_are_sized_in_micrometres(cohort: sw.WsiCohort) -> None:
    lesions = [les for s in cohort.tumor_slides for les in s.lesions]
    specs = [_spec(seed) for seed in (20, 21, 22)]
    for spec in specs:
        lesions += slide_lesions(spec, spec.tumor_kinds, spec.tumor_contrast)
    micro = [les.extent_um for les in lesions if les.kind == "micro"]
    itc = [les.extent_um for les in lesions if les.kind == "itc"]
    assert len(micro) >= 5 and len(itc) >= 5
    assert all(230.0 <= e <= 2000.0 for e in micro)  # 0.2-2 mm
    assert all(40.0 <= e < 200.0 for e in itc)  # isolated tumour cells: under 200 um
    assert all(les.is_itc == (les.extent_um < sw.ITC_MAX_EXTENT_UM) for les in lesions)
    # every tumour slide holds a macro-metastasis beside its micro-metastases and ITCs
    for kinds in [s.spec.tumor_kinds for s in cohort.tumor_slides] + [spec.tumor_kinds for spec in specs]:
        assert kinds.count("macro") == 1 and "micro" in kinds and "itc" in kinds


# ------------------------------------------------------------------------------------------- mimics


def test_mimics_exist_and_are_not_in_the_ground_truth(cohort: sw.WsiCohort) -> None:
    kinds = {m.kind for s in cohort.slides for m in s.spec.mimics}
    assert kinds == {"follicle", "histiocytes", "sheet"}
    for slide in cohort.slides:
        spec = slide.spec
        assert spec.mimics
        n = SIZE // 2
        frame = make_frame(spec, 0, 0, n, n, 2)
        labels = sw.label_region(slide, 0, 0, n, n, 2)
        truth = slide.regions.rasterize((n, n), 2)
        for mimic in spec.mimics:
            m = polygon_mask(mimic.polygon, frame)
            assert m.sum() > 100
            assert not (m & truth).any() and not (labels[m] == sw.LABEL_TUMOR).any()
            assert (labels[m] == sw.LABEL_NORMAL).all()
            for tumour in spec.tumors:  # clear of every tumour by more than the FROC protocol's 37.5 um growth
                assert polygon_gap(mimic.polygon, tumour) * MPP >= 75.0 - 1e-6
            if mimic.kind == "follicle":
                assert mimic.core is not None and polygon_mask(mimic.core, frame)[m].any()
        # the mimics are drawn: without them the same pixels look like plain parenchyma
        plain = dataclasses.replace(spec, mimics=())
        assert not np.array_equal(sw.render_region(spec, 0, 0, n, n, 2), sw.render_region(plain, 0, 0, n, n, 2))
        np.testing.assert_array_equal(sw.label_region(plain, 0, 0, n, n, 2), labels)


def _block_features(spec: sw.SlideSpec, ds: int = 2, block: int = 32) -> tuple[np.ndarray, ...]:
    """Colour and texture per 64 um block at 2 um/px: mean R, G, B, grey deviation, mean horizontal gradient;
    and which blocks are all tumour, plain parenchyma (no mimic) or mostly a mimic."""
    n = spec.height // ds
    img = sw.render_region(spec, 0, 0, n, n, ds).astype(np.float64)
    labels = sw.label_region(spec, 0, 0, n, n, ds)
    frame = make_frame(spec, 0, 0, n, n, ds)
    mimic = np.zeros((n, n), dtype=bool)
    for m in spec.mimics:
        mimic |= polygon_mask(m.polygon, frame)
    b = n // block

    def blocks(a: np.ndarray) -> np.ndarray:
        a = a[: b * block, : b * block]
        return a.reshape(b, block, b, block, *a.shape[2:]).swapaxes(1, 2).reshape(b * b, block * block, *a.shape[2:])

    grey = img.mean(axis=2)
    g = blocks(grey)
    gradient = np.abs(np.diff(g.reshape(-1, block, block), axis=2)).mean(axis=(1, 2))
    features = np.column_stack([blocks(img).mean(axis=1), g.std(axis=1), gradient])
    lab, mim = blocks(labels), blocks(mimic)
    tumour = (lab == sw.LABEL_TUMOR).all(axis=1)
    normal = (lab == sw.LABEL_NORMAL).all(axis=1)
    return features, tumour, normal & ~mim.any(axis=1), normal & (mim.mean(axis=1) > 0.9)


def test_mimics_look_like_tumour_to_a_colour_texture_detector() -> None:
    """A nearest-centroid detector on block colour and texture, fitted to tumour vs plain parenchyma, calls mimic
    blocks tumour more than twice as often as plain parenchyma: they are the false positives it cannot avoid."""
    parts = [_block_features(_spec(seed, tumor=tumor)) for seed in (0, 1) for tumor in (True, False)]
    f = np.concatenate([p[0] for p in parts])
    tumour, plain, mimic = (np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))
    assert tumour.sum() >= 20 and plain.sum() >= 100 and mimic.sum() >= 20
    fit = tumour | plain
    z = (f - f[fit].mean(axis=0)) / f[fit].std(axis=0)
    called = ((z - z[tumour].mean(axis=0)) ** 2).sum(axis=1) < ((z - z[plain].mean(axis=0)) ** 2).sum(axis=1)
    assert called[tumour].mean() > 0.8
    assert called[mimic].mean() > max(0.4, 2.0 * called[plain].mean())


# ---------------------------------------------------------------------------------------- artefacts


def _with_artefacts(spec: sw.SlideSpec) -> sw.SlideSpec:
    """The spec with one artefact of each kind (instead of its own) over its first tumour, and a bubble on the glass."""
    cy, cx = spec.tumors[0].mean(axis=0)
    line = np.array([[cy - 300.0, cx - 200.0], [cy + 300.0, cx + 200.0]])
    ink_line = np.array([[cy - 250.0, cx + 150.0], [cy + 250.0, cx + 150.0]])
    return dataclasses.replace(
        spec,
        artefacts=sw.Artefacts(
            folds=(sw.Fold(band(line, 60.0), 1.8),),
            blur_bands=(sw.BlurBand((float(cy), float(cx)), (0.0, 1.0), 120.0, 40.0, 2.5),),
            bubbles=(sw.Bubble((float(cy) + 60.0, float(cx) - 80.0), 90.0, 4.0), sw.Bubble((30.0, 30.0), 20.0, 3.0)),
            inks=(sw.PenStroke(band(ink_line, 30.0, caps=True), ink_line, 30.0, "blue"),),
        ),
    )


def test_artefacts_change_pixels_not_the_tumour_label() -> None:
    spec = dataclasses.replace(_spec(4), artefacts=sw.Artefacts())
    art = _with_artefacts(spec)
    n = SIZE // 2
    plain_labels = sw.label_region(spec, 0, 0, n, n, 2)
    labels = sw.label_region(art, 0, 0, n, n, 2)
    # ink on the glass is pen; everything else keeps its label (a fold, bubble or blur over tumour is tumour)
    changed = labels != plain_labels
    assert (labels[changed] == sw.LABEL_PEN).all() and (plain_labels[changed] == sw.LABEL_BACKGROUND).all()
    np.testing.assert_array_equal(labels == sw.LABEL_TUMOR, plain_labels == sw.LABEL_TUMOR)
    a, b = sw.render_region(spec, 0, 0, n, n, 2), sw.render_region(art, 0, 0, n, n, 2)
    frame = make_frame(spec, 0, 0, n, n, 2)
    fold = polygon_mask(art.artefacts.folds[0].polygon, frame) & (labels == sw.LABEL_TUMOR)
    assert fold.sum() > 50
    assert b[fold].astype(float).mean() < a[fold].astype(float).mean() - 20  # a double layer is darker
    # a bubble on the glass in the corner: its rim is drawn though the corner holds no tissue
    assert sw.label_region(art, 0, 0, 32, 32, 2).max() == sw.LABEL_BACKGROUND
    assert sw.render_region(art, 0, 0, 32, 32, 2).min() < sw.render_region(spec, 0, 0, 32, 32, 2).min() - 30
    # far from every artefact (level-0 px) nothing changes
    cy, cx = art.tumors[0].mean(axis=0)
    yy, xx = np.meshgrid(np.arange(n) * 2 + 1.0, np.arange(n) * 2 + 1.0, indexing="ij")
    far = (np.hypot(yy - cy, xx - cx) > 450) & (np.abs(xx - cx) > 130) & (np.hypot(yy, xx) > 90)  # band: |x-cx|<120
    assert far.mean() > 0.4
    np.testing.assert_array_equal(a[far], b[far])


def test_blur_band_softens_the_tissue() -> None:
    spec = dataclasses.replace(_spec(4), artefacts=sw.Artefacts())
    art = _with_artefacts(spec)
    cy, cx = (int(v) for v in spec.tumors[0].mean(axis=0))
    sharp = sw.render_region(spec, cy - 32, cx - 32, 64, 64, 1)
    soft = sw.render_region(
        dataclasses.replace(spec, artefacts=sw.Artefacts(blur_bands=art.artefacts.blur_bands)),
        cy - 32,
        cx - 32,
        64,
        64,
        1,
    )
    grad = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
    assert grad(soft) < 0.5 * grad(sharp)
    assert abs(soft.astype(float).mean() - sharp.astype(float).mean()) < 3  # blurred, not darkened


@pytest.mark.parametrize("ds", [1, 2, 4])
def test_tiles_join_exactly_across_artefacts(ds: int) -> None:
    art = _with_artefacts(_spec(4))
    cy, cx = (int(v) for v in art.tumors[0].mean(axis=0))
    step = 128 * ds
    y0, x0 = (cy // step) * step - step, (cx // step) * step - step
    whole = sw.render_region(art, y0, x0, 256, 256, ds)
    tiles = [[sw.render_region(art, y0 + i * step, x0 + j * step, 128, 128, ds) for j in range(2)] for i in range(2)]
    np.testing.assert_array_equal(whole, np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0))


def test_written_artefacts_are_in_the_file(cohort: sw.WsiCohort) -> None:
    """The TIFF holds the rendered pixels (JPEG quality 85), artefacts included: the whole of level 2, and the rim
    of every bubble, on the glass too."""
    bubbles = 0
    for slide in cohort.slides:
        ds = 4
        with tifffile.TiffFile(slide.path) as tf:
            got = tf.pages[2].asarray().astype(float)
        want = sw.render_region(slide, 0, 0, got.shape[0], got.shape[1], ds).astype(float)
        assert 10 * np.log10(255**2 / np.mean((got - want) ** 2)) > 28
        yy, xx = np.meshgrid((np.arange(got.shape[0]) + 0.5) * ds, (np.arange(got.shape[1]) + 0.5) * ds, indexing="ij")
        for b in slide.spec.artefacts.bubbles:
            rim = np.abs(np.hypot(yy - b.centre[0], xx - b.centre[1]) - b.radius_px) < max(b.rim_px, ds)
            assert abs(got[rim].mean() - want[rim].mean()) < 4  # brightness (JPEG subsamples the chroma)
            assert got[rim].mean() < got[~rim].mean() - 10  # the dark rim is there
            bubbles += 1
    assert bubbles and any(s.spec.artefacts.folds or s.spec.artefacts.blur_bands for s in cohort.slides)


# ------------------------------------------------------------------------------------------ centres


def test_centres_have_clearly_different_colours() -> None:
    """Mean colour of the parenchyma, per slide: centre B is bluer (R - B lower by more than 15 levels on every
    slide) and the two centres' mean colours lie more than 20 levels apart (RGB distance)."""
    means: dict[str, list[np.ndarray]] = {"A": [], "B": []}
    for centre in means:
        for seed in range(4):
            spec = _spec(seed, centre=centre, tumor=False)
            img = sw.render_region(spec, 0, 0, 192, 192, 8).astype(float)
            labels = sw.label_region(spec, 0, 0, 192, 192, 8)
            means[centre].append(img[labels == sw.LABEL_NORMAL].mean(axis=0))
    a, b = np.array(means["A"]), np.array(means["B"])
    assert (a[:, 0] - a[:, 2]).min() > (b[:, 0] - b[:, 2]).max() + 15
    assert np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)) > 20


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="profile"):
        sw.make_slide_spec(height=SIZE, width=SIZE, mpp=MPP, profile="harder")
    with pytest.raises(ValueError, match="centre"):
        sw.make_slide_spec(height=SIZE, width=SIZE, mpp=MPP, centre="A")
    with pytest.raises(ValueError, match="centre"):
        sw.make_slide_spec(height=SIZE, width=SIZE, mpp=MPP, profile="hard", centre="C")
    with pytest.raises(ValueError, match="profile"):
        sw.make_wsi_cohort(tmp_path, n_tumor=1, n_normal=0, height=SIZE, width=SIZE, mpp=MPP, profile="easy")
