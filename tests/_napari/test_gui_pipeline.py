"""The "Run pipeline" widget in a real napari Viewer: a saved configuration, Stop, resume, result layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def saved_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chest X-ray cohort and a YAML configuration beside it (relative input path), no run folder."""
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    root = tmp_path_factory.mktemp("gui_pipeline")
    make_cxr_cohort(root / "cohort", n=12, seed=4, size=64, dicom=False)
    config = {
        "track": "cxr",
        "input": "cohort",
        "splits": [0.5, 0.25, 0.25],
        "sample": {"n": 16},
        "train": {
            "arch": "small",
            "working_size": 64,
            "patch_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "val_patches": 16,
            "optimizer": "adam",
            "num_workers": 0,
        },
        "evaluate": {"n_boot": 20},
    }
    path = root / "xray.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pipeline_widget_runs_a_saved_config_stops_resumes_and_loads_layers(
    make_napari_viewer, qtbot, saved_config: Path, tmp_path: Path
) -> None:
    from napari_patchdx._napari.pipeline_widget import PipelineWidget

    viewer = make_napari_viewer(show=True)
    widget = PipelineWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.config.value = saved_config
    widget.run_dir.value = tmp_path / "run"

    # Stop right away: the running stage stops at its next progress report, nothing is loaded
    widget.runner.run_button.clicked.emit()
    widget.runner.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=120_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10_000)
    assert widget.result.cancelled and "cancelled" in widget.result.stages.values()
    assert "stopped" in widget.runner.status.value
    assert len(viewer.layers) == 0

    # Run again: the stopped stage resumes or restarts, the rest runs, the results appear as layers
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.result is not None and not widget.result.cancelled, timeout=300_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10_000)
    result = widget.result
    assert result.report is not None and result.report.is_file()
    assert "mean_auroc" in widget.metrics.value and "done" in widget.runner.status.value
    kinds = [layer.metadata["patchdx"]["kind"] for layer in viewer.layers]
    assert kinds.count("cxr") == 2 and kinds.count("cam") == 2 * 5  # the two test images, five classes each
    xray = next(layer for layer in viewer.layers if layer.metadata["patchdx"]["kind"] == "cxr")
    cam = next(layer for layer in viewer.layers if layer.metadata["patchdx"]["kind"] == "cam")
    assert cam.data.shape == xray.data.shape  # CAMs at the X-ray's native size ...
    np.testing.assert_allclose(cam.data_to_world([10, 20]), xray.data_to_world([10, 20]))  # ... and aligned

    # a third run finds everything current and loads the same layers again (replacing, not duplicating them)
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.worker is None and widget.result is not result, timeout=120_000)
    assert set(widget.result.stages.values()) == {"skipped"}
    assert len(viewer.layers) == len(kinds)

    # from the napari console: run() (headless, no viewer in the core), then the run's layers into the viewer
    from napari_patchdx import run
    from napari_patchdx._napari.viewer import add_run_layers

    viewer.layers.clear()
    again = run(saved_config, run_dir=tmp_path / "run")
    assert set(again.stages.values()) == {"skipped"}
    added = add_run_layers(viewer, again)
    assert (
        [layer.metadata["patchdx"]["kind"] for layer in viewer.layers]
        == kinds
        == [layer.metadata["patchdx"]["kind"] for layer in added]
    )

    # a bad configuration is reported at once, before any work
    bad = tmp_path / "bad.yaml"
    bad.write_text("track: cxr\ninput: cohort\ntrian: {}\n")
    widget.config.value = bad
    widget.runner.run_button.clicked.emit()
    assert "did you mean 'train'" in widget.runner.status.value and widget.runner.worker is None
