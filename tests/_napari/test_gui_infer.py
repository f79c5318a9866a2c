"""The "Run inference" widget in a real Viewer: live, aligned slide heatmaps and X-ray CAM layers."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_patchdx.geometry import Grid
from napari_patchdx.layerdata import heatmap_layer
from napari_patchdx.models.checkpoint import save_checkpoint
from napari_patchdx.models.factory import build_model

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

PATCH, CENTER = 48, 32
CXR_CLASSES = ["nodule", "consolidation", "interstitial_opacity", "pleural_effusion", "pneumothorax"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small synthetic slides (768 x 768 and 512 x 768 px at 1 um/px, 256 px JPEG tiles)."""
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("gui_infer")
    return [
        make_slide(root / "first.tif", height=768, width=768, mpp=1.0, seed=2, tile=256, tumor=False).path,
        make_slide(root / "second.tif", height=512, width=768, mpp=1.0, seed=5, tile=256, tumor=False).path,
    ]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Randomly initialised "small" checkpoints: a slide model (RGB, 48 px patches) and an X-ray model (grey)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    slide_meta = {
        "classes": ["tumor"],
        "input_size": PATCH,
        "center_size": CENTER,
        "mpp": None,
        "normalization": {"mode": "unit"},
    }
    _, slide_ckpt = save_checkpoint(root / "slide", build_model("small", 1), slide_meta)
    cxr_meta = {"classes": CXR_CLASSES, "input_size": 64, "normalization": {"mode": "standardize"}}
    _, cxr_ckpt = save_checkpoint(root / "cxr", build_model("small", len(CXR_CLASSES), in_channels=1), cxr_meta)
    return {"slide": slide_ckpt, "cxr": cxr_ckpt}


def _run(widget, qtbot, timeout: int = 120_000) -> list:
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.results is not None, timeout=timeout)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10_000)
    return widget.results


