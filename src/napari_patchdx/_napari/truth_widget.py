"""The Ground truth dock widget: a ground-truth layer per slide, the class of the shapes drawn next, the class of
selected shapes, and saving beside the slide (atomically, keeping the previous file as ``.bak``).

The layers themselves follow the rules of :mod:`~napari_patchdx._napari.truth`; napari's own tools draw the shapes
and napari's Features table widget edits the ``label`` column as well. File > Save Selected Layers saves a layer
too (ASAP XML or QuPath GeoJSON, level-0 pixels); this widget's Save is the same writer with a backup.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import ComboBox, FileEdit, PushButton
from napari.utils.notifications import show_info

from ..errors import ConfigError
from ..layerdata import DRAW_CLASSES
from .panel import INPUT_ERRORS, Panel, StatusLine
from .truth import (
    labels_of,
    new_truth_layer,
    save_truth,
    set_class,
    set_draw_class,
    slide_layers,
    slide_of,
    truth_file,
    truth_file_beside,
    truth_layers,
)

#: class names as the widget shows them
CLASS_NAMES = {"tumor": "tumour", "exclusion": "exclusion", "normal": "normal"}


class GroundTruthWidget(Panel):
    """Draw, classify and save each slide's ground truth (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.slide = ComboBox(label="slide", choices=self._slide_names)
        self.layer = ComboBox(label="ground-truth layer", choices=self._truth_names)
        self.new_button = PushButton(text="New ground-truth layer for the slide")
        self.draw_class = ComboBox(
            label="class of new shapes", choices=[(CLASS_NAMES[c], c) for c in DRAW_CLASSES], value="tumor"
        )
        self.apply_button = PushButton(text="Give the selected shapes this class")
        self.path = FileEdit(label="save to", mode="w", filter="*.xml *.geojson", value="")
        self.path.tooltip = "ASAP / CAMELYON16 XML (.xml) or QuPath GeoJSON (.geojson), level-0 pixels"
        self.save_button = PushButton(text="Save (keeps the previous file as .bak)")
        self.status = StatusLine()
        super().__init__(
            viewer,
            [
                self.slide,
                self.layer,
                self.new_button,
                self.draw_class,
                self.apply_button,
                self.path,
                self.save_button,
                self.status,
            ],
        )
        self.new_button.changed.connect(self.new_layer)
        self.draw_class.changed.connect(self._class_chosen)
        self.apply_button.changed.connect(self.apply_class)
        self.save_button.changed.connect(self.save)
        self.slide.changed.connect(self._slide_chosen)
        self.layer.changed.connect(self._layer_chosen)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._slide_chosen()

    def _slide_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in slide_layers(self.viewer)]

    def _truth_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in truth_layers(self.viewer)]

    def _refresh(self, _: Any = None) -> None:
        self.slide.reset_choices()
        self.layer.reset_choices()

    def _chosen(self, control: ComboBox) -> Any:
        name = control.value
        return self.viewer.layers[name] if name is not None and name in self.viewer.layers else None

    def _slide_chosen(self, _: Any = None) -> None:
        """Choose the slide's ground-truth layer and offer ``<slide>.xml`` beside the slide as the file."""
        slide = self._chosen(self.slide)
        if slide is None:
            return
        mine = [t for t in truth_layers(self.viewer) if slide_of(t, slide_layers(self.viewer)) is slide]
        if mine:
            self.layer.value = max(mine, key=lambda t: len(t.data)).name
        layer = self._chosen(self.layer)
        self.path.value = truth_file(layer, slide) if layer is not None else truth_file_beside(slide)

    def _layer_chosen(self, _: Any = None) -> None:
        layer = self._chosen(self.layer)
        if layer is not None:
            self.viewer.layers.selection.active = layer
            set_draw_class(layer, str(self.draw_class.value))
            self._count(layer)

    def _class_chosen(self, _: Any = None) -> None:
        layer = self._chosen(self.layer)
        if layer is not None:
            set_draw_class(layer, str(self.draw_class.value))

    def _count(self, layer: Any, prefix: str = "") -> None:
        counts = Counter(labels_of(layer))
        text = ", ".join(f"{n} {CLASS_NAMES.get(c, c)}" for c, n in counts.items()) or "no shapes yet"
        self.status.value = f"{prefix}{layer.name}: {text}"

    def new_layer(self) -> None:
        """Add an empty ground-truth layer framed to the chosen slide and make it the one drawn in."""
        slide = self._chosen(self.slide)
        if slide is None:
            self.status.value = "error: open a slide first (File > Open)"
            return
        layer = new_truth_layer(self.viewer, slide)
        self.layer.value = layer.name
        layer.mode = "add_polygon"
        self._count(layer)

    def apply_class(self) -> None:
        """Give the shapes selected in the ground-truth layer the chosen class."""
        layer = self._chosen(self.layer)
        if layer is None or not layer.selected_data:
            self.status.value = "error: select shapes in the ground-truth layer first (napari's select tool)"
            return
        set_class(layer, sorted(layer.selected_data), str(self.draw_class.value))
        self._count(layer)

    def save(self) -> Path | None:
        """Write the chosen layer to the chosen file (XML or GeoJSON by suffix, level-0 pixels), keeping the
        previous file as ``.bak``; returns the path (None after an error, which the status line shows)."""
        layer = self._chosen(self.layer)
        try:
            if layer is None:
                raise ConfigError("choose a ground-truth layer first")
            if str(self.path.value) in ("", "."):
                raise ConfigError("choose a file to save to first")
            path = Path(str(self.path.value))
            if path.suffix.lower() not in (".xml", ".geojson", ".json"):
                path = path.with_suffix(".xml")
            path, backup = save_truth(layer, self.viewer, path)
        except INPUT_ERRORS as exc:
            self.status.value = f"error: {str(exc).strip() or type(exc).__name__}"
            return None
        kept = f" (previous file kept as {backup.name})" if backup is not None else ""
        self._count(layer, prefix=f"saved {path}{kept}. ")
        show_info(f"napari-patchdx: saved {path}")
        return path
