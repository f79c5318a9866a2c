"""Take the documentation's screenshots from a real napari viewer.

Usage (from the repository root; needs an X display, so on a server run it under a virtual one)::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/screenshots.py
    .venv/bin/python scripts/screenshots.py --only slide_ground_truth cxr_lesion_boxes
    .venv/bin/python scripts/screenshots.py --work /tmp/shots     # keep (and reuse) the demo runs between calls

Without ``DISPLAY`` the script re-runs itself under ``xvfb-run`` when that is installed.

Everything shown is made here. The script first runs the demo (:func:`napari_patchdx.cli.demo.run_demo`: synthetic
slide and chest X-ray cohorts, the slide run and the two X-ray runs through the pipeline) into a work folder, then
opens its files through the plugin's own reader, sample data and widgets, exactly as a user clicks, and saves each
shot as ``docs/images/<name>.png``: the whole napari window (canvas, layer list and dock widgets), scaled so that a
window of the default 1200 px width becomes ``--width`` pixels (default 1000; wider windows are scaled alike, so text
has one size in every picture) and stored as an optimised 256-colour PNG. Shots that do not need the demo (the X-ray
sample data, your own slide) skip it. A shot whose widget is not importable
(not written yet) is skipped with a message; any other failure is reported and makes the exit status 1, so a
broken widget never leaves a stale picture behind silently. A previous picture of a skipped or failed shot is
left in place.

The shots, in order (the helpers are in ``_screens.py``, the slide tutorial's shots in ``_screens_own_slide.py``, the
review tutorial's in ``_screens_review.py``):

=========================  =====================================================================================
``slide_ground_truth``     a tumour slide opened with its ASAP XML ground truth beside it
``cxr_lesion_boxes``       File > Open Sample > PatchDx > synthetic chest X-ray, with its lesion boxes
``cxr_cam``                the Run inference widget on a test chest X-ray: CAMs, probabilities, lesion boxes
``pipeline_widget``        the Run pipeline widget after running the demo's slide configuration (up to date)
``own_slide``              the slide tutorial's path on a small synthetic cohort, one viewer, five pictures:
                           ``ground_truth_widget`` (a tumour and a normal region drawn on an unannotated slide),
                           ``own_slide_sample``, ``own_slide_train`` (a tiny run on the drawn layer),
                           ``own_slide_infer`` (the checkpoint Train handed over) and ``own_slide_evaluate``
``review_cycle``           the review tutorial's cycle on a small synthetic cohort, one viewer, four pictures:
                           ``review_false_positive`` (the review on a false positive), ``review_rejected`` (the
                           normal disc a rejection adds), ``review_uncertainty`` (where to look) and
                           ``retrain_difference`` (a corrections round: before / after and the heatmap difference)
=========================  =====================================================================================
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from _screens import (  # the shared helpers
    DEFAULT_OUT,
    Context,
    SkipShot,
    dock,
    first,
    fresh_dir,
    import_widget,
    new_viewer,
    only_visible,
    open_file,
    run_demo,
    run_widget,
    save_shot,
    slide_rows,
)
from _screens_own_slide import shot_own_slide
from _screens_review import shot_review_cycle


def shot_slide_ground_truth(ctx: Context) -> None:
    row = first(slide_rows(ctx, tumour=True), "tumour slide")
    viewer = new_viewer("napari-patchdx: a slide and its ground truth")
    try:
        open_file(viewer, Path(row["path"]))
        viewer.reset_view()
        save_shot(ctx, viewer, "slide_ground_truth")
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


#: name -> (shot, needs the demo)
SHOTS: dict[str, tuple[Callable[[Context], None], bool]] = {
    "slide_ground_truth": (shot_slide_ground_truth, True),
    "cxr_lesion_boxes": (shot_cxr_lesion_boxes, False),
    "cxr_cam": (shot_cxr_cam, True),
    "pipeline_widget": (shot_pipeline_widget, True),
    "own_slide": (shot_own_slide, False),
    "review_cycle": (shot_review_cycle, False),
}


# ---------------------------------------------------------------------------------------------------------------
# your own slide: draw the ground truth, train on it, infer, evaluate (the slide tutorial's path, issue 12)
# ---------------------------------------------------------------------------------------------------------------


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
    cmd = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, str(Path(__file__).resolve()), *argv]
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