def test_widget_fills_aligned_heatmaps_live(make_napari_viewer, qtbot, slides, checkpoints, tmp_path) -> None:
    from napari_patchdx._napari.infer_widget import InferenceWidget
    from napari_patchdx.inference.heatmaps import HeatmapResult

    viewer = make_napari_viewer(show=True)
    for path in slides:
        viewer.open(str(path), plugin="napari-patchdx")
    at_insertion: dict[str, bool] = {}

    def inserted(event) -> None:  # the heatmap layer appears before any band is computed: all NaN
        layer = event.value
        if layer.metadata.get("patchdx", {}).get("kind") == "heatmap":
            at_insertion[layer.name] = bool(np.isnan(layer.data).all())

    viewer.layers.events.inserted.connect(inserted)
    widget = InferenceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert set(widget.inputs.slides.choices) == {"first", "second"} and "cpu" in widget.device.choices
    widget.inputs.slides.value = ["first", "second"]
    widget.checkpoints.value = [checkpoints["slide"]]
    widget.tta.value = False
    widget.device.value = "cpu"
    widget.batch_size.value = 64
    widget.out_dir.value = tmp_path / "infer"
    results = _run(widget, qtbot)

    assert [type(r) for r in results] == [HeatmapResult, HeatmapResult], widget.runner.status.value
    assert at_insertion == {"first heatmap": True, "second heatmap": True}
    assert widget.runner.progress.value == 1000 and widget.summary.value == "2 slide heatmaps done"
    for index, (path, outcome) in enumerate(zip(slides, results, strict=True)):
        result = outcome
        assert result.path == tmp_path / "infer" / f"{path.stem}.heatmap.ome.tif" and result.path.is_file()
        heat = viewer.layers[f"{path.stem} heatmap"]
        image = viewer.layers[path.stem]
        live = widget.live[index]
        assert live.layer is heat and live.rows_received == result.heatmap.shape[0]  # every band arrived live
        assert 1 <= live.refreshes <= live.rows_received + 1
        # the layer holds the finished heatmap: no NaN where it has values, NaN (transparent) off tissue
        finite = np.isfinite(result.heatmap)
        assert finite.sum() > 50 and (~finite).sum() > 50
        np.testing.assert_array_equal(heat.data, result.heatmap)
        assert heat.contrast_limits == [0.0, 1.0] and heat.opacity == 0.5
        # aligned: a heatmap cell's centre is, in world coordinates, its level-0 block's centre in the slide layer
        step = result.grid.spacing[0]
        rows, cols = np.nonzero(finite)
        for r, c in list(zip(rows, cols, strict=True))[:: max(1, len(rows) // 7)]:
            block_centre = np.array([(r + 0.5) * step, (c + 0.5) * step])  # continuous level-0 (y, x)
            np.testing.assert_allclose(heat.data_to_world([r, c]), image.data_to_world(block_centre - 0.5))

    # a second run loads the finished heatmaps and replaces the layers instead of adding more
    first = results[0].heatmap
    results = _run(widget, qtbot)
    assert [type(r) for r in results] == [HeatmapResult, HeatmapResult]
    assert sum(layer.name.startswith("first heatmap") for layer in viewer.layers) == 1
    np.testing.assert_array_equal(viewer.layers["first heatmap"].data, first)


def test_live_heatmap_throttles_repaints(tmp_path) -> None:
    from napari.layers import Image

    from napari_patchdx._napari.infer_widget import LiveHeatmap
    from napari_patchdx.inference.heatmaps import HeatmapResult

    grid = Grid((6, 4), (32.0, 32.0), (0.0, 0.0), 0.5)
    data, kwargs, _ = heatmap_layer(np.full((6, 4), np.nan, np.float32), grid)
    layer = Image(data, **kwargs)
    now = [0.0]
    live = LiveHeatmap(layer, interval=0.5, clock=lambda: now[0])
    assert live.update(0, np.full((2, 4), 0.25, np.float32))  # the first band repaints at once
    now[0] = 0.2
    assert not live.update(2, np.full((2, 4), 0.5, np.float32))  # 0.2 s later: written, not repainted
    assert (layer.data[2:4] == 0.5).all() and np.isnan(layer.data[4:]).all()
    now[0] = 0.7
    assert live.update(4, np.full((2, 4), 0.75, np.float32))
    assert live.refreshes == 2 and live.rows_received == 6
    assert not live.update(0, np.zeros((1, 5), np.float32))  # rows of another grid are left to finish()
    final_grid = Grid((3, 2), (64.0, 64.0), (0.0, 0.0), 0.5)
    final = np.arange(6, dtype=np.float32).reshape(3, 2) / 6
    live.finish(HeatmapResult(final, final_grid, tmp_path / "h.heatmap.ome.tif", tmp_path / "s.tif"))
    np.testing.assert_array_equal(layer.data, final)
    assert tuple(layer.scale) == final_grid.napari()["scale"] and live.refreshes == 3
    assert layer.metadata["patchdx"]["grid"] == final_grid.to_dict()


def test_widget_shows_cams_per_class(make_napari_viewer, qtbot, checkpoints, tmp_path) -> None:
    from napari_patchdx._napari.infer_widget import InferenceWidget
    from napari_patchdx.inference.xray import read_cxr_prediction
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=2, seed=1, size=128, dicom=False)
    viewer = make_napari_viewer(show=True)
    xrays = [viewer.open(str(cohort.png_path(i)), plugin="napari-patchdx")[0] for i in cohort.images]
    widget = InferenceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.xrays.value = [x.name for x in xrays]
    widget.checkpoints.value = [checkpoints["cxr"]]
    widget.device.value = "cpu"
    widget.out_dir.value = tmp_path / "infer"
    results = _run(widget, qtbot)
    assert len(results) == 2 and widget.summary.value == "2 chest X-rays done"
    assert widget.probabilities.visible and widget.probabilities.shape == (2, len(CXR_CLASSES))
    assert list(widget.probabilities.column_headers) == CXR_CLASSES
    for row, xray in enumerate(xrays):
        saved = read_cxr_prediction(tmp_path / "infer" / f"{xray.name}.cam.ome.tif")
        cams = [layer for layer in viewer.layers if layer.metadata.get("patchdx", {}).get("image") == xray.name]
        assert [c.metadata["patchdx"]["class"] for c in cams] == CXR_CLASSES
        for k, cam in enumerate(cams):
            meta = cam.metadata["patchdx"]
            assert meta["kind"] == "cam" and meta["probability"] == pytest.approx(float(saved.probabilities[k]))
            assert f"(p={saved.probabilities[k]:.2f})" in cam.name
            np.testing.assert_array_equal(cam.data, saved.cams[k])
            # aligned: CAM pixel (i, j) is X-ray pixel (i, j) in world coordinates (millimetres)
            assert cam.data.shape == xray.data.shape
            for index in ([0, 0], [17, 90], list(np.array(xray.data.shape) - 1)):
                np.testing.assert_allclose(cam.data_to_world(index), xray.data_to_world(index))
        assert sum(c.visible for c in cams) == 1
        np.testing.assert_allclose(widget.probabilities.data[row], saved.probabilities, atol=1e-4)


def test_widget_errors_are_messages(make_napari_viewer, qtbot, slides, checkpoints, tmp_path) -> None:
    from napari_patchdx._napari.infer_widget import Failure, InferenceWidget

    viewer = make_napari_viewer(show=True)
    gone = tmp_path / "gone.tif"
    shutil.copy(slides[0], gone)
    viewer.open(str(gone), plugin="napari-patchdx")
    widget = InferenceWidget(viewer)

    def attempt() -> str:
        widget.runner.run_button.clicked.emit()
        assert widget.runner.worker is None  # refused before anything ran
        return widget.runner.status.value

    assert "choose a checkpoint first" in attempt()
    widget.checkpoints.value = [checkpoints["cxr"]]
    assert widget.inputs.slides.value == ["gone"]  # a slide opened is chosen by default
    widget.inputs.slides.value = []
    assert "choose slide or chest X-ray layers" in attempt()
    widget.inputs.slides.value = ["gone"]
    message = attempt()
    assert "cxr.json" in message and "incompatible checkpoint" in message and "1-channel" in message
    widget.checkpoints.value = [checkpoints["slide"], checkpoints["cxr"]]
    assert "cxr.json" in attempt()  # every checkpoint of an ensemble is checked
    widget.checkpoints.value = [checkpoints["slide"]]
    assert "choose an output folder" in attempt()
    widget.out_dir.value = tmp_path / "infer"
    widget.folder.value = tmp_path / "missing"
    assert "missing: is not a folder" in attempt()
    (tmp_path / "empty").mkdir()
    widget.folder.value = tmp_path / "empty"
    assert "empty: holds no slides" in attempt()
    widget.folder.value = None  # back to the chosen layers
    gone.unlink()  # the slide disappears after it was opened: the run reports it and ends cleanly
    results = _run(widget, qtbot)
    assert len(results) == 1 and isinstance(results[0], Failure) and "gone.tif" in results[0].message
    assert widget.runner.status.value.startswith("error: ") and "gone.tif" in widget.runner.status.value
    assert widget.summary.value == "0 slide heatmaps done, 1 failed"
    assert "gone heatmap" not in viewer.layers


def test_stopping_a_slide_run_closes_the_slide_job(slides, checkpoints, tmp_path) -> None:
    """Stop (closing the job at a progress report) reaches the running slide job: its resumable store stays."""
    from napari_patchdx.inference.distributed_heatmaps import heatmaps_job
    from napari_patchdx.inference.heatmaps import HeatmapRows
    from napari_patchdx.io.names import heatmap_paths
    from napari_patchdx.progress import ItemReport

    job = heatmaps_job(slides, [checkpoints["slide"]], tmp_path, tta=False, batch_size=64)
    seen = []
    for report in job:
        seen.append(report.partial)
        if isinstance(report.partial, ItemReport):
            break
    assert any(t.name.startswith("patchdx-") for t in threading.enumerate())  # the slide job's reader runs
    job.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("patchdx-")]  # ... and was stopped
    assert seen[-1].kind == "partial" and seen[-1].index == 0 and isinstance(seen[-1].value, HeatmapRows)
    paths = heatmap_paths(tmp_path, "first")
    assert paths["partial"].is_file() and paths["record"].is_file() and not paths["final"].exists()
    assert not heatmap_paths(tmp_path, "second")["partial"].exists()  # the next slide never started


def test_xray_files_get_their_spacing_and_source(checkpoints, tmp_path) -> None:
    """X-rays given as files (a folder run) are read once: CAM layers get the file's spacing, the sidecar its path."""
    from napari_patchdx.inference.xray import read_cxr_prediction
    from napari_patchdx.inference.xray_job import XrayOutcome, predict_xrays_job
    from napari_patchdx.io.cxr.read import read_cxr
    from napari_patchdx.progress import run_job
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=1, seed=3, size=96, dicom=False)
    png = cohort.png_path(cohort.images[0])
    [outcome] = run_job(predict_xrays_job([png], checkpoints["cxr"], tmp_path / "out"))
    assert isinstance(outcome, XrayOutcome)
    assert outcome.input.spacing == read_cxr(png).spacing is not None
    saved = read_cxr_prediction(outcome.path)
    assert saved.source == png and saved.cams.shape == (len(CXR_CLASSES), *read_cxr(png).image.shape)
