"""Dock widgets. Thin: they collect parameters, run a core job in a napari worker and show its results.

Every dock widget is a :class:`Panel` (scrolls vertically, never widens: :class:`StatusLine` text wraps), shows
tables with :func:`show_table_rows`, and runs its job through a :class:`JobRunner` (input errors in its status line,
a job stopped when its layers are deleted).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    Table,
    Widget,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy, QStyledItemDelegate, QWidget

from ..errors import ConfigError, PatchdxError
from ..io.annotations.model import AnnotationSet
from ..io.detect import annotations_beside, slides_in_folder
from ..io.names import file_name
from ..layerdata import boxes_layer, patches_layer, tissue_layer
from ..progress import Progress
from ..sampling.splits import hold_out_slides
from .viewer import add_layers, guard_layer_removal
from .writers import shapes_to_annotations

#: errors a widget reports in its status line (a message for the user) instead of raising
INPUT_ERRORS = (PatchdxError, OSError, ValueError)


def layers_of_kind(viewer: napari.Viewer, kind: str) -> list[Any]:
    """The viewer's layers that this plugin made or read as ``kind`` (``layer.metadata["patchdx"]["kind"]``)."""
    return [layer for layer in viewer.layers if layer.metadata.get("patchdx", {}).get("kind") == kind]


def truth_layer_names(viewer: napari.Viewer) -> list[str]:
    """Shapes layers that can hold ground-truth annotations (not the patch or lesion boxes the widgets draw)."""
    return [
        layer.name
        for layer in viewer.layers
        if isinstance(layer, napari.layers.Shapes)
        and layer.metadata.get("patchdx", {}).get("kind") not in ("patches", "boxes")
    ]


class StatusLine(Label):
    """A read-only, selectable text line that wraps (at spaces and after ``/``) and never widens its dock: its
    horizontal size policy is ``Ignored``, so the dock's width decides the line's."""

    def __init__(self, value: str = "", **kwargs: Any) -> None:
        super().__init__(value=value, **kwargs)
        native = self.native
        native.setWordWrap(True)
        native.setTextFormat(Qt.TextFormat.PlainText)
        native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        native.setMinimumWidth(0)


class Panel(Container):
    """The body of a dock widget: ``widgets`` in a vertically scrolling area, followed by a stretch.

    napari docks a magicgui widget's ``native`` (the widget that holds the layout), so the scroll area is built
    inside it: the panel's ``native`` holds only the scroll area, whose content (:attr:`body`, a
    :class:`~magicgui.widgets.Container`) holds the controls. The panel's minimum height is small (it scrolls), its
    minimum width is its controls' (it never scrolls sideways). Every panel installs
    :func:`~napari_patchdx._napari.viewer.guard_layer_removal` for ``viewer``.
    """

    def __init__(self, viewer: napari.Viewer, widgets: Sequence[Widget]) -> None:
        super().__init__(widgets=[])
        for widget in widgets:
            if isinstance(widget, Select):  # a list shows a few rows and scrolls, not the panel's height
                widget.native.setMaximumHeight(120)
        self.body = Container(widgets=list(widgets), scrollable=True)
        body_layout = self.body.native.layout()
        body_layout.addStretch(1)
        scroll = self.body.root_native_widget
        scroll.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        scroll.setMinimumHeight(120)
        layout = self.native.layout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        guard_layer_removal(viewer, self.native)

    def add_native(self, widget: QWidget) -> None:
        """Add a Qt widget (a plot) after the panel's controls."""
        layout = self.body.native.layout()
        layout.insertWidget(layout.count() - 1, widget)


