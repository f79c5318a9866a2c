"""What every dock widget shares: :class:`Panel` (scrolls vertically, never widens), :class:`StatusLine` (text
wraps), table helpers (:func:`show_table_rows`, one number format) and :class:`JobRunner` (Run / Stop, progress,
input errors in its status line, a job stopped when its input layers are deleted and closed when stopped)."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any

import napari
from magicgui.widgets import (
    Container,
    Label,
    ProgressBar,
    PushButton,
    Select,
    Table,
    Widget,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy, QStyledItemDelegate, QWidget

from ..errors import PatchdxError
from ..progress import Progress
from .hooks import install_viewer_hooks

#: errors a widget reports in its status line (a message for the user) instead of raising
INPUT_ERRORS = (PatchdxError, OSError, ValueError)


def layers_of_kind(viewer: napari.Viewer, kind: str) -> list[Any]:
    """The viewer's layers that this plugin made or read as ``kind`` (``layer.metadata["patchdx"]["kind"]``)."""
    return [layer for layer in viewer.layers if layer.metadata.get("patchdx", {}).get("kind") == kind]


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
    minimum width is its controls' (it never scrolls sideways). Every panel installs the plugin's viewer hooks
    (:func:`~napari_patchdx._napari.hooks.install_viewer_hooks`) for ``viewer``.
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
        # as wide as the controls (napari opens docks narrower, clipping file fields on the right)
        scroll.setMinimumWidth(
            self.body.native.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 2
        )
        layout = self.native.layout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        install_viewer_hooks(viewer, self.native)

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


def _torch_threads() -> int | None:
    """torch's intra-op thread count in this (the UI) thread, when torch is loaded. A worker thread that Qt reuses
    keeps the count it was created with; setting it again makes a job compute alike in a widget and headless."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


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

    def attempt(self, start: Callable[[], None]) -> None:
        """Run ``start`` (which checks the inputs and calls :meth:`start`) unless a job is running; an input error
        (:data:`INPUT_ERRORS`) goes to the status line and a notification instead of raising."""
        if self.worker is not None:
            return
        try:
            start()
        except INPUT_ERRORS as exc:
            self.fail(exc)

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

        running: list[Any] = []
        threads = _torch_threads()

        def job() -> Any:  # a generator function, so napari makes a GeneratorWorker (progress, quit)
            if threads:  # the worker thread computes with the process's thread count, as the main thread does
                sys.modules["torch"].set_num_threads(threads)
            running.append(job_factory())
            return (yield from running[0])

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
            # napari leaves an aborted generator suspended: close the job now, so that its reader / writer
            # threads and open files end with the run, not whenever the generator is garbage-collected
            for inner in running:
                inner.close()

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
