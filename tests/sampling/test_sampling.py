"""Patch samplers and patch tables: Liu's balanced sampler, the grid sampler, the X-ray lesion sampler, splits."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_patchdx import ConfigError, InputFileError, open_slide
from napari_patchdx.geometry import Grid
from napari_patchdx.io.annotations.model import AnnotationSet, Region
from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.cxr_lesions import CxrLesionSampler, load_cxr_cohort
from napari_patchdx.sampling.grid import grid_table
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.sampling.splits import assign_splits
from napari_patchdx.sampling.tables import read_patch_table, write_patch_table
from napari_patchdx.sampling.tissue_config import TissueConfig
from napari_patchdx.sampling.tissue_mask import TissueMask
from napari_patchdx.synth.wsi.render import LABEL_TUMOR, label_region


@pytest.fixture(scope="module")
def sources(wsi_cohort) -> list[SlideSource]:
    return [SlideSource.prepare(s.path, s.annotation_path) for s in wsi_cohort.slides]


def _square_source(slide_path: Path) -> SlideSource:
    """The IHC slide with one hand-made tumour square covering level-0 pixels [1000, 1100) x [1000, 1100)."""
    slide = open_slide(slide_path)
    square = np.array([[1000.0, 1000.0], [1000.0, 1100.0], [1100.0, 1100.0], [1100.0, 1000.0]])
    annotations = AnnotationSet([Region(square)])
    rows, cols = -(-slide.shape[0] // 16), -(-slide.shape[1] // 16)
    tissue = TissueMask(
        mask=np.ones((rows, cols), bool),
        grid=Grid((rows, cols), (16.0, 16.0), (0.0, 0.0), slide.mpp),
        threshold=0.0,
        config=TissueConfig(),
        source=slide_path,
    )
    return SlideSource(slide_path, slide, tissue, annotations)


def test_center_region_rule_exact(ihc_slide: Path) -> None:
    source = _square_source(ihc_slide)
    geometry = PatchGeometry(299, 128)
    # central region of a patch at top-left y is [y + 85, y + 213): it meets [1000, 1100) iff 788 <= y <= 1014
    ys = np.array([787, 788, 900, 1014, 1015, 500])
    xs = np.full(ys.shape, 900)
    assert source.center_labels(ys, xs, geometry, 1.0).tolist() == [0, 1, 1, 1, 0, 0]
    # same in x; a patch whose border (not its centre) covers the tumour is normal
    assert source.center_labels(np.array([900, 900]), np.array([787, 788]), geometry, 1.0).tolist() == [0, 1]


def test_balanced_sampler_statistics(sources: list[SlideSource]) -> None:
    sampler = BalancedSampler(sources, PatchGeometry(299, 128), seed=0)
    table = sampler.table(600)
    assert set(table.columns) >= {"slide", "x", "y", "level", "size", "label", "split"}
    assert abs(table["label"].mean() - 0.5) < 0.07
    assert sampler.mismatches <= 3
    # per-slide uniformity: tumour draws split over the two tumour slides, normal draws over all three
    tumour = Counter(table.loc[table.label == 1, "slide"].map(lambda p: Path(p).stem))
    normal = Counter(table.loc[table.label == 0, "slide"].map(lambda p: Path(p).stem))
    assert set(tumour) == {"tumor_000", "tumor_001"}
    assert all(abs(v / sum(tumour.values()) - 1 / 2) < 0.1 for v in tumour.values())
    assert set(normal) == {"tumor_000", "tumor_001", "normal_000"}
    assert all(abs(v / sum(normal.values()) - 1 / 3) < 0.1 for v in normal.values())


def test_balanced_labels_match_ground_truth_pixels(wsi_cohort, sources: list[SlideSource]) -> None:
    sampler = BalancedSampler(sources, PatchGeometry(299, 128), seed=3)
    by_path = {str(s.path): s for s in wsi_cohort.slides}
    for row in sampler.table(40).itertuples(index=False):
        truth = label_region(by_path[row.slide], row.y + 85, row.x + 85, 128, 128)
        assert int((truth == LABEL_TUMOR).any()) == row.label
        h, w = by_path[row.slide].height, by_path[row.slide].width
        assert 0 <= row.y <= h - 299 and 0 <= row.x <= w - 299


def test_balanced_sampler_is_reproducible_and_resumable(sources: list[SlideSource]) -> None:
    a = BalancedSampler(sources, seed=7).table(30)
    b = BalancedSampler(sources, seed=7).table(30)
    pd.testing.assert_frame_equal(a, b)
    c = BalancedSampler(sources, seed=8).table(30)
    assert not a.equals(c)
    stream = BalancedSampler(sources, seed=7).stream(start=10)
    assert next(stream) == a.iloc[10].to_dict()


def test_positional_jitter_shifts_each_draw_by_at_most_8_patch_pixels(sources: list[SlideSource]) -> None:
    """Liu et al.'s 8 px jitter: draw ``i`` with jitter is draw ``i`` without it shifted by U(-8, 8) patch pixels
    per axis (on a normal slide every first try is accepted, so both samplers draw the same cell position)."""
    normal = [s for s in sources if s.annotations is None]
    geometry = PatchGeometry(64, 32, mpp=2.0)  # patch pixels of 2 um on a 0.5 um/px slide: 4 level-0 px each
    plain = BalancedSampler(normal, geometry, seed=5, jitter=0.0, p_tumor=0.0).table(400)
    jittered = BalancedSampler(normal, geometry, seed=5, jitter=8.0, p_tumor=0.0).table(400)
    scale = 2.0 / open_slide(normal[0].path).mpp  # level-0 px per patch px (positions are level-0 pixels)
    h, w = open_slide(normal[0].path).shape
    foot = 64 * scale
    inside = (plain.y > 9 * scale) & (plain.x > 9 * scale) & (plain.y < h - foot - 9 * scale)
    inside &= plain.x < w - foot - 9 * scale  # no clipping at the slide's edge
    dy = (jittered.y - plain.y)[inside].to_numpy() / scale
    dx = (jittered.x - plain.x)[inside].to_numpy() / scale
    assert inside.sum() > 300
    bound = 8.0 + 1.0 / scale  # the position is rounded to a level-0 pixel
    assert np.abs(dy).max() <= bound and np.abs(dx).max() <= bound
    for d in (dy, dx):  # U(-8, 8): mean 0, standard deviation 8 / sqrt(3) = 4.62 patch px, both ends reached
        assert abs(d.mean()) < 0.8 and abs(d.std() - 8 / np.sqrt(3)) < 0.5
        assert d.min() < -7 and d.max() > 7
    assert (jittered.label == 0).all() and (plain.label == 0).all()


def test_balanced_needs_tumour(sources: list[SlideSource]) -> None:
    normal_only = [s for s in sources if s.annotations is None]
    with pytest.raises(ConfigError, match=r"tumour annotations.*normal_000"):
        BalancedSampler(normal_only)
    assert BalancedSampler(normal_only, p_tumor=0.0).table(5)["label"].sum() == 0


def test_slide_without_tissue_warns(tmp_path: Path) -> None:
    from ..conftest import write_pyramid

    blank = write_pyramid(tmp_path / "blank.tif", np.full((1024, 1024, 3), 242, np.uint8))
    with pytest.warns(UserWarning, match="blank.tif"):
        source = SlideSource.prepare(blank)
    assert not source.tissue.mask.any()
    with pytest.raises(ConfigError, match="no slide has tissue"):
        BalancedSampler([source], p_tumor=0.0)


def test_patch_larger_than_level(sources: list[SlideSource]) -> None:
    with pytest.raises(InputFileError, match="does not fit"):
        BalancedSampler(sources, PatchGeometry(299, 128, mpp=64.0))


def test_magnification_by_mpp(sources: list[SlideSource]) -> None:
    # slides are 0.5 um/px: 1.0 um/px patches come from level 1 at full size, 0.75 um/px from level 0 enlarged
    assert PatchGeometry(299, 128, mpp=1.0).plan(sources[0].slide) == (1, 299, 2.0)
    level, size, scale = PatchGeometry(299, 128, mpp=0.75).plan(sources[0].slide)
    assert (level, size) == (0, 448) and scale == pytest.approx(448 / 299)


def test_grid_table(sources: list[SlideSource]) -> None:
    source = sources[0]
    table = grid_table(source, PatchGeometry(299, 128), min_tissue=0.5)
    # each patch's 128 x 128 central region is exactly its grid cell
    np.testing.assert_array_equal(table.y + 85, table.row * 128)
    np.testing.assert_array_equal(table.x + 85, table.col * 128)
    frac = source.tissue.boxes_fraction(table.row * 128, table.col * 128, 128, 128)
    assert (frac >= 0.5).all()
    assert 0 < table.label.sum() < len(table)
    assert (table.label.to_numpy() == source.center_labels(table.y, table.x, PatchGeometry(299, 128), 1.0)).all()
    all_cells = grid_table(source, PatchGeometry(299, 128), min_tissue=0.0)
    assert len(all_cells) == 24 * 24


def test_splits_by_slide() -> None:
    names = [f"s{i:02d}" for i in range(20)]
    strata = {n: ("tumor" if i < 10 else "normal") for i, n in enumerate(names)}
    splits = assign_splits(names, (0.6, 0.2, 0.2), seed=1, strata=strata)
    assert splits == assign_splits(names, (0.6, 0.2, 0.2), seed=1, strata=strata)
    counts = Counter((strata[n], s) for n, s in splits.items())
    assert counts == {(g, s): c for g in ("tumor", "normal") for s, c in (("train", 6), ("val", 2), ("test", 2))}
    with pytest.raises(ConfigError):
        assign_splits(names, (0.5, 0.5, 0.5))


def test_table_io(tmp_path: Path, sources: list[SlideSource]) -> None:
    table = BalancedSampler(sources, seed=2).table(12)
    for suffix in (".csv", ".parquet"):
        path = write_patch_table(table, tmp_path / f"patches{suffix}")
        pd.testing.assert_frame_equal(read_patch_table(path), table, check_dtype=False)
    broken = tmp_path / "broken.csv"
    broken.write_text("slide,x,y\na,1,2\n")
    with pytest.raises(InputFileError, match=r"broken\.csv.*lacks columns"):
        read_patch_table(broken)


def test_cxr_lesion_sampler(tmp_path: Path) -> None:
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=8, seed=4, size=256, dicom=False)
    cxr_sources = load_cxr_cohort(cohort.root)
    sampler = CxrLesionSampler(cxr_sources, patch_size=64, working_size=256, positive_fraction=0.5, seed=0)
    table = sampler.table(120)
    classes = [c for c in table.columns if c.startswith("label_")]
    assert len(classes) == 5
    assert abs(table.label.mean() - 0.5) < 0.15
    by_path = {str(s.path): s for s in cxr_sources}
    for row in table.itertuples(index=False):
        source = by_path[row.slide]
        window = source.lesion_bits[row.y : row.y + row.size, row.x : row.x + row.size]
        if row.label == 0:
            assert not window.any()
        else:
            q = row.size // 4
            bits = int(np.bitwise_or.reduce(window[q:-q, q:-q], axis=None))
            targets = [(bits >> k) & 1 for k in range(5)]
            assert targets == [getattr(row, c) for c in classes]
    present = np.bitwise_or.reduce([int(np.bitwise_or.reduce(s.lesion_bits, axis=None)) for s in cxr_sources])
    sampled = table[classes].sum().to_numpy()
    assert [bool(present >> k & 1) for k in range(5)] == (sampled > 0).tolist()  # every class present is sampled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(table, CxrLesionSampler(cxr_sources, patch_size=64, working_size=256).table(120))


def test_annotations_outside_tissue_warn(ihc_slide: Path) -> None:
    from napari_patchdx.sampling.tissue import detect_tissue

    slide = open_slide(ihc_slide)
    tissue = detect_tissue(slide)
    empty = np.argwhere(~tissue.mask)[0]  # a background cell of the micrograph
    s = tissue.grid.spacing[0]
    y0, x0 = empty * s
    square = np.array([[y0, x0], [y0, x0 + s], [y0 + s, x0 + s], [y0 + s, x0]], dtype=float)
    with pytest.warns(UserWarning, match=r"ihc\.tif.*outside the detected tissue"):
        SlideSource(ihc_slide, slide, tissue, AnnotationSet([Region(square)]))


def test_split_hygiene(wsi_cohort) -> None:
    stems = [s.path.stem for s in wsi_cohort.slides]
    splits = assign_splits(stems, (0.34, 0.33, 0.33), seed=0)
    sources = [SlideSource.prepare(s.path, s.annotation_path, split=splits[s.path.stem]) for s in wsi_cohort.slides]
    table = BalancedSampler(sources, seed=0).table(60)
    per_slide = table.groupby("slide")["split"].nunique()
    assert (per_slide == 1).all()  # a slide's patches never straddle splits
    assert {Path(p).stem: s for p, s in table.groupby("slide")["split"].first().items()} == {
        k: v for k, v in splits.items() if k in set(table.slide.map(lambda p: Path(p).stem))
    }


def test_cxr_sampler_from_boxes_only(tmp_path: Path) -> None:
    import shutil

    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=6, seed=4, size=128, dicom=False)
    shutil.rmtree(cohort.root / "masks")
    sources = load_cxr_cohort(cohort.root)
    lesions = pd.read_csv(cohort.lesions_csv)
    for source in sources:
        mine = lesions[lesions.image == source.image_id]
        assert bool(source.lesion_bits.any()) == (len(mine) > 0)
        for r in mine.itertuples(index=False):  # the whole box carries the class bit
            bit = 1 << source.classes.index(r[2])
            assert (source.lesion_bits[r.y0 : r.y1, r.x0 : r.x1] & bit).all()
    table = CxrLesionSampler(sources, patch_size=32, working_size=128, seed=1).table(30)
    assert 0 < table.label.sum() < 30


def test_hold_out_keeps_a_tumour_slide_on_each_side() -> None:
    from napari_patchdx.sampling.splits import hold_out_slides

    for n_tumour, n_normal in [(2, 0), (2, 1), (3, 2), (2, 4), (5, 5)]:
        slides = [(Path(f"t{i}.ome.tif"), Path(f"t{i}.xml")) for i in range(n_tumour)]
        slides += [(Path(f"n{i}.tif"), None) for i in range(n_normal)]
        held = hold_out_slides(slides)
        assert [(p, a) for p, a, _ in held] == slides  # order and ground truth kept, one split each
        assert {split for _, _, split in held} <= {"train", "val"}
        tumour = [split for _, a, split in held if a is not None]
        assert "train" in tumour and "val" in tumour, (n_tumour, n_normal, held)
        assert held == hold_out_slides(slides)  # reproducible
    with pytest.raises(ConfigError, match="1 of the chosen slides have tumour ground truth"):
        hold_out_slides([(Path("t.tif"), Path("t.xml")), (Path("n.tif"), None)])
