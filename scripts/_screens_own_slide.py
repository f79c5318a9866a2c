"""The slide tutorial's screenshots (``own_slide``): an unannotated synthetic slide, ground truth drawn in the viewer,
then Sample, Train, Run inference and Evaluate in one viewer (see :mod:`screenshots`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _screens import (  # the shared helpers
    WIDE,
    Context,
    dock,
    fresh_dir,
    import_widget,
    new_viewer,
    only_visible,
    open_file,
    process_events,
    run_widget,
    save_shot,
    undock,
)

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


def _zoom_to(viewer: Any, box: Any, slide: Any, margin: float = 1.4) -> None:
    """Centre the view on ``box`` ([[y0, x0], [y1, x1]] world coordinates), zoomed so that it fills the canvas with
    ``margin`` around it (after :meth:`reset_view`, which fits ``slide``)."""
    import numpy as np

    viewer.reset_view()
    box = np.asarray(box, dtype=np.float64)[:, -2:]
    whole = np.asarray(slide.extent.world, dtype=np.float64)[:, -2:]
    viewer.scene.camera.center = tuple((box[0] + box[1]) / 2)
    viewer.scene.camera.zoom *= float(np.min((whole[1] - whole[0]) / (margin * (box[1] - box[0]))))


def shot_own_slide(ctx: Context) -> None:
    """Issue 12's path in one viewer, driven through the widgets, five pictures: the Ground truth widget after a
    tumour and a normal region are drawn on an unannotated slide (``ground_truth_widget``), Sample patches on the
    slides and their ground-truth layers (``own_slide_sample``), Train after a tiny run on them
    (``own_slide_train``), Run inference with the checkpoint and folder Train handed over (``own_slide_infer``),
    and Evaluate with the new heatmaps and the ground truth chosen by default (``own_slide_evaluate``). The drawn
    layer and the outcome points are saved through napari's save path too."""
    truth_widget = import_widget("truth_widget", "GroundTruthWidget")
    inference_widget = import_widget("infer_widget", "InferenceWidget")
    evaluate_widget = import_widget("evaluate_widget", "EvaluateWidget")
    from napari_patchdx._napari.widgets import SamplePatchesWidget, TrainWidget

    cohort = own_cohort(ctx)
    own = cohort.own.stem
    tumour, normal = _drawn_regions(cohort)
    viewer = new_viewer("napari-patchdx: your own slide", WIDE)

    def show(*kinds: str) -> None:
        """Show the unannotated slide, its ground truth and its layers named ``"<slide> <kind>"``, nothing else."""
        shown = {own, f"{own} ground truth", *(f"{own} {kind}" for kind in kinds)}
        only_visible(viewer, lambda layer: layer.name in shown)

    try:
        for path in cohort.slides:
            open_file(viewer, path)
        show()

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
        _zoom_to(viewer, layer.extent.world, viewer.layers[own])
        process_events(NOTIFICATION_S)  # the "saved" notification fades
        save_shot(ctx, viewer, "ground_truth_widget")
        undock(viewer, docked)

        # 2. sample: every slide with its ground-truth layer (chosen by default), per-slide train / val splits
        sample = SamplePatchesWidget(viewer)
        docked = dock(viewer, sample, "Sample patches")
        if layer.name not in sample.inputs.truth.value:
            raise RuntimeError(f"Sample patches: the drawn layer {layer.name!r} is not chosen")
        sample.n.value = 150
        sample.patch_size.value = 64
        sample.center_size.value = 32
        run_widget(sample.runner, lambda: sample.table is not None, "sampling the own slides")
        show("tissue", "patches")
        viewer.layers.selection.active = viewer.layers[f"{own} patches"]
        tumour_box = [tumour.min(axis=0) * OWN_COHORT["mpp"], tumour.max(axis=0) * OWN_COHORT["mpp"]]
        _zoom_to(viewer, tumour_box, viewer.layers[own], margin=2.2)  # close enough to tell the patches apart
        save_shot(ctx, viewer, "own_slide_sample")
        undock(viewer, docked)

        # 3. train (tiny) on the slides in the viewer with their ground-truth layers, the drawn one included
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
        show()
        viewer.layers.selection.active = layer
        viewer.reset_view()
        save_shot(ctx, viewer, "own_slide_train")
        undock(viewer, docked)

        # 4. infer: the widget offers the checkpoint Train just wrote and <run>/heatmaps
        infer = inference_widget(viewer)
        docked = dock(viewer, infer, "Run inference")
        if not infer.checkpoints.value:
            raise RuntimeError("Run inference: the checkpoint Train wrote is not offered")
        infer.tta.value = False
        infer.device.value = "cpu"
        run_widget(infer.runner, lambda: infer.results is not None, "inference on the own slides")
        show("heatmap")
        viewer.layers.selection.active = viewer.layers[f"{own} heatmap"]
        viewer.reset_view()
        save_shot(ctx, viewer, "own_slide_infer")
        undock(viewer, docked)

        # 5. evaluate the new heatmaps against the ground truth (chosen by default), save the points
        evaluate = evaluate_widget(viewer)
        docked = dock(viewer, evaluate, "Evaluate")
        evaluate.n_boot.value = 200
        run_widget(evaluate.runner, lambda: evaluate.result is not None, "evaluation of the own slides")
        show("heatmap", "outcomes")
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
