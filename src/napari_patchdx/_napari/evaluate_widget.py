"""The Evaluate dock widget: FROC and ROC curves, a per-slide / per-image table and points coloured by outcome.

Three sources, all evaluated by the core (:mod:`napari_patchdx.evaluation`) in a worker (Run / Stop / progress):

* **heatmap layers** in the viewer, with ground-truth Shapes layers (a heatmap whose slide has no ground-truth
  layer is a normal slide, the CAMELYON16 convention) and optionally Points layers of lesion points (else the
  points come from the heatmap by Liu et al.'s NMS): :func:`~napari_patchdx.evaluation.evaluate_slide_inputs_job`;
* **slide folders**: a folder of slides with their annotations beside them and a folder of heatmaps, written to an
  output folder by :func:`~napari_patchdx.evaluation.evaluate_slides_job`; the results are read back from its files;
* **X-ray folders**: a cohort (``labels.csv``, ``lesions.csv``) and a folder of CAM predictions,
  :func:`~napari_patchdx.evaluation.evaluate_cxr_job`.

For slides, every evaluated slide that is in the viewer gets a Points layer ``"<slide> outcomes"`` (hit green,
false positive red, ITC-ignored orange:
:func:`~napari_patchdx.layerdata.evaluation.outcome_points_layer`) placed just above its ground-truth layer.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, FileEdit, Select, Table
from qtpy.QtWidgets import QSizePolicy

from ..errors import ConfigError, InputFileError
from ..evaluation.figures import draw_roc
from ..evaluation.froc import classify_points
from ..evaluation.froc_result import draw_froc
from ..evaluation.masks import CAMELYON_MPP
from ..evaluation.points import PointsTable, read_camelyon_csv
from ..evaluation.settings import EvaluateSettings
from ..evaluation.slide_files import evaluate_slides_job
from ..evaluation.slides import SlideInput, SlidesEvaluation, evaluate_slide_inputs_job
from ..evaluation.xrays import evaluate_cxr_job
from ..io.annotations.read import read_annotations
from ..io.names import file_name
from ..layerdata.evaluation import grid_from_layer, outcome_points_layer, points_from_layer
from .controls import setting_control
from .panel import JobRunner, Panel, StatusLine, layers_of_kind, show_table_rows
from .retrain import RetrainPanel
from .review import ReviewPanel
from .slide_inputs import choose_new, slide_mpp_control
from .truth import layer_annotations, slide_layers, truth_for_slides, truth_layers
from .viewer import add_layers

SOURCES = ("heatmap layers", "slide folders", "X-ray folders")


def _path(edit: FileEdit) -> Path | None:
    value = str(edit.value)
    return None if value in ("", ".") else Path(value)


class EvaluateWidget(Panel):
    """Evaluate heatmaps against ground truth (layers or folders); curves, a table and outcome-coloured points."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = viewer
        self.source = ComboBox(label="evaluate", choices=list(SOURCES), value=SOURCES[0])
        self.heatmaps = Select(label="heatmaps", choices=self._heatmap_names, allow_multiple=True)
        self.truth = Select(label="ground truth", choices=self._truth_names, allow_multiple=True)
        self.points = Select(label="points (optional)", choices=self._points_names, allow_multiple=True)
        self.slides_dir = FileEdit(label="slides folder", mode="d", value="")
        self.heatmap_dir = FileEdit(label="heatmap folder", mode="d", value="")
        self.cohort_dir = FileEdit(label="X-ray cohort", mode="d", value="")
        self.predictions_dir = FileEdit(label="predictions folder", mode="d", value="")
        self.out_dir = FileEdit(label="output folder", mode="d", value="")
        self.threshold = setting_control(
            EvaluateSettings, "nms_threshold", "NMS threshold", min=0.0, max=0.99, step=0.05
        )
        self.radius = setting_control(
            EvaluateSettings, "nms_radius_um", "NMS radius (um)", min=0.0, max=10_000.0, step=10.0
        )
        self.level = setting_control(EvaluateSettings, "level", "FROC mask level", min=0, max=12)
        self.mpp = slide_mpp_control(viewer)
        self.n_boot = setting_control(EvaluateSettings, "n_boot", "bootstrap resamples", min=0, max=100_000)
        self.runner = JobRunner("Evaluate")
        self.summary = StatusLine()
        self.table = Table(value={"data": [], "columns": []})
        self.review = ReviewPanel(viewer)
        self.figure = Figure(figsize=(4.0, 2.6), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.canvas.setMinimumSize(200, 230)
        super().__init__(
            viewer,
            [
                self.source,
                self.heatmaps,
                self.truth,
                self.points,
                self.slides_dir,
                self.heatmap_dir,
                self.cohort_dir,
                self.predictions_dir,
                self.out_dir,
                self.threshold,
                self.radius,
                self.level,
                self.mpp,
                self.n_boot,
                self.runner,
                self.summary,
                self.table,
            ],
        )
        self.add_native(self.canvas)
        self.add_native(self.review.native)  # below the curves, which stay in view
        self.retrain = RetrainPanel(viewer, self.review)
        self.add_native(self.retrain.native)
        show_table_rows(self.table)
        #: the last result: a SlidesEvaluation (layers), or the metrics dict (folders)
        self.result: Any = None
        #: slide -> the outcome points layer added for it
        self.outcome_layers: dict[str, Any] = {}
        #: slide -> (slide layer, ground-truth layer, heatmap cell side in level-0 px, mpp) of the last run
        self._review_slides: dict[str, Any] = {}
        self.runner.run_button.changed.connect(self.run)
        self.source.changed.connect(self._show_inputs)
        viewer.layers.events.inserted.connect(self._inserted)
        viewer.layers.events.removed.connect(self._refresh)
        self.heatmaps.value = self._heatmap_names()
        self.truth.value = self._truth_names()
        self._show_inputs()

    # ------------------------------------------------------------------------------------------ choices
    def _heatmap_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in layers_of_kind(self.viewer, "heatmap")]

    def _truth_names(self, _: Any = None) -> list[str]:
        return [layer.name for layer in truth_layers(self.viewer)]

    def _points_names(self, _: Any = None) -> list[str]:
        return [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, napari.layers.Points)
            and layer.metadata.get("patchdx", {}).get("kind") not in ("outcome_points", "review_marker")
        ]

    def _refresh(self, _: Any = None) -> None:
        for select in (self.heatmaps, self.truth, self.points):
            select.reset_choices()

    def _inserted(self, event: Any) -> None:
        """Refresh the lists; a new heatmap or ground-truth layer is chosen (what Run inference just made)."""
        self._refresh()
        choose_new(event, self.heatmaps, self.truth)

    def _show_inputs(self, _: Any = None) -> None:
        source = str(self.source.value)
        layers, slides, xray = source == SOURCES[0], source == SOURCES[1], source == SOURCES[2]
        for w in (self.heatmaps, self.truth, self.points, self.review, self.retrain):
            w.visible = layers
        self.slides_dir.visible = self.heatmap_dir.visible = slides
        self.cohort_dir.visible = self.predictions_dir.visible = xray
        self.out_dir.visible = slides or xray
        for w in (self.threshold, self.radius, self.level, self.mpp):
            w.visible = not xray

    # ------------------------------------------------------------------------------------------ inputs
    def _slide_layer(self, name: str) -> Any:
        for layer in layers_of_kind(self.viewer, "slide"):
            if file_name(layer.metadata["patchdx"].get("path", layer.name)) == name or layer.name == name:
                return layer
        return None

    def _matching(self, names: list[str], slide: str, single: bool) -> Any:
        """The chosen layer belonging to ``slide`` (its name starts with the slide name), or the only one."""
        layers = [self.viewer.layers[n] for n in names if n in self.viewer.layers]
        match = [layer for layer in layers if layer.name.startswith(slide)]
        if match:
            return match[0]
        return layers[0] if single and len(layers) == 1 else None

    def _slide_inputs(self) -> list[SlideInput]:
        """One :class:`SlideInput` per chosen heatmap layer, with its slide's ground truth, shape and points."""
        names = list(self.heatmaps.value)
        slides = {h: self._slide_layer(self._heatmap_slide(self.viewer.layers[h])) for h in names}
        chosen = set(self.truth.value)
        truths = [layer for layer in truth_layers(self.viewer) if layer.name in chosen]
        shown = list({id(s): s for s in slides.values() if s is not None}.values())
        paired = truth_for_slides(shown, truths, shown=slide_layers(self.viewer), strict=False)
        self._review_slides = {}
        inputs = []
        for hname in names:
            layer = self.viewer.layers[hname]
            data = layer.data[0] if layer.multiscale else layer.data
            heat = np.asarray(data, dtype=np.float32)
            grid = grid_from_layer(layer.metadata, tuple(layer.scale), tuple(layer.translate), heat.shape)
            name = self._heatmap_slide(layer)
            slide_layer = self._slide_layer(name)
            shape = None
            if slide_layer is not None:
                shapes = slide_layer.metadata["patchdx"].get("level_shapes")
                shape = tuple(shapes[0]) if shapes else tuple(np.shape(slide_layer.data[0])[:2])
            if slide_layer is not None:
                truth_layer = paired[slide_layer.name]
            else:
                truth_layer = self._matching(list(self.truth.value), name, len(names) == 1)
            truth = None if truth_layer is None else layer_annotations(truth_layer, self.viewer)
            if slide_layer is not None:  # what the review needs to correct this slide's ground truth
                mpp = slide_layer.metadata["patchdx"].get("mpp") or grid.mpp
                self._review_slides[name] = (slide_layer, truth_layer, float(grid.spacing[0]), mpp)
            points_layer = self._matching(list(self.points.value), name, len(names) == 1)
            points: PointsTable | None = None
            if points_layer is not None:
                points = points_from_layer(
                    points_layer.data,
                    points_layer.features,
                    points_layer.metadata,
                    tuple(points_layer.scale),
                    tuple(points_layer.translate),
                )
            inputs.append(SlideInput(name, heat, grid, truth, shape, points))
        return inputs

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> None:
        """Start the evaluation of the chosen source in a worker; input errors go to the status line."""
        self.runner.attempt(self._start)

    def _start(self) -> None:
        source = str(self.source.value)
        settings = EvaluateSettings(  # checked as a configuration's or the command's would be
            nms_threshold=float(self.threshold.value),
            nms_radius_um=float(self.radius.value),
            level=int(self.level.value),
            n_boot=int(self.n_boot.value),
        )
        slide_params = settings.slide_options()
        if source == SOURCES[0]:
            if not self.heatmaps.value:
                raise ConfigError("choose heatmap layers first")
            inputs = self._slide_inputs()
            mpp = float(self.mpp.value) or None  # None: the slides' own, as the core decides (refused if they differ)
            self.runner.start(lambda: evaluate_slide_inputs_job(inputs, mpp=mpp, **slide_params), self._on_slides)
            return
        out = _path(self.out_dir)
        if out is None:
            raise ConfigError("choose an output folder first")
        if source == SOURCES[1]:
            from ..io.detect import slides_in_folder

            folder, heat_dir = _path(self.slides_dir), _path(self.heatmap_dir)
            if folder is None or heat_dir is None:
                raise ConfigError("choose the slides folder and the heatmap folder")
            pairs = slides_in_folder(folder)
            if not pairs:
                raise InputFileError(folder, "holds no slides")
            annotations = {file_name(p): a for p, a in pairs}
            mpp = float(self.mpp.value) or None
            slides = [p for p, _ in pairs]
            self.runner.start(
                lambda: evaluate_slides_job(slides, heat_dir, out, annotations=annotations, mpp=mpp, **slide_params),
                lambda metrics: self._on_slide_folder(metrics, out),
            )
            return
        cohort, preds = _path(self.cohort_dir), _path(self.predictions_dir)
        if cohort is None or preds is None:
            raise ConfigError("choose the X-ray cohort and the predictions folder")
        self.runner.start(
            lambda: evaluate_cxr_job(preds, cohort, out, n_boot=settings.n_boot), lambda m: self._on_cxr(m, out)
        )

    # ------------------------------------------------------------------------------------------ results
    def _on_slides(self, result: SlidesEvaluation) -> None:
        self.result = result
        self.figure.clear()
        ax_froc, ax_roc = self.figure.subplots(1, 2)
        if result.froc is not None:
            draw_froc(ax_froc, result.froc)
        else:
            ax_froc.text(0.5, 0.5, "FROC undefined:\nno lesion to find", ha="center", va="center")
            ax_froc.set_axis_off()
        valid = np.isfinite(result.scores)
        draw_roc(ax_roc, {"slides": (result.is_tumor[valid], result.scores[valid])}, title="slide-level ROC")
        self._draw_done()
        rows = result.rows()
        self._fill_table(rows)
        self._summarise(result.metrics())
        mpp_of: dict[str, float | None] = {}
        for layer in layers_of_kind(self.viewer, "heatmap"):
            meta = layer.metadata.get("patchdx", {})
            mpp_of[self._heatmap_slide(layer)] = (meta.get("grid") or {}).get("mpp") or meta.get("mpp")
        for name in result.names:
            self._add_outcomes(name, result.points[name], result.outcomes[name], mpp_of.get(name))
        self.review.set_evaluation(result, self._review_slides)

    def _on_slide_folder(self, metrics: dict[str, Any], out: Path) -> None:
        self.result = metrics
        self.figure.clear()
        ax_froc, ax_roc = self.figure.subplots(1, 2)
        froc_path = out / "froc.json"
        if froc_path.is_file():
            draw_froc(ax_froc, json.loads(froc_path.read_text(encoding="utf-8")))
        else:
            ax_froc.text(0.5, 0.5, "FROC undefined", ha="center", va="center")
            ax_froc.set_axis_off()
        rows = self._read_rows(out / "slides.csv")
        labels = [r["label"] == "tumor" for r in rows if r.get("score")]
        scores = [float(r["score"]) for r in rows if r.get("score")]
        draw_roc(ax_roc, {"slides": (labels, scores)}, title="slide-level ROC")
        self._draw_done()
        self._fill_table(rows)
        self._summarise(metrics)
        settings = metrics.get("settings", {})
        annotations = (metrics.get("inputs") or {}).get("annotations", {})
        for row in rows:
            name = row["slide"]
            slide_layer = self._slide_layer(name)
            if slide_layer is None:
                continue
            meta = slide_layer.metadata["patchdx"]
            shape = tuple(meta["level_shapes"][0]) if meta.get("level_shapes") else None
            ann = annotations.get(name)
            truth = read_annotations(ann) if ann else None
            points = read_camelyon_csv(out / "points" / f"{name}.csv")
            outcomes = classify_points(
                points, truth, shape, int(settings.get("level", 5)), float(settings.get("mpp", CAMELYON_MPP)), name=name
            )
            self._add_outcomes(name, points, outcomes, meta.get("mpp"))

    def _on_cxr(self, metrics: dict[str, Any], out: Path) -> None:
        self.result = metrics
        self.figure.clear()
        ax = self.figure.subplots(1, 1)
        rows = self._read_rows(out / "images.csv")
        classes = metrics.get("classes", [])
        curves = {
            c: ([int(r[f"{c}_label"]) for r in rows], [float(r[f"{c}_probability"]) for r in rows]) for c in classes
        }
        draw_roc(ax, curves, title="X-ray ROC per class")
        self._draw_done()
        self._fill_table(rows)
        self._summarise(metrics)

    def _draw_done(self) -> None:
        """Small fonts and short titles so both plots fit the dock, then redraw."""
        for ax in self.figure.axes:
            title = ax.get_title()
            if title.startswith("CAMELYON16 FROC: "):
                ax.set_title("FROC " + title.removeprefix("CAMELYON16 FROC: ").split(" (")[0], fontsize=8)
            else:
                ax.title.set_fontsize(8)
            ax.xaxis.label.set_size(7)
            ax.yaxis.label.set_size(7)
            ax.tick_params(labelsize=7)
            legend = ax.get_legend()
            if legend is not None:
                for text in legend.get_texts():
                    text.set_fontsize(6)
        self.canvas.draw_idle()

    @staticmethod
    def _read_rows(path: Path) -> list[dict[str, str]]:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))

    def _fill_table(self, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0]) if rows else []
        data = [[self._cell(r[c]) for c in columns] for r in rows]
        self.table.value = {"data": data, "index": list(range(len(rows))), "columns": columns}
        show_table_rows(self.table)

    @staticmethod
    def _cell(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4) if math.isfinite(value) else ""
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        return value

    def _summarise(self, metrics: dict[str, Any]) -> None:
        def fmt(v: Any) -> str:
            return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.3f}"

        if metrics.get("track") == "cxr":
            mean = metrics.get("mean_auroc", {})
            text = f"mean AUROC {fmt(mean.get('auc'))} [{fmt(mean.get('lo'))}, {fmt(mean.get('hi'))}]"
        else:
            froc = metrics.get("froc", {})
            auc = metrics.get("slide_auc", {})
            text = (
                f"FROC {fmt(froc.get('score'))} | slide AUC {fmt(auc.get('auc'))} "
                f"[{fmt(auc.get('lo'))}, {fmt(auc.get('hi'))}]"
            )
        self.summary.value = f"{text} | suspects {metrics.get('suspects', 0)}"

    def _add_outcomes(self, name: str, points: PointsTable, outcomes: Any, mpp: float | None) -> None:
        """Add (or replace) the ``"<slide> outcomes"`` layer, just above the slide's ground-truth layer."""
        layer_name = f"{name} outcomes"
        if layer_name in self.viewer.layers:
            self.viewer.layers.remove(layer_name)
        (layer,) = add_layers(self.viewer, [outcome_points_layer(points, outcomes, mpp, name=layer_name)])
        self.outcome_layers[name] = layer
        truth = self._matching(list(self.truth.value), name, len(self.heatmaps.value) == 1)
        if truth is None:
            truth = next((t for t in self.viewer.layers if t.name == f"{name} ground truth"), None)
        if truth is None or truth not in self.viewer.layers:
            return
        below = [self.viewer.layers.index(truth)]
        heatmap = next(
            (h for h in layers_of_kind(self.viewer, "heatmap") if self._heatmap_slide(h) == name),
            None,
        )
        if heatmap is not None:
            below.append(self.viewer.layers.index(heatmap))
        src, dest = self.viewer.layers.index(layer), max(below) + 1
        if src != dest:
            self.viewer.layers.move(src, dest)

    @staticmethod
    def _heatmap_slide(layer: Any) -> str:
        """The slide a heatmap layer belongs to: its metadata's slide file, else its name without " heatmap"."""
        meta = layer.metadata.get("patchdx", {})
        return file_name(meta["slide"]) if meta.get("slide") else layer.name.removesuffix(" heatmap")
