"""A real napari Viewer (under Xvfb) opening files through the plugin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import open_slide
from napari_patchdx.geometry import level0_to_world
from napari_patchdx.layerdata import slide_layer
from napari_patchdx.sampling.tables import read_patch_table

pytestmark = pytest.mark.gui


def test_viewer_shows_slide_and_aligned_ground_truth(make_napari_viewer, wsi_cohort) -> None:
    slide = next(s for s in wsi_cohort.slides if s.label == "tumor")
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(slide.path), plugin="napari-patchdx")
    image, truth = layers
    assert image.multiscale and image.rgb
    assert len(image.data) >= 3 and image.data[0].shape == (slide.height, slide.width, 3)
    assert truth.nshapes >= 1 and truth.name.endswith("ground truth")

    # the same level-0 point lands on the same world coordinate in both layers
    np.testing.assert_allclose(image.data_to_world([100, 200]), [100 * slide.mpp, 200 * slide.mpp])
    vertex = truth.data[0][0]
    np.testing.assert_allclose(truth.data_to_world(vertex), level0_to_world(vertex, slide.mpp))
    # ... and the vertex sits inside the image pixel that contains it
    pixel = image.world_to_data(truth.data_to_world(vertex))
    np.testing.assert_allclose(pixel, vertex - 0.5)

    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    assert rgb.std() > 10, "canvas is blank"
    # tumour outlines are cyan (#00e5ff), blended over tissue when thin: low red, high green and blue
    cyan = ((rgb[..., 0] < 140) & (rgb[..., 1] > 150) & (rgb[..., 2] > 180)).sum()
    assert cyan > 100, "ground-truth outlines are not drawn"
    tissue = (rgb.sum(axis=-1) < 600).sum()
    assert tissue > 500, "no tissue visible"


def test_large_slide_displays_without_level0_reads(make_napari_viewer, large_slide) -> None:
    slide = open_slide(large_slide)
    data, kwargs, _ = slide_layer(slide)
    assert slide.tiles_decoded == 0  # building the layer reads no pixels
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(data, **kwargs)
    viewer.reset_view()
    viewer.screenshot(canvas_only=True, flash=False)
    assert layer.data[0].shape == (100_000, 100_000, 3)
    assert slide.tiles_decoded_per_level[0] == 0, "the whole-slide view read level-0 tiles"
    assert slide.tiles_decoded > 0, "nothing was displayed"


def test_sample_patches_widget(make_napari_viewer, qtbot, wsi_cohort, tmp_path) -> None:
    from napari_patchdx._napari.widgets import SamplePatchesWidget

    slide = next(s for s in wsi_cohort.slides if s.label == "tumor")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(slide.path), plugin="napari-patchdx")
    widget = SamplePatchesWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.inputs.slides.choices == (slide.path.stem,)
    widget.inputs.slides.value = [slide.path.stem]
    widget.inputs.truth.value = [f"{slide.path.stem} ground truth"]
    widget.n.value = 40
    widget.patch_size.value = 96
    widget.center_size.value = 48
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.table is not None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10_000)
    assert len(widget.table) == 40 and 0 < widget.table.label.sum() < 40
    layer = viewer.layers[f"{slide.path.stem} patches"]
    assert layer.nshapes == 40
    assert list(layer.features["label"]) == widget.table.label.tolist()
    # boxes sit on the slide: the first box's corner is the table's level-0 (y, x)
    row = widget.table.iloc[0]
    np.testing.assert_allclose(layer.data[0][0], [row.y, row.x])
    np.testing.assert_allclose(layer.data_to_world(layer.data[0][0]), level0_to_world([row.y, row.x], slide.mpp))
    assert "tumour" in widget.counts.value and "no validation slide" in widget.counts.value  # one slide: all train
    # the tissue mask is shown as Labels aligned to the slide: a mask cell centre lands on its level-0 block centre
    tissue = viewer.layers[f"{slide.path.stem} tissue"]
    spacing = tissue.metadata["patchdx"]["grid"]["spacing"][0]
    np.testing.assert_allclose(
        tissue.data_to_world([2, 3]), level0_to_world([2.5 * spacing, 3.5 * spacing], slide.mpp), rtol=1e-9
    )
    assert tissue.data.any()
    out = tmp_path / "patches.csv"
    widget.export_path.value = out
    widget.export_button.clicked.emit()
    assert out.is_file() and len(read_patch_table(out)) == 40


def test_sample_patches_widget_stop(make_napari_viewer, qtbot, wsi_cohort) -> None:
    from napari_patchdx._napari.widgets import SamplePatchesWidget

    slide = next(s for s in wsi_cohort.slides if s.label == "tumor")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(slide.path), plugin="napari-patchdx")
    widget = SamplePatchesWidget(viewer)
    widget.inputs.slides.value = [slide.path.stem]
    widget.n.value = 1_000_000
    widget.patch_size.value = 96
    widget.center_size.value = 48
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.progress.value > 0, timeout=60_000)
    widget.runner.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=30_000)
    assert widget.runner.status.value == "stopped"
    assert widget.table is None and widget.runner.run_button.enabled
    assert f"{slide.path.stem} patches" not in viewer.layers


def test_sample_patches_widget_on_cxr_folder(make_napari_viewer, qtbot, tmp_path) -> None:
    from napari_patchdx._napari.widgets import SamplePatchesWidget
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=6, seed=1, size=256, dicom=False)
    viewer = make_napari_viewer(show=True)
    images = [viewer.open(str(cohort.png_path(i)), plugin="napari-patchdx")[0] for i in cohort.images]
    widget = SamplePatchesWidget(viewer)
    widget.folder.value = cohort.root
    widget.n.value = 60
    widget.patch_size.value = 256  # working size 1024 -> a quarter of the image side
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.table is not None, timeout=60_000)
    table = widget.table
    assert len(table) == 60 and "label_nodule" in table.columns
    assert "lesion (" in widget.counts.value
    shown = 0
    for image, image_id in zip(images, cohort.images, strict=True):
        rows = table[table.slide == str(cohort.png_path(image_id))]
        if rows.empty:
            assert f"{image.name} patches" not in viewer.layers
            continue
        boxes = viewer.layers[f"{image.name} patches"]
        assert boxes.nshapes == len(rows)
        np.testing.assert_allclose(boxes.data[0][0], [rows.y.iloc[0] - 0.5, rows.x.iloc[0] - 0.5])
        shown += 1
    assert shown >= 3


def test_lesion_points_layer(make_napari_viewer) -> None:
    from napari.layers import Layer

    from napari_patchdx.evaluation.points import PointsTable
    from napari_patchdx.layerdata import points_layer

    points = PointsTable(y=np.array([100.5, 300.5, 50.5]), x=np.array([200.5, 40.5, 60.5]), probability=[0.6, 0.9, 0.3])
    viewer = make_napari_viewer()
    data, kwargs, kind = points_layer(points, mpp=0.25, top_k=2, diameter_um=50)
    layer = viewer.add_layer(Layer.create(data, kwargs, kind))
    assert len(layer.data) == 2  # capped to the top K, most probable first
    np.testing.assert_allclose(layer.features["probability"], [0.9, 0.6])
    np.testing.assert_allclose(layer.data_to_world(layer.data[0]), level0_to_world([300.5, 40.5], 0.25))
    assert layer.size[0] == pytest.approx(200.0)  # 50 um at 0.25 um/px, in level-0 pixels
    assert not np.allclose(layer.face_color[0], layer.face_color[1])  # coloured by probability


def test_train_widget_curriculum_with_live_curves(make_napari_viewer, qtbot, tmp_path) -> None:
    from napari_patchdx._napari.widgets import TrainWidget
    from napari_patchdx.models.checkpoint import load_checkpoint
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=12, seed=2, size=128, dicom=False)
    viewer = make_napari_viewer(show=True)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert "cpu" in widget.device.choices

    def shown(control) -> bool:  # not hidden by the widget (isVisible also needs every parent on screen)
        return not control.native.isHidden()

    assert shown(widget.steps) and shown(widget.stain) and not shown(widget.working_size)  # slides first
    widget.source.value = "X-ray cohort folder"
    # only the controls that apply to X-rays show: the working size does, steps per epoch and colour do not
    assert shown(widget.working_size) and shown(widget.stage) and shown(widget.cohort)
    assert not shown(widget.steps) and not shown(widget.stain) and not shown(widget.inputs)
    assert widget.patch_size.value == 256  # the X-ray default (the slide default, 299, exceeds small working sizes)
    widget.deterministic.value = True
    widget.cohort.value = cohort.root
    widget.arch.value = "small"
    widget.stage.value = "curriculum"
    widget.epochs.value = 1
    widget.batch_size.value = 4
    widget.patch_size.value = 48
    widget.working_size.value = 128
    widget.device.value = "cpu"
    widget.workers.value = 0
    widget.out_dir.value = tmp_path / "run"
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=180_000)
    assert [h["stage"] for h in widget.history] == ["patches", "whole"]
    assert len(widget.figure.axes) == 2 and len(widget.figure.axes[0].lines) == 4  # train/val loss per stage
    config = widget.config("cxr")
    assert config.steps_per_epoch is None and config.working_size == 128 and config.deterministic
    model, meta = load_checkpoint(widget.result.last)
    assert model.num_classes == 5 and model.in_channels == 1
    assert meta["classes"] == ["nodule", "consolidation", "interstitial_opacity", "pleural_effusion", "pneumothorax"]


def test_sample_patches_widget_splits_slides_for_training(make_napari_viewer, qtbot, wsi_cohort) -> None:
    """With two or more annotated slides the table holds a validation slide, chosen as the core does, so the Train
    widget accepts it."""
    from napari_patchdx._napari.widgets import SamplePatchesWidget
    from napari_patchdx.sampling.splits import hold_out_slides

    viewer = make_napari_viewer()
    for s in wsi_cohort.slides:
        viewer.open(str(s.path), plugin="napari-patchdx")
    widget = SamplePatchesWidget(viewer)
    widget.inputs.slides.value = [s.path.stem for s in wsi_cohort.slides]
    widget.n.value = 60
    widget.patch_size.value = 96
    widget.center_size.value = 48
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.table is not None, timeout=120_000)
    expected = {
        p.stem: split for p, _, split in hold_out_slides([(s.path, s.annotation_path) for s in wsi_cohort.slides])
    }
    got = {Path(p).stem: split for p, split in widget.table.groupby("slide")["split"].first().items()}
    assert got == {k: v for k, v in expected.items() if k in got} and set(got.values()) == {"train", "val"}
    assert "validation" in widget.counts.value and "no validation" not in widget.counts.value
