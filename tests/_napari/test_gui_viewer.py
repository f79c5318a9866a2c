"""A viewer that does not crash or sprawl: layer removal under OpenGL, docks that fit, errors in the status line.

The crash these tests guard against (issue "Your own slides in napari"): napari 0.9 deletes a removed layer's OpenGL
objects at once, outside a paint event, through whatever OpenGL context Qt left current; under Mesa (Xvfb here) the
next draw segfaults in ``glDrawArrays``. Without :func:`napari_patchdx._napari.viewer.guard_layer_removal`,
``test_removing_the_bottom_image_layer_keeps_drawing`` and the even iterations of
``test_infer_delete_open_zoom_infer_ten_times`` kill the test process (checked by disabling the guard).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_patchdx.models.checkpoint import save_checkpoint
from napari_patchdx.models.factory import build_model

pytestmark = [
    pytest.mark.gui,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("error:Private attribute access"),
]

WIDGETS = ["Ground truth", "Sample patches", "Train", "Run inference", "Evaluate", "Run pipeline"]
LONG_ERROR = "error: " + "/data/hospital/archive/2024/slides/" * 4 + "case_0001.svs: " + "cannot be read; " * 25


def _camera(viewer):
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def _draw(viewer, qtbot) -> np.ndarray:
    """Render the canvas now (what a paint event does), let Qt repaint the window as it does between a user's
    actions (Qt's compositor then leaves its own OpenGL context current), and return the picture."""
    shot = viewer.screenshot(canvas_only=True, flash=False)
    qtbot.wait(50)
    return shot


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small synthetic slides with tumours (so each opens with a ground-truth Shapes layer), 2 um/px, 128 px
    tiles (inference fills their heatmaps in two bands)."""
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("gui_viewer")
    return [
        make_slide(root / "left.tif", height=512, width=512, mpp=2.0, seed=3, tile=128, tumor=True).path,
        make_slide(root / "right.tif", height=512, width=640, mpp=2.0, seed=4, tile=128, tumor=True).path,
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised "small" slide model (RGB, 48 px patches, 32 px centre)."""
    torch.manual_seed(0)
    meta = {"classes": ["tumor"], "input_size": 48, "center_size": 32, "mpp": None, "normalization": {"mode": "unit"}}
    _, path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "slide", build_model("small", 1), meta)
    return path


def _heatmaps(viewer) -> list:
    return [layer for layer in viewer.layers if layer.metadata.get("patchdx", {}).get("kind") == "heatmap"]


def test_removing_the_bottom_image_layer_keeps_drawing(make_napari_viewer, qtbot, slides) -> None:
    """Two image layers, the lower one deleted, then the canvas draws: the crash in its smallest form."""
    from napari_patchdx._napari.viewer import guard_layer_removal

    viewer = make_napari_viewer(show=True)
    viewer.window.add_plugin_dock_widget("napari-patchdx", "Run inference")
    image, _truth = viewer.open(str(slides[0]), plugin="napari-patchdx")
    viewer.add_image(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64), scale=(8.0, 8.0), name="above")
    _draw(viewer, qtbot)
    guard = guard_layer_removal(viewer)
    calls = guard.calls
    viewer.layers.remove(image)
    viewer.layers.remove(_truth)
    assert guard.calls == calls + 2  # the canvas context was current for each removal
    for _ in range(3):
        _camera(viewer).zoom *= 1.5
        shot = _draw(viewer, qtbot)
    assert shot[..., :3].std() > 5  # the remaining layer is drawn


def test_opening_a_sample_guards_layer_removal(make_napari_viewer, qtbot) -> None:
    """Sample data opened before any dock widget: its viewer gets the guard too."""
    from napari_patchdx._napari.viewer import CanvasContextGuard

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-patchdx", "cxr")
    (guard,) = [cb for cb in viewer.layers.events.removing.callbacks if isinstance(cb, CanvasContextGuard)]
    xray, _boxes = list(viewer.layers)
    viewer.add_image(np.ones((32, 32), np.float32), scale=(20.0, 20.0), opacity=0.3, name="above")
    _draw(viewer, qtbot)
    viewer.layers.remove(xray)
    assert guard.calls == 1 and guard.canvas() is not None
    assert _draw(viewer, qtbot)[..., :3].std() > 1


def _infer(widget, qtbot, out: Path) -> None:
    widget.out_dir.value = out
    widget.results = None
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.worker is None and widget.results is not None, timeout=120_000)


