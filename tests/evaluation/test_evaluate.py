"""Evaluation: Liu et al. lesion points, CAMELYON16 FROC (hand-computed cases), AUC, X-ray metrics, `froc` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import cli
from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.evaluation import froc
from napari_patchdx.evaluation.froc import _froc_curve, _froc_score, classify_points
from napari_patchdx.evaluation.froc_dirs import froc_from_dirs
from napari_patchdx.evaluation.label_errors import suspected_label_errors
from napari_patchdx.evaluation.masks import evaluation_mask
from napari_patchdx.evaluation.nms import lesion_points
from napari_patchdx.evaluation.points import PointsTable, read_camelyon_csv
from napari_patchdx.evaluation.roc import auc_rows, roc_auc_ci, slide_score
from napari_patchdx.evaluation.slide_files import evaluate_slides
from napari_patchdx.evaluation.slides import SlideInput, evaluate_slide_inputs
from napari_patchdx.evaluation.xray_metrics import (
    multilabel_auroc,
    pointing_game,
    sensitivity_specificity,
    youden_thresholds,
)
from napari_patchdx.evaluation.xrays import evaluate_cxr
from napari_patchdx.geometry import Grid
from napari_patchdx.io.annotations.model import EXCLUSION, TUMOR, AnnotationSet, Region

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
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

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
    np.testing.assert_allclose(auc_rows(s, y), [roc_auc_score(y[i], s[i]) for i in range(6)])


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


# ================================================================================== outcome classification


def test_classify_points_follows_the_froc_lookup() -> None:
    detections, truths, shapes = _froc_case()
    out = classify_points(detections["T1"], truths["T1"], shapes["T1"])
    # T1's points sorted by probability: 0.9 on L1, 0.8 on the ITC, 0.7 background, 0.6 second hit on L1
    assert list(detections["T1"].probability) == [0.9, 0.8, 0.7, 0.6]
    assert list(out.outcome) == ["hit", "itc_ignored", "false_positive", "hit"]
    assert list(out.first_hit) == [True, False, False, False]  # the 0.6 hit is L1's extra detection
    assert out.lesion[0] == out.lesion[3] != 0 and out.lesion[2] == 0 and out.lesion[1] not in (0, out.lesion[0])
    assert out.counts() == {"hit": 2, "false_positive": 1, "itc_ignored": 1}
    # the same counts as the FROC's per-slide row
    row = next(r for r in froc(detections, truths, shapes).slides if r.slide == "T1")
    assert (row.false_positives, row.ignored, row.hits) == (1, 1, int(out.first_hit.sum()))

    normal = classify_points(detections["N1"], None, shapes["N1"])
    assert list(normal.outcome) == ["false_positive", "false_positive"] and not normal.first_hit.any()
    assert len(classify_points(PointsTable.empty(), truths["T2"], shapes["T2"])) == 0
    with pytest.raises(InputFileError, match=r"slide 'T9'.*outside"):
        classify_points(points((0.5, (5000.0, 10.0))), truths["T2"], shapes["T2"], name="T9")


def test_suspected_label_errors_rule() -> None:
    names = ["a", "b", "c", "d", "e"]
    labels = [0, 0, 1, 1, 0]
    scores = [0.95, 0.89, 0.02, 0.11, np.nan]  # NaN: no prediction, skipped
    found = suspected_label_errors(names, labels, scores)
    # most contradictory first: c (1 - 0.02 = 0.98) before a (0.95)
    assert [(s["name"], s["label"], s["class"]) for s in found] == [("c", 1, "tumor"), ("a", 0, "tumor")]
    assert found[0]["contradiction"] == pytest.approx(0.98) and found[1]["contradiction"] == pytest.approx(0.95)
    assert "labelled tumor but predicted 0.020 <= 0.1" in found[0]["reason"]
    assert "labelled without tumor but predicted tumor with 0.950 >= 0.9" in found[1]["reason"]
    assert suspected_label_errors(names, labels, scores, high=0.85, low=0.2)[0]["name"] == "c"
    assert len(suspected_label_errors(names, labels, scores, high=0.85, low=0.2)) == 4  # b and d join
    multi = suspected_label_errors(["x", "y"], [[0, 1], [1, 0]], [[0.9, 0.1], [0.5, 0.2]], classes=["nodule", "mass"])
    assert [(s["name"], s["class"]) for s in multi] == [("x", "nodule"), ("x", "mass")]
    with pytest.raises(ConfigError, match="low < high"):
        suspected_label_errors(names, labels, scores, high=0.1, low=0.5)


# ============================================================================= evaluate_slides on files

SLIDE_MPP = 1.0  # um/px: level 5 = 32 um cells, growth < 1.17 px, ITC below 8.59 px


def _write_heatmap(folder: Path, stem: str, heat: np.ndarray, grid: Grid, slide: Path) -> Path:
    """A heatmap as infer.py writes it: float32 OME-TIFF + sidecar with its grid."""
    from napari_patchdx._fsutil import atomic_write_text
    from napari_patchdx.io.float_maps import write_float_image
    from napari_patchdx.io.names import HEATMAP_FORMAT, heatmap_paths

    paths = heatmap_paths(folder, stem)
    folder.mkdir(parents=True, exist_ok=True)
    size = None if grid.mpp is None else (grid.spacing[0] * grid.mpp, grid.spacing[1] * grid.mpp)
    write_float_image(paths["final"], heat, pixel_size_um=size)
    side = {"format": HEATMAP_FORMAT, "version": 1, "slide": str(slide), "grid": grid.to_dict()}
    atomic_write_text(paths["sidecar"], json.dumps(side))
    return paths["final"]


def build_slide_case(root: Path) -> dict:
    """Three blank slides at 1 um/px with hand-made heatmaps (128 px cells) and annotations.

    tumor_a (2048 x 2048): lesion A = level-0 square 256..768 (a lesion), B = 1560..1640 (an ITC). Heatmap hot
    cells: (3, 3) 0.9 on A, (12, 12) 0.8 on B, (14, 2) 0.7 background, (5, 5) 0.6 on A (2.8 cells from the first:
    not suppressed by the 1.46-cell radius). normal_a (1960 x 2048: the last cell row overhangs the slide): one
    hot cell (15, 7) 0.55 whose centre y = 1984 lies off the slide. normal_b (2048 x 2048): (10, 4) 0.95.
    """
    from napari_patchdx.io.annotations.asap import write_asap_xml

    from ..conftest import write_pyramid

    slides_dir, heat_dir = root / "slides", root / "infer"
    slides_dir.mkdir(parents=True)
    spec = {
        "tumor_a": ((2048, 2048), {(3, 3): 0.9, (12, 12): 0.8, (14, 2): 0.7, (5, 5): 0.6}),
        "normal_a": ((1960, 2048), {(15, 7): 0.55}),
        "normal_b": ((2048, 2048), {(10, 4): 0.95}),
    }
    slides = []
    for stem, ((h, w), hot) in spec.items():
        path = write_pyramid(slides_dir / f"{stem}.tif", np.full((h, w, 3), 225, np.uint8), mpp=SLIDE_MPP)
        grid = Grid((-(-h // 128), -(-w // 128)), (128.0, 128.0), (0.0, 0.0), SLIDE_MPP)
        heat = np.full(grid.shape, 0.05, np.float32)
        heat[0, :3] = np.nan  # not evaluated
        for (r, c), p in hot.items():
            heat[r, c] = p
        _write_heatmap(heat_dir, stem, heat, grid, path)
        slides.append(path)
    truth = AnnotationSet([square(256, 256, 768, 768), square(1560, 1560, 1640, 1640)])
    xml = write_asap_xml(truth, slides_dir / "tumor_a.xml")  # beside the slide, as annotations_beside finds it
    return {"slides": slides, "heatmaps": heat_dir, "annotations": {"tumor_a": xml, "normal_a": None, "normal_b": None}}


def test_evaluate_slides_hand_computed(tmp_path: Path) -> None:
    case = build_slide_case(tmp_path)
    out = tmp_path / "evaluate"
    metrics = evaluate_slides(case["slides"], case["heatmaps"], out, n_boot=200, seed=1)
    # FP probabilities 0.7 (tumor_a), 0.55 (normal_a), 0.95 (normal_b); lesion A best 0.9, the ITC 0.
    # thresholds 0.55, 0.7, 0.9, 0.95 over 3 slides and 1 lesion:
    #   FPs/slide 1, 2/3, 1/3, 1/3, then (0, 0); sensitivity 1, 1, 1, 0, 0
    # -> sensitivity 0 at 1/4 FP (between (0, 0) and (1/3, 0)), 1 from 1/2 on: score 5/6
    froc_json = json.loads((out / "froc.json").read_text())
    np.testing.assert_allclose(froc_json["fps_per_slide"], [1.0, 2 / 3, 1 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(froc_json["sensitivity"], [1.0, 1.0, 1.0, 0.0, 0.0])
    assert froc_json["score"] == pytest.approx(5 / 6) and metrics["froc"]["score"] == pytest.approx(5 / 6)
    assert froc_json["sensitivity_at"]["0.25"] == 0.0 and froc_json["sensitivity_at"]["0.5"] == 1.0
    assert metrics["froc"]["n_lesions"] == 1 and metrics["froc"]["n_itc"] == 1
    # slide scores: tumour 0.9 against normals 0.55 and 0.95: one of two pairs ordered -> AUC 0.5
    assert metrics["slide_auc"]["auc"] == pytest.approx(0.5)
    assert 0.0 <= metrics["slide_auc"]["lo"] <= 0.5 <= metrics["slide_auc"]["hi"] <= 1.0
    assert (metrics["slide_auc"]["n_tumor"], metrics["slide_auc"]["n_normal"]) == (1, 2)
    assert metrics["points"] == {
        "total": 6,
        "moved_onto_slide": 1,
        "hit": 2,
        "false_positive": 3,
        "itc_ignored": 1,
    }
    assert metrics["settings"]["mpp"] == SLIDE_MPP and metrics["settings"]["mpp_source"] == "slides"

    import csv as _csv

    rows = {r["slide"]: r for r in _csv.DictReader((out / "slides.csv").open())}
    assert rows["tumor_a"] == {
        "slide": "tumor_a",
        "label": "tumor",
        "score": repr(float(np.float32(0.9))),
        "detections": "4",
        "lesions": "1",
        "lesions_detected": "1",
        "itc_lesions": "1",
        "itc_detections": "1",
        "false_positives": "1",
        "suspect": "0",
    }
    assert (rows["normal_a"]["label"], rows["normal_a"]["false_positives"], rows["normal_a"]["suspect"]) == (
        "normal",
        "1",
        "0",
    )
    assert rows["normal_b"]["suspect"] == "1"

    # the CSV points: the edge cell's centre (y 1984) moved to the middle of its on-slide part (1920..1960)
    assert (out / "points" / "normal_a.csv").read_text() == f"{float(np.float32(0.55))!r},960,1940\n"
    tumour_pts = read_camelyon_csv(out / "points" / "tumor_a.csv")
    np.testing.assert_allclose(tumour_pts.probability, np.float32([0.9, 0.8, 0.7, 0.6]))
    np.testing.assert_allclose(tumour_pts.y, [448, 1600, 1856, 704])

    suspects = json.loads((out / "suspects.json").read_text())
    assert "confidently contradicts" in suspects["rule"] and suspects["high"] == 0.9
    assert [(s["name"], s["label"], s["thumbnail"]) for s in suspects["suspects"]] == [
        ("normal_b", "normal", "thumbs/normal_b.png")
    ]
    for name in ("froc.png", "roc.png", "thumbs/tumor_a.png", "thumbs/normal_a.png", "thumbs/normal_b.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert json.loads((out / "metrics.json").read_text())["froc"]["score"] == pytest.approx(5 / 6)
    assert not [p for p in out.rglob(".*")]  # no temporary files left

    # the written CSVs score the same with the `froc` command's reader
    shapes_csv = tmp_path / "shapes.csv"
    shapes_csv.write_text("slide,height,width\ntumor_a,2048,2048\nnormal_a,1960,2048\nnormal_b,2048,2048\n")
    again = froc_from_dirs(out / "points", tmp_path / "slides", shapes_csv=shapes_csv, mpp=SLIDE_MPP)
    assert again.score == pytest.approx(5 / 6)


def test_evaluate_slides_in_memory_outcomes_and_skips(tmp_path: Path) -> None:
    grid = Grid((16, 16), (128.0, 128.0), (0.0, 0.0), SLIDE_MPP)
    heat = np.full(grid.shape, 0.05)
    heat[3, 3] = 0.9
    heat[14, 2] = 0.6
    truth = AnnotationSet([square(256, 256, 768, 768)])
    res = evaluate_slide_inputs(
        [SlideInput("t", heat, grid, truth, (2048, 2048))], mpp=SLIDE_MPP, n_boot=10, score="top2"
    )
    # thresholds: {0.6, 0.9} minus the smallest -> at 0.9 no FP and the lesion found: (0, 1), then (0, 0); the
    # interpolation holds sensitivity 1 beyond 0 FPs -> score 1
    assert list(res.outcomes["t"].outcome) == ["hit", "false_positive"]
    assert res.froc is not None and res.froc.score == 1.0
    assert res.scores[0] == pytest.approx((0.9 + 0.6) / 2)  # mean of the 2 largest
    assert res.auc is None and "needs tumour and normal slides" in res.auc_note
    assert res.metrics()["slide_auc"]["skipped"] == res.auc_note
    normal_only = evaluate_slide_inputs([SlideInput("n", heat, grid, None, (2048, 2048))], mpp=SLIDE_MPP, n_boot=0)
    assert normal_only.froc is None and "no lesion to find" in normal_only.froc_note
    assert list(normal_only.outcomes["n"].outcome) == ["false_positive", "false_positive"]
    given = PointsTable(np.array([300.0]), np.array([300.0]), np.array([0.4]))
    res = evaluate_slide_inputs([SlideInput("t", None, None, truth, (2048, 2048), points=given)], mpp=SLIDE_MPP)
    assert list(res.outcomes["t"].outcome) == ["hit"] and math.isnan(res.scores[0])
    with pytest.raises(ConfigError, match="unknown slide score"):
        evaluate_slide_inputs([SlideInput("t", heat, grid, truth, (2048, 2048))], score="median")
    # without mpp= the protocol takes the slides' own microns per pixel, and refuses when they differ or are unknown
    res = evaluate_slide_inputs([SlideInput("t", heat, grid, truth, (2048, 2048))], n_boot=0)
    assert res.metrics()["froc"]["mpp"] == SLIDE_MPP
    other = Grid(grid.shape, grid.spacing, grid.origin, 2 * SLIDE_MPP)
    pair = [SlideInput("t", heat, grid, truth, (2048, 2048)), SlideInput("u", heat, other, None, (2048, 2048))]
    with pytest.raises(ConfigError, match="microns per pixel differ"):
        evaluate_slide_inputs(pair, n_boot=0)
    assert evaluate_slide_inputs(pair, mpp=SLIDE_MPP, n_boot=0).metrics()["froc"]["mpp"] == SLIDE_MPP
    unknown = Grid(grid.shape, grid.spacing, grid.origin, None)
    with pytest.raises(ConfigError, match="microns per pixel unknown for slides t"):
        evaluate_slide_inputs([SlideInput("t", heat, unknown, truth, (2048, 2048))], n_boot=0)


def test_evaluate_slides_bad_input(tmp_path: Path) -> None:
    case = build_slide_case(tmp_path)
    slides, heat_dir, ann = case["slides"], case["heatmaps"], case["annotations"]
    out = tmp_path / "o"
    with pytest.raises(ConfigError, match="no ground-truth entry for slides normal_b"):
        evaluate_slides(slides, heat_dir, out, annotations={k: v for k, v in ann.items() if k != "normal_b"})
    with pytest.raises(ConfigError, match="annotations name slides that are not evaluated: tumor_x"):
        evaluate_slides(slides, heat_dir, out, annotations={**ann, "tumor_x": ann["tumor_a"]})
    with pytest.raises(InputFileError, match=r"no heatmap \(<slide>.heatmap.ome.tif .*\) for slides: extra$"):
        evaluate_slides([*slides, tmp_path / "extra.tif"], heat_dir, out)
    from ..conftest import write_pyramid

    nompp = write_pyramid(tmp_path / "slides" / "nompp.tif", np.full((2048, 2048, 3), 225, np.uint8), mpp=None)
    grid = Grid((16, 16), (128.0, 128.0), (0.0, 0.0), None)
    _write_heatmap(heat_dir, "nompp", np.full((16, 16), 0.1, np.float32), grid, nompp)
    with pytest.raises(ConfigError, match="microns per pixel unknown for slides nompp"):
        evaluate_slides([slides[0], nompp], heat_dir, out)
    assert evaluate_slides([slides[0], nompp], heat_dir, out, mpp=SLIDE_MPP, n_boot=0)["settings"]["mpp"] == 1.0

    bad_dir = tmp_path / "bad"
    grid = Grid((16, 16), (128.0, 128.0), (0.0, 0.0), SLIDE_MPP)
    _write_heatmap(bad_dir, "tumor_a", np.full((16, 16), 2.0, np.float32), grid, slides[0])
    with pytest.raises(InputFileError, match=r"tumor_a.heatmap.ome.tif: slide 'tumor_a': heatmap values span 2 \.\. 2"):
        evaluate_slides(slides[:1], bad_dir, out)
    _write_heatmap(bad_dir, "tumor_a", np.full((16, 16), np.nan, np.float32), grid, slides[0])
    with pytest.raises(InputFileError, match="no evaluated cell"):
        evaluate_slides(slides[:1], bad_dir, out)
    small = Grid((8, 8), (128.0, 128.0), (0.0, 0.0), SLIDE_MPP)  # another slide's heatmap
    _write_heatmap(bad_dir, "tumor_a", np.full((8, 8), 0.2, np.float32), small, slides[0])
    with pytest.raises(InputFileError, match="do not cover the 2048 x 2048 px level-0 slide"):
        evaluate_slides(slides[:1], bad_dir, out)


# ================================================================================ evaluate_cxr on files

CXR_CLASSES = ("nodule", "effusion")
CXR_LABELS = np.array([[0, 1], [0, 0], [0, 1], [1, 0], [1, 1], [1, 0]])
CXR_SCORES = np.array([[0.10, 0.80], [0.20, 0.30], [0.95, 0.60], [0.40, 0.50], [0.70, 0.55], [0.90, 0.05]])
# lesion boxes (image, class, y0, x0, y1, x1) and the CAM peak cell of each (image, class): hit or miss
CXR_BOXES = [
    (0, "effusion", 20, 0, 32, 16),
    (2, "effusion", 20, 16, 32, 32),
    (3, "nodule", 4, 4, 12, 12),
    (4, "nodule", 4, 20, 12, 28),
    (4, "effusion", 20, 0, 32, 32),
    (5, "nodule", 16, 16, 24, 24),
]
CXR_PEAKS = {(0, "effusion"): (25, 5), (2, "effusion"): (5, 5), (3, "nodule"): (8, 8), (4, "nodule"): (8, 8)}
CXR_PEAKS |= {(4, "effusion"): (2, 2), (5, "nodule"): (20, 20)}  # nodule 2 of 3 hits, effusion 1 of 3


def build_cxr_case(root: Path, name: str = "infer", scores: np.ndarray = CXR_SCORES) -> tuple[Path, Path]:
    """A 6-image, 32 x 32 px cohort (labels.csv, lesions.csv, PNGs) and hand-made predictions of it.

    The predictions list the classes in the other order (effusion, nodule) to check that classes are matched by
    name.
    """
    from PIL import Image

    from napari_patchdx.inference.xray import CxrPrediction, save_cxr_prediction

    cohort = root / "cohort"
    if not (cohort / "labels.csv").exists():
        (cohort / "images").mkdir(parents=True)
        rows = ["image,nodule,effusion,png"]
        for i, (a, b) in enumerate(CXR_LABELS):
            grey = (np.add.outer(np.arange(32), np.arange(32)) * 4).astype(np.uint8)
            Image.fromarray(grey).save(cohort / "images" / f"cxr_{i}.png")
            rows.append(f"cxr_{i},{a},{b},images/cxr_{i}.png")
        (cohort / "labels.csv").write_text("\n".join(rows) + "\n")
        lesions = ["image,lesion,class,y0,x0,y1,x1"]
        lesions += [f"cxr_{i},{k},{c},{y0},{x0},{y1},{x1}" for k, (i, c, y0, x0, y1, x1) in enumerate(CXR_BOXES)]
        (cohort / "lesions.csv").write_text("\n".join(lesions) + "\n")
    infer = root / name
    for i in range(len(CXR_LABELS)):
        cams = np.zeros((2, 32, 32), np.float32)  # (effusion, nodule)
        for k, cls in enumerate(("effusion", "nodule")):
            r, c = CXR_PEAKS.get((i, cls), (0, 31))
            cams[k, r, c] = 5.0
        probs = np.array([scores[i, 1], scores[i, 0]], np.float32)
        save_cxr_prediction(CxrPrediction(("effusion", "nodule"), probs, cams, (32, 32)), infer, name=f"cxr_{i}")
    return cohort, infer


def test_evaluate_cxr_hand_computed(tmp_path: Path) -> None:
    cohort, infer = build_cxr_case(tmp_path)
    out = tmp_path / "evaluate"
    metrics = evaluate_cxr(infer, cohort, out, thresholds={"nodule": 0.5, "effusion": 0.5}, n_boot=100, seed=0)
    # nodule: positives 0.4, 0.7, 0.9 against negatives 0.1, 0.2, 0.95 -> 6 of 9 pairs; effusion separates: 1
    assert metrics["classes"] == ["nodule", "effusion"]
    assert metrics["auroc"]["nodule"]["auc"] == pytest.approx(2 / 3)
    assert metrics["auroc"]["effusion"]["auc"] == pytest.approx(1.0)
    assert metrics["mean_auroc"]["auc"] == pytest.approx(5 / 6)
    assert metrics["auroc"]["nodule"]["lo"] <= 2 / 3 <= metrics["auroc"]["nodule"]["hi"]
    # at 0.5: nodule 0.7, 0.9 of the positives (2/3), 0.1, 0.2 of the negatives below (2/3);
    # effusion all positives (1), negatives 0.3 and 0.05 below but 0.5 >= 0.5 called positive (2/3)
    assert metrics["sensitivity"] == pytest.approx({"nodule": 2 / 3, "effusion": 1.0})
    assert metrics["specificity"] == pytest.approx({"nodule": 2 / 3, "effusion": 2 / 3})
    assert metrics["threshold_source"] == {"nodule": "given", "effusion": "given"}
    assert metrics["pointing_game"] == pytest.approx({"nodule": 2 / 3, "effusion": 1 / 3})
    assert metrics["pointing_pairs"] == {"nodule": 3, "effusion": 3}
    assert metrics["n_positive"] == {"nodule": 3, "effusion": 3} and metrics["suspects"] == 1

    import csv as _csv

    rows = {r["image"]: r for r in _csv.DictReader((out / "images.csv").open())}
    assert rows["cxr_2"]["labels"] == "effusion" and rows["cxr_1"]["labels"] == "normal"
    assert (rows["cxr_2"]["nodule_probability"], rows["cxr_2"]["nodule_predicted"]) == (
        repr(float(np.float32(0.95))),
        "1",
    )
    assert rows["cxr_2"]["nodule_peak_in_box"] == "" and rows["cxr_2"]["effusion_peak_in_box"] == "0"
    assert rows["cxr_0"]["effusion_peak_in_box"] == "1" and rows["cxr_2"]["suspect"] == "1"
    suspects = json.loads((out / "suspects.json").read_text())["suspects"]
    assert [(s["name"], s["class"], s["label"]) for s in suspects] == [("cxr_2", "nodule", 0)]
    assert suspects[0]["thumbnail"] == "thumbs/cxr_2.png"
    auroc = json.loads((out / "auroc.json").read_text())
    assert auroc["mean_auroc"]["auc"] == pytest.approx(5 / 6) and auroc["thresholds"]["nodule"] == 0.5
    for name in ("roc.png", *(f"thumbs/cxr_{i}.png" for i in range(6))):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name

    # without thresholds: Youden's J on these images (nodule 0.4: J = 1 - 1/3; effusion 0.55: J = 1), flagged
    metrics = evaluate_cxr(infer, cohort, out, n_boot=0, thumbnails=False)
    assert metrics["thresholds"] == pytest.approx({"nodule": 0.4, "effusion": float(np.float32(0.55))})
    assert set(metrics["threshold_source"].values()) == {"youden on the evaluated images"}
    assert "optimistic" in metrics["thresholds_note"]
    assert metrics["sensitivity"] == pytest.approx({"nodule": 1.0, "effusion": 1.0})
    assert metrics["specificity"] == pytest.approx({"nodule": 2 / 3, "effusion": 1.0})
    sub = evaluate_cxr(infer, cohort, out, images=["cxr_0", "cxr_1", "cxr_3"], n_boot=0, thumbnails=False)
    assert sub["n_images"] == 3 and sub["pointing_pairs"] == {"nodule": 1, "effusion": 1}


def test_evaluate_cxr_bad_input(tmp_path: Path) -> None:
    from napari_patchdx.inference.xray import CxrPrediction, save_cxr_prediction

    cohort, infer = build_cxr_case(tmp_path)
    out = tmp_path / "o"
    with pytest.raises(ConfigError, match=r"images without a row in .*labels\.csv: cxr_9"):
        evaluate_cxr(infer, cohort, out, images=["cxr_0", "cxr_9"], n_boot=0)
    for p in infer.glob("cxr_1.*"):
        p.unlink()
    with pytest.raises(InputFileError, match=r"no prediction \(<image>.cam.json\) for images: cxr_1"):
        evaluate_cxr(infer, cohort, out, images=["cxr_0", "cxr_1"], n_boot=0)
    assert evaluate_cxr(infer, cohort, out, n_boot=0, thumbnails=False)["n_images"] == 5  # default: the predictions
    with pytest.raises(ConfigError, match="thresholds for classes mass"):
        evaluate_cxr(infer, cohort, out, thresholds={"mass": 0.5}, n_boot=0)
    stray = CxrPrediction(("effusion", "nodule"), np.array([0.5, 0.5], np.float32), np.zeros((2, 32, 32)), (32, 32))
    save_cxr_prediction(stray, infer, name="cxr_99")
    with pytest.raises(ConfigError, match=r"for images that are not in .*labels\.csv: cxr_99"):
        evaluate_cxr(infer, cohort, out, n_boot=0)
    for p in infer.glob("cxr_99.*"):
        p.unlink()
    nan = CxrPrediction(("effusion", "nodule"), np.array([np.nan, 0.5], np.float32), np.zeros((2, 32, 32)), (32, 32))
    save_cxr_prediction(nan, infer, name="cxr_1")
    with pytest.raises(InputFileError, match=r"cxr_1.cam.json: probability of effusion is NaN"):
        evaluate_cxr(infer, cohort, out, n_boot=0)
    one = CxrPrediction(("nodule",), np.array([0.5], np.float32), np.zeros((1, 32, 32)), (32, 32))
    save_cxr_prediction(one, infer, name="cxr_1")
    with pytest.raises(InputFileError, match="has no prediction for classes effusion"):
        evaluate_cxr(infer, cohort, out, n_boot=0)
    build_cxr_case(tmp_path)  # repaired
    (cohort / "lesions.csv").write_text("image,class,y0,x0,y1\ncxr_0,nodule,1,2,3\n")
    with pytest.raises(InputFileError, match=r"lesions\.csv: missing columns x1"):
        evaluate_cxr(infer, cohort, out, n_boot=0)
    (cohort / "lesions.csv").write_text("image,class,y0,x0,y1,x1\ncxr_0,mass,1,2,3,4\n")
    with pytest.raises(InputFileError, match="line 2: unknown class 'mass'"):
        evaluate_cxr(infer, cohort, out, n_boot=0)


# ================================================================================ napari layer data (no Qt)


def test_outcome_points_layer_and_layer_conversions() -> None:
    from matplotlib.colors import to_rgba

    from napari_patchdx.evaluation.outcomes import OUTCOME_COLORS
    from napari_patchdx.geometry import napari_transform, vector_transform
    from napari_patchdx.layerdata.evaluation import grid_from_layer, outcome_points_layer, points_from_layer

    detections, truths, shapes = _froc_case()
    pts = detections["T1"]
    out = classify_points(pts, truths["T1"], shapes["T1"])
    data, kwargs, kind = outcome_points_layer(pts, out, 0.5, name="T1 outcomes", diameter_um=50.0, top_k=3)
    assert kind == "points" and data.shape == (3, 2)
    np.testing.assert_allclose(data, pts.yx[:3])
    assert kwargs["features"]["outcome"] == ["hit", "itc_ignored", "false_positive"]
    np.testing.assert_allclose(
        kwargs["face_color"], [to_rgba(OUTCOME_COLORS[o]) for o in kwargs["features"]["outcome"]]
    )
    assert kwargs["size"] == 100.0  # 50 um at 0.5 um/px, in level-0 pixels
    assert kwargs["metadata"]["patchdx"]["counts"] == {"hit": 2, "false_positive": 1, "itc_ignored": 1}
    assert (kwargs["scale"], kwargs["translate"]) == tuple(vector_transform(0.5).values())

    # a heatmap layer without a recorded grid: the grid comes back from its napari transform
    grid = Grid((7, 9), (128.0, 128.0), (16.0, 32.0), 0.25)
    t = napari_transform(grid.spacing, grid.origin, grid.mpp)
    back = grid_from_layer({"patchdx": {"mpp": 0.25}}, t["scale"], t["translate"], (7, 9))
    np.testing.assert_allclose(back.spacing, grid.spacing)
    np.testing.assert_allclose(back.origin, grid.origin)
    assert back.shape == grid.shape and back.mpp == 0.25
    assert grid_from_layer({"patchdx": {"grid": grid.to_dict()}}, (1, 1), (0, 0), (7, 9)) == grid

    # points in level 0 (our layers) or in world micrometres (any other layer)
    table = points_from_layer(
        pts.yx, {"probability": pts.probability}, {"patchdx": {"frame": "level0"}}, (1, 1), (0, 0)
    )
    np.testing.assert_allclose(table.yx, pts.yx)
    world = (pts.yx - 0.5) * 0.5  # level0_to_world with 0.5 um/px
    table = points_from_layer(world, {"probability": pts.probability}, {"patchdx": {"mpp": 0.5}}, (1, 1), (0, 0))
    np.testing.assert_allclose(table.yx, pts.yx)
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        points_from_layer(
            pts.yx, {"probability": pts.probability * 2}, {"patchdx": {"frame": "level0"}}, (1, 1), (0, 0)
        )


# ============================================================================ the "normal" annotation class


def test_normal_regions_are_not_tumour_in_the_evaluation(tmp_path: Path) -> None:
    """The hand-computed case again, with normal regions drawn where two false positives lie: had they counted as
    tumour, (14, 2) on tumor_a would be a hit and normal_b a tumour slide. The results are exactly the same."""
    import csv as _csv
    import warnings

    from napari_patchdx.io.annotations.asap import write_asap_xml
    from napari_patchdx.io.annotations.model import NORMAL

    case = build_slide_case(tmp_path)
    slides_dir = tmp_path / "slides"
    # tumor_a: lesion A, the ITC B, and normal tissue around the 0.7 background cell (14, 2): centre (1856, 320)
    truth_a = AnnotationSet(
        [square(256, 256, 768, 768), square(1560, 1560, 1640, 1640), square(1700, 200, 2000, 500, label=NORMAL)]
    )
    assert truth_a.rasterize((64, 64), 32).sum() == truth_a.rasterize((64, 64), 32, labels=[TUMOR]).sum()
    # normal_b: only normal tissue, around its 0.95 cell (10, 4): centre (1344, 576)
    truth_b = AnnotationSet([square(1200, 400, 1500, 700, label=NORMAL), square(100, 1500, 400, 1900, label=NORMAL)])
    ann = {
        "tumor_a": write_asap_xml(truth_a, slides_dir / "tumor_a.xml"),
        "normal_a": None,
        "normal_b": write_asap_xml(truth_b, tmp_path / "normal_b.xml"),
    }
    out = tmp_path / "evaluate"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "other classes count as tumour", no "no tumour region"
        metrics = evaluate_slides(case["slides"], case["heatmaps"], out, annotations=ann, n_boot=200, seed=1)
    assert metrics["froc"]["score"] == pytest.approx(5 / 6)
    assert metrics["froc"]["n_lesions"] == 1 and metrics["froc"]["n_itc"] == 1
    assert metrics["points"]["false_positive"] == 3 and metrics["points"]["hit"] == 2
    assert metrics["slide_auc"]["auc"] == pytest.approx(0.5)
    assert (metrics["slide_auc"]["n_tumor"], metrics["slide_auc"]["n_normal"]) == (1, 2)
    rows = {r["slide"]: r for r in _csv.DictReader((out / "slides.csv").open())}
    assert (rows["tumor_a"]["label"], rows["tumor_a"]["false_positives"], rows["tumor_a"]["lesions"]) == (
        "tumor",
        "1",
        "1",
    )
    assert (rows["normal_b"]["label"], rows["normal_b"]["false_positives"], rows["normal_b"]["lesions"]) == (
        "normal",
        "1",
        "0",
    )
    assert metrics["inputs"]["annotations"]["normal_b"] == str(tmp_path / "normal_b.xml")
    assert (out / "thumbs" / "normal_b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the evaluation mask of the annotations alone: the normal square is no lesion
    labels, _, _ = evaluation_mask(truth_a, (2048, 2048), 5, SLIDE_MPP)
    assert labels[1856 // 32, 320 // 32] == 0 and labels[448 // 32, 448 // 32] > 0
    # an annotation file without any tumour or normal region makes a normal slide, with a warning that says so
    excl_only = write_asap_xml(AnnotationSet([square(0, 0, 64, 64, label=EXCLUSION)]), tmp_path / "excl.xml")
    with pytest.warns(UserWarning, match=r"excl\.xml: .*no tumour region .*counts as a normal slide"):
        again = evaluate_slides(
            case["slides"], case["heatmaps"], tmp_path / "again", annotations={**ann, "normal_a": excl_only}, n_boot=0
        )
    assert again["froc"]["n_lesions"] == 1 and again["points"]["false_positive"] == 3
    assert {r["slide"]: r["label"] for r in _csv.DictReader((tmp_path / "again" / "slides.csv").open())} == {
        "tumor_a": "tumor",
        "normal_a": "normal",
        "normal_b": "normal",
    }