def format_cell(value: Any, digits: int = 4) -> str:
    """A table cell's text: integers and digit strings as they are (an id ``"001"`` stays ``001``), other numbers
    with ``digits`` decimals (``0.0363``, never ``3.630e-02``), NaN as an empty cell, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, bool | numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        number = float(value)
    else:
        text = str(value).strip()
        if text.lstrip("+-").isdigit():
            return text
        try:
            number = float(text)
        except ValueError:
            return text
    return f"{number:.{digits}f}" if math.isfinite(number) else ""


class Decimals(QStyledItemDelegate):
    """Shows a table's cells with :func:`format_cell` (replaces magicgui's mix of fixed and scientific notation)."""

    def __init__(self, digits: int = 4, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.digits = int(digits)

    def displayText(self, value: Any, locale: Any) -> str:  # Qt's name
        return format_cell(value, self.digits)


def show_table_rows(table: Table, max_rows: int = 8, digits: int = 4) -> None:
    """Give ``table`` the height of its header and its first ``max_rows`` rows (at least one), and show its numbers
    with ``digits`` decimals; call again after its value changes."""
    view = table.native
    if not isinstance(view.itemDelegate(), Decimals):
        view.setItemDelegate(Decimals(digits, view))
    view.resizeRowsToContents()
    rows = min(view.rowCount(), max_rows)
    row_height = view.verticalHeader().defaultSectionSize()
    height = sum(view.rowHeight(i) for i in range(rows)) if rows else row_height
    height += view.horizontalHeader().sizeHint().height() + 2 * view.frameWidth()
    height += view.horizontalScrollBar().sizeHint().height()
    view.setMinimumHeight(height)


class JobRunner(Container):
    """Run / Stop buttons, a progress bar and a status line around a core job (a generator of Progress)."""

    def __init__(self, run_label: str) -> None:
        self.run_button = PushButton(text=run_label)
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000, label="progress")
        self.status = StatusLine()
        super().__init__(widgets=[self.run_button, self.stop_button, self.progress, self.status])
        self.worker: Any = None
        self.stop_requested = False
        self._graceful = False
        self._stopped_because = ""
        self._inputs: list[Any] = []
        self._viewer: Any = None
        self.stop_button.changed.connect(self.stop)

    def fail(self, error: BaseException | str) -> None:
        """Report an error: ``"error: <message>"`` in the status line and a napari notification with the message."""
        message = str(error).strip() or type(error).__name__
        self.status.value = f"error: {message}"
        self.progress.value = 0
        show_error(f"napari-patchdx: {message}")

    def start(
        self,
        job_factory: Any,
        on_done: Any,
        on_partial: Any = None,
        graceful_stop: bool = False,
        on_error: Any = None,
    ) -> None:
        """Start ``job_factory()`` in a thread worker; ``on_done(result)``, ``on_partial(report)`` and
        ``on_error(exception)`` (after the status line and a notification show it) run on the UI.

        With ``graceful_stop`` the job polls :attr:`stop_requested` itself (and returns normally, e.g. after saving
        a resumable checkpoint); otherwise Stop quits the worker at the job's next progress report.
        """
        self.stop_requested = False
        self._stopped_because = ""
        self._inputs = []
        self._graceful = graceful_stop
        self.run_button.enabled = False
        self.stop_button.enabled = True
        self.progress.value = 0
        self.status.value = "starting..."

        def job() -> Any:  # a generator function, so napari makes a GeneratorWorker (progress, quit)
            return (yield from job_factory())

        def errored(exc: Exception) -> None:
            self.fail(exc)
            if on_error is not None:
                on_error(exc)

        # connected at creation: a worker created without an `errored` handler also re-raises the job's error in a
        # Qt slot, which aborts a PyQt process that has no napari exception hook (scripts, embedding)
        worker = create_worker(job, _connect={"errored": errored}, _start_thread=False)

        def yielded(report: Progress) -> None:
            self.progress.value = int(1000 * report.fraction)
            if not self.stop_requested:
                self.status.value = report.message
            if on_partial is not None:
                on_partial(report)

        def finished() -> None:
            self.run_button.enabled = True
            self.stop_button.enabled = False
            self.worker = None
            self._inputs = []

        def aborted() -> None:
            self.status.value = f"stopped: {self._stopped_because}" if self._stopped_because else "stopped"

        worker.yielded.connect(yielded)
        worker.returned.connect(on_done)
        worker.aborted.connect(aborted)
        worker.finished.connect(finished)
        self.worker = worker
        worker.start()

    def stop(self) -> None:
        """Ask the running job to stop at its next progress report."""
        if self.worker is not None:
            self.status.value = "stopping..."
            self.stop_requested = True
            if not self._graceful:
                self.worker.quit()

    def stop_when_removed(self, viewer: napari.Viewer, layers: Sequence[Any]) -> None:
        """Stop the running job once none of ``layers`` (the layers it works on) is left in ``viewer``.

        A job whose input layers the user deleted then adds and updates no more layers; what it wrote stays on disk
        (resumable where the job is). Call after :meth:`start`; a new :meth:`start` forgets the layers.
        """
        self._inputs = list(layers)
        if self._viewer is None:
            self._viewer = viewer
            viewer.layers.events.removed.connect(self._input_removed)

    def _input_removed(self, event: Any = None) -> None:
        if self.worker is None or not self._inputs or self.stop_requested:
            return
        if any(layer in self._viewer.layers for layer in self._inputs):
            return
        self._inputs = []
        self._stopped_because = "its input layers were removed"
        self.stop()


class SamplePatchesWidget(Panel):
    """Sample patches from slide layers (or a folder of slides) with their ground truth, show them as boxes."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.slides = Select(label="slides", choices=self._slide_names, allow_multiple=True)
        self.truth = Select(label="ground truth", choices=self._truth_names, allow_multiple=True)
        self.folder = FileEdit(label="or folder", mode="d", value="")
        self.method = ComboBox(label="sampler", choices=["balanced", "grid"], value="balanced")
        self.n = SpinBox(label="patches", min=1, max=1_000_000, value=500)
        self.patch_size = SpinBox(label="patch size (px)", min=16, max=2048, value=299)
        self.center_size = SpinBox(label="centre region (px)", min=1, max=2048, value=128)
        self.mpp = FloatSpinBox(label="um/px (0 = native)", min=0.0, max=64.0, step=0.05, value=0.0)
        self.jitter = FloatSpinBox(label="jitter (px)", min=0.0, max=128.0, value=8.0)
        self.min_tissue = FloatSpinBox(label="min tissue (grid)", min=0.0, max=1.0, step=0.05, value=0.25)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.runner = JobRunner("Sample")
        self.counts = StatusLine()
        self.export_path = FileEdit(label="export table", mode="w", filter="*.csv *.parquet", value="")
        self.export_images = CheckBox(label="also patch PNGs (first 200)", value=False)
        self.export_button = PushButton(text="Export")
        super().__init__(
            viewer,
            [
                self.slides,
                self.truth,
                self.folder,
                self.method,
                self.n,
                self.patch_size,
                self.center_size,
                self.mpp,
                self.jitter,
                self.min_tissue,
                self.seed,
                self.runner,
                self.counts,
                self.export_path,
                self.export_images,
                self.export_button,
            ],
        )
        self.table: Any = None
        self.runner.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self.export)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)

    def _slide_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in layers_of_kind(self.viewer, "slide")]

    def _truth_names(self, _: Any = None) -> list[str]:
        return truth_layer_names(self.viewer)

    def _refresh(self, _: Any = None) -> None:
        self.slides.reset_choices()
        self.truth.reset_choices()

    def _folder_of_slides(self) -> Path | None:
        folder = Path(str(self.folder.value)) if str(self.folder.value) not in ("", ".") else None
        return folder if folder is not None and folder.is_dir() else None

    def _inputs(self) -> list[tuple[Path, Path | AnnotationSet | None]]:
        """(slide path, annotations) pairs from the chosen layers, or from the folder."""
        pairs: list[tuple[Path, Path | AnnotationSet | None]] = []
        folder = self._folder_of_slides()
        if folder is not None:
            return list(slides_in_folder(folder))
        truths = [self.viewer.layers[name] for name in self.truth.value]
        for name in self.slides.value:
            layer = self.viewer.layers[name]
            path = Path(layer.metadata["patchdx"]["path"])
            match = [t for t in truths if t.name.startswith(file_name(path))] or (
                truths if len(self.slides.value) == 1 else []
            )
            if match:
                shapes = match[0]
                annotations = shapes_to_annotations(shapes.data, shapes.as_layer_data_tuple()[1])
                pairs.append((path, annotations))
            else:
                pairs.append((path, annotations_beside(path)))
        return pairs

    def _cxr_folder(self) -> Path | None:
        folder = Path(str(self.folder.value)) if str(self.folder.value) not in ("", ".") else None
        return folder if folder is not None and (folder / "labels.csv").is_file() else None

    def run(self) -> None:
        """Start sampling in a worker: slides (layers or a folder), or a chest X-ray cohort folder (labels.csv).

        Input errors go to the status line (and a notification); nothing starts.
        """
        if self.runner.worker is not None:
            return
        try:
            self._start()
        except INPUT_ERRORS as exc:
            self.runner.fail(exc)

    def _start(self) -> None:
        from ..sampling.job import sample_cxr_job, sample_slides_job
        from ..sampling.patches import PatchGeometry

        cxr_root = self._cxr_folder()
        if cxr_root is not None:
            kwargs_cxr = {
                "n": int(self.n.value),
                "patch_size": int(self.patch_size.value),
                "seed": int(self.seed.value),
            }
            self.table = None
            self.runner.start(lambda: sample_cxr_job(cxr_root, **kwargs_cxr), self._on_done)
            return
        pairs = self._inputs()
        if not pairs:
            raise ConfigError("choose slide layers or a folder of slides first")
        geometry = PatchGeometry(int(self.patch_size.value), int(self.center_size.value), float(self.mpp.value) or None)
        method = str(self.method.value)
        kwargs = {
            "method": method,
            "n": int(self.n.value),
            "geometry": geometry,
            "seed": int(self.seed.value),
            "jitter": float(self.jitter.value),
            "min_tissue": float(self.min_tissue.value),
        }
        self.table = None
        self.runner.start(lambda: sample_slides_job(pairs, **kwargs), self._on_done, self._on_partial)
        chosen = [self.viewer.layers[name] for name in self.slides.value if name in self.viewer.layers]
        if chosen and not self._folder_of_slides():
            self.runner.stop_when_removed(self.viewer, chosen)

    def _on_partial(self, report: Progress) -> None:
        from ..sampling.tissue_mask import TissueMask

        if isinstance(report.partial, TissueMask):  # show each slide's tissue mask as soon as it is known
            name = f"{file_name(str(report.partial.source))} tissue"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            add_layers(self.viewer, [tissue_layer(report.partial, name=name)])

    def _on_done(self, table: Any) -> None:
        from ..io.slides.open import open_slide

        self.table = table
        n_pos = int((table["label"] > 0).sum())
        classes = [c for c in table.columns if c.startswith("label_")]
        if classes:  # chest X-rays: counts per class, boxes over the X-ray layers that are open
            per_class = ", ".join(f"{c[6:]} {int(table[c].sum())}" for c in classes)
            self.counts.value = f"{len(table)} patches: {n_pos} lesion ({per_class}), {len(table) - n_pos} normal"
            self._show_cxr_boxes(table, classes)
            return
        self.counts.value = f"{len(table)} patches: {n_pos} tumour, {len(table) - n_pos} normal"
        for path, rows in table.groupby("slide", sort=False):
            with open_slide(path) as slide:
                layer = patches_layer(rows, slide.level_downsamples, slide.mpp, name=f"{file_name(path)} patches")
            name = layer[1]["name"]
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            add_layers(self.viewer, [layer])

    def _show_cxr_boxes(self, table: Any, classes: list[str]) -> None:
        import numpy as np

        for layer in layers_of_kind(self.viewer, "cxr"):
            rows = table[table["slide"] == layer.metadata["patchdx"].get("path")]
            if rows.empty:
                continue
            boxes = np.stack([rows.y, rows.x, rows.y + rows["size"], rows.x + rows["size"]], axis=1)
            names = [
                "+".join(c[6:] for c in classes if getattr(r, c)) or "normal" for r in rows.itertuples(index=False)
            ]
            spacing = tuple(layer.scale[-2:]) if layer.metadata["patchdx"].get("path") else None
            name = f"{layer.name} patches"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            add_layers(self.viewer, [boxes_layer(boxes, names, spacing=spacing, name=name)])

    def export(self) -> None:
        """Save the last table (CSV or Parquet by suffix) and optionally patch PNGs beside it."""
        from ..sampling.datasets import export_patch_images
        from ..sampling.tables import write_patch_table

        if self.table is None:
            self.runner.fail("sample patches first")
            return
        if str(self.export_path.value) in ("", "."):
            self.runner.fail("choose a file to export the table to first")
            return
        path = Path(str(self.export_path.value))
        if path.suffix.lower() not in (".csv", ".parquet"):
            path = path.with_suffix(".csv")
        try:
            write_patch_table(self.table, path)
            if self.export_images.value:
                export_patch_images(self.table, path.with_suffix(""), int(self.patch_size.value), limit=200)
        except INPUT_ERRORS as exc:
            self.runner.fail(exc)
            return
        self.runner.status.value = f"wrote {path}"
        show_info(f"napari-patchdx: wrote {path}")


