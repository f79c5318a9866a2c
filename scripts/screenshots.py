"""Take the documentation's screenshots from a real napari viewer.

Usage (from the repository root; needs an X display, so on a server run it under a virtual one)::

    xvfb-run -a -s "-screen 0 1920x1440x24" .venv/bin/python scripts/screenshots.py
    .venv/bin/python scripts/screenshots.py --only slide_ground_truth cxr_lesion_boxes
    .venv/bin/python scripts/screenshots.py --work /tmp/shots     # keep (and reuse) the demo runs between calls

Without ``DISPLAY`` the script re-runs itself under ``xvfb-run`` when that is installed.

Everything shown is made here. The script first runs the demo (:func:`napari_patchdx.cli.demo.run_demo`: synthetic
slide and chest X-ray cohorts, the slide run and the two X-ray runs through the pipeline) into a work folder, then
opens its files through the plugin's own reader, sample data and widgets, exactly as a user clicks, and saves each
shot as ``docs/images/<name>.png``: the whole napari window (canvas, layer list and dock widgets), scaled to
``--width`` pixels (default 1000) and stored as an optimised 256-colour PNG. A shot whose widget is not importable
(not written yet) is skipped with a message; any other failure is reported and makes the exit status 1, so a
broken widget never leaves a stale picture behind silently. A previous picture of a skipped or failed shot is
left in place.

The shots, in order:

=========================  =====================================================================================
``slide_ground_truth``     a tumour slide opened with its ASAP XML ground truth beside it
``sample_patches``         the Sample patches widget after sampling: tissue mask and tumour / normal patch boxes
``train_widget``           the Train widget after a short training run on slides in the viewer, with its curves
``cxr_lesion_boxes``       File > Open Sample > PatchDx > synthetic chest X-ray, with its lesion boxes
``inference_heatmap``      the Run inference widget after computing a test slide's heatmap (the demo's model)
``cxr_cam``                the Run inference widget on a test chest X-ray: CAMs, probabilities, lesion boxes
``evaluate_widget``        the Evaluate widget on the demo's test heatmaps and ground truth
``pipeline_widget``        the Run pipeline widget after running the demo's slide configuration (up to date)
=========================  =====================================================================================
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
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


def shot_slide_ground_truth(ctx: Context) -> None:
    row = first(slide_rows(ctx, tumour=True), "tumour slide")
    viewer = new_viewer("napari-patchdx: a slide and its ground truth")
    try:
        open_file(viewer, Path(row["path"]))
        viewer.reset_view()
        save_shot(ctx, viewer, "slide_ground_truth")
    finally:
        viewer.close()


def shot_sample_patches(ctx: Context) -> None:
    from napari_patchdx._napari.widgets import SamplePatchesWidget

    slide = Path(first(slide_rows(ctx, split="train", tumour=True), "training tumour slide")["path"])
    viewer = new_viewer("napari-patchdx: Sample patches")
    try:
        open_file(viewer, slide)
        widget = SamplePatchesWidget(viewer)
        dock(viewer, widget, "Sample patches")
        widget.inputs.slides.value = [slide.stem]
        widget.inputs.truth.value = [f"{slide.stem} ground truth"]
        widget.n.value = 120
        widget.patch_size.value = 128
        widget.center_size.value = 64
        run_widget(widget.runner, lambda: widget.table is not None, "sampling patches")
        viewer.reset_view()
        viewer.camera.zoom *= 1.6  # closer, so that the patch boxes are told apart
        save_shot(ctx, viewer, "sample_patches")
    finally:
        viewer.close()


def _train_widget_slides(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The first (largest) choice of slides for which the Train widget's split (a quarter of the chosen slides held
    out for validation, by name and seed, not by label) trains on tumour and normal slides and validates on a tumour
    slide (whose tissue holds both classes: the validation patches are drawn by the balanced sampler)."""
    import itertools

    from napari_patchdx.sampling.splits import assign_splits

    for k in range(len(rows), 1, -1):
        for chosen in itertools.combinations(rows, k):
            names = [Path(r["path"]).stem for r in chosen]
            splits = assign_splits(names, (0.75, 0.25, 0.0), seed=0)
            labels = {(splits[n], r["label"]) for n, r in zip(names, chosen, strict=True)}
            if {("train", "0"), ("train", "1"), ("val", "1")} <= labels:
                return list(chosen)
    raise RuntimeError("no choice of demo slides gives the Train widget a tumour slide in both splits")


