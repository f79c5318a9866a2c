"""The "X-ray ground truth" dock widget: draw lesion boxes per class on an X-ray of a cohort, tick which classes it
shows, and save both into the cohort (``lesions.csv``, ``labels.csv``; atomically, the previous files kept as
``.bak``).

An X-ray belongs to a cohort when the cohort's ``labels.csv`` lists its file
(:func:`~napari_patchdx.io.cohort.cohort_image`); opening such a file adds its ground-truth boxes layer
(:func:`~napari_patchdx.layerdata.cxr_truth.cxr_truth_layer`), and :func:`truth_layer_for` finds that layer (or adds
it) for this widget and the inference widget. New boxes take the chosen class (the layer's feature defaults) and its
colour; napari's Features table widget changes a box's class, and the edges follow (:func:`watch_truth_layer`).
Saving is :func:`~napari_patchdx.io.cohort.save_image_truth`: the box of every shape
(:func:`~napari_patchdx.layerdata.cxr_truth.rectangle_box`), and the ticked classes plus every class with a box.
"Retrain with corrections" below (:class:`~napari_patchdx._napari.cxr_retrain.XrayRetrainPanel`) fine-tunes the
model on the corrected cohort: the images saved with a change since its last round are the corrected ones.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from ..errors import ConfigError
from ..io.annotations.model import class_color
from ..io.cohort import cohort_image, read_labels, save_image_truth
from ..layerdata.cxr_truth import cxr_truth_layer, is_cxr_truth, layer_boxes
from .cxr_retrain import XrayRetrainPanel
from .panel import INPUT_ERRORS, Panel, StatusLine, layers_of_kind
from .viewer import add_layers

__all__ = ["XrayTruthWidget", "layer_box_classes", "set_box_class", "truth_layer_for", "watch_truth_layer"]


def _meta(layer: Any) -> dict[str, Any]:
    return dict(layer.metadata.get("patchdx") or {})


def truth_layer_for(
    viewer: napari.Viewer,
    path: str | Path,
    *,
    spacing: Any = None,
    shape: Any = None,
    name: str | None = None,
    create: bool = True,
) -> Any:
    """The ground-truth boxes layer of the X-ray file ``path`` in ``viewer``: the one there, else a new one
    (:func:`~napari_patchdx.layerdata.cxr_truth.cxr_truth_layer`, ``spacing`` in mm and ``shape`` in pixels as the
    X-ray layer's; with ``create`` False: None); None when the file belongs to no cohort.

    Raises:
        InputFileError: the cohort's ``labels.csv`` or ``lesions.csv`` is broken.
    """
    found = cohort_image(path)
    if found is None:
        return None
    root, image_id = found
    for layer in viewer.layers:
        meta = _meta(layer)
        if is_cxr_truth(meta) and meta.get("image_id") == image_id and Path(meta["cohort"]).resolve() == root:
            return layer
    if not create:
        return None
    data = cxr_truth_layer(root, image_id, spacing=spacing, shape=shape, name=name)
    (layer,) = add_layers(viewer, [data])
    watch_truth_layer(layer)
    return layer


def layer_box_classes(layer: Any) -> list[str]:
    """Each box's class (``class`` feature) of a ground-truth boxes layer."""
    if "class" not in layer.features.columns:
        raise ConfigError(f"layer {layer.name!r} has no 'class' feature (not a lesion-boxes layer)")
    return [str(v) for v in layer.features["class"].tolist()]


#: the class of the boxes drawn next, per layer (napari resets feature defaults when the features are replaced)
_DRAW_CLASS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def set_box_class(layer: Any, cls: str) -> None:
    """Make ``cls`` the class (feature default) and colour of the boxes drawn next in ``layer``."""
    _DRAW_CLASS[layer] = str(cls)
    _keep_draw_class(layer)


def _keep_draw_class(layer: Any) -> None:
    cls = _DRAW_CLASS.get(layer)
    if cls is None:
        return
    defaults = layer.feature_defaults
    if "class" not in defaults.columns or not len(defaults) or str(defaults["class"].iloc[0]) != cls:
        layer.feature_defaults = {"class": cls}
    if not layer.selected_data:  # napari paints the selected shapes with the current colour too
        layer.current_edge_color = class_color(cls)


def _recolor(layer: Any) -> None:
    """Edge colours by class (only when they differ, so no event loops)."""
    from matplotlib.colors import to_rgb

    classes = layer_box_classes(layer)
    if not classes:
        return
    wanted = np.array([to_rgb(class_color(c)) for c in classes])
    current = np.asarray(layer.edge_color, dtype=np.float64)[:, :3]
    if current.shape != wanted.shape or not np.allclose(current, wanted, atol=1e-3):
        layer.edge_color = [class_color(c) for c in classes]


def watch_truth_layer(layer: Any) -> None:
    """Keep a ground-truth boxes layer's edges in its classes' colours and its draw class, as shapes are added and
    classes changed (once per layer)."""
    if layer in _WATCHED:
        return
    _WATCHED.add(layer)
    ref = weakref.ref(layer)

    def changed(event: Any = None) -> None:
        target = ref()
        action = getattr(event, "action", None)
        if target is None or str(getattr(action, "value", action)) in ("adding", "removing", "changing"):
            return  # act once the shapes are in (or out)
        _keep_draw_class(target)
        _recolor(target)

    layer.events.data.connect(changed)
    layer.events.features.connect(changed)


class XrayTruthWidget(Panel):
    """Draw, classify and save the lesion boxes and labels of X-rays of a cohort (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.xray = ComboBox(label="X-ray", choices=self._xray_names)
        self.draw_class = ComboBox(label="class of new boxes", choices=[])
        self.present = Container(label="present", widgets=[])
        self.present.tooltip = "the classes the X-ray shows (labels.csv); a class with a box is always present"
        self.save_button = PushButton(text="Save to the cohort (lesions.csv, labels.csv; keeps .bak)")
        self.status = StatusLine()
        self.retrain_title = Label(value="Retrain with corrections")
        self.retrain = XrayRetrainPanel(viewer, self)
        super().__init__(
            viewer,
            [self.xray, self.draw_class, self.present, self.save_button, self.status, self.retrain_title, self.retrain],
        )
        self.truth: Any = None
        self.cohort: tuple[Path, str] | None = None
        #: cohort folder -> the images saved with a change since its last round (the round's corrected images)
        self.saved: dict[Path, list[str]] = {}
        #: the "present" check box of each class of the chosen X-ray's cohort
        self.checks: dict[str, CheckBox] = {}
        self._ticking: weakref.WeakSet[Any] = weakref.WeakSet()
        #: layers are being inserted (an X-ray chosen then waits for the boxes layer its reader adds next)
        self._inserting = False
        #: the chosen X-ray while it waits for its boxes layer
        self._pending: weakref.ref[Any] | None = None
        self._pending_timer = QTimer(self.native)  # a child: never fires after the widget is gone
        self._pending_timer.setSingleShot(True)
        self._pending_timer.timeout.connect(self._create_pending)
        self.xray.changed.connect(self._xray_chosen)
        self.draw_class.changed.connect(self._class_chosen)
        self.save_button.changed.connect(self.save)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._xray_chosen()

    # -- choices ---------------------------------------------------------------------------------------------------
    def _xray_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in layers_of_kind(self.viewer, "cxr")]

    def _refresh(self, _: Any = None) -> None:
        """New choices when layers come and go. An X-ray chosen while its layers are being inserted takes the boxes
        layer its reader inserts next (a second one is never made); when none comes, one is added after the
        insertion (:meth:`_create_pending`)."""
        self._inserting = True
        try:
            self.xray.reset_choices()
        finally:
            self._inserting = False
        if self.truth is not None and self.truth not in self.viewer.layers:
            self.truth = None
        elif self.truth is None and self._pending is not None and self._chosen_xray() is self._pending():
            self._choose(create=False)

    def _create_pending(self) -> None:
        """After the insertion: the chosen X-ray still without its boxes layer gets a new one."""
        if self.truth is None and self._pending is not None and self._chosen_xray() is self._pending():
            self._choose(create=True)

    def _chosen_xray(self) -> Any:
        name = self.xray.value
        return self.viewer.layers[name] if name is not None and name in self.viewer.layers else None

    def _xray_chosen(self, _: Any = None) -> None:
        """Find (or add) the chosen X-ray's boxes layer, offer its cohort's classes and tick its labels."""
        self._choose(create=not self._inserting)

    def _choose(self, create: bool) -> None:
        layer = self._chosen_xray()
        self.truth, self.cohort, self.checks, self._pending = None, None, {}, None
        self.present.clear()
        if layer is None:
            self.draw_class.choices = []
            return
        meta = _meta(layer)
        try:
            path = meta.get("path")
            if not path:
                raise ConfigError(f"{layer.name} was not opened from a file, so it belongs to no cohort")
            found = cohort_image(path)
            if found is None:
                raise ConfigError(f"{path}: no cohort's labels.csv (in its folder or the one above) lists this X-ray")
            spacing, name = meta.get("spacing"), f"{layer.name} lesion boxes"
            truth = truth_layer_for(
                self.viewer, path, spacing=spacing, shape=layer.data.shape[-2:], name=name, create=create
            )
            table, classes = read_labels(found[0])
        except INPUT_ERRORS as exc:
            self.draw_class.choices = []
            self.status.value = f"error: {str(exc).strip() or type(exc).__name__}"
            return
        if truth is None:  # its layers are being inserted: the boxes layer comes next, or is made afterwards
            self._pending = weakref.ref(layer)
            self._pending_timer.start(0)
            return
        self.cohort = found
        self.truth = truth
        watch_truth_layer(truth)
        row = table[table["image"].astype(str).str.strip() == self.cohort[1]].iloc[0]
        self.draw_class.choices = list(classes)
        self.checks = {c: CheckBox(text=c, value=bool(int(row[c]))) for c in classes}
        self.present.extend(list(self.checks.values()))
        current = _DRAW_CLASS.get(truth)
        self.draw_class.value = current if current in classes else classes[0]
        set_box_class(truth, str(self.draw_class.value))
        self.viewer.layers.selection.active = truth
        if truth not in self._ticking:
            self._ticking.add(truth)
            truth.events.data.connect(self._tick_boxed)
        self._count()

    def _class_chosen(self, _: Any = None) -> None:
        if self.truth is not None and self.draw_class.value is not None:
            set_box_class(self.truth, str(self.draw_class.value))

    def _tick_boxed(self, event: Any = None) -> None:
        """A class with a box is present: tick it (on the widget's current layer only)."""
        if self.truth is None or getattr(event, "source", self.truth) is not self.truth:
            return
        for cls in set(layer_box_classes(self.truth)):
            check = self.checks.get(cls)
            if check is not None and not check.value:
                check.value = True

    def labels(self) -> dict[str, bool]:
        """The ticked classes: class -> present."""
        return {cls: bool(check.value) for cls, check in self.checks.items()}

    def _count(self, prefix: str = "") -> None:
        if self.truth is None:
            return
        classes = layer_box_classes(self.truth)
        counts = {c: classes.count(c) for c in dict.fromkeys(classes)}
        text = ", ".join(f"{n} {c}" for c, n in counts.items()) or "no boxes"
        self.status.value = f"{prefix}{self.truth.name}: {text}"

    # -- saving ----------------------------------------------------------------------------------------------------
    def _pixel_vertices(self, xray: Any) -> list[np.ndarray]:
        """Each box's vertices in the X-ray's data frame (native pixels), whatever the boxes layer's transform."""
        out = []
        for shape in self.truth.data:
            world = [self.truth.data_to_world(tuple(v)) for v in np.asarray(shape)]
            out.append(np.array([xray.world_to_data(w) for w in world], dtype=np.float64)[:, -2:])
        return out

    def save(self) -> list[Path] | None:
        """Write the chosen X-ray's boxes into ``lesions.csv`` and its labels into ``labels.csv``; returns the files
        written (None on an error, which the status line shows)."""
        xray = self._chosen_xray()
        try:
            if xray is None or self.truth is None or self.cohort is None:
                raise ConfigError("choose an X-ray of a cohort first (open its file from the cohort's images folder)")
            root, image_id = self.cohort
            classes = layer_box_classes(self.truth)
            try:
                boxes = layer_boxes(self._pixel_vertices(xray), classes, shape=xray.data.shape[-2:])
            except ValueError as exc:
                raise ConfigError(f"{self.truth.name}: {exc}; delete or redraw it") from None
            labels = self.labels()
            kept = sorted({c for c in classes if not labels.get(c, True)})
            written = save_image_truth(root, image_id, boxes, labels)
        except INPUT_ERRORS as exc:
            self.status.value = f"error: {str(exc).strip() or type(exc).__name__}"
            return None
        if written:
            done = self.saved.setdefault(root.resolve(), [])
            if image_id not in done:
                done.append(image_id)
        for cls in set(classes):
            self.checks[cls].value = True
        names = ", ".join(p.name for p in written) or "nothing changed"
        note = f" ({', '.join(kept)} kept present: it has boxes)" if kept else ""
        backups = " (previous files kept as .bak)" if written else ""
        self._count(prefix=f"saved {image_id} to {root}: {names}{backups}{note}. ")
        show_info(f"napari-patchdx: saved the ground truth of {image_id}")
        return written

    def corrected_images(self, root: str | Path) -> list[str]:
        """The images of the cohort in ``root`` saved with a change since its last round (in saving order)."""
        return list(self.saved.get(Path(root).resolve(), []))

    def forget_corrected(self, root: str | Path, images: list[str]) -> None:
        """Forget that ``images`` of the cohort in ``root`` were corrected (a round trained on them)."""
        key = Path(root).resolve()
        self.saved[key] = [i for i in self.saved.get(key, []) if i not in images]
