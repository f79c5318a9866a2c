"""The "Run pipeline" dock widget: a saved configuration run headless-style in a worker, results loaded as layers.

Thin by design: it reads a YAML configuration (:meth:`napari_patchdx.pipeline.RunConfig.load`), optionally points
it at another input folder or run directory, and drives :func:`napari_patchdx.pipeline.run_job` through the shared
:class:`~napari_patchdx._napari.panel.JobRunner` (progress bar, status line, Stop). Stop is graceful: the
current stage stops at its next progress report (training first saves a resumable checkpoint) and the next run
goes on from there. When the run ends, :meth:`RunResult.layers` (slides, ground truth, heatmaps and lesion
points; or X-rays, lesion boxes and CAMs) are added to the viewer, replacing layers of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import CheckBox, FileEdit

from .panel import INPUT_ERRORS, JobRunner, Panel, StatusLine
from .viewer import add_layers


def _path(widget: FileEdit) -> Path | None:
    text = str(widget.value)
    return None if text in ("", ".") else Path(text)


class PipelineWidget(Panel):
    """Run a saved pipeline configuration (on another input folder / run directory if chosen) and show the results."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.config = FileEdit(label="configuration", mode="r", filter="*.yaml *.yml *.json", value="")
        self.input = FileEdit(label="input folder (optional)", mode="d", value="")
        self.run_dir = FileEdit(label="run folder (optional)", mode="d", value="")
        self.force = CheckBox(label="re-run every stage", value=False)
        self.runner = JobRunner("Run pipeline")
        self.stages = StatusLine()
        self.metrics = StatusLine()
        super().__init__(
            viewer, [self.config, self.input, self.run_dir, self.force, self.runner, self.stages, self.metrics]
        )
        self.result: Any = None
        self.runner.run_button.changed.connect(self.run)

    def run(self) -> None:
        """Validate the configuration (errors are shown at once in the status line, before any work) and start the
        run in a worker."""
        from ..pipeline.config import RunConfig
        from ..pipeline.runner import run_job

        if self.runner.worker is not None:
            return
        path = _path(self.config)
        if path is None:
            self.runner.fail("choose a pipeline configuration (YAML) first")
            return
        overrides: dict[str, Any] = {}
        if (folder := _path(self.input)) is not None:
            overrides["input"] = str(folder)
        try:
            config = RunConfig.load(path, **overrides)
        except INPUT_ERRORS as exc:
            self.runner.fail(exc)
            return
        run_dir = _path(self.run_dir)
        force = bool(self.force.value)
        self.result = None
        self.stages.value = ""
        self.metrics.value = ""
        self.runner.start(
            lambda: run_job(config, run_dir=run_dir, force=force, stop=lambda: self.runner.stop_requested),
            self._on_done,
            graceful_stop=True,
        )

    def _on_done(self, result: Any) -> None:
        from ..pipeline.results import headline

        self.result = result
        self.stages.value = ", ".join(f"{stage} {action}" for stage, action in result.stages.items())
        if result.cancelled:
            self.runner.status.value = "stopped: the next run resumes where this one stopped"
            return
        shown = headline(result.metrics)
        self.metrics.value = "\n".join(f"{k}: {v}" for k, v in list(shown.items())[:6])
        layers = result.layers()
        for _, kwargs, _ in layers:
            name = kwargs.get("name")
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        add_layers(self.viewer, layers)
        where = f"report: {result.report}" if result.report is not None else f"run folder: {result.run_dir}"
        self.runner.status.value = f"done; {where}"