def shot_train_widget(ctx: Context) -> None:
    from napari_patchdx._napari.widgets import TrainWidget

    rows = _train_widget_slides(slide_rows(ctx, split="train") + slide_rows(ctx, split="val"))
    viewer = new_viewer("napari-patchdx: Train")
    try:
        for row in rows:
            open_file(viewer, Path(row["path"]))
        shown = Path(next((r for r in rows if r["label"] == "1"), rows[0])["path"]).stem
        only_visible(viewer, lambda layer: layer.name.startswith(shown))
        widget = TrainWidget(viewer)
        dock(viewer, widget, "Train")
        widget.source.value = "slides in the viewer"
        widget.inputs.slides.value = [Path(r["path"]).stem for r in rows]
        widget.arch.value = "small"
        widget.epochs.value = 4
        widget.batch_size.value = 16
        widget.steps.value = 6
        widget.patch_size.value = 64
        widget.device.value = "cpu"
        widget.workers.value = 0
        widget.out_dir.value = fresh_dir(ctx, "train-widget")
        run_widget(widget.runner, lambda: widget.result is not None, "training on the slides")
        viewer.reset_view()
        save_shot(ctx, viewer, "train_widget")
    finally:
        viewer.close()


def shot_cxr_lesion_boxes(ctx: Context) -> None:
    viewer = new_viewer("napari-patchdx: a chest X-ray with lesion boxes")
    try:
        viewer.open_sample("napari-patchdx", "cxr")
        viewer.reset_view()
        save_shot(ctx, viewer, "cxr_lesion_boxes")
    finally:
        viewer.close()


def shot_inference_heatmap(ctx: Context) -> None:
    inference_widget = import_widget("infer_widget", "InferenceWidget")
    slide = Path(first(slide_rows(ctx, split="test", tumour=True), "test tumour slide")["path"])
    viewer = new_viewer("napari-patchdx: Run inference")
    try:
        open_file(viewer, slide)
        widget = inference_widget(viewer)
        dock(viewer, widget, "Run inference")
        widget.inputs.slides.value = [slide.stem]
        widget.checkpoints.value = [ctx.checkpoint("slides")]
        widget.device.value = "cpu"
        widget.resume.value = False
        widget.out_dir.value = fresh_dir(ctx, "infer-widget")
        run_widget(widget.runner, lambda: widget.results is not None, "slide inference")
        viewer.reset_view()
        save_shot(ctx, viewer, "inference_heatmap")
    finally:
        viewer.close()


def _lesion_boxes(cohort: Path, image: str) -> tuple[list[list[float]], list[str]]:
    """An image's lesion boxes (y0, x0, y1, x1 native pixels) and classes, read by the one lesions.csv parser."""
    from napari_patchdx.io.cohort import read_labels, read_lesions

    _, classes = read_labels(cohort)
    found = read_lesions(cohort / "lesions.csv", classes).get(image, [])
    return [[b.y0, b.x0, b.y1, b.x1] for b in found], [b.cls for b in found]


