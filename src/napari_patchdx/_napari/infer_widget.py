"""Dock widget "Run inference": slide heatmaps and chest X-ray CAMs from trained checkpoints, shown as they come.

Thin, like the other widgets: it collects parameters, checks them (a clear message in the widget and a napari
notification, never a traceback), and runs the core jobs of :mod:`napari_patchdx.inference` in a napari worker through
:class:`~napari_patchdx._napari.panel.JobRunner` (progress bar, Stop).

* Slides: :func:`~napari_patchdx.inference.distributed_heatmaps.heatmaps_job` (the job the command line and
  ``run()`` use), one slide after another. Each slide's heatmap layer appears with the slide's first rows (NaN,
  i.e. transparent, where not yet computed), on the grid the job computes, and fills in band by band from the rows
  the job passes on; the layer is repainted at most every :attr:`InferenceWidget.refresh_interval` seconds, plus
  once at the end with the written heatmap.
* Chest X-rays: :func:`~napari_patchdx.inference.xray_job.predict_xrays_job`; each image gets one CAM layer per class
  (probability in the layer name and metadata) and a row in the widget's probability table; an X-ray of a cohort
  gets its ground-truth boxes layer above its CAMs (the one opened with it, or a new one).

A slide or X-ray that cannot be read fails alone: the others run, then the error shows in the status line.
Stopping keeps what is written: an interrupted slide resumes where it stopped on the next run (with "reuse /
resume" on), a finished one is loaded instead of recomputed. Deleting layers while a run goes on is safe: a deleted
heatmap layer is neither updated nor added back, an input whose layer was deleted gets no result layers, and a run
whose input layers are all deleted stops (:meth:`~napari_patchdx._napari.panel.JobRunner.stop_when_removed`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Select, Table
from napari.utils.notifications import show_warning

from ..errors import ConfigError, InputFileError
from ..inference.settings import InferSettings
from ..io.detect import detect_kind, slides_in_folder
from ..io.names import file_name
from ..layerdata import cam_layers, heatmap_layer
from ..progress import ItemReport, Progress
from .controls import control_value, setting_control
from .cxr_truth_widget import truth_layer_for
from .panel import INPUT_ERRORS, JobRunner, Panel, StatusLine, layers_of_kind, show_table_rows
from .session import offer_files, session_of
from .slide_inputs import SlideInputs
from .viewer import add_layers

if TYPE_CHECKING:
    from ..inference.heatmaps import HeatmapResult, HeatmapRows
    from ..inference.xray_job import XrayInput, XrayOutcome

__all__ = ["Failure", "InferenceWidget", "LiveHeatmap"]


@dataclass(frozen=True)
class _Plan:
    track: str  # "slides" or "xrays"
    inputs: list[Any]  # slide Paths or XrayInput items
    checkpoints: list[Path]
    out_dir: Path


@dataclass(frozen=True)
class Failure:
    """Input ``source`` (a file or layer name) could not be processed: ``message`` says why."""

    index: int
    source: str
    message: str


# ---------------------------------------------------------------------------------------------------------------
# the live heatmap layer
# ---------------------------------------------------------------------------------------------------------------


class LiveHeatmap:
    """A heatmap Image layer filled band by band and repainted at most every ``interval`` seconds.

    :meth:`update` writes rows into the layer's array at once (cheap) but repaints only when ``interval`` seconds
    (by ``clock``) have passed since the last repaint, so fast bands do not flood the canvas; :meth:`finish`
    installs the finished heatmap and repaints once more.
    """

    def __init__(self, layer: Any, interval: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.layer = layer
        self.interval = float(interval)
        self.clock = clock
        self.refreshes = 0
        self.rows_received = 0
        self._last = -math.inf

    def update(self, row0: int, block: np.ndarray) -> bool:
        """Write heatmap rows ``row0 .. row0 + len(block)``; returns whether the layer was repainted.

        Rows that do not fit the layer (a grid other than the expected one) are ignored: :meth:`finish` shows them.
        """
        data = self.layer.data
        rows = int(block.shape[0])
        if block.ndim != 2 or block.shape[1] != data.shape[1] or row0 < 0 or row0 + rows > data.shape[0]:
            return False
        data[row0 : row0 + rows] = block
        self.rows_received += rows
        now = self.clock()
        if now - self._last < self.interval:
            return False
        self._repaint(now)
        return True

    def finish(self, result: HeatmapResult) -> None:
        """Show the finished heatmap (values, grid and file) and repaint."""
        data = np.asarray(result.heatmap, dtype=np.float32)
        transform = result.grid.napari()
        self.layer.scale = transform["scale"]
        self.layer.translate = transform["translate"]
        meta = dict(self.layer.metadata.get("patchdx", {}))
        meta.update(
            grid=result.grid.to_dict(),
            mpp=result.grid.mpp,
            path=str(result.path),
            unreadable=[[int(v) for v in region] for region in result.unreadable],
        )
        self.layer.metadata = {**self.layer.metadata, "patchdx": meta}
        self.layer.data = data  # emits the data event and repaints
        self.refreshes += 1
        self._last = self.clock()

    def _repaint(self, now: float) -> None:
        self.layer.refresh()
        self.refreshes += 1
        self._last = now


# ---------------------------------------------------------------------------------------------------------------
# the widget
# ---------------------------------------------------------------------------------------------------------------


class InferenceWidget(Panel):
    """Run inference on slide or chest X-ray layers (or a folder) with one or several checkpoints."""

    #: seconds between repaints of a heatmap layer that is filling in
    refresh_interval: float = 0.5

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from ..devices import available_devices

        self.viewer = viewer
        self.inputs = SlideInputs(viewer, truth=False)
        self.xrays = Select(label="chest X-rays", choices=self._xray_names, allow_multiple=True)
        self.folder = FileEdit(label="or folder", mode="d", nullable=True)
        self.checkpoints = FileEdit(label="checkpoint(s)", mode="rm", filter="*.json *.safetensors")
        self.tta = setting_control(InferSettings, "tta", "test-time augmentation (8 orientations)")
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.stride = setting_control(InferSettings, "stride", "stride (patch px, 0 = centre region)", min=0, max=4096)
        self.batch_size = setting_control(InferSettings, "batch_size", "batch size", min=1, max=4096)
        self.resume = CheckBox(label="reuse finished / resume interrupted", value=True)
        self.out_dir = FileEdit(label="output folder", mode="d", nullable=True)
        self.runner = JobRunner("Run inference")
        self.summary = StatusLine()
        self.probabilities = Table(value=None, label="probabilities")
        self.probabilities.visible = False
        super().__init__(
            viewer,
            [
                self.inputs,
                self.xrays,
                self.folder,
                self.checkpoints,
                self.tta,
                self.device,
                self.stride,
                self.batch_size,
                self.resume,
                self.out_dir,
                self.runner,
                self.summary,
                self.probabilities,
            ],
        )
        self.results: list[Any] | None = None
        self._track = "slides"
        self.live: dict[int, LiveHeatmap] = {}
        self._outcomes: dict[int, Any] = {}
        self._labels: list[str] = []
        self._table_rows: dict[str, list[float]] = {}
        self._table_classes: list[str] = []
        #: the layer of each input of the current run (empty for a folder run)
        self._input_layers: list[Any] = []
        self.runner.run_button.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self._refresh_choices)
        viewer.layers.events.removed.connect(self._refresh_choices)
        self.session = session_of(viewer)
        # the checkpoint Train (or a corrections round) just wrote, and an output folder in its run folder
        offer_files(
            self.session,
            {"checkpoint": (self.checkpoints, Path), "run_dir": (self.out_dir, lambda run: run / "heatmaps")},
        )

    # -- inputs ------------------------------------------------------------------------------------------------
    def _xray_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in layers_of_kind(self.viewer, "cxr")]

    def _refresh_choices(self, _: Any = None) -> None:
        self.xrays.reset_choices()

    @staticmethod
    def _path_value(widget: FileEdit) -> Path | None:
        """The widget's path, or None when its field is empty."""
        value = widget.value
        return None if value is None or str(value) in ("", ".") else Path(value)

    def _xray_from_layer(self, layer: Any) -> XrayInput:
        from ..inference.xray_job import XrayInput

        meta = layer.metadata.get("patchdx", {})
        spacing = meta.get("spacing")
        if spacing is None and not np.allclose(layer.scale[-2:], 1.0):
            spacing = [float(s) for s in layer.scale[-2:]]
        spacing_t = None if spacing is None else (float(spacing[0]), float(spacing[1]))
        path = meta.get("path")
        if path:
            return XrayInput(Path(path), file_name(path), layer.name, spacing_t)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in layer.name).strip("_") or "x-ray"
        return XrayInput(np.asarray(layer.data, dtype=np.float32), safe, layer.name, spacing_t)

    def _inputs(self, channels: int) -> tuple[list[Path], list[XrayInput]]:
        """(slides, X-rays) to run: the folder's (those the checkpoint takes), or the chosen layers."""
        folder = self._path_value(self.folder)
        if folder is not None:
            if not folder.is_dir():
                raise InputFileError(folder, "is not a folder")
            if channels == 3:
                return [p for p, _ in slides_in_folder(folder)], []
            from ..inference.xray_job import XrayInput

            files = sorted(p for p in folder.iterdir() if p.is_file() and detect_kind(p) == "cxr")
            return [], [XrayInput.of(p) for p in files]
        slides = self.inputs.paths()
        xrays = [
            self._xray_from_layer(self.viewer.layers[name]) for name in self.xrays.value if name in self.viewer.layers
        ]
        return slides, xrays

    def _plan(self) -> _Plan:
        """Check the inputs before anything runs; raises PatchdxError with a message for the user."""
        from ..models.checkpoint import read_checkpoint_meta

        checkpoints = [Path(p) for p in (self.checkpoints.value or ()) if str(p) not in ("", ".")]
        if not checkpoints:
            raise ConfigError("choose a checkpoint first (the <name>.json or <name>.safetensors of a trained model)")
        metas = [read_checkpoint_meta(p) for p in checkpoints]
        channels = int(metas[0]["in_channels"])
        slides, xrays = self._inputs(channels)
        if not slides and not xrays:
            folder = self._path_value(self.folder)
            if folder is not None:
                kind = "slides" if channels == 3 else "chest X-rays"
                raise InputFileError(folder, f"holds no {kind} (the checkpoint takes {channels}-channel input)")
            raise ConfigError("choose slide or chest X-ray layers (or a folder) first")
        if slides and xrays:
            raise ConfigError("run slides and chest X-rays separately: they need different checkpoints")
        need, what = (3, "slides (RGB)") if slides else (1, "chest X-rays (grey)")
        for path, meta in zip(checkpoints, metas, strict=True):
            if int(meta["in_channels"]) != need:
                raise InputFileError(
                    path,
                    f"is a {meta['in_channels']}-channel checkpoint, but {what} need a {need}-channel one: "
                    "incompatible checkpoint",
                )
        if slides:
            for path, meta in zip(checkpoints[1:], metas[1:], strict=True):
                for key in ("input_size", "center_size", "mpp"):
                    if meta.get(key) != metas[0].get(key):
                        raise InputFileError(
                            path,
                            f"{key} {meta.get(key)!r} differs from {checkpoints[0].name}'s {metas[0].get(key)!r}: "
                            "an ensemble must read the same patches",
                        )
        elif len(checkpoints) > 1:
            raise ConfigError("chest X-ray inference takes one checkpoint (ensembles are for slides)")
        out_dir = self._path_value(self.out_dir)
        if out_dir is None:
            raise ConfigError("choose an output folder (heatmaps and CAMs are written there)")
        if out_dir.exists() and not out_dir.is_dir():
            raise InputFileError(out_dir, "is a file, not an output folder")
        return _Plan("slides" if slides else "xrays", list(slides or xrays), checkpoints, out_dir)

    # -- running -----------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Check the inputs and start inference in a worker (errors go to the status line and a notification)."""
        from ..devices import resolve_device

        if self.runner.worker is not None:
            return
        try:
            plan = self._plan()
            device = str(resolve_device(str(self.device.value)))
        except INPUT_ERRORS as exc:
            self.runner.fail(exc)
            return
        self._input_layers = []
        if self._path_value(self.folder) is None:
            if plan.track == "slides":
                self._input_layers = self.inputs.chosen_slides()
            else:
                names = self.xrays.value
                self._input_layers = [self.viewer.layers[name] for name in names if name in self.viewer.layers]
        self._track = plan.track
        self.results = None
        self.live = {}
        self.summary.value = ""
        self._outcomes = {}
        if plan.track == "slides":
            from ..inference.distributed_heatmaps import heatmaps_job

            kwargs = {
                "device": device,
                "tta": bool(self.tta.value),
                "stride": control_value(self.stride, InferSettings, "stride"),
                "batch_size": int(self.batch_size.value),
                "resume": bool(self.resume.value),
                "mpp": self.inputs.mpp_value(),
            }
            factory = functools.partial(heatmaps_job, plan.inputs, plan.checkpoints, plan.out_dir, **kwargs)
        else:
            from ..inference.xray_job import predict_xrays_job

            self._table_rows = {}
            self._table_classes = []
            factory = functools.partial(
                predict_xrays_job, plan.inputs, plan.checkpoints[0], plan.out_dir, device=device
            )
        self._labels = [p.name if isinstance(p, Path) else p.shown for p in plan.inputs]
        self.runner.start(factory, self._on_done, self._on_partial, on_error=self._on_error)
        if self._input_layers:
            self.runner.stop_when_removed(self.viewer, self._input_layers)

    def _input_gone(self, index: int) -> bool:
        """Whether input ``index`` came from a layer that has since been deleted (it then gets no result layers)."""
        layers = self._input_layers
        return index < len(layers) and layers[index] not in self.viewer.layers

    def _on_partial(self, report: Progress) -> None:
        part = report.partial
        if not isinstance(part, ItemReport):
            return
        if part.kind == "partial":
            self._show_rows(part.index, part.value)
        elif part.kind == "failed":
            self._outcomes[part.index] = Failure(part.index, self._labels[part.index], str(part.value))
        elif self._track == "slides":
            self._outcomes[part.index] = part.value
            self._finish_heatmap(part.index, part.value)
        else:
            self._outcomes[part.index] = part.value
            if not self._input_gone(part.index):
                self._show_cams(part.value)

    def _replace_own(self, kind: str, match: Callable[[dict[str, Any], Any], bool]) -> None:
        """Remove this plugin's earlier result layers of ``kind`` that ``match`` (a re-run replaces them)."""
        for layer in list(self.viewer.layers):
            meta = layer.metadata.get("patchdx", {})
            if meta.get("kind") == kind and match(meta, layer):
                self.viewer.layers.remove(layer)

    def _show_rows(self, index: int, rows: HeatmapRows) -> None:
        """Heatmap rows of slide ``index``: its layer is inserted (NaN-filled, on the job's grid) with the first;
        rows for a heatmap layer the user deleted, or of a slide whose layer was deleted, are not shown."""
        live = self.live.get(index)
        if live is None:
            if self._input_gone(index):
                return
            name = f"{file_name(rows.slide)} heatmap"
            self._replace_own("heatmap", lambda meta, layer: layer.name == name)
            empty = np.full(rows.grid.shape, np.nan, dtype=np.float32)
            (layer,) = add_layers(self.viewer, [heatmap_layer(empty, rows.grid, name=name, slide=rows.slide)])
            live = self.live[index] = LiveHeatmap(layer, self.refresh_interval)
        if live.layer in self.viewer.layers:
            live.update(rows.row0, rows.block)

    def _finish_heatmap(self, index: int, result: HeatmapResult) -> None:
        """Slide ``index``'s finished heatmap: into its live layer, or (loaded, not computed) into a new one. A live
        layer the user deleted is not added back, nor a layer for a slide whose layer was deleted: the heatmap file
        is written either way."""
        live = self.live.get(index)
        if live is not None:
            if live.layer in self.viewer.layers:
                live.finish(result)
            return
        if self._input_gone(index):
            return
        name = f"{file_name(result.slide)} heatmap"
        self._replace_own("heatmap", lambda meta, layer: layer.name == name)
        data, kwargs, kind = heatmap_layer(
            result.heatmap, result.grid, name=name, slide=result.slide, path=result.path,
            unreadable=result.unreadable,
        )  # fmt: skip
        (layer,) = add_layers(self.viewer, [(data, kwargs, kind)])
        self.live[index] = LiveHeatmap(layer, self.refresh_interval)

    def _show_cams(self, part: XrayOutcome) -> None:
        label = part.input.shown
        self._replace_own("cam", lambda meta, layer: meta.get("image") == label)
        add_layers(self.viewer, cam_layers(part.prediction, name=label, spacing=part.input.spacing, path=part.path))
        self._truth_above_cams(part)
        classes = [str(c) for c in part.prediction.classes]
        if classes != self._table_classes:
            self._table_classes = classes
            self._table_rows = {}
        self._table_rows[label] = [round(float(p), 4) for p in part.prediction.probabilities]
        self.probabilities.value = {
            "data": list(self._table_rows.values()),
            "index": list(self._table_rows),
            "columns": classes,
        }
        self.probabilities.visible = True
        show_table_rows(self.probabilities)

    def _truth_above_cams(self, part: XrayOutcome) -> None:
        """The ground-truth boxes of an X-ray of a cohort go above its CAMs: its boxes layer, moved to the top, or
        a new one (:func:`~napari_patchdx._napari.cxr_truth_widget.truth_layer_for`). A broken cohort table only
        gives a warning: the CAMs are shown either way."""
        source = part.input.source
        if not isinstance(source, Path):
            return
        try:
            truth = truth_layer_for(
                self.viewer,
                source,
                spacing=part.input.spacing,
                shape=tuple(int(v) for v in np.shape(part.prediction.cams)[-2:]),
                name=f"{part.input.shown} lesion boxes",
            )
        except INPUT_ERRORS as exc:
            show_warning(f"napari-patchdx: lesion boxes of {part.input.shown} not shown: {exc}")
            return
        if truth is not None:
            self.viewer.layers.move(self.viewer.layers.index(truth), len(self.viewer.layers))

    def _on_done(self, outcomes: list[Any]) -> None:
        self._finish_run()

    def _on_error(self, exc: Exception) -> None:
        self._finish_run()

    def _finish_run(self) -> None:
        """The run ended: :attr:`results` holds each input's outcome (a result or a :class:`Failure`), in order."""
        self.results = [self._outcomes[i] for i in sorted(self._outcomes)]
        failed = sum(isinstance(o, Failure) for o in self.results)
        done = len(self.results) - failed
        what = "slide heatmap" if self._track == "slides" else "chest X-ray"
        text = f"{done} {what}{'s' if done != 1 else ''} done"
        if failed:
            text += f", {failed} failed"
        self.summary.value = text  # the outcome; the status line says how the run ended
        if not failed and not self.runner.status.value.startswith("error"):
            self.runner.status.value = "finished"
