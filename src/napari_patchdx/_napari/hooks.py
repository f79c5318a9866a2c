"""What the plugin installs in a viewer it works in, once per viewer: the layer-removal guard
(:func:`~napari_patchdx._napari.viewer.guard_layer_removal`) and the adoption of ground-truth layers
(:func:`~napari_patchdx._napari.truth.watch_truth_layers`). The reader, the sample data and every dock widget call
:func:`install_viewer_hooks`."""

from __future__ import annotations

import napari
from qtpy.QtWidgets import QWidget

from .truth import watch_truth_layers
from .viewer import guard_layer_removal


def install_viewer_hooks(viewer: napari.Viewer, anchor: QWidget | None = None) -> None:
    """Install the plugin's viewer hooks in ``viewer`` (``anchor``: a dock widget in its window, see
    :func:`~napari_patchdx._napari.viewer.guard_layer_removal`)."""
    guard_layer_removal(viewer, anchor)
    watch_truth_layers(viewer)


def install_in_current_viewer() -> None:
    """Install the hooks in napari's current viewer, if there is one (readers and sample data know no viewer)."""
    viewer = napari.current_viewer()
    if viewer is not None:
        install_viewer_hooks(viewer)