def shot_cxr_cam(ctx: Context) -> None:
    from napari_patchdx._napari.viewer import add_layers
    from napari_patchdx.layerdata import boxes_layer

    inference_widget = import_widget("infer_widget", "InferenceWidget")
    row = first(
        [r for r in ctx.split_rows("cxr-curriculum") if r["split"] == "test" and r["label"] == "1"],
        "test chest X-ray with a lesion",
    )
    image = Path(row["path"])
    viewer = new_viewer("napari-patchdx: CAMs")
    try:
        (layer,) = open_file(viewer, image)
        widget = inference_widget(viewer)
        dock(viewer, widget, "Run inference")
        widget.xrays.value = [layer.name]
        widget.checkpoints.value = [ctx.checkpoint("cxr-curriculum")]
        widget.device.value = "cpu"
        widget.out_dir.value = fresh_dir(ctx, "cam-widget")
        run_widget(widget.runner, lambda: widget.results is not None, "chest X-ray inference")
        boxes, classes = _lesion_boxes(ctx.demo / "data" / "cxr", row["name"])
        if boxes:
            spacing = tuple(float(v) for v in layer.scale[-2:])
            add_layers(viewer, [boxes_layer(boxes, classes, spacing=spacing, name=f"{layer.name} lesions")])
            # show the CAM of the annotated lesion's class (the widget shows the most probable class first)
            for cam in viewer.layers:
                if cam.metadata.get("patchdx", {}).get("kind") == "cam":
                    cam.visible = cam.metadata["patchdx"].get("class") == classes[0]
        viewer.reset_view()
        save_shot(ctx, viewer, "cxr_cam")
    finally:
        viewer.close()


def shot_evaluate_widget(ctx: Context) -> None:
    evaluate_widget = import_widget("evaluate_widget", "EvaluateWidget")
    rows = slide_rows(ctx, split="test")
    infer = ctx.run_dir("slides") / "infer"
    viewer = new_viewer("napari-patchdx: Evaluate", TALL)
    try:
        for row in rows:
            open_file(viewer, Path(row["path"]))
            open_file(viewer, infer / f"{row['name']}.heatmap.ome.tif")
        widget = evaluate_widget(viewer)
        dock(viewer, widget, "Evaluate")
        widget.source.value = "heatmap layers"
        widget.heatmaps.value = list(widget.heatmaps.choices)
        widget.truth.value = list(widget.truth.choices)
        widget.n_boot.value = 200
        run_widget(widget.runner, lambda: widget.result is not None, "evaluation")
        shown = first(slide_rows(ctx, split="test", tumour=True), "test tumour slide")["name"]
        only_visible(viewer, lambda layer: layer.name.startswith(shown))
        viewer.reset_view()
        save_shot(ctx, viewer, "evaluate_widget")
    finally:
        viewer.close()


def shot_pipeline_widget(ctx: Context) -> None:
    pipeline_widget = import_widget("pipeline_widget", "PipelineWidget")
    config = ctx.demo / "configs" / "slides.yaml"
    if not config.is_file():
        raise RuntimeError(f"{config}: the demo wrote no slide configuration")
    viewer = new_viewer("napari-patchdx: Run pipeline")
    try:
        widget = pipeline_widget(viewer)
        dock(viewer, widget, "Run pipeline")
        widget.config.value = config
        run_widget(widget.runner, lambda: widget.result is not None, "the pipeline run")
        shown = first(slide_rows(ctx, split="test", tumour=True), "test tumour slide")["name"]
        only_visible(viewer, lambda layer: layer.name.startswith(shown))
        viewer.reset_view()
        save_shot(ctx, viewer, "pipeline_widget")
    finally:
        viewer.close()


# ---------------------------------------------------------------------------------------------------------------
# your own slide: draw the ground truth, train on it, infer, evaluate (the slide tutorial's path, issue 12)
# ---------------------------------------------------------------------------------------------------------------

#: the own-slide cohort: what ``napari-patchdx synth wsi --out DIR --n 3 --size 2048`` writes (two tumour slides
#: with their ASAP XML, one normal slide, 0.5 um/px); the annotation file of :data:`OWN_SLIDE` is moved aside, so
#: that slide opens unannotated, as your own would
OWN_COHORT = {"n_tumor": 2, "n_normal": 1, "seed": 0, "height": 2048, "width": 2048, "mpp": 0.5}
OWN_SLIDE = "tumor_001"
#: seconds a napari notification stays (4 s) and fades
NOTIFICATION_S = 5.0


