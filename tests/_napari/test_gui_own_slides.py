"""Your own slide in napari, driven only through widgets and napari's own layer actions (issue 12's "done when"):
open an unannotated slide, draw a tumour polygon in a new Shapes layer (napari's File > New Layer > Shapes with the
slide active), save it with napari's save path (XML and GeoJSON, level-0 pixels), sample, train (tiny) on that
layer, infer with the checkpoint Train offers, evaluate, save the lesion points as GeoJSON; then the same slide
written without microns per pixel goes through with the um/px typed in a widget.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import read_annotations
from napari_patchdx.geometry import level0_to_world

from ..conftest import write_pyramid

pytestmark = pytest.mark.gui

MPP = 0.5


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    """Three tumour slides (2048 px at 0.5 um/px); the last one's annotation file is moved away (it is "yours")."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("own")
    made = make_wsi_cohort(root / "wsi", n_tumor=3, n_normal=0, seed=5, height=2048, width=2048, mpp=MPP)
    own = made.slides[2]
    hidden = root / "hidden_truth.xml"
    os.replace(own.annotation_path, hidden)
    return made, own.path, hidden


def _new_shapes_layer(viewer, active):
    """napari's File > New Layer > Shapes (the layer-list button does the same) with ``active`` selected."""
    from napari._app_model import get_app_model

    viewer.layers.selection.active = active
    get_app_model().commands.execute_command("napari.window.file.new_layer.new_shapes").result()
    return viewer.layers[-1]


def _save(viewer, layer, path: Path) -> None:
    """napari's save path for the selected layer (what File > Save Selected Layers calls)."""
    viewer.layers.selection.clear()
    viewer.layers.selection.add(layer)
    written = viewer.layers.save(str(path), selected=True, plugin="napari-patchdx")
    assert written == [str(path)] and path.is_file()


def _largest_tumour(path: Path) -> np.ndarray:
    truth = read_annotations(path)
    region = max(truth.positives, key=lambda r: r.area)
    return np.asarray(region.exterior, dtype=np.float64)


def test_own_slide_from_drawing_to_exported_points(make_napari_viewer, qtbot, cohort, tmp_path) -> None:
    from napari_patchdx._napari.evaluate_widget import EvaluateWidget
    from napari_patchdx._napari.infer_widget import InferenceWidget
    from napari_patchdx._napari.widgets import SamplePatchesWidget, TrainWidget
    from napari_patchdx.io.names import TRUTH_FOLDER

    made, own, hidden = cohort
    viewer = make_napari_viewer(show=True)
    for slide in made.slides:
        viewer.open(str(slide.path), plugin="napari-patchdx")
    empty = viewer.layers[f"{own.stem} ground truth"]  # offered for the unannotated slide
    assert len(empty.data) == 0 and empty.metadata["patchdx"]["kind"] == "annotations"

    drawn = _new_shapes_layer(viewer, viewer.layers[own.stem])
    assert drawn.metadata["patchdx"]["mpp"] == MPP  # tagged with its slide's frame when inserted
    polygon = _largest_tumour(hidden)
    world = level0_to_world(polygon, MPP)
    drawn.add_polygons([(world - np.asarray(drawn.translate)) / np.asarray(drawn.scale)])  # in the layer's data
    assert list(drawn.features["label"]) == ["tumor"]
    for suffix in (".xml", ".geojson"):
        _save(viewer, drawn, tmp_path / f"drawn{suffix}")
        (saved,) = read_annotations(tmp_path / f"drawn{suffix}").regions
        assert saved.label == "tumor"
        np.testing.assert_allclose(saved.exterior, polygon, atol=1e-3)  # level-0 pixels

    sample = SamplePatchesWidget(viewer)
    assert drawn.name in sample.inputs.truth.value  # the layer just drawn is chosen by default
    sample.n.value = 80
    sample.patch_size.value = 64
    sample.center_size.value = 32
    sample.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: sample.table is not None, timeout=120_000)
    rows = sample.table[sample.table["slide"] == str(own)]
    assert (rows["label"] > 0).any() and set(sample.table["split"]) == {"train", "val"}

    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    train.epochs.value = 1
    train.steps.value = 2
    train.batch_size.value = 8
    train.patch_size.value = 64
    train.device.value = "cpu"
    train.workers.value = 0
    train.out_dir.value = tmp_path / "run"
    train.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: train.result is not None or "error" in train.runner.status.value, timeout=180_000)
    assert train.result is not None, train.runner.status.value
    (recorded,) = read_annotations(tmp_path / "run" / TRUTH_FOLDER / f"{own.stem}.xml").regions
    np.testing.assert_allclose(recorded.exterior, polygon, atol=1e-3)  # trained on the drawn layer
    manifest = json.loads((tmp_path / "run" / "train_manifest.json").read_text())
    assert str(tmp_path / "run" / TRUTH_FOLDER / f"{own.stem}.xml") in json.dumps(manifest)

    infer = InferenceWidget(viewer)  # opened after training: offers the new checkpoint and a folder in the run
    viewer.window.add_dock_widget(infer)
    checkpoint = train.result.best or train.result.last
    assert [Path(p) for p in infer.checkpoints.value] == [checkpoint]
    assert Path(infer.out_dir.value) == tmp_path / "run" / "heatmaps"
    infer.inputs.slides.value = [own.stem]
    infer.tta.value = False
    infer.device.value = "cpu"
    infer.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: infer.results is not None or "error" in infer.runner.status.value, timeout=180_000)
    assert f"{own.stem} heatmap" in viewer.layers, infer.runner.status.value

    evaluate = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(evaluate)
    assert evaluate.heatmaps.value == [f"{own.stem} heatmap"]  # chosen by default, as the ground truth is
    evaluate.n_boot.value = 20
    evaluate.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: evaluate.result is not None or "error" in evaluate.runner.status.value, timeout=120_000)
    assert evaluate.result is not None, evaluate.runner.status.value
    assert evaluate.result.names == [own.stem] and list(evaluate.result.is_tumor) == [True]
    points = viewer.layers[f"{own.stem} outcomes"]
    _save(viewer, points, tmp_path / "points.geojson")
    features = json.loads((tmp_path / "points.geojson").read_text())["features"]
    assert len(features) == len(points.data) > 0
    first = features[0]["geometry"]["coordinates"]  # [x, y] level-0 pixels of the most probable point
    world = points.data_to_world(points.data[0])
    np.testing.assert_allclose([first[1] * MPP, first[0] * MPP], world[-2:], atol=MPP)