class TrainWidget(Panel):
    """Train a model on slides in the viewer, a patch table or a chest X-ray cohort, with live curves and Stop."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        from ..devices import available_devices
        from ..models.nets import ARCHITECTURES

        self.viewer = viewer
        self.source = ComboBox(
            label="data",
            choices=["slides in the viewer", "patch table", "X-ray cohort folder"],
            value="slides in the viewer",
        )
        self.slides = Select(label="slides", choices=self._slide_names, allow_multiple=True)
        self.table = FileEdit(label="patch table", mode="r", filter="*.csv *.parquet", value="")
        self.cohort = FileEdit(label="X-ray cohort", mode="d", value="")
        self.arch = ComboBox(label="model", choices=list(ARCHITECTURES), value="small")
        self.stage = ComboBox(label="stage", choices=["patches", "whole", "curriculum", "baseline"], value="patches")
        self.epochs = SpinBox(label="epochs (per stage)", min=1, max=10_000, value=5)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=32)
        self.steps = SpinBox(label="steps per epoch (slides)", min=1, max=1_000_000, value=50)
        self.patch_size = SpinBox(label="patch size (px)", min=32, max=2048, value=299)
        self.working_size = SpinBox(label="X-ray working size (px)", min=64, max=4096, value=1024)
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.workers = SpinBox(label="loader workers", min=0, max=64, value=2)
        self.out_dir = FileEdit(label="run folder", mode="d", value="")
        self.runner = JobRunner("Train")
        self.figure = Figure(figsize=(4, 2.4), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.canvas.setMinimumSize(200, 220)
        super().__init__(
            viewer,
            [
                self.source,
                self.slides,
                self.table,
                self.cohort,
                self.arch,
                self.stage,
                self.epochs,
                self.batch_size,
                self.steps,
                self.patch_size,
                self.device,
                self.workers,
                self.out_dir,
                self.runner,
            ],
        )
        self.add_native(self.canvas)
        self.history: list[dict[str, Any]] = []
        self.result: Any = None
        self.runner.run_button.changed.connect(self.run)
        viewer.layers.events.inserted.connect(lambda _=None: self.slides.reset_choices())
        viewer.layers.events.removed.connect(lambda _=None: self.slides.reset_choices())

    def _slide_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in layers_of_kind(self.viewer, "slide")]

    def _data(self) -> tuple[str, Any]:
        from ..training.inputs import TrainData

        source = str(self.source.value)
        if source == "X-ray cohort folder":
            return "cxr", TrainData(cxr_root=Path(str(self.cohort.value)))
        if source == "patch table":
            return "slide", TrainData(patch_table=Path(str(self.table.value)))
        slides = []
        for name in self.slides.value:
            path = Path(self.viewer.layers[name].metadata["patchdx"]["path"])
            slides.append((path, annotations_beside(path)))
        return "slide", TrainData(slides=hold_out_slides(slides))

    def run(self) -> None:
        """Start training in a worker; curves update after every epoch. Input errors go to the status line."""
        if self.runner.worker is not None:
            return
        try:
            self._start()
        except INPUT_ERRORS as exc:
            self.runner.fail(exc)

    def _start(self) -> None:
        from ..training.config import TrainConfig
        from ..training.job import train_job

        track, data = self._data()
        if str(self.out_dir.value) in ("", "."):
            raise ConfigError("choose a run folder first")
        out = Path(str(self.out_dir.value))
        config = TrainConfig(
            track=track,
            stage=str(self.stage.value) if track == "cxr" else "patches",
            arch=str(self.arch.value),
            epochs=int(self.epochs.value),
            batch_size=int(self.batch_size.value),
            steps_per_epoch=int(self.steps.value),
            patch_size=int(self.patch_size.value),
            working_size=int(self.working_size.value),
            device=str(self.device.value),
            num_workers=int(self.workers.value),
        )
        self.history = []
        self.result = None
        self.runner.start(
            lambda: train_job(config, data, out, stop=lambda: self.runner.stop_requested),
            self._on_done,
            self._on_partial,
            graceful_stop=True,
        )

    def _on_partial(self, report: Progress) -> None:
        from ..plots import draw_training_curves

        if isinstance(report.partial, dict) and report.partial.get("event") == "epoch":
            self.history.append(report.partial)
            draw_training_curves(self.figure, self.history)
            self.canvas.draw_idle()

    def _on_done(self, result: Any) -> None:
        self.result = result
        state = "stopped; resumable checkpoint" if result.cancelled else "done"
        self.runner.status.value = f"{state}: {result.last}"