@dataclass
class OwnCohort:
    """The own-slide cohort: every slide, the unannotated one, its ground truth (moved aside: the polygons "drawn"
    come from it) and its tissue outlines ((N, 2) (y, x) level-0 pixels)."""

    root: Path
    slides: list[Path]
    own: Path
    answer: Path
    tissue: list[Any]


def own_cohort(ctx: Context) -> OwnCohort:
    """Write the cohort of :data:`OWN_COHORT` into a fresh ``own`` folder and move :data:`OWN_SLIDE`'s XML aside."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = fresh_dir(ctx, "own")
    made = make_wsi_cohort(root / "slides", **OWN_COHORT)
    own = next((s for s in made.slides if s.path.stem == OWN_SLIDE), None)
    if own is None or own.annotation_path is None:
        raise RuntimeError(f"the own-slide cohort has no tumour slide {OWN_SLIDE}")
    answer = root / "answers" / own.annotation_path.name
    answer.parent.mkdir(parents=True)
    os.replace(own.annotation_path, answer)
    return OwnCohort(root, [s.path for s in made.slides], own.path, answer, list(own.tissue))


def _drawn_regions(cohort: OwnCohort) -> tuple[Any, Any]:
    """What the user "draws" on the unannotated slide, as (N, 2) (y, x) level-0 polygons: its largest tumour (from
    the annotation file moved aside) and an octagon of normal tissue (inside the tissue, as far from every annotated
    region, ITCs included, as it gets)."""
    import numpy as np
    from matplotlib.path import Path as Outline
    from scipy.ndimage import distance_transform_edt

    from napari_patchdx import read_annotations

    truth = read_annotations(cohort.answer)
    tumour = np.asarray(max(truth.positives, key=lambda r: r.area).exterior, dtype=np.float64)
    step = 16.0  # level-0 pixels per cell of the coarse grid the normal region is looked for on
    side = int(OWN_COHORT["height"] / step)
    yy, xx = np.mgrid[0:side, 0:side]
    centres = (np.stack([yy.ravel(), xx.ravel()], axis=1) + 0.5) * step  # (y, x)

    def inside(polygons: list[Any]) -> Any:
        mask = np.zeros(len(centres), dtype=bool)
        for polygon in polygons:  # matplotlib's paths take (x, y)
            mask |= Outline(np.asarray(polygon)[:, ::-1]).contains_points(centres[:, ::-1])
        return mask.reshape(side, side)

    free = inside(cohort.tissue) & ~inside([r.exterior for r in truth.regions])
    distance = distance_transform_edt(free)
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    radius = min(float(distance[row, col]) * step * 0.7, 160.0)
    angles = np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False) + np.pi / 8
    centre = (np.array([row, col]) + 0.5) * step
    normal = centre + radius * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    return tumour, normal


def _zoom_to(viewer: Any, layer: Any, slide: Any, margin: float = 1.4) -> None:
    """Centre the view on ``layer``'s shapes, zoomed so that they fill the canvas with ``margin`` around them
    (after :meth:`reset_view`, which fits ``slide``)."""
    import numpy as np

    viewer.reset_view()
    box = np.asarray(layer.extent.world, dtype=np.float64)[:, -2:]
    whole = np.asarray(slide.extent.world, dtype=np.float64)[:, -2:]
    viewer.scene.camera.center = tuple((box[0] + box[1]) / 2)
    viewer.scene.camera.zoom *= float(np.min((whole[1] - whole[0]) / (margin * (box[1] - box[0]))))


def shot_own_slide(ctx: Context) -> None:
    """Issue 12's path in one viewer, three pictures: the Ground truth widget after drawing a tumour and a normal
    region on an unannotated slide (``ground_truth_widget``), the Train widget after a tiny run on the drawn layer
    (``own_slide_train``), and the Evaluate widget after Run inference with the checkpoint Train handed over
    (``own_slide_evaluate``). Also saves the drawn layer and the outcome points through napari's save path."""
    truth_widget = import_widget("truth_widget", "GroundTruthWidget")
    inference_widget = import_widget("infer_widget", "InferenceWidget")
    evaluate_widget = import_widget("evaluate_widget", "EvaluateWidget")
    from napari_patchdx._napari.widgets import TrainWidget

    cohort = own_cohort(ctx)
    own = cohort.own.stem
    tumour, normal = _drawn_regions(cohort)
    viewer = new_viewer("napari-patchdx: your own slide", WIDE)
    try:
        for path in cohort.slides:
            open_file(viewer, path)
        only_visible(viewer, lambda layer: layer.name.startswith(own))

        # 1. draw: the empty ground-truth layer the reader gave the unannotated slide, classes set in the widget
        widget = truth_widget(viewer)
        docked = dock(viewer, widget, "Ground truth")
        widget.slide.value = own
        layer = viewer.layers[widget.layer.value]
        if len(layer.data):
            raise RuntimeError(f"{layer.name}: the unannotated slide's ground-truth layer is not empty")
        widget.draw_class.value = "tumor"
        layer.add_polygons([tumour])
        widget.draw_class.value = "normal"
        layer.add_polygons([normal])
        layer.mode = "pan_zoom"
        layer.edge_width = 12  # level-0 pixels, every shape's (the layer controls' edge width: the next shape's)
        layer.current_edge_width = 12
        layer.opacity = 1.0
        _save_selected(viewer, layer, cohort.root / "saved" / f"{own}.geojson")
        widget.save_button.clicked.emit()
        if not str(widget.status.value).startswith("saved"):
            raise RuntimeError(f"Ground truth widget: {widget.status.value}")
        _zoom_to(viewer, layer, viewer.layers[own])
        process_events(NOTIFICATION_S)  # the "saved" notification fades
        save_shot(ctx, viewer, "ground_truth_widget")
        undock(viewer, docked)

        # 2. train (tiny) on the slides in the viewer with their ground-truth layers, the drawn one included
        train = TrainWidget(viewer)
        docked = dock(viewer, train, "Train")
        if layer.name not in train.inputs.truth.value:
            raise RuntimeError(f"Train: the drawn layer {layer.name!r} is not chosen")
        train.arch.value = "small"
        train.epochs.value = 4
        train.batch_size.value = 32
        train.steps.value = 15
        train.patch_size.value = 64
        train.device.value = "cpu"
        train.workers.value = 0
        train.out_dir.value = cohort.root / "run"
        run_widget(train.runner, lambda: train.result is not None, "training on the drawn ground truth")
        viewer.reset_view()
        save_shot(ctx, viewer, "own_slide_train")
        undock(viewer, docked)

        # 3. infer: the widget offers the checkpoint Train just wrote and <run>/heatmaps
        infer = inference_widget(viewer)
        docked = dock(viewer, infer, "Run inference")
        if not infer.checkpoints.value:
            raise RuntimeError("Run inference: the checkpoint Train wrote is not offered")
        infer.tta.value = False
        infer.device.value = "cpu"
        run_widget(infer.runner, lambda: infer.results is not None, "inference on the own slides")
        undock(viewer, docked)

        # 4. evaluate the new heatmaps against the ground truth (chosen by default), save the points
        evaluate = evaluate_widget(viewer)
        docked = dock(viewer, evaluate, "Evaluate")
        evaluate.n_boot.value = 200
        run_widget(evaluate.runner, lambda: evaluate.result is not None, "evaluation of the own slides")
        only_visible(viewer, lambda layer: layer.name.startswith(own))
        points = viewer.layers[f"{own} outcomes"]
        for suffix in (".geojson", ".csv"):
            _save_selected(viewer, points, cohort.root / "saved" / f"{own}.points{suffix}")
        viewer.layers.selection.active = points
        viewer.reset_view()
        process_events(NOTIFICATION_S)
        save_shot(ctx, viewer, "own_slide_evaluate")
    finally:
        viewer.close()


