"""The Evaluate widget in a real napari Viewer: curves, the per-slide table and points coloured by outcome."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from napari_patchdx.evaluation.outcomes import OUTCOME_COLORS
from napari_patchdx.geometry import level0_to_world

from ..evaluation.test_evaluate import SLIDE_MPP, build_cxr_case, build_slide_case

pytestmark = pytest.mark.gui

# tumor_a's lesion points (most probable first): on lesion A, on the ITC, on background, a second hit on A
TUMOR_A_YX = [[448.0, 448.0], [1600.0, 1600.0], [1856.0, 320.0], [704.0, 704.0]]
TUMOR_A_OUTCOMES = ["hit", "itc_ignored", "false_positive", "hit"]


def _heatmap_layer(viewer, heat_dir: Path, stem: str, slide: Path):
    """A heatmap layer as the inference widget makes it: kind "heatmap", its grid, aligned by the grid."""
    from napari_patchdx.inference.heatmap_files import read_heatmap
    from napari_patchdx.io.names import heatmap_paths

    heat, grid, _ = read_heatmap(heatmap_paths(heat_dir, stem)["final"])
    meta = {"patchdx": {"kind": "heatmap", "grid": grid.to_dict(), "mpp": grid.mpp, "slide": str(slide)}}
    return viewer.add_image(
        heat,
        name=f"{stem} heatmap",
        colormap="inferno",
        contrast_limits=(0, 1),
        opacity=0.5,
        units=("um", "um"),
        metadata=meta,
        **grid.napari(),
    )


def _run(widget, qtbot) -> None:
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=120_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10_000)


def _expect_tumor_a_outcomes(viewer) -> None:
    layer = viewer.layers["tumor_a outcomes"]
    assert list(layer.features["outcome"]) == TUMOR_A_OUTCOMES
    np.testing.assert_allclose(layer.features["probability"], np.float32([0.9, 0.8, 0.7, 0.6]))
    assert list(layer.features["first_hit"]) == [True, False, False, False]
    expected = np.array([to_rgba(OUTCOME_COLORS[o]) for o in TUMOR_A_OUTCOMES])
    np.testing.assert_allclose(layer.face_color, expected, atol=1e-6)
    np.testing.assert_allclose(layer.data, TUMOR_A_YX)
    # the points sit on the slide: a level-0 point lands on the same world coordinate as in the slide layer
    np.testing.assert_allclose(layer.data_to_world(layer.data[0]), level0_to_world(TUMOR_A_YX[0], SLIDE_MPP))
    slide = viewer.layers["tumor_a"]
    np.testing.assert_allclose(slide.world_to_data(layer.data_to_world(layer.data[0]))[:2], [447.5, 447.5])
    # beside the ground truth: just above it in the layer list, or above the slide's heatmap when that is higher
    names = [lyr.name for lyr in viewer.layers]
    below = [names.index("tumor_a ground truth")] + [names.index(n) for n in names if n == "tumor_a heatmap"]
    assert names.index("tumor_a outcomes") == max(below) + 1


def test_evaluate_widget_on_heatmap_layers(make_napari_viewer, qtbot, tmp_path) -> None:
    from napari_patchdx._napari.evaluate_widget import EvaluateWidget

    case = build_slide_case(tmp_path)
    tumour, _, normal_b = case["slides"]
    viewer = make_napari_viewer(show=True)
    viewer.open(str(tumour), plugin="napari-patchdx")  # the slide and its ground truth (the XML beside it)
    viewer.open(str(normal_b), plugin="napari-patchdx")
    _heatmap_layer(viewer, case["heatmaps"], "tumor_a", tumour)
    _heatmap_layer(viewer, case["heatmaps"], "normal_b", normal_b)
    widget = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert set(widget.heatmaps.choices) == {"tumor_a heatmap", "normal_b heatmap"}
    assert "tumor_a ground truth" in widget.truth.choices
    widget.heatmaps.value = ["tumor_a heatmap", "normal_b heatmap"]
    widget.truth.value = ["tumor_a ground truth"]
    widget.n_boot.value = 50
    _run(widget, qtbot)

    result = widget.result
    assert result.names == ["tumor_a", "normal_b"] and list(result.is_tumor) == [True, False]
    _expect_tumor_a_outcomes(viewer)
    normal = viewer.layers["normal_b outcomes"]
    assert list(normal.features["outcome"]) == ["false_positive"]
    np.testing.assert_allclose(normal.face_color, [to_rgba(OUTCOME_COLORS["false_positive"])], atol=1e-6)
    # the per-slide table and the curves in the dock
    assert widget.table.shape == (2, 10)
    assert widget.table.column_headers[:3] == ("slide", "label", "score")
    assert [widget.table.data[i, 0] for i in range(2)] == ["tumor_a", "normal_b"]
    assert widget.table.data[0, widget.table.column_headers.index("lesions_detected")] == 1
    assert widget.table.data[1, widget.table.column_headers.index("suspect")] == "yes"  # normal scored 0.95
    froc_ax, roc_ax = widget.figure.axes
    assert froc_ax.get_xlabel() == "average false positives per slide" and froc_ax.lines
    assert roc_ax.lines and "slide AUC 0.000" in widget.summary.value  # tumour 0.9 below the normal's 0.95

    # run again: the outcome layers are replaced, not duplicated
    widget.result = None
    _run(widget, qtbot)
    assert [lyr.name for lyr in viewer.layers].count("tumor_a outcomes") == 1


def test_evaluate_widget_on_folders(make_napari_viewer, qtbot, tmp_path) -> None:
    from napari_patchdx._napari.evaluate_widget import EvaluateWidget

    case = build_slide_case(tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(case["slides"][0]), plugin="napari-patchdx")
    widget = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.source.value = "slide folders"
    assert not widget.slides_dir.native.isHidden() and widget.heatmaps.native.isHidden()
    widget.slides_dir.value = tmp_path / "slides"
    widget.heatmap_dir.value = case["heatmaps"]
    widget.out_dir.value = tmp_path / "evaluate"
    widget.n_boot.value = 50
    _run(widget, qtbot)
    assert widget.result["froc"]["score"] == pytest.approx(5 / 6)  # as test_evaluate_slides_hand_computed
    assert json.loads((tmp_path / "evaluate" / "metrics.json").read_text())["n_slides"] == 3
    _expect_tumor_a_outcomes(viewer)  # read back from the written points and classified the same way
    assert "normal_a outcomes" not in viewer.layers  # only slides open in the viewer get points
    assert widget.table.shape == (3, 10)

    cohort, infer = build_cxr_case(tmp_path / "cxr")
    widget.result = None
    widget.source.value = "X-ray folders"
    widget.cohort_dir.value = cohort
    widget.predictions_dir.value = infer
    widget.out_dir.value = tmp_path / "cxr_eval"
    _run(widget, qtbot)
    assert widget.result["mean_auroc"]["auc"] == pytest.approx(5 / 6)
    assert widget.table.shape[0] == 6 and "mean AUROC 0.833" in widget.summary.value
    assert len(widget.figure.axes[0].lines) == 3  # a curve per class and the chance diagonal


def test_review_steps_through_points_and_saves_corrections_at_once(make_napari_viewer, qtbot, tmp_path) -> None:
    """Issue 14's review: the points most probable first, the view jumping to each; rejecting a false positive
    adds a normal disc (two heatmap cells) to the slide's ground truth, accepting one a tumour disc; each is on disk
    at once (the previous file kept as .bak)."""
    from napari_patchdx import read_annotations
    from napari_patchdx._napari.evaluate_widget import EvaluateWidget
    from napari_patchdx._napari.review import KEYS
    from napari_patchdx.evaluation.review import ACCEPT, REJECT

    case = build_slide_case(tmp_path)
    tumour, _, normal_b = case["slides"]
    viewer = make_napari_viewer(show=True)
    viewer.open(str(tumour), plugin="napari-patchdx")
    viewer.open(str(normal_b), plugin="napari-patchdx")  # no annotation file: an empty ground-truth layer
    _heatmap_layer(viewer, case["heatmaps"], "tumor_a", tumour)
    _heatmap_layer(viewer, case["heatmaps"], "normal_b", normal_b)
    widget = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert set(widget.heatmaps.value) == {"tumor_a heatmap", "normal_b heatmap"}  # chosen as they came
    widget.n_boot.value = 20
    _run(widget, qtbot)
    review = widget.review
    assert [(it.slide, it.outcome) for it in review.shown] == [
        ("normal_b", "false_positive"),
        ("tumor_a", "hit"),
        ("tumor_a", "itc_ignored"),
        ("tumor_a", "false_positive"),
        ("tumor_a", "hit"),
    ]
    assert review.table.shape == (5, 4)
    centre = level0_to_world([1344.0, 576.0], SLIDE_MPP)  # normal_b's cell (10, 4)
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], centre)
    assert set(KEYS) == {".", ",", "Shift-A", "Shift-R"}
    marker = viewer.layers["review: current"]  # the item under review is ringed in the canvas
    np.testing.assert_allclose(marker.data_to_world(marker.data[0])[-2:], centre)
    assert "review: current" not in widget.points.choices  # not a layer of lesion points to evaluate
    review.table.native.cellClicked.emit(3, 0)  # a click on a row goes there
    assert review.current == 3
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], level0_to_world([1856.0, 320.0], SLIDE_MPP))
    np.testing.assert_allclose(marker.data[0], [1856.0, 320.0])
    review.go(0)

    written = review.decide(REJECT)  # normal_b's false positive: a normal disc of two 128 px cells
    assert written == normal_b.with_suffix(".xml") and written.is_file()
    (disc,) = read_annotations(written).regions
    assert disc.label == "normal"
    np.testing.assert_allclose(disc.exterior.mean(axis=0), [1344.0, 576.0], atol=1e-6)
    np.testing.assert_allclose(np.hypot(*(disc.exterior - [1344.0, 576.0]).T), 256.0, atol=1e-3)  # XML precision
    assert list(viewer.layers["normal_b ground truth"].features["label"]) == ["normal"]
    assert review.current == 1 and review.table.data[0, 3] == "rejected"
    assert review.decide(ACCEPT) is None  # a hit: confirmed, no change

    review.order.value = "false positives"
    assert [it.slide for it in review.shown] == ["normal_b", "tumor_a"]
    review.step(1)
    written = review.decide(ACCEPT)  # a lesion the ground truth lacks: a tumour disc, the old file kept
    assert written == tumour.with_suffix(".xml")
    labels = [r.label for r in read_annotations(written).regions]
    assert labels == ["tumor", "tumor", "tumor"] and (tumour.parent / "tumor_a.xml.bak").is_file()
    assert len(read_annotations(tumour.parent / "tumor_a.xml.bak").regions) == 2

    widget.result = None  # evaluate again with the corrected ground truth: both former false positives changed
    _run(widget, qtbot)
    counts = {name: row.false_positives for name, row in widget.result.per_slide.items()}
    assert counts == {"tumor_a": 0, "normal_b": 1}  # normal_b has no tumour, so its point still counts


def test_suggest_where_to_look_ranks_slides_and_lists_uncertain_regions(make_napari_viewer, qtbot, tmp_path) -> None:
    """tumor_a's cells of 0.6 and 0.7 are the most uncertain (probability near 0.5); normal_b (0.95 and 0.05) is
    sure of itself: tumor_a ranks first, its two regions are listed, an uncertainty layer shows each slide."""
    from napari_patchdx import read_annotations
    from napari_patchdx._napari.evaluate_widget import EvaluateWidget
    from napari_patchdx.evaluation.review import REJECT

    case = build_slide_case(tmp_path)
    tumour, _, normal_b = case["slides"]
    viewer = make_napari_viewer(show=True)
    for slide, stem in ((tumour, "tumor_a"), (normal_b, "normal_b")):
        viewer.open(str(slide), plugin="napari-patchdx")
        _heatmap_layer(viewer, case["heatmaps"], stem, slide)
    widget = EvaluateWidget(viewer)
    ranking = widget.review.suggest()  # no evaluation needed: the heatmaps say where the model is unsure
    assert [name for name, _ in ranking] == ["tumor_a", "normal_b"]
    assert ranking[0][1] == pytest.approx((0.8 + 0.6 + 0.4) / 3, abs=1e-5)  # top 1 % of 256 cells: 3 cells
    assert {"tumor_a uncertainty", "normal_b uncertainty"} <= {layer.name for layer in viewer.layers}
    shown = widget.review.shown
    assert [(it.slide, tuple(it.yx)) for it in shown] == [("tumor_a", (704.0, 704.0)), ("tumor_a", (1856.0, 320.0))]
    assert widget.review.order.value == "where to look (most uncertain)"
    written = widget.review.decide(REJECT)  # the user says the first is normal tissue
    labels = [r.label for r in read_annotations(written).regions]
    assert labels == ["tumor", "tumor", "normal"]