def test_a_slide_without_mpp_goes_through_with_the_um_per_px_typed(make_napari_viewer, qtbot, cohort, tmp_path) -> None:
    from napari_patchdx._napari.infer_widget import InferenceWidget
    from napari_patchdx._napari.widgets import SamplePatchesWidget
    from napari_patchdx.io.slides.open import open_slide
    from napari_patchdx.models.checkpoint import save_checkpoint
    from napari_patchdx.models.factory import build_model

    _, own, hidden = cohort
    with open_slide(own) as slide:
        pixels = slide.read_region(0, 0, *slide.shape[:2])
    bare = write_pyramid(tmp_path / "bare.tif", np.ascontiguousarray(pixels), mpp=None)
    viewer = make_napari_viewer(show=True)
    (layer, truth_layer) = viewer.open(str(bare), plugin="napari-patchdx")
    assert layer.metadata["patchdx"]["mpp"] is None and tuple(layer.scale) == (1.0, 1.0)  # world in pixels
    polygon = _largest_tumour(hidden)
    truth_layer.add_polygons([polygon])  # the empty ground-truth layer holds level-0 pixels

    sample = SamplePatchesWidget(viewer)
    sample.n.value = 40
    sample.patch_size.value = 64
    sample.center_size.value = 32
    sample.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: "error" in sample.runner.status.value, timeout=60_000)
    assert "microns per pixel" in sample.runner.status.value and "um/px field" in sample.runner.status.value

    sample.inputs.mpp.value = MPP  # the slide and its ground truth move to micrometres at the typed value
    assert tuple(layer.scale) == (MPP, MPP) and tuple(truth_layer.scale) == (MPP, MPP)
    assert layer.metadata["patchdx"]["mpp"] == MPP and layer.metadata["patchdx"]["mpp_typed"]
    np.testing.assert_allclose(truth_layer.data_to_world(polygon[0]), level0_to_world(polygon[0], MPP))
    infer = InferenceWidget(viewer)
    assert infer.inputs.mpp.value == MPP  # typed once, shown in every widget of the viewer
    sample.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: sample.table is not None, timeout=120_000)
    assert (sample.table["label"] > 0).any()

    meta = {"classes": ["tumor"], "input_size": 64, "center_size": 32, "mpp": None, "normalization": {"mode": "unit"}}
    _, ckpt = save_checkpoint(tmp_path / "model", build_model("small", 1), meta)
    infer.checkpoints.value = [ckpt]
    infer.out_dir.value = tmp_path / "heatmaps"
    infer.tta.value = False
    infer.device.value = "cpu"
    infer.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: infer.results is not None or "error" in infer.runner.status.value, timeout=120_000)
    heat = viewer.layers["bare heatmap"]
    assert heat.metadata["patchdx"]["mpp"] == MPP  # the typed value places the heatmap ...
    cell = heat.scale[-1]  # ... over the slide, as the slide is shown
    np.testing.assert_allclose(heat.extent.world[0][-2:], layer.extent.world[0][-2:], atol=cell)
    np.testing.assert_allclose(heat.extent.world[1][-2:], layer.extent.world[1][-2:], atol=cell)
