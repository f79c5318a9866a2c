"""Evaluation: Liu et al. lesion points, CAMELYON16 FROC (hand-computed cases), AUC, X-ray metrics, `froc` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import cli
from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.evaluate import (
    PointsTable,
    _auc_rows,
    _froc_curve,
    _froc_score,
    evaluation_mask,
    froc,
    lesion_points,
    multilabel_auroc,
    pointing_game,
    read_camelyon_csv,
    roc_auc_ci,
    sensitivity_specificity,
    slide_score,
    youden_thresholds,
)
from napari_patchdx.geometry import Grid
from napari_patchdx.io.annotations import EXCLUSION, TUMOR, AnnotationSet, Region

MPP = 0.243  # CAMELYON16 protocol: level 5 (downsample 32), growth threshold 4.82 px, ITC below 35.36 px


def square(y0: float, x0: float, y1: float, x1: float, label: str = TUMOR) -> Region:
    return Region(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float), label=label)


def cell(r: int, c: int, ds: int = 32) -> tuple[float, float]:
    """Level-0 (y, x) centre of level-5 cell (r, c)."""
    return (r * ds + ds / 2, c * ds + ds / 2)


def points(*rows: tuple[float, tuple[float, float]], source: Path | None = None) -> PointsTable:
    """PointsTable from (probability, (y, x)) rows."""
    p = [r[0] for r in rows]
    y = [r[1][0] for r in rows]
    x = [r[1][1] for r in rows]
    return PointsTable(y=np.array(y, float), x=np.array(x, float), probability=np.array(p, float), source=source)


# ============================================================================================= lesion points


def _nms_heatmap() -> np.ndarray:
    h = np.full((20, 20), 0.1)
    h[5, 5] = 0.95  # A: reported
    h[5, 9] = 0.8  # 4 cells from A: suppressed (radius 6.03 cells)
    h[11, 5] = 0.65  # exactly 6 cells from A: suppressed (boundary included)
    h[5, 12] = 0.6  # 7 cells from A: reported
    h[15, 15] = 0.7  # far: reported
    h[18, 2] = 0.5  # equals the threshold: not reported (strict)
    h[0, 19] = np.nan  # ignored
    h[19, 19] = np.nan
    return h


def test_lesion_points_liu_nms_positions_and_radius_in_um() -> None:
    grid = Grid((20, 20), spacing=(128.0, 128.0), origin=(10.0, 20.0), mpp=MPP)
    pts = lesion_points(_nms_heatmap(), grid)  # t = 0.5, r = 187.5 um = 187.5 / (0.243 * 128) = 6.03 cells
    np.testing.assert_allclose(pts.probability, [0.95, 0.7, 0.6])
    # level-0 cell centres: origin + (index + 0.5) * 128
    np.testing.assert_allclose(pts.y, [10 + 5.5 * 128, 10 + 15.5 * 128, 10 + 5.5 * 128])
    np.testing.assert_allclose(pts.x, [20 + 5.5 * 128, 20 + 15.5 * 128, 20 + 12.5 * 128])

    small = lesion_points(
        _nms_heatmap(), grid, radius_um=100.0
    )  # 3.2 cells: B and the 6-cell neighbour survive, D (3 from B) not
    np.testing.assert_allclose(small.probability, [0.95, 0.8, 0.7, 0.65])
    np.testing.assert_allclose(lesion_points(_nms_heatmap(), grid, radius_cells=3).probability, small.probability)
    assert len(lesion_points(_nms_heatmap(), grid, max_points=2)) == 2
    assert len(lesion_points(_nms_heatmap(), grid, threshold=0.95)) == 0  # strictly above t
    np.testing.assert_allclose(lesion_points(_nms_heatmap(), grid, threshold=0.4).probability, [0.95, 0.7, 0.6, 0.5])


def test_lesion_points_needs_mpp_for_um_and_matching_shape() -> None:
    heat = _nms_heatmap()
    with pytest.raises(ConfigError, match="microns per pixel"):
        lesion_points(heat, Grid((20, 20), spacing=(128.0, 128.0)))
    pts = lesion_points(heat, Grid((20, 20), spacing=(128.0, 128.0)), radius_cells=6)
    np.testing.assert_allclose(pts.probability, [0.95, 0.7, 0.6])
    with pytest.raises(ConfigError, match="does not match"):
        lesion_points(heat, Grid((20, 21), spacing=(128.0, 128.0), mpp=MPP))


def _naive_nms(h: np.ndarray, t: float, r: float) -> list[tuple[int, int, float]]:
    """Liu et al. literally: repeat argmax while the maximum exceeds t, then zero the disk."""
    h = np.where(np.isnan(h), -np.inf, h.copy())
    rr, cc = np.mgrid[0 : h.shape[0], 0 : h.shape[1]]
    out = []
    while h.max() > t:
        k = int(np.argmax(h))
        r0, c0 = divmod(k, h.shape[1])
        out.append((r0, c0, float(h[r0, c0])))
        h[(rr - r0) ** 2 + (cc - c0) ** 2 <= r * r] = 0.0
    return out


def test_lesion_points_matches_literal_algorithm_on_large_maps() -> None:
    rng = np.random.default_rng(4)
    h = rng.random((70, 90))
    h[rng.random(h.shape) < 0.05] = np.nan
    h[10, 10] = h[10, 40] = 0.99  # a tie: row-major order decides, as argmax
    expected = _naive_nms(h, 0.5, 4.5)
    pts = lesion_points(h, Grid((70, 90)), radius_cells=4.5)
    rows, cols = np.floor(pts.y).astype(int), np.floor(pts.x).astype(int)
    assert [(int(a), int(b), float(p)) for a, b, p in zip(rows, cols, pts.probability, strict=True)] == expected

    big = rng.random((800, 800))  # ~ 320,000 candidates above 0.5 (windowed suppression keeps this quick)
    many = lesion_points(big, Grid((800, 800), spacing=(128.0, 128.0), mpp=MPP))
    assert len(many) > 1000
    d2 = (many.y[:50, None] - many.y[None, :50]) ** 2 + (many.x[:50, None] - many.x[None, :50]) ** 2
    np.fill_diagonal(d2, np.inf)
    assert d2.min() > (6.03 * 128) ** 2  # no two reported points within the radius


# ================================================================================================= points IO


def test_camelyon_csv_and_geojson_roundtrip(tmp_path: Path) -> None:
    pts = points((0.25, (100.5, 40.25)), (0.75, (7.0, 3000.9)))
    assert list(pts.probability) == [0.75, 0.25]  # sorted by probability
    exact = pts.to_camelyon_csv(tmp_path / "exact.csv", integer=False)
    back = read_camelyon_csv(exact)
    np.testing.assert_array_equal(back.y, pts.y)
    np.testing.assert_array_equal(back.x, pts.x)
    np.testing.assert_array_equal(back.probability, pts.probability)
    assert back.source == exact
    challenge = pts.to_camelyon_csv(tmp_path / "challenge.csv")
    assert challenge.read_text() == "0.75,3000,7\n0.25,40,100\n"  # probability,X,Y; X, Y = level-0 pixel
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind

    gj = json.loads(pts.to_geojson(tmp_path / "points.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 2
    first = gj["features"][0]
    assert first["geometry"] == {"type": "Point", "coordinates": [3000.9, 7.0]}  # [x, y]
    assert first["properties"]["probability"] == 0.75
    assert first["properties"]["measurements"] == {"probability": 0.75}

    (tmp_path / "empty.csv").write_text("\n")
    assert len(read_camelyon_csv(tmp_path / "empty.csv")) == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("probability,X,Y\n0.5,10,20\n", "line 1: looks like a header row"),
        ("0.5,10,20\n0.4,30\n", "line 2: expected 3 comma-separated values"),
        ("0.5,10,20\nnan,30,40\n", "line 2: probability is nan"),
        ("0.5,10,20\n0.4,abc,40\n", "line 2: X is not a number"),
        ("0.5,10,\n", "line 1: Y is missing"),
    ],
)
def test_camelyon_csv_errors_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "Test_001.csv"
    path.write_text(text)
    with pytest.raises(InputFileError) as info:
        read_camelyon_csv(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)


def test_points_table_rejects_nan() -> None:
    with pytest.raises(InputFileError, match="not finite"):
        points((math.nan, (1.0, 2.0)))


# ========================================================================================= evaluation mask


def test_evaluation_mask_merges_within_75um_and_marks_itcs() -> None:
    shape = (8192, 8192)  # level 5: 256 x 256
    near_gap, far_gap = 60.0 / MPP, 90.0 / MPP  # level-0 px
    near = AnnotationSet([square(1600, 1600, 3200, 3200), square(1600, 3200 + near_gap, 3200, 4800 + near_gap)])
    far = AnnotationSet([square(1600, 1600, 3200, 3200), square(1600, 3200 + far_gap, 3200, 4800 + far_gap)])
    labels, itc, ds = evaluation_mask(near, shape)
    assert ds == 32 and labels.shape == (256, 256)
    assert labels.max() == 1 and itc == set()  # 60 um apart: one lesion (389 um squares are not ITCs)
    labels, itc, _ = evaluation_mask(far, shape)
    assert labels.max() == 2 and itc == set()  # 90 um apart: two lesions
    a, b = labels[int(2400 / 32), int(2400 / 32)], labels[int(2400 / 32), int((4000 + far_gap) / 32)]
    assert {int(a), int(b)} == {1, 2}

    # growth: 37.5 um = 4.82 px at level 5, so 4 px beyond the rasterised edge along an axis, not 5
    last_row = (3200 - 16) // 32  # last level-5 row whose centre is inside
    assert labels[last_row + 4, 75] == a and labels[last_row + 5, 75] == 0

    small = AnnotationSet([square(1600, 1600, 3200, 3200), square(6000, 6000, 6000 + 100 / MPP, 6000 + 100 / MPP)])
    labels, itc, _ = evaluation_mask(small, shape)
    itc_label = int(labels[int((6000 + 50 / MPP) / 32), int((6000 + 50 / MPP) / 32)])
    assert labels.max() == 2 and itc == {itc_label}  # 100 um + 75 um growth < 275 um major axis: ITC


def test_evaluation_mask_fills_holes_and_accepts_precomputed_masks() -> None:
    shape = (8192, 8192)
    ann = AnnotationSet([square(2000, 2000, 4000, 4000), square(2600, 2600, 3400, 3400, label=EXCLUSION)])
    tumour = ann.rasterize((256, 256), 32)
    centre = (int(3000 / 32), int(3000 / 32))
    assert not tumour[centre]  # the 194 um exclusion is a hole in the tumour ...
    labels, itc, _ = evaluation_mask(ann, shape)
    assert labels.max() == 1 and labels[centre] == 1 and itc == set()  # ... filled by binary_fill_holes

    for values in (tumour.astype(np.uint8), tumour.astype(np.uint8) * 255):  # 0/1 and 0/255 masks alike
        pre, pre_itc, _ = evaluation_mask(values, shape)
        np.testing.assert_array_equal(pre, labels)
        assert pre_itc == itc
    with pytest.raises(ConfigError, match="shape"):
        evaluation_mask(tumour[:-1], shape)
    with pytest.raises(ConfigError, match="level-0"):
        evaluation_mask(ann, None)
    empty, none_itc, _ = evaluation_mask(AnnotationSet(), (100, 70))
    assert empty.shape == (4, 3) and empty.max() == 0 and none_itc == set()


# ==================================================================================================== FROC


def _official_compute_froc(fp_probs: list[float], tp_probs: list[float], n_slides: int, n_tumors: int):
    """The official computeFROC (CAMELYON16 Evaluation_FROC.py), transcribed, in float64."""
    total_fps, total_tps = [], []
    all_probs = sorted(set(fp_probs + tp_probs))
    for thresh in all_probs[1:]:
        total_fps.append((np.asarray(fp_probs) >= thresh).sum())
        total_tps.append((np.asarray(tp_probs) >= thresh).sum())
    total_fps.append(0)
    total_tps.append(0)
    return np.asarray(total_fps) / float(n_slides), np.asarray(total_tps) / float(n_tumors)


def test_froc_curve_matches_official_transcription() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        fp = list(np.round(rng.random(rng.integers(0, 30)), 2))
        tp = list(np.round(rng.random(rng.integers(1, 12)), 2) * (rng.random() > 0.3))
        fps, sens, thr = _froc_curve(np.array(fp, float), np.array(tp, float), 5, len(tp))
        ofps, osens = _official_compute_froc(fp, tp, 5, len(tp))
        np.testing.assert_allclose(fps, ofps)
        np.testing.assert_allclose(sens, osens)
        assert thr[-1] == np.inf and len(thr) == len(fps)


def _froc_case() -> tuple[dict, dict, dict]:
    """Three slides: T1 (lesions L1, L2 and an ITC), T2 (lesion L3), N1 (normal); masks at level 5."""
    t1 = np.zeros((100, 100), bool)
    t1[5:35, 5:35] = True  # L1: 30 px + growth -> major axis ~ 44 px > 35.36: a lesion
    t1[60:90, 60:90] = True  # L2
    t1[10:13, 80:83] = True  # ITC: 3 px + growth -> ~ 13 px
    t2 = np.zeros((100, 100), bool)
    t2[40:70, 40:70] = True  # L3
    truths = {"T1": t1, "T2": t2, "N1": None}
    detections = {
        "T1": points(
            (0.9, cell(20, 20)),  # hit L1
            (0.6, cell(6, 6)),  # second hit on L1: not counted again, not a false positive
            (0.8, cell(11, 81)),  # on the ITC: ignored
            (0.7, cell(95, 5)),  # background: false positive
        ),
        "T2": points((0.7, cell(50, 50)), (0.3, cell(5, 95))),  # hit L3 (ties with T1's FP at 0.7); FP
        "N1": points((0.9, cell(50, 50)), (0.2, cell(10, 10))),  # normal slide: both FPs (0.9 ties with L1)
    }
    shapes = {name: (3200, 3200) for name in truths}
    return detections, truths, shapes


def test_froc_hand_computed_curve_and_score(tmp_path: Path) -> None:
    detections, truths, shapes = _froc_case()
    res = froc(detections, truths, shapes)
    # FP probabilities 0.7, 0.3 (T1, T2), 0.9, 0.2 (N1); lesion maxima L1 0.9, L2 0 (missed), L3 0.7, ITC 0.
    # Thresholds = distinct values {0, 0.2, 0.3, 0.7, 0.9} minus the smallest; 3 slides, 3 lesions.
    #   t=0.2: 4 FP -> 4/3, 2 lesions -> 2/3      t=0.3: 3 FP -> 1,   2/3
    #   t=0.7: 2 FP -> 2/3, 2/3 (ties count)      t=0.9: 1 FP -> 1/3, 1/3 (ties count)     closing (0, 0)
    np.testing.assert_allclose(res.thresholds[:-1], [0.2, 0.3, 0.7, 0.9])
    assert res.thresholds[-1] == np.inf
    np.testing.assert_allclose(res.fps_per_slide, [4 / 3, 1.0, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(res.sensitivity, [2 / 3, 2 / 3, 2 / 3, 1 / 3, 0.0])
    # reversed curve: FP (0, 1/3, 2/3, 1, 4/3) -> sens (0, 1/3, 2/3, 2/3, 2/3); interpolate and clamp beyond 4/3
    expected_at = {0.25: 0.25, 0.5: 0.5, 1.0: 2 / 3, 2.0: 2 / 3, 4.0: 2 / 3, 8.0: 2 / 3}
    assert res.sensitivity_at.keys() == expected_at.keys()
    np.testing.assert_allclose(list(res.sensitivity_at.values()), list(expected_at.values()))
    assert res.score == pytest.approx(41 / 72)  # (0.25 + 0.5 + 4 * 2/3) / 6

    rows = {s.slide: s for s in res.slides}
    assert (rows["T1"].n_lesions, rows["T1"].n_itc, rows["T1"].hits) == (2, 1, 1)
    assert (rows["T1"].false_positives, rows["T1"].ignored, rows["T1"].n_detections) == (1, 1, 4)
    assert (rows["T2"].n_lesions, rows["T2"].hits, rows["T2"].false_positives) == (1, 1, 1)
    assert (rows["N1"].is_tumor, rows["N1"].false_positives, rows["N1"].n_lesions) == (False, 2, 0)
    assert res.n_slides == 3 and res.n_lesions == 3

    saved = json.loads(res.to_json(tmp_path / "froc.json").read_text())
    assert saved["score"] == pytest.approx(41 / 72)
    assert saved["sensitivity_at"]["0.25"] == pytest.approx(0.25) and set(saved["sensitivity_at"]) == {
        "0.25",
        "0.5",
        "1",
        "2",
        "4",
        "8",
    }
    assert saved["fps_per_slide"][-1] == 0 and saved["sensitivity"][-1] == 0 and saved["thresholds"][-1] is None
    png = res.plot(tmp_path / "froc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_froc_extra_normal_slide_in_list_and_annotation_truths() -> None:
    detections, truths, shapes = _froc_case()
    truths = {**truths, "N2": None}
    res = froc(detections, truths, {**shapes, "N2": (3200, 3200)}, slides=["T1", "T2", "N1", "N2"])
    assert res.n_slides == 4  # N2 has no detections but counts as a slide: FPs per slide shrink by 3/4
    np.testing.assert_allclose(res.fps_per_slide, [1.0, 0.75, 0.5, 0.25, 0.0])

    # annotations instead of masks give the same result (squares aligned with the level-5 cells)
    ann = {
        "T1": AnnotationSet(
            [
                square(5 * 32, 5 * 32, 35 * 32, 35 * 32),
                square(60 * 32, 60 * 32, 90 * 32, 90 * 32),
                square(10 * 32, 80 * 32, 13 * 32, 83 * 32),
            ]
        ),
        "T2": AnnotationSet([square(40 * 32, 40 * 32, 70 * 32, 70 * 32)]),
        "N1": None,
    }
    det, _, shp = _froc_case()
    assert froc(det, ann, shp).score == pytest.approx(41 / 72)
    with pytest.warns(UserWarning, match="check that their detections lie on the slide is off"):
        assert froc(det, ann, None).score == pytest.approx(41 / 72)


def test_froc_bad_input_errors() -> None:
    detections, truths, shapes = _froc_case()
    src = Path("/data/T2.csv")
    outside = {**detections, "T2": points((0.7, (100.0, 3200.0)), source=src)}  # X = width: off the slide
    with pytest.raises(InputFileError, match=r"T2.csv: slide 'T2': 1 detection\(s\) lie outside the 3200 x 3200"):
        froc(outside, truths, shapes)
    negative = {**detections, "N1": points((0.7, (-1.0, 5.0)))}
    with pytest.raises(InputFileError, match="slide 'N1'"):
        froc(negative, truths, shapes)
    no_shape = {k: v for k, v in shapes.items() if k != "T1"}  # then the mask extent (100 * 32) is the slide
    with pytest.raises(InputFileError, match="slide 'T1'"):
        froc({**detections, "T1": points((0.5, (3300.0, 10.0)))}, truths, no_shape)
    with pytest.raises(InputFileError, match=r"outside \[0, 1\]"):
        froc({**detections, "T1": points((1.5, cell(20, 20)))}, truths, shapes)

    with pytest.raises(ConfigError, match="detections for slides without ground truth: X9"):
        froc({**detections, "X9": points()}, truths, shapes)
    with pytest.raises(ConfigError, match="slides with ground truth but no detections: N1, T2"):
        froc({"T1": detections["T1"]}, truths, shapes)
    with pytest.raises(ConfigError, match="not in the slide list: N1"):
        froc(detections, truths, shapes, slides=["T1", "T2"])
    with pytest.raises(ConfigError, match=r"without a ground-truth entry .*: N7"):
        froc(detections, truths, shapes, slides=["T1", "T2", "N1", "N7"])
    with pytest.raises(ConfigError, match="no lesion to find"):
        froc({"N1": detections["N1"]}, {"N1": None}, shapes)


def test_froc_score_interpolation_official_style() -> None:
    fps = np.array([4 / 3, 1.0, 2 / 3, 1 / 3, 0.0])
    sens = np.array([2 / 3, 2 / 3, 2 / 3, 1 / 3, 0.0])
    at = _froc_score(fps, sens)
    np.testing.assert_allclose([at[0.25], at[0.5], at[8.0]], [0.25, 0.5, 2 / 3])


# ================================================================================================ froc CLI


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    from napari_patchdx.data.synth_wsi import make_wsi_cohort

    return make_wsi_cohort(
        tmp_path_factory.mktemp("froc"), n_tumor=1, n_normal=1, height=2048, width=2048, mpp=1.0, seed=3
    )


def _write_perfect(cohort, folder: Path) -> None:
    folder.mkdir()
    tumour = cohort.tumor_slides[0]
    centres = [les.centre for les in tumour.lesions]  # one detection inside every tumour polygon, ITCs too
    PointsTable(
        y=np.array([c[0] for c in centres]), x=np.array([c[1] for c in centres]), probability=np.full(len(centres), 0.9)
    ).to_camelyon_csv(folder / f"{tumour.path.stem}.csv")
    normal = cohort.normal_slides[0]
    points((0.6, (100.0, 100.0))).to_camelyon_csv(folder / f"{normal.path.stem}.csv")  # one false positive


def test_froc_command_end_to_end(cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    det = tmp_path / "det"
    _write_perfect(cohort, det)
    out = tmp_path / "out"
    argv = ["froc", "--detections", str(det), "--annotations", str(cohort.root), "--out", str(out), "--mpp", "1.0"]
    assert cli.main(argv) == 0
    assert "FROC score 1.0000" in capsys.readouterr().out
    result = json.loads((out / "froc.json").read_text())
    assert {"score", "sensitivity_at", "fps_per_slide", "sensitivity"} <= set(result)
    assert result["score"] == 1.0
    assert result["fps_per_slide"][-1] == 0 and result["sensitivity"][-1] == 0  # the closing (0, 0) point
    tumour = cohort.tumor_slides[0]
    # the merging pair counts once and the ITCs not at all (from the generator's own bookkeeping)
    n_lesions = len({les.merge_group for les in tumour.lesions if not les.is_itc})
    rows = {r["slide"]: r for r in result["slides"]}
    t = rows[tumour.path.stem]
    assert (t["n_lesions"], t["hits"], t["n_itc"], t["ignored"], t["false_positives"]) == (
        n_lesions,
        n_lesions,
        tumour.n_itc,
        tumour.n_itc,
        0,
    )
    assert rows[cohort.normal_slides[0].path.stem]["false_positives"] == 1
    assert (out / "froc.png").read_bytes()[:4] == b"\x89PNG"

    # an explicit slide list: a normal slide without a CSV contributes no detections
    (det / "normal_000.csv").unlink()
    assert cli.main([*argv, "--slides", str(cohort.csv)]) == 0
    result = json.loads((out / "froc.json").read_text())
    assert result["n_slides"] == 2 and result["score"] == 1.0 and max(result["fps_per_slide"]) == 0


def test_froc_command_bad_input(cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    det = tmp_path / "det"
    _write_perfect(cohort, det)
    base = ["froc", "--detections", str(det), "--annotations", str(cohort.root), "--out", str(tmp_path / "o")]

    listed = tmp_path / "list.txt"
    listed.write_text("tumor_000\n")
    assert cli.main([*base, "--slides", str(listed)]) == 1
    assert "not in the slide list" in capsys.readouterr().err  # normal_000.csv is not listed

    (det / "tumor_000.csv").rename(tmp_path / "tumor_000.csv")
    assert cli.main(base) == 1
    assert "annotated slides without a detection CSV" in capsys.readouterr().err

    points((0.9, (100.0, 2048.0))).to_camelyon_csv(det / "tumor_000.csv")  # X = width of the slide
    assert cli.main(base) == 1
    err = capsys.readouterr().err
    assert "tumor_000.csv: slide 'tumor_000'" in err and "outside the 2048 x 2048" in err

    (det / "tumor_000.csv").write_text("probability,X,Y\n0.9,10,10\n")
    assert cli.main(base) == 1
    assert "tumor_000.csv: line 1: looks like a header row" in capsys.readouterr().err


# ========================================================================================== slide level / AUC


def test_slide_score() -> None:
    heat = np.array([[0.1, np.nan], [0.9, 0.5]])
    assert slide_score(heat) == 0.9
    assert slide_score(heat, "topk_mean", k=2) == pytest.approx(0.7)
    assert slide_score(heat, "topk_mean", k=10) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="no finite value"):
        slide_score(np.full((2, 2), np.nan))
    with pytest.raises(ConfigError, match="unknown method"):
        slide_score(heat, "mean")


def test_roc_auc_ci() -> None:
    auc, lo, hi = roc_auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=500, seed=1)
    assert auc == 0.75 and 0.0 <= lo <= auc <= hi == 1.0
    assert roc_auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=500, seed=1) == (auc, lo, hi)  # reproducible
    assert roc_auc_ci([0, 0, 1, 1, 1], [0.1, 0.2, 0.5, 0.6, 0.9], n_boot=200) == (1.0, 1.0, 1.0)
    plain = roc_auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=300, stratified=False)
    assert plain[0] == 0.75 and 0.0 <= plain[1] <= plain[2] <= 1.0  # one-class resamples are skipped
    assert math.isnan(roc_auc_ci([0, 1], [0.2, 0.3], n_boot=0)[1])
    with pytest.raises(ConfigError, match="both positive and negative"):
        roc_auc_ci([1, 1], [0.2, 0.3])

    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    s = np.round(rng.random((6, 25)), 1)  # many ties
    y = rng.random((6, 25)) > 0.5
    np.testing.assert_allclose(_auc_rows(s, y), [roc_auc_score(y[i], s[i]) for i in range(6)])


def test_multilabel_auroc_youden_and_sensitivity_specificity() -> None:
    y = np.array([[0, 1], [0, 0], [0, 1], [1, 0], [1, 1], [1, 0]])
    s = np.array([[0.1, 0.8], [0.2, 0.3], [0.6, 0.6], [0.4, 0.5], [0.7, 0.55], [0.9, 0.1]])
    res = multilabel_auroc(y, s, classes=["nodule", "effusion"], n_boot=200, seed=0)
    assert res["nodule"][0] == pytest.approx(8 / 9)  # 8 of the 9 positive-negative pairs ordered correctly
    assert res["effusion"] == (1.0, 1.0, 1.0)
    assert res["mean"][0] == pytest.approx(17 / 18)
    assert res["nodule"][1] <= 8 / 9 <= res["nodule"][2]

    # nodule: J = 2/3 at 0.7 (tpr 2/3, fpr 0) and at 0.4 (tpr 1, fpr 1/3): the higher threshold wins
    thr = youden_thresholds(y, s)
    np.testing.assert_allclose(thr, [0.7, 0.55])
    sens, spec = sensitivity_specificity(y, s, thr)
    np.testing.assert_allclose(sens, [2 / 3, 1.0])
    np.testing.assert_allclose(spec, [1.0, 1.0])

    with pytest.warns(UserWarning, match="one label only"):
        res = multilabel_auroc(np.c_[y, np.zeros(6)], np.c_[s, s[:, 0]], n_boot=10)
    assert math.isnan(res["2"][0]) and res["mean"][0] == pytest.approx(17 / 18)


def test_pointing_game() -> None:
    cams = np.zeros((2, 2, 4, 4))
    cams[0, 0, 1, 2] = 1.0  # image 0, class 0: peak at cell (1, 2), centre (1.5, 2.5)
    cams[0, 1, 3, 3] = 1.0  # image 0, class 1: peak at (3, 3)
    cams[1, 0, 0, 0] = 1.0  # image 1, class 0: peak at (0, 0)
    boxes = [[(0, 1, 2, 2, 3), (1, 0, 0, 2, 2)], [(0, 0, 0, 1, 1)]]
    assert pointing_game(cams, boxes, classes=["nodule", "pneumothorax"]) == {"nodule": 1.0, "pneumothorax": 0.0}
    # boxes in an 8 x 8 image: cell (1, 2) is centred at (3, 5)
    boxes8 = [[(0, 2, 4, 4, 6)], [(0, 0, 0, 2, 2)]]
    res = pointing_game(list(cams), boxes8, image_shapes=(8, 8))
    assert res["0"] == 1.0 and math.isnan(res["1"])
    # half-open: a centre on the box's bottom edge is outside
    assert pointing_game(cams[:1], [[(0, 1.0, 2.0, 1.5, 3.0)]])["0"] == 0.0
