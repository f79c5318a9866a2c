"""Layer-data tuples into a viewer (napari's public API only), and a viewer for finished runs.

``python -m napari_patchdx._napari.viewer RUN_DIR [RUN_DIR ...]`` opens a viewer with the result layers of run
directories (what ``napari-patchdx demo --view`` starts, in its own process, so the command line never imports
napari). From napari's console, :func:`add_run_layers` adds a run's layers to the open viewer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import napari
from napari.layers import Layer

LayerTuple = tuple[Any, dict[str, Any], str]


def add_layers(viewer: napari.Viewer, layers: Sequence[LayerTuple]) -> list[Layer]:
    """Add ``(data, kwargs, layer_type)`` tuples to ``viewer``; returns the new layers in order."""
    added = []
    for data, kwargs, layer_type in layers:
        added.append(viewer.add_layer(Layer.create(data, kwargs, layer_type)))
    return added


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