def _save_selected(viewer: Any, layer: Any, path: Path) -> None:
    """File > Save Selected Layers with ``layer`` selected, through the plugin's writer of ``path``'s type."""
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.layers.selection.clear()
    viewer.layers.selection.add(layer)
    written = viewer.layers.save(str(path), selected=True, plugin="napari-patchdx")
    if [str(path)] != list(written) or not path.is_file():
        raise RuntimeError(f"{path}: File > Save Selected Layers wrote {written}")
    print(f"  saved {layer.name!r} as {path.name}")


#: name -> (shot, needs the demo)
SHOTS: dict[str, tuple[Callable[[Context], None], bool]] = {
    "slide_ground_truth": (shot_slide_ground_truth, True),
    "sample_patches": (shot_sample_patches, True),
    "train_widget": (shot_train_widget, True),
    "cxr_lesion_boxes": (shot_cxr_lesion_boxes, False),
    "inference_heatmap": (shot_inference_heatmap, True),
    "cxr_cam": (shot_cxr_cam, True),
    "evaluate_widget": (shot_evaluate_widget, True),
    "pipeline_widget": (shot_pipeline_widget, True),
    "own_slide": (shot_own_slide, False),
}


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def _rerun_under_xvfb(argv: list[str]) -> int | None:
    """Without a display, run this script again under ``xvfb-run`` (None: a display exists, go on)."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("PATCHDX_NO_XVFB_RERUN"):
        return None
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        print("screenshots: no X display and no xvfb-run: run it on a desktop or install xvfb", file=sys.stderr)
        return 2
    env = {**os.environ, "PATCHDX_NO_XVFB_RERUN": "1"}
    cmd = [xvfb, "-a", "-s", "-screen 0 1920x1440x24", sys.executable, str(Path(__file__).resolve()), *argv]
    return subprocess.call(cmd, env=env)


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots; returns the exit status (0: every shot written or skipped, 1: a shot failed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: docs/images)")
    parser.add_argument("--width", type=int, default=1000, help="width of the written PNGs in pixels (default 1000)")
    parser.add_argument("--only", nargs="+", choices=list(SHOTS), help="take only these shots")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work folder for the demo runs, kept and reused (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    rerun = _rerun_under_xvfb(argv)
    if rerun is not None:
        return rerun

    import napari_patchdx._napari  # noqa: F401  (before torch: keeps triton out of the viewer process)

    # An exception in a Qt slot aborts a PyQt6 process that has Python's default excepthook (napari's own launcher
    # installs a handler); print it instead, so one failing shot is reported and the others still run.
    sys.excepthook = lambda kind, value, tb: traceback.print_exception(kind, value, tb)

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="patchdx-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(work=work, out=args.out.resolve(), width=args.width)
    wanted = [name for name in SHOTS if not args.only or name in args.only]
    failed: list[str] = []
    skipped: list[str] = []
    t_all = time.perf_counter()
    try:
        if any(SHOTS[name][1] for name in wanted):
            run_demo(ctx)
        for name in wanted:
            shot, _ = SHOTS[name]
            print(f"[{name}]")
            t0 = time.perf_counter()
            try:
                shot(ctx)
            except SkipShot as exc:
                skipped.append(name)
                print(f"  skipped: {exc}")
            except Exception:
                failed.append(name)
                traceback.print_exc()
            else:
                print(f"  done in {time.perf_counter() - t0:.0f} s")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{len(ctx.written)} written, {len(skipped)} skipped ({', '.join(skipped) or 'none'}), "
        f"{len(failed)} failed ({', '.join(failed) or 'none'}) in {time.perf_counter() - t_all:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
