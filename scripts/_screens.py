"""What every screenshot shares (:mod:`screenshots` takes them): the work folder context, a viewer of a fixed size,
docking widgets, running them, waiting for Qt, and saving the window as a PNG."""

from __future__ import annotations

import csv
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "images"
WINDOW = (1200, 800)  # napari window (width, height) in screen pixels before scaling
TALL = (1200, 960)  # for docks with many fields
WIDE = (1600, 1300)  # a large canvas beside a dock with lists, a table and plots, none of it scrolled away


class SkipShot(Exception):
    """A shot that cannot be taken yet (its widget does not exist): skipped with a message, not an error."""


@dataclass
class Context:
    """What the shots share: the work folder (with the demo's runs), the output folder and what was written."""

    work: Path
    out: Path
    width: int
    written: list[Path] = field(default_factory=list)

    @property
    def demo(self) -> Path:
        return self.work / "demo"

    def run_dir(self, name: str) -> Path:
        return self.demo / "runs" / name

    def split_rows(self, run: str) -> list[dict[str, str]]:
        """The rows of a demo run's ``sample/splits.csv`` (name, split, label, path, truth)."""
        with open(self.run_dir(run) / "sample" / "splits.csv", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def checkpoint(self, run: str) -> Path:
        path = self.run_dir(run) / "train" / "best.json"
        if not path.is_file():
            raise RuntimeError(f"{path}: the demo run has no best checkpoint")
        return path


# ---------------------------------------------------------------------------------------------------------------
# Qt helpers
# ---------------------------------------------------------------------------------------------------------------


def process_events(seconds: float = 0.3) -> None:
    """Let Qt and vispy draw for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 900.0) -> None:
    """Process Qt events until ``condition()`` holds; RuntimeError naming ``what`` after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.05)


def new_viewer(title: str, size: tuple[int, int] = WINDOW) -> Any:
    """A shown napari viewer of ``size`` (width, height) screen pixels."""
    import napari
    from qtpy.QtGui import QCursor, QGuiApplication

    viewer = napari.Viewer(title=title, show=True)
    viewer.window._qt_window.resize(*size)
    viewer.window._qt_window.activateWindow()  # napari fades its notifications only in the active window
    # the pointer off the window: a notification under it would never fade (napari keeps a hovered one)
    QCursor.setPos(QGuiApplication.primaryScreen().geometry().bottomRight())
    process_events(0.5)
    return viewer


def open_file(viewer: Any, path: Path) -> list[Any]:
    """Open ``path`` through the napari-patchdx reader (as File > Open does)."""
    return viewer.open(str(path), plugin="napari-patchdx")


def fresh_dir(ctx: Context, name: str) -> Path:
    """An empty folder ``name`` in the work folder (a kept work folder would otherwise resume the last shot's run)."""
    path = ctx.work / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def dock(viewer: Any, widget: Any, name: str) -> Any:
    """Dock ``widget`` on the right of the window, as wide as its controls ask (what a user gets by dragging the
    dock's edge: napari opens a dock at a default width, narrower than some panels); returns napari's dock widget
    (for :func:`undock`)."""
    from qtpy.QtCore import Qt

    docked = viewer.window.add_dock_widget(widget, name=name, area="right")
    process_events(0.3)
    body = getattr(widget, "body", None)  # a Panel: its controls scroll inside the dock
    if body is not None:
        scroll = body.root_native_widget
        frame = docked.width() - scroll.viewport().width()
        wanted = body.native.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + frame
        if wanted > docked.width():
            viewer.window._qt_window.resizeDocks([docked], [wanted], Qt.Orientation.Horizontal)
            process_events(0.3)
    return docked


def undock(viewer: Any, docked: Any) -> None:
    """Take a dock widget (what :func:`dock` returned) off the window, so that the next shot shows one widget."""
    viewer.window.remove_dock_widget(docked)
    process_events(0.3)


def run_widget(runner: Any, done: Callable[[], bool], what: str, timeout: float = 900.0) -> None:
    """Press a :class:`~napari_patchdx._napari.panel.JobRunner`'s Run button and wait for the job to end."""

    def failed() -> bool:
        return runner.worker is None and str(runner.status.value).startswith("error")

    t0 = time.perf_counter()
    runner.run_button.clicked.emit()
    wait_until(lambda: done() or failed(), what, timeout)
    if failed() and not done():
        raise RuntimeError(f"{what}: {runner.status.value}")
    wait_until(lambda: runner.worker is None, f"{what} (worker to finish)", 120)
    print(f"  {what}: {time.perf_counter() - t0:.0f} s")


def only_visible(viewer: Any, keep: Callable[[Any], bool]) -> None:
    """Show the layers ``keep`` accepts and hide the others (slides opened together sit on top of each other)."""
    for layer in viewer.layers:
        layer.visible = bool(keep(layer))


def save_shot(ctx: Context, viewer: Any, name: str) -> Path:
    """Screenshot the whole window, scale it by ``ctx.width / WINDOW[0]`` (a window of the default width becomes
    ``ctx.width`` pixels wide; a wider one is scaled alike, so text has one size in every picture) and write an
    optimised palette PNG."""
    from PIL import Image

    process_events(1.0)
    array = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(array[..., :3])
    width = round(image.width * ctx.width / WINDOW[0])
    if image.width > width:
        height = round(image.height * width / image.width)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = ctx.out / f"{name}.png"
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    ctx.written.append(path)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"  wrote {shown} ({image.width} x {image.height}, {path.stat().st_size / 1024:.0f} KiB)")
    return path


def import_widget(module: str, name: str) -> Any:
    """The widget class ``name`` from ``napari_patchdx._napari.<module>``, or SkipShot when it does not exist."""
    import importlib

    try:
        mod = importlib.import_module(f"napari_patchdx._napari.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"napari_patchdx._napari.{module}":
            raise SkipShot(f"napari_patchdx._napari.{module} does not exist yet") from None
        raise
    widget = getattr(mod, name, None)
    if widget is None:
        raise SkipShot(f"napari_patchdx._napari.{module} has no {name} yet")
    return widget


# ---------------------------------------------------------------------------------------------------------------
# data: the demo
# ---------------------------------------------------------------------------------------------------------------


def run_demo(ctx: Context) -> None:
    """Run (or, in a kept work folder, bring up to date) the demo: cohorts, the slide run, the two X-ray runs."""
    from napari_patchdx.cli.demo import run_demo as demo

    t0 = time.perf_counter()
    print(f"demo -> {ctx.demo} (runs that are up to date are skipped)")
    demo(ctx.demo)
    print(f"demo ready ({time.perf_counter() - t0:.0f} s)")


def slide_rows(ctx: Context, split: str | None = None, tumour: bool | None = None) -> list[dict[str, str]]:
    """The demo slide run's slides, filtered by split and by label (tumour = has ground truth)."""
    rows = ctx.split_rows("slides")
    return [
        r for r in rows if (split is None or r["split"] == split) and (tumour is None or (r["label"] == "1") == tumour)
    ]


def first(rows: list[dict[str, str]], what: str) -> dict[str, str]:
    if not rows:
        raise RuntimeError(f"the demo has no {what}")
    return rows[0]


# ---------------------------------------------------------------------------------------------------------------
# shots
# ---------------------------------------------------------------------------------------------------------------
