"""The review tutorial's screenshots (``review_cycle``): a first model trained, run and evaluated in the viewer, then
the review of its lesion points, two false positives rejected (the two most probable whose discs lie clear of every
true lesion: the script plays a reviewer who sees the tissue), a missed lesion drawn back, where to look next, and a
round of retraining with the corrections, all driven through the widgets of one viewer (see :mod:`screenshots`).
Training is deterministic, so every run takes the same pictures (the review tutorial quotes their numbers).

The cohort is what ``napari-patchdx synth wsi --out DIR --n 5 --size 1536 --mpp 1.0 --seed 1`` writes (three tumour
slides with their ASAP XML, two normal slides); the annotator "missed" the largest lesion of :data:`SHOWN`: it is
deleted from that slide's ground-truth layer before training and drawn back during the review, as in
``tests/_napari/test_gui_review_cycle.py``.
"""

from __future__ import annotations

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

#: the cohort: what ``napari-patchdx synth wsi --n 5 --size 1536 --mpp 1.0 --seed 1`` writes
REVIEW_COHORT = {"n_tumor": 3, "n_normal": 2, "seed": 1, "height": 1536, "width": 1536, "mpp": 1.0}
#: the Train widget's settings of the first model
FIRST_MODEL = {"arch": "small", "epochs": 3, "steps": 32, "batch_size": 32, "patch_size": 64, "patch_mpp": 2.0}
#: the slide whose largest lesion the annotator "missed" (drawn back during the review)
SHOWN = "tumor_002"
#: the review's correction radius (um): two heatmap cells (0) are 256 um here, more than the room between lesions
CORRECTION_RADIUS_UM = 100.0
#: seconds a napari notification stays (4 s) and fades
NOTIFICATION_S = 5.0