def test_infer_delete_open_zoom_infer_ten_times(make_napari_viewer, qtbot, slides, checkpoint, tmp_path) -> None:
    """The sequence that crashed the viewer 5 times out of 5: run inference on a slide, delete all layers, open
    another slide, zoom, run inference again. Even rounds delete after the run, bottom layer first (the slide under
    its heatmap); odd rounds delete everything with napari's "delete selected layers" while the heatmap fills in."""
    from napari_patchdx._napari.viewer import guard_layer_removal

    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-patchdx", "Run inference")
    widget.checkpoints.value = [checkpoint]
    widget.tta.value = False
    widget.device.value = "cpu"
    widget.batch_size.value = 64
    stopped: list[str] = []
    for round_ in range(10):
        first, second = slides[round_ % 2], slides[(round_ + 1) % 2]
        viewer.open(str(first), plugin="napari-patchdx")
        widget.inputs.slides.value = [first.stem]
        if round_ % 2 == 0:
            _infer(widget, qtbot, tmp_path / f"{round_}a")
            assert [layer.name for layer in _heatmaps(viewer)] == [f"{first.stem} heatmap"]
            _draw(viewer, qtbot)
            for layer in list(viewer.layers):  # slide, ground truth, heatmap: each removal then a draw
                viewer.layers.remove(layer)
                _draw(viewer, qtbot)
        else:
            widget.tta.value = True  # 8 orientations: still running when its first rows are shown
            widget.out_dir.value = tmp_path / f"{round_}a"
            widget.runner.run_button.clicked.emit()
            qtbot.waitUntil(lambda: bool(_heatmaps(viewer)), timeout=60_000)
            viewer.layers.select_all()
            viewer.layers.remove_selected()
            qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60_000)
            assert len(viewer.layers) == 0, "a deleted layer came back"  # the run neither re-adds nor updates it
            widget.tta.value = False
            stopped.append(widget.runner.status.value)
            assert stopped[-1] in ("stopped: its input layers were removed", "finished"), stopped[-1]
        assert len(viewer.layers) == 0
        viewer.open(str(second), plugin="napari-patchdx")
        _camera(viewer).zoom *= 2
        _draw(viewer, qtbot)
        widget.inputs.slides.value = [second.stem]
        _infer(widget, qtbot, tmp_path / f"{round_}b")
        (heat,) = _heatmaps(viewer)
        assert heat.name == f"{second.stem} heatmap" and np.isfinite(heat.data).any()
        _camera(viewer).zoom *= 0.5
        assert _draw(viewer, qtbot)[..., :3].std() > 5
        viewer.layers.select_all()
        viewer.layers.remove_selected()
    assert guard_layer_removal(viewer).calls >= 10 * 6
    assert "stopped: its input layers were removed" in stopped  # (a run may finish before its layers are deleted)


def test_a_run_stops_when_its_input_layers_are_deleted(make_napari_viewer, qtbot) -> None:
    """JobRunner.stop_when_removed: deleting the layers a job works on stops the job, and says why."""
    import time

    from napari_patchdx._napari.panel import JobRunner
    from napari_patchdx.progress import Progress

    viewer = make_napari_viewer()
    kept = viewer.add_image(np.zeros((8, 8), np.float32), name="kept")
    inputs = [viewer.add_image(np.zeros((8, 8), np.float32), name=f"in{i}") for i in range(2)]
    runner = JobRunner("Run")
    steps = []

    def endless():
        while True:
            steps.append(1)
            time.sleep(0.01)
            yield Progress(len(steps), 10**6, "working")

    runner.start(endless, on_done=lambda _: None)
    runner.stop_when_removed(viewer, inputs)
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=10_000)
    viewer.layers.remove(inputs[0])
    viewer.layers.remove(kept)
    qtbot.wait(50)
    assert runner.worker is not None and not runner.stop_requested  # one input is left: the job goes on
    viewer.layers.remove(inputs[1])
    qtbot.waitUntil(lambda: runner.worker is None, timeout=10_000)
    assert runner.status.value == "stopped: its input layers were removed"
    assert runner.run_button.enabled and not runner.stop_button.enabled


def _status(widget):
    """A dock widget's status line (the Ground truth widget has no Run button)."""
    return widget.runner.status if hasattr(widget, "runner") else widget.status


