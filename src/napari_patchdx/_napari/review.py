"""Review in the Evaluate widget: step through the lesion points (by probability or by outcome) and the missed
lesions with the view jumping to each, accept or reject them, and write every correction into the slide's
ground-truth layer and its file at once.

The rules are the core's (:mod:`napari_patchdx.evaluation.review`): rejecting a false positive adds a normal disc
around it to the ground truth (a hard negative for "Retrain with corrections"), accepting one adds a tumour disc
the user can refine; the disc's radius defaults to two heatmap cells. Each correction is saved at once
(:func:`~napari_patchdx._napari.truth.save_truth`: atomically, the previous file kept as ``.bak``), into the file
the ground truth was read from or ``<slide>.xml`` beside the slide, so nothing is lost when napari closes.

Keyboard (on the viewer while the Evaluate widget is open): ``.`` next, ``,`` previous, ``Shift-A`` accept,
``Shift-R`` reject.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton, Table

from ..errors import ConfigError
from ..evaluation.review import ACCEPT, REJECT, REVIEW_ORDERS, ReviewItem, decide, order_items, review_items
from ..geometry import level0_to_world
from ..layerdata.shapes import to_layer_data
from .panel import INPUT_ERRORS, StatusLine, show_table_rows
from .truth import new_truth_layer, patchdx_meta, recolor, save_truth, truth_file

#: the name of the layer that rings the item under review
MARKER = "review: current"

#: keyboard shortcuts of the review (napari key names) -> what they do
KEYS = {".": "next", ",": "previous", "Shift-A": "accept", "Shift-R": "reject"}

OUTCOME_NAMES = {
    "hit": "hit",
    "false_positive": "false positive",
    "itc_ignored": "ITC",
    "missed_lesion": "missed",
    "uncertain": "uncertain",
}


class ReviewPanel(Container):
    """The review part of the Evaluate widget (see the module docstring)."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        self.order = ComboBox(label="review", choices=list(REVIEW_ORDERS), value=next(iter(REVIEW_ORDERS)))
        self.table = Table(value={"data": [], "index": [], "columns": ["slide", "probability", "outcome", "decision"]})
        self.previous_button = PushButton(text="Previous (,)")
        self.next_button = PushButton(text="Next (.)")
        self.accept_button = PushButton(text="Accept (Shift-A)")
        self.reject_button = PushButton(text="Reject (Shift-R)")
        self.radius = FloatSpinBox(label="correction radius (um)", min=0.0, max=100_000.0, step=10.0, value=0.0)
        self.radius.tooltip = "radius of the normal / tumour disc a decision adds (0: two heatmap cells)"
        self.suggest_button = PushButton(text="Suggest where to look (model uncertainty)")
        self.suggest_button.tooltip = (
            "rank the slides of the heatmap layers by the model's uncertainty (probability near 0.5), show it as a "
            "layer and list the most uncertain regions to review"
        )
        self.status = StatusLine()
        steps = Container(widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False)
        decisions = Container(widgets=[self.accept_button, self.reject_button], layout="horizontal", labels=False)
        for row in (steps, decisions):
            row.margins = (0, 0, 0, 0)
        super().__init__(
            widgets=[self.order, self.table, steps, decisions, self.radius, self.suggest_button, self.status]
        )
        self.margins = (0, 0, 0, 0)
        show_table_rows(self.table)
        #: every item of the evaluation, and those of the chosen order
        self.items: list[ReviewItem] = []
        self.shown: list[ReviewItem] = []
        self.current = -1
        #: slide name -> its ground truth when the evaluation was shown (None: none)
        self.before: dict[str, Any] = {}
        self._saving: set[int] = set()  # ground-truth layers saved after every edit
        self._writing = False  # a decision is adding its region (it saves once, itself)
        #: slide name -> (slide layer, ground-truth layer or None, heatmap cell side in level-0 px, mpp)
        self.slides: dict[str, tuple[Any, Any, float, float | None]] = {}
        self.order.changed.connect(self._reorder)
        self.suggest_button.changed.connect(self.suggest)
        self.table.native.cellClicked.connect(lambda row, _column: self.go(row))  # a click on a row goes there
        self.previous_button.changed.connect(lambda: self.step(-1))
        self.next_button.changed.connect(lambda: self.step(1))
        self.accept_button.changed.connect(lambda: self.decide(ACCEPT))
        self.reject_button.changed.connect(lambda: self.decide(REJECT))
        actions: dict[str, Callable[[], Any]] = {
            "next": lambda: self.step(1),
            "previous": lambda: self.step(-1),
            "accept": lambda: self.decide(ACCEPT),
            "reject": lambda: self.decide(REJECT),
        }
        for key, action in KEYS.items():
            viewer.bind_key(key, _key_action(actions[action]), overwrite=True)

    def set_evaluation(self, result: Any, slides: dict[str, tuple[Any, Any, float, float | None]]) -> None:
        """Review ``result`` (a :class:`~napari_patchdx.evaluation.SlidesEvaluation`) of the slides in the viewer:
        ``slides`` maps each slide name to (its slide layer, its ground-truth layer or None, the heatmap cell side
        in level-0 pixels, its mpp)."""
        from .truth import layer_annotations

        self.slides = dict(slides)
        truths = {}
        for name, (_, truth_layer, _, _) in self.slides.items():
            truths[name] = None if truth_layer is None else layer_annotations(truth_layer, self.viewer)
        self.before = dict(truths)  # what the model was evaluated against: corrections are measured from here
        for _, truth_layer, _, _ in self.slides.values():
            self._autosave(truth_layer)
        points = {n: p for n, p in result.points.items() if n in self.slides}
        outcomes = {n: result.outcomes[n] for n in points}
        self.items = review_items(points, outcomes, truths)
        self._reorder()

    def suggest(self) -> list[tuple[str, float]]:
        """Rank the slides of the viewer's heatmap layers by uncertainty, add an ``"<slide> uncertainty"`` layer for
        each and review their most uncertain regions; returns ``(slide, score)`` most uncertain first."""
        from ..evaluation.review import UNCERTAIN
        from ..evaluation.uncertainty import rank_slides, uncertain_regions, uncertainty_map
        from ..io.names import file_name
        from ..layerdata.evaluation import grid_from_layer
        from .truth import layer_annotations, slide_layers, slide_path, truth_for_slides, truth_layers

        shown = slide_layers(self.viewer)
        heatmaps, found = {}, []
        for layer in [lyr for lyr in self.viewer.layers if patchdx_meta(lyr).get("kind") == "heatmap"]:
            meta = patchdx_meta(layer)
            data = np.asarray(layer.data[0] if layer.multiscale else layer.data, dtype=np.float64)
            grid = grid_from_layer(layer.metadata, tuple(layer.scale), tuple(layer.translate), data.shape)
            name = file_name(meta["slide"]) if meta.get("slide") else layer.name.removesuffix(" heatmap")
            slide = next((s for s in shown if meta.get("slide") and slide_path(s) == Path(meta["slide"])), None)
            if slide is None:
                continue
            truth = truth_for_slides([slide], truth_layers(self.viewer), shown=shown, strict=False)[slide.name]
            self.slides[name] = (slide, truth, float(grid.spacing[0]), slide.metadata["patchdx"].get("mpp") or grid.mpp)
            if name not in self.before:  # corrections are measured from the ground truth shown now
                self.before[name] = None if truth is None else layer_annotations(truth, self.viewer)
            self._autosave(truth)
            heatmaps[name] = data
            uncertainty = uncertainty_map(data)
            self._show_uncertainty(name, uncertainty, layer)
            for region in uncertain_regions(uncertainty, data, grid):
                item = ReviewItem(name, np.array(region.yx), region.probability, UNCERTAIN, score=region.uncertainty)
                found.append(item)
        if not heatmaps:
            self.status.value = "error: no heatmap layer over a slide in the viewer (run inference first)"
            return []
        ranking = rank_slides(heatmaps)
        self.items = [it for it in self.items if it.outcome != UNCERTAIN] + found
        self.order.value = "where to look (most uncertain)"
        self._reorder()
        listed = ", ".join(f"{name} {score:.2f}" for name, score in ranking)
        self.status.value = f"slides by uncertainty: {listed}. " + self.status.value
        return ranking

    def _show_uncertainty(self, name: str, uncertainty: np.ndarray, heatmap: Any) -> None:
        from .viewer import add_layers

        layer_name = f"{name} uncertainty"
        if layer_name in self.viewer.layers:
            self.viewer.layers.remove(layer_name)
        kwargs = {
            "name": layer_name,
            "colormap": "viridis",
            "contrast_limits": (0.0, 1.0),
            "opacity": 0.5,
            "blending": "translucent",
            "scale": tuple(heatmap.scale),
            "translate": tuple(heatmap.translate),
            "units": tuple(str(u) for u in heatmap.units),
            "metadata": {"patchdx": {"kind": "uncertainty", "slide": patchdx_meta(heatmap).get("slide")}},
        }
        add_layers(self.viewer, [(uncertainty.astype(np.float32), kwargs, "image")])

    def corrections(self) -> list[Any]:
        """Every reviewed slide's ground truth before (as evaluated) and now (its layer, with the corrections made
        since, decided here or drawn by hand), as :class:`~napari_patchdx.training.corrections.SlideCorrection`s;
        slides without a ground-truth layer are left out."""
        from ..io.annotations.model import AnnotationSet
        from ..training.corrections import SlideCorrection
        from .truth import layer_annotations, slide_path

        found = []
        for name, (slide, layer, _, _) in self.slides.items():
            if layer is None or layer not in self.viewer.layers:
                continue
            now = layer_annotations(layer, self.viewer) or AnnotationSet([])
            found.append(SlideCorrection(slide_path(slide), now, self.before.get(name)))
        return found

    def _reorder(self, _: Any = None) -> None:
        self.shown = order_items(self.items, str(self.order.value))
        self.current = -1
        self._fill()
        if self.shown:
            self.go(0)
        else:
            self.status.value = "nothing to review in this order"

    def _fill(self) -> None:
        rows = [
            [
                it.slide,
                "" if math.isnan(it.probability) else round(it.probability, 4),
                OUTCOME_NAMES.get(it.outcome, it.outcome),
                it.decision,
            ]
            for it in self.shown
        ]
        columns = ["slide", "probability", "outcome", "decision"]
        self.table.value = {"data": rows, "index": list(range(len(rows))), "columns": columns}
        show_table_rows(self.table)

    def step(self, delta: int) -> None:
        """Go to the next (``delta`` 1) or previous (-1) item."""
        if self.shown:
            self.go(min(max(self.current + delta, 0), len(self.shown) - 1))

    def go(self, index: int) -> None:
        """Show item ``index`` of the order: the view centred on it, zoomed to a few correction radii."""
        item = self.shown[index]
        self.current = index
        mpp = self.slides[item.slide][3]
        centre = level0_to_world(np.asarray(item.yx, dtype=np.float64), mpp)
        camera = self.viewer.scene.camera  # napari >= 0.9 (viewer.camera is its deprecated name)
        camera.center = (float(centre[0]), float(centre[1]))
        span = 12.0 * max(self._radius_px(item), item.size / 2.0) * (mpp or 1.0)  # world units across the view
        camera.zoom = 600.0 / span
        self._mark(item, mpp)
        self.table.native.selectRow(index)
        where = f"{index + 1} of {len(self.shown)}: {item.slide}"
        what = OUTCOME_NAMES.get(item.outcome, item.outcome)
        prob = "" if math.isnan(item.probability) else f", p = {item.probability:.3f}"
        self.status.value = f"{where}, {what}{prob}" + (f" ({item.decision})" if item.decision else "")

    def _mark(self, item: ReviewItem, mpp: float | None) -> None:
        """Ring the current item in the canvas: the ``"review: current"`` Points layer (a yellow circle as wide as
        the correction disc), made on first use and moved after."""
        from ..geometry import vector_transform

        size = 2.0 * max(self._radius_px(item), item.size / 2.0)
        data = np.asarray(item.yx, dtype=np.float64).reshape(1, 2)
        if MARKER in self.viewer.layers:
            marker = self.viewer.layers[MARKER]
            marker.data = data
            marker.size = size
            marker.scale, marker.translate = vector_transform(mpp)["scale"], vector_transform(mpp)["translate"]
            return
        kwargs = {
            "name": MARKER,
            "size": size,
            "face_color": "transparent",
            "border_color": "#ffd60a",
            "border_width": 0.08,
            "border_width_is_relative": True,
            "metadata": {"patchdx": {"kind": "review_marker", "frame": "level0", "mpp": mpp}},
            **vector_transform(mpp),
        }
        from .viewer import add_layers

        add_layers(self.viewer, [(data, kwargs, "points")])

    def _radius_px(self, item: ReviewItem) -> float:
        """The correction radius in level-0 pixels (the field in um, or two heatmap cells)."""
        _, _, cell, mpp = self.slides[item.slide]
        um = float(self.radius.value)
        if um > 0:
            return um / mpp if mpp else um
        return 2.0 * cell

    def decide(self, decision: str) -> Path | None:
        """Accept or reject the current item; a correction goes into the slide's ground-truth layer and its file at
        once. Returns the file written, if any; errors go to the status line."""
        if not (0 <= self.current < len(self.shown)):
            self.status.value = "error: evaluate first, then choose a lesion point"
            return None
        item = self.shown[self.current]
        try:
            region = decide(item, decision, self._radius_px(item))
            written = None if region is None else self._correct(item.slide, region)
        except INPUT_ERRORS as exc:
            self.status.value = f"error: {str(exc).strip() or type(exc).__name__}"
            return None
        row = self.current
        self._fill()
        self.go(min(row + 1, len(self.shown) - 1))
        done = f"{item.slide}: {OUTCOME_NAMES.get(item.outcome, item.outcome)} {decision}"
        saved = f", ground truth saved to {written}" if written is not None else ""
        self.status.value = f"{done}{saved}. Now {self.status.value}"
        return written

    def _autosave(self, layer: Any) -> None:
        """Save a reviewed slide's ground-truth layer to its file whenever shapes are added, removed or moved in it
        (a lesion drawn by hand is a correction too), so no correction is lost when napari closes."""
        if layer is None or id(layer) in self._saving:
            return
        self._saving.add(id(layer))
        layer.events.data.connect(self._saved_after_edit)

    def _saved_after_edit(self, event: Any) -> None:
        action = getattr(event, "action", None)
        if str(getattr(action, "value", action)) not in ("added", "removed", "changed"):
            return
        layer = getattr(event, "source", None)
        entry = next(((s, t) for s, t, _, _ in self.slides.values() if t is layer), None)
        if entry is None or self._writing:
            return
        slide, truth = entry
        try:
            path, _ = save_truth(truth, self.viewer, truth_file(truth, slide))
        except INPUT_ERRORS as exc:  # e.g. the last shape deleted: nothing to save
            self.status.value = f"not saved: {str(exc).strip()}"
            return
        meta = {**patchdx_meta(truth), "source": str(path)}
        truth.metadata = {**truth.metadata, "patchdx": meta}
        self.status.value = f"{truth.name}: saved to {path}"

    def _correct(self, slide_name: str, region: Any) -> Path:
        """Add ``region`` to the slide's ground-truth layer (a new one framed like the slide when it has none) and
        save the layer at once."""
        slide, layer, cell, mpp = self.slides[slide_name]
        if layer is None:
            layer = new_truth_layer(self.viewer, slide)
            self.slides[slide_name] = (slide, layer, cell, mpp)
            self._autosave(layer)
        if patchdx_meta(layer).get("frame") != "level0":
            raise ConfigError(
                f"layer {layer.name!r} is not a ground-truth layer opened or made by napari-patchdx; add the "
                "correction to the slide's ground-truth layer (Ground truth widget: New ground-truth layer)"
            )
        from ..io.annotations.model import AnnotationSet

        data, features = to_layer_data(AnnotationSet([region]))
        features["region"] = [-1] * len(data)  # a new region, never a hole of an existing one
        before = len(layer.data)
        self._writing = True
        try:
            layer.add_polygons(data)
        finally:
            self._writing = False
        frame = layer.features.copy()
        for key, values in features.items():
            if key in frame.columns:
                frame.loc[frame.index[before:], key] = values
        layer.features = frame
        recolor(layer)
        path, _ = save_truth(layer, self.viewer, truth_file(layer, slide))
        meta = {**patchdx_meta(layer), "source": str(path)}
        layer.metadata = {**layer.metadata, "patchdx": meta}
        return path


def _key_action(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(viewer: Any) -> None:
        action()

    return handler