def review_cohort(ctx: Context) -> list[Path]:
    """Write the cohort of :data:`REVIEW_COHORT` into a fresh ``review`` folder; its slide files."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    made = make_wsi_cohort(fresh_dir(ctx, "review") / "slides", **REVIEW_COHORT)
    return [s.path for s in made.slides]


def scroll_to(panel: Any, native: Any, above: int = 8) -> None:
    """Scroll a dock :class:`~napari_patchdx._napari.panel.Panel` so that the Qt widget ``native`` (inside it)
    starts ``above`` pixels below the top of the visible part."""
    from qtpy.QtCore import QPoint

    bar = panel.body.root_native_widget.verticalScrollBar()
    for _ in range(5):  # the scroll range follows the layout, which takes in what the last step added
        process_events(0.5)
        want = max(0, native.mapTo(panel.body.native, QPoint(0, 0)).y() - above)
        bar.setValue(want)
        if bar.value() == want:
            break
    process_events(0.3)


def _missed_lesion(layer: Any, annotation: Path) -> Any:
    """Delete the slide's largest tumour region from its ground-truth layer (the annotator "missed" it) and return
    its outline ((N, 2) (y, x) level-0 pixels), to draw back during the review."""
    import numpy as np

    from napari_patchdx import read_annotations

    missed = max(read_annotations(annotation).positives, key=lambda r: r.area).exterior
    found = [i for i, d in enumerate(layer.data) if d.shape == missed.shape and np.allclose(d, missed)]
    if len(found) != 1:
        raise RuntimeError(f"{layer.name}: the largest lesion of {annotation.name} is not one shape of the layer")
    layer.selected_data = set(found)
    layer.remove_selected()
    return np.asarray(missed, dtype=np.float64)


def _contrast(difference: Any) -> float:
    """Symmetric contrast limit for a difference map: its 99th percentile of |after - before|, rounded up to 0.1."""
    import numpy as np

    values = np.abs(np.asarray(difference, dtype=np.float64))
    values = values[np.isfinite(values)]
    top = float(np.percentile(values, 99)) if values.size else 1.0
    return min(1.0, max(0.1, float(np.ceil(top * 10.0) / 10.0)))


def _inside(yx: Any, outline: Any) -> bool:
    import numpy as np

    from napari_patchdx.io.annotations.polygon import points_in_polygon

    return bool(points_in_polygon(np.asarray([yx], dtype=np.float64), outline)[0])


def _clear_of(yx: Any, radius: float, outlines: list[Any]) -> bool:
    """Whether a disc of ``radius`` level-0 pixels around ``yx`` stays clear of every outline ((N, 2) (y, x)): no
    point of its rim (or its centre) inside one, no vertex of one inside it (a normal disc is cut out of the tumour
    it overlaps, which a reviewer avoids)."""
    import numpy as np

    t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    rim = np.asarray(yx, dtype=np.float64) + radius * np.stack([np.sin(t), np.cos(t)], axis=1)
    for outline in outlines:
        if any(_inside(p, outline) for p in [yx, *rim]):
            return False
        if np.any(np.hypot(*(np.asarray(outline) - np.asarray(yx)).T) <= radius):
            return False
    return True


def shot_review_cycle(ctx: Context) -> None:
    """Issue 14's cycle in one viewer, driven through the widgets, four pictures: the review on a false positive
    (``review_false_positive``), the normal disc a rejection adds to the ground truth (``review_rejected``), the
    model's uncertainty (``review_uncertainty``) and the retraining round's heatmap difference
    (``retrain_difference``)."""
    evaluate_widget = import_widget("evaluate_widget", "EvaluateWidget")
    inference_widget = import_widget("infer_widget", "InferenceWidget")
    import_widget("review", "ReviewPanel")
    import_widget("retrain", "RetrainPanel")
    from napari_patchdx._napari.widgets import TrainWidget
    from napari_patchdx.evaluation.review import REJECT

    slides = review_cohort(ctx)
    root = slides[0].parent
    viewer = new_viewer("napari-patchdx: review, correct, retrain", WIDE)

    def show(slide: str, *kinds: str) -> None:
        """Show ``slide`` and its layers named ``"<slide> <kind>"``, nothing else."""
        shown = {slide, *(f"{slide} {kind}" for kind in kinds)}
        only_visible(viewer, lambda layer: layer.name in shown)

    try:
        from napari_patchdx import read_annotations

        for path in slides:
            open_file(viewer, path)
        # every slide's true tumour outlines (the missed one too): a reviewer rejects only what lies clear of them
        tumours = {
            p.stem: [r.exterior for r in read_annotations(p.with_suffix(".xml")).positives]
            for p in slides
            if p.with_suffix(".xml").is_file()
        }
        missed = _missed_lesion(viewer.layers[f"{SHOWN} ground truth"], root / f"{SHOWN}.xml")

        # 1. a first model: train on the slides in the viewer, infer, evaluate
        train = TrainWidget(viewer)
        docked = dock(viewer, train, "Train")
        for key, value in FIRST_MODEL.items():
            getattr(train, key).value = value
        train.device.value = "cpu"
        train.workers.value = 0
        train.deterministic.value = True  # the same first model on every run of this script
        train.out_dir.value = root.parent / "run"
        run_widget(train.runner, lambda: train.result is not None, "training the first model")
        undock(viewer, docked)

        infer = inference_widget(viewer)
        docked = dock(viewer, infer, "Run inference")
        infer.tta.value = False
        infer.device.value = "cpu"
        run_widget(infer.runner, lambda: infer.results is not None, "inference with the first model")
        undock(viewer, docked)

        evaluate = evaluate_widget(viewer)
        dock(viewer, evaluate, "Evaluate")
        evaluate.n_boot.value = 200
        run_widget(evaluate.runner, lambda: evaluate.result is not None, "evaluation of the first model")

        # 2. review the false positives, most probable first; the view jumps to each. The two most probable whose
        # discs lie clear of every true lesion are rejected (the others lie on or at the edge of tumour)
        review = evaluate.review
        review.order.value = "false positives"
        review.radius.value = CORRECTION_RADIUS_UM
        radius = CORRECTION_RADIUS_UM / REVIEW_COHORT["mpp"]
        clear = [i for i, it in enumerate(review.shown) if _clear_of(it.yx, radius, tumours.get(it.slide, []))]
        for i, item in enumerate(review.shown):
            where = "on the missed lesion" if item.slide == SHOWN and _inside(item.yx, missed) else ""
            where = where or ("clear of tumour" if i in clear else "on or next to tumour")
            print(f"  false positive {i + 1}: {item.slide}, p = {item.probability:.4f} at {item.yx.round()}, {where}")
        picks = clear[:2]
        if len(picks) < 2:
            raise RuntimeError(f"the first model made {len(picks)} false positive(s) clear of the true lesions")
        reviewed = review.shown[picks[0]].slide
        for name in {reviewed, SHOWN}:
            truth = viewer.layers[f"{name} ground truth"]
            truth.edge_width = 6  # level-0 pixels, every shape's (the layer controls' edge width)
            truth.current_edge_width = 6
            truth.opacity = 1.0
        show(reviewed, "ground truth", "heatmap", "outcomes")
        viewer.layers.selection.active = viewer.layers[f"{reviewed} outcomes"]
        review.go(picks[0])
        scroll_to(evaluate, evaluate.summary.native)
        save_shot(ctx, viewer, "review_false_positive")

        # 3. reject two false positives (each saved at once), draw the missed lesion back; look at the first disc
        first = review.shown[picks[0]]
        for index in picks:
            review.go(index)
            written = review.decide(REJECT)
            if written is None:
                raise RuntimeError(f"review: {review.status.value}")
        truth = viewer.layers[f"{SHOWN} ground truth"]
        truth.add_polygons([missed])  # napari's polygon tool adds a drawn shape like this (class tumour)
        truth.mode = "pan_zoom"
        review.go(next(i for i, item in enumerate(review.shown) if item is first))
        print(f"  {review.status.value}; decisions: {[it.decision for it in review.shown]}")
        show(reviewed, "ground truth", "outcomes")
        viewer.layers.selection.active = viewer.layers[f"{reviewed} ground truth"]
        scroll_to(evaluate, evaluate.canvas)
        process_events(NOTIFICATION_S)
        save_shot(ctx, viewer, "review_rejected")

        # 4. where to look next: the model's uncertainty on every heatmap, its regions in the review
        ranking = review.suggest()
        if not ranking:
            raise RuntimeError(f"Suggest where to look: {review.status.value}")
        show(ranking[0][0], "ground truth", "uncertainty")
        viewer.layers.selection.active = viewer.layers[f"{ranking[0][0]} uncertainty"]
        viewer.reset_view()
        print(f"  {review.status.value}")
        scroll_to(evaluate, evaluate.canvas)
        save_shot(ctx, viewer, "review_uncertainty")

        # 5. retrain with the corrections: the checkpoint and run folder Train offered
        retrain = evaluate.retrain
        if Path(str(retrain.checkpoint.value)) != Path(train.result.best):
            raise RuntimeError("Retrain with corrections: the checkpoint Train wrote is not offered")
        retrain.device.value = "cpu"
        run_widget(retrain.runner, lambda: retrain.result is not None, "the corrections round")
        if retrain.result.cancelled:
            raise RuntimeError(f"Retrain with corrections: {retrain.runner.status.value}")
        difference = f"difference (round {retrain.result.number})"
        show(reviewed, "ground truth", difference)
        layer = viewer.layers[f"{reviewed} {difference}"]
        viewer.layers.selection.active = layer
        span = _contrast(layer.data[0] if layer.multiscale else layer.data)
        layer.contrast_limits = (-span, span)  # narrowed in the layer controls, as the guide suggests
        viewer.reset_view()
        scroll_to(evaluate, evaluate.retrain.summary.native, above=600)
        process_events(NOTIFICATION_S)
        save_shot(ctx, viewer, "retrain_difference")
        print(f"  {retrain.summary.value}")
        for name, row in retrain.result.slides.items():
            keys = ("false_positives", "lesions_detected", "normal_mean", "tumour_max")
            print(
                f"  {name}: {row['corrections']}; "
                + ", ".join(f"{k} {row['before'][k]} -> {row['after'][k]}" for k in keys)
            )
    finally:
        viewer.close()
