"""The slide inputs every slide widget shares: which slide layers, which ground-truth layers, and the slides'
microns per pixel where their files lack it.

:class:`SlideInputs` lists the viewer's slide layers and ground-truth layers (:func:`~napari_patchdx._napari.truth.
truth_layers`), selects each new one as it is added (so the layer opened with a slide, or the layer the user just
drew in, is chosen by default) and pairs them by the one rule of :func:`~napari_patchdx._napari.truth.
truth_for_slides`. A slide with no chosen ground-truth layer uses the annotation file beside it, if any; a chosen
layer without shapes makes it a normal slide. The um/px field is shared by the widgets of a viewer
(:mod:`~napari_patchdx._napari.session`): typed once, Sample, Train and Run inference use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import Container, FloatSpinBox, Select

from ..errors import ConfigError
from ..io.annotations.model import AnnotationSet
from ..io.detect import annotations_beside
from ..sampling.sources import SlideMpp
from .session import session_of
from .truth import (
    layer_annotations,
    patchdx_meta,
    place_slides,
    slide_layers,
    slide_path,
    truth_for_slides,
    truth_layers,
)

Truth = Path | AnnotationSet | None


def choose_new(event: Any, *selects: Select) -> None:
    """Add the layer just inserted (``viewer.layers.events.inserted``) to the value of every list offering it (call
    after the lists' ``reset_choices``)."""
    name = getattr(event.value, "name", None)
    for select in selects:
        if name in select.choices and name not in select.value:
            select.value = [*select.value, name]


def slide_mpp_control(viewer: napari.Viewer) -> FloatSpinBox:
    """The "slide um/px" field, bound to the viewer's session: typed in one widget, shown in all."""
    session = session_of(viewer)
    control = FloatSpinBox(
        label="slide um/px (0 = from the file)", min=0.0, max=64.0, step=0.001, value=session.get("slide_mpp", 0.0)
    )
    control.tooltip = (
        "level-0 micrometres per pixel of the slides, for files that lack it (or say it wrongly); slides whose files "
        "lack it are shown in micrometres at this value"
    )

    def typed(value: float) -> None:
        session.set("slide_mpp", float(value))
        place_slides(viewer, float(value))

    control.changed.connect(typed)

    def follow(key: str, value: Any) -> None:
        if key == "slide_mpp" and float(control.value) != float(value):
            control.value = float(value)

    session.changed.connect(follow)
    return control


class SlideInputs(Container):
    """Slide layers, their ground-truth layers (optional) and the slides' um/px (see the module docstring)."""

    def __init__(self, viewer: napari.Viewer, *, truth: bool = True) -> None:
        self.viewer = viewer
        self.session = session_of(viewer)
        self.slides = Select(label="slides", choices=self._slide_names, allow_multiple=True)
        self.truth = Select(label="ground truth", choices=self._truth_names, allow_multiple=True)
        self.truth.tooltip = (
            "Shapes layers with each slide's tumour / exclusion / normal regions (the layer opened with the slide, "
            "or one drawn over it). A slide with none chosen uses the annotation file beside it, if any"
        )
        self.mpp = slide_mpp_control(viewer)
        self.with_truth = truth
        self.truth.visible = truth
        super().__init__(widgets=[self.slides, self.truth, self.mpp], labels=True)
        self.margins = (0, 0, 0, 0)
        self.slides.value = self._slide_names()
        self.truth.value = self._truth_names()
        viewer.layers.events.inserted.connect(self._inserted)
        viewer.layers.events.removed.connect(self._refresh)

    def _slide_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in slide_layers(self.viewer)]

    def _truth_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in truth_layers(self.viewer)]

    def _refresh(self, _: Any = None) -> None:
        self.slides.reset_choices()
        self.truth.reset_choices()

    def _inserted(self, event: Any) -> None:
        """Refresh the lists and choose the new layer when it is a slide or ground truth; a slide without microns per
        pixel is placed at the typed value."""
        self._refresh()
        choose_new(event, self.slides, self.truth)
        if patchdx_meta(event.value).get("kind") == "slide" and self.mpp_value() is not None:
            place_slides(self.viewer, self.mpp_value())

    def chosen_slides(self) -> list[Any]:
        """The chosen slide layers, in the viewer's order."""
        chosen = set(self.slides.value)
        return [layer for layer in slide_layers(self.viewer) if layer.name in chosen]

    def paths(self) -> list[Path]:
        """The chosen slides' files."""
        return [slide_path(layer) for layer in self.chosen_slides()]

    def mpp_value(self) -> SlideMpp:
        """The typed um/px (one value for every chosen slide), or None to use the files'."""
        value = float(self.mpp.value)
        return value if value > 0 else None

    def pairs(self) -> list[tuple[Path, Truth]]:
        """``(slide file, ground truth)`` for every chosen slide: the regions of its chosen ground-truth layer (None
        when that layer is empty: a normal slide), else the annotation file beside it, else None.

        Raises:
            ConfigError: no slide chosen; ground-truth layers that cannot be paired (see
                :func:`~napari_patchdx._napari.truth.truth_for_slides`) or placed (a layer over no slide).
        """
        slides = self.chosen_slides()
        if not slides:
            raise ConfigError("choose slide layers first (open a slide with File > Open)")
        chosen = set(self.truth.value) if self.with_truth else set()
        truths = [layer for layer in truth_layers(self.viewer) if layer.name in chosen]
        found = truth_for_slides(slides, truths, shown=slide_layers(self.viewer))
        pairs: list[tuple[Path, Truth]] = []
        for slide in slides:
            path = slide_path(slide)
            layer = found[slide.name]
            if layer is not None:
                pairs.append((path, layer_annotations(layer, self.viewer)))
            else:
                pairs.append((path, annotations_beside(path)))
        return pairs
