"""Layer-data tuples into a viewer (napari's public API only), safe layer removal, and a viewer for finished runs.

``python -m napari_patchdx._napari.viewer RUN_DIR [RUN_DIR ...]`` opens a viewer with the result layers of run
directories (what ``napari-patchdx demo --view`` starts, in its own process, so the command line never imports
napari). From napari's console, :func:`add_run_layers` adds a run's layers to the open viewer.

**Layer removal and OpenGL.** When a layer is removed, napari (0.9) collects the layer's OpenGL objects
(``gc.collect()``) and flushes their deletion to OpenGL (``context.finish()``) at once, outside a paint event, without
making its canvas's OpenGL context current. The programs, textures and buffers are then deleted through whichever
context Qt left current; with Mesa (llvmpipe or softpipe: virtual displays, remote desktops, CI) a later draw of the
canvas then crashes the process in ``glDrawArrays`` (segmentation fault). Removing an image layer that has another
image layer above it (a slide under its heatmap), once Qt has repainted the window since the last draw, is enough
under Xvfb. :func:`guard_layer_removal` makes the canvas's context current whenever a layer is about to be removed
(``viewer.layers.events.removing``), so the deletion reaches the right context; every dock widget of the plugin and
its sample data install it. It uses napari's public events and Qt's public widget API only.
"""

from __future__ import annotations

import argparse
import os
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import napari
from napari.layers import Layer
from qtpy.QtWidgets import QApplication, QOpenGLWidget, QWidget

LayerTuple = tuple[Any, dict[str, Any], str]


def add_layers(viewer: napari.Viewer, layers: Sequence[LayerTuple]) -> list[Layer]:
    """Add ``(data, kwargs, layer_type)`` tuples to ``viewer``; returns the new layers in order."""
    added = []
    for data, kwargs, layer_type in layers:
        added.append(viewer.add_layer(Layer.create(data, kwargs, layer_type)))
    return added


class CanvasContextGuard:
    """Makes a viewer's canvas OpenGL context current before a layer is removed (see the module docstring).

    The canvas is found from the widgets given with :meth:`add_anchor` (a dock widget's top-level window holds the
    canvas), or, without a usable anchor, as the only napari canvas in the application. Calls (events) made while
    no canvas can be found, or before the canvas has its OpenGL context, do nothing.
    """

    def __init__(self) -> None:
        self.anchors: list[weakref.ref[QWidget]] = []
        #: how many times the canvas context was made current (for tests)
        self.calls = 0

    def add_anchor(self, widget: QWidget) -> None:
        """Find the canvas from ``widget``'s window (a plugin dock widget in the viewer's window)."""
        if not any(ref() is widget for ref in self.anchors):
            self.anchors.append(weakref.ref(widget))

    def canvas(self) -> QOpenGLWidget | None:
        """The viewer's canvas widget, or None when it cannot be told apart."""
        for ref in self.anchors:
            widget = ref()
            if widget is None:
                continue
            try:
                top = widget
                while top.parentWidget() is not None:  # a floating dock widget still has the main window as parent
                    top = top.parentWidget()
                found = _vispy_canvases(top)
            except RuntimeError:  # the anchor's Qt widget was deleted (its dock closed)
                continue
            if len(found) == 1:
                return found[0]
        app = QApplication.instance()
        if app is None:
            return None
        found = [c for top in app.topLevelWidgets() for c in _vispy_canvases(top)]
        return found[0] if len(found) == 1 else None

    def __call__(self, event: Any = None) -> None:
        canvas = self.canvas()
        if canvas is not None and canvas.isValid():
            canvas.makeCurrent()
            self.calls += 1


def _vispy_canvases(top: QWidget) -> list[QOpenGLWidget]:
    found = [top] if isinstance(top, QOpenGLWidget) else []
    found += top.findChildren(QOpenGLWidget)
    return [w for w in found if type(w).__module__.startswith("vispy.")]


_GUARDS: weakref.WeakKeyDictionary[Any, CanvasContextGuard] = weakref.WeakKeyDictionary()


def guard_layer_removal(viewer: napari.Viewer, anchor: QWidget | None = None) -> CanvasContextGuard:
    """Install (once per viewer) the :class:`CanvasContextGuard` on ``viewer.layers.events.removing``.

    ``anchor`` is a widget in the viewer's window (a dock widget's ``native``) from which the canvas is found;
    the guard of a viewer collects every anchor given. Returns the viewer's guard.
    """
    layers = viewer.layers
    key = getattr(layers, "__wrapped__", layers)  # the layer list itself, not the proxy napari gives plugin widgets
    guard = _GUARDS.get(key)
    if guard is None:
        guard = _GUARDS[key] = CanvasContextGuard()
        layers.events.removing.connect(guard)
    if anchor is not None:
        guard.add_anchor(anchor)
    return guard


def add_run_layers(viewer: napari.Viewer, run: Any, *, prefix: str = "", max_items: int | None = None) -> list[Layer]:
    """Add the result layers of a run (a :class:`~napari_patchdx.pipeline.results.RunResult` or its directory):
    slides or X-rays with their ground truth, heatmaps or CAMs and lesion points; returns the new layers."""
    from ..pipeline.results import result_layers

    run_dir = getattr(run, "run_dir", run)
    layers = result_layers(run_dir, max_items=max_items)
    if prefix:
        layers = [
            (data, {**kwargs, "name": f"{prefix}{kwargs.get('name', '')}"}, kind) for data, kwargs, kind in layers
        ]
    return add_layers(viewer, layers)


def main(argv: Sequence[str] | None = None) -> int:
    """Open a viewer with the result layers of the given run directories and run Qt until it is closed."""
    parser = argparse.ArgumentParser(prog="python -m napari_patchdx._napari.viewer", description=main.__doc__)
    parser.add_argument("runs", nargs="+", help="run directories (with manifest.json)")
    parser.add_argument("--title", default="napari-patchdx")
    args = parser.parse_args(argv)
    viewer = napari.Viewer(title=args.title)
    for run in args.runs:
        prefix = f"{os.path.basename(os.path.normpath(run))}: " if len(args.runs) > 1 else ""
        add_run_layers(viewer, run, prefix=prefix)
    napari.run()
    return 0


if __name__ == "__main__":  # pragma: no cover - interactive
    sys.exit(main())