def test_every_widget_fits_a_1600_by_1000_window(make_napari_viewer, qtbot, slides) -> None:
    """Every dock widget in one 1600 x 1000 window beside the canvas; 500-character errors wrap instead of widening
    the docks; the window keeps its size and the canvas most of the width."""
    from napari_patchdx._napari.panel import StatusLine

    viewer = make_napari_viewer(show=True)
    window = viewer.window
    viewer.open(str(slides[0]), plugin="napari-patchdx")
    docks = [window.add_plugin_dock_widget("napari-patchdx", name) for name in WIDGETS]
    main = docks[0][0].parentWidget()  # the QMainWindow, through Qt's public parent link
    main.resize(1600, 1000)
    qtbot.wait(100)
    before = (main.width(), main.height())
    widths = [dock.width() for dock, _ in docks]
    canvas = _draw(viewer, qtbot).shape[1]
    assert before == (1600, 1000) and max(widths) <= 480 and canvas >= 800, (before, widths, canvas)
    lines = []
    for _, widget in docks:
        lines += [w for w in widget.body if isinstance(w, StatusLine)]
        lines += [w for w in getattr(widget, "runner", ()) if isinstance(w, StatusLine)]
        _status(widget).value = LONG_ERROR
    assert len(LONG_ERROR) > 500 and len(lines) >= 9
    for line in lines:
        line.value = LONG_ERROR
    qtbot.wait(100)
    assert (main.width(), main.height()) == before
    assert [dock.width() for dock, _ in docks] == widths
    assert _draw(viewer, qtbot).shape[1] == canvas
    for dock, widget in docks:
        status = _status(widget).native
        assert status.wordWrap() and status.height() > 3 * status.fontMetrics().height()  # wrapped onto lines
        assert dock.minimumSizeHint().height() < 400  # the panel scrolls instead of making the window taller


def test_tables_show_their_rows_with_one_number_format(make_napari_viewer) -> None:
    from magicgui.widgets import Table

    from napari_patchdx._napari.panel import Decimals, format_cell, show_table_rows

    cells = (0.0363, 0.1141, "0.036301", np.float32(0.5), 3, np.int64(7), "001", float("nan"), "tumor_a", True, None)
    assert [format_cell(v) for v in cells] == [
        "0.0363",
        "0.1141",
        "0.0363",
        "0.5000",
        "3",
        "7",
        "001",
        "",
        "tumor_a",
        "True",
        "",
    ]
    viewer = make_napari_viewer()
    data = [[0.0363, 0.1141], [0.5, 1e-5], [0.25, 0.75]]
    table = Table(value={"data": data, "index": [0, 1, 2], "columns": ["a", "b"]})
    viewer.window.add_dock_widget(table)
    show_table_rows(table)
    view = table.native
    delegate = view.itemDelegate()
    assert isinstance(delegate, Decimals)
    model = view.model()
    texts = [delegate.displayText(model.data(model.index(r, c)), None) for r in range(3) for c in range(2)]
    assert texts == ["0.0363", "0.1141", "0.5000", "0.0000", "0.2500", "0.7500"]
    rows = sum(view.rowHeight(r) for r in range(3))
    assert view.minimumHeight() >= rows + view.horizontalHeader().sizeHint().height()


def test_input_errors_show_in_the_status_line(make_napari_viewer) -> None:
    """Run with nothing chosen: each widget says what to do in its status line; the notification's first line is
    the message (no blank line)."""
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    expected = {
        "Sample patches": "choose slide layers or a folder of slides first",
        "Train": "choose slide layers first",
        "Run inference": "choose a checkpoint first",
        "Evaluate": "choose heatmap layers first",
        "Run pipeline": "choose a pipeline configuration (YAML) first",
    }
    for name, message in expected.items():
        _, widget = viewer.window.add_plugin_dock_widget("napari-patchdx", name)
        seen = len(notification_manager.records)
        widget.runner.run_button.clicked.emit()
        assert widget.runner.worker is None
        status = widget.runner.status.value
        assert status.startswith("error: ") and message in status, (name, status)
        note = str(notification_manager.records[seen].message)
        assert note.splitlines()[0].strip() and message in note, (name, note)


def test_viewer_process_keeps_triton_out_whatever_imports_torchvision_later() -> None:
    """Importing the napari adapters before torch keeps triton (whose LLVM clashes with Mesa's) out of the process."""
    code = (
        "import sys; import napari_patchdx._napari; import torchvision; "
        "assert sys.modules.get('triton') is None, sys.modules.get('triton'); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
