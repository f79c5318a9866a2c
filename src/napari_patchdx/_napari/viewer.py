"""Open a napari viewer with layer-data tuples (used by ``napari-patchdx demo --view``)."""

from __future__ import annotations

from typing import Any

import napari


def add_layers(viewer: napari.Viewer, layers: list[tuple[Any, dict[str, Any], str]]) -> list[napari.layers.Layer]:
    """Add ``(data, kwargs, layer_type)`` tuples to ``viewer``; returns the new layers in order."""
    added = []
    for data, kwargs, layer_type in layers:
        added.append(viewer._add_layer_from_data(data, kwargs, layer_type))
    return [layer for group in added for layer in (group if isinstance(group, list) else [group])]


def show_layers(layers: list[tuple[Any, dict[str, Any], str]], title: str = "napari-patchdx") -> None:
    """Open a viewer with ``layers`` and run the Qt event loop until it is closed."""
    viewer = napari.Viewer(title=title)
    add_layers(viewer, layers)
    napari.run()
