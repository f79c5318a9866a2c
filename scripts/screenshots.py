"""Take the documentation's screenshots from a real napari viewer.

Usage (from the repository root; needs an X display, so on a server run it under a virtual one)::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/screenshots.py
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

    viewer = napari.Viewer(title=title, show=True)
    viewer.window._qt_window.resize(*size)
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


def dock(viewer: Any, widget: Any, name: str) -> None:
    viewer.window.add_dock_widget(widget, name=name, area="right")
    process_events(0.3)


def run_widget(runner: Any, done: Callable[[], bool], what: str, timeout: float = 900.0) -> None:
    """Press a :class:`~napari_patchdx._napari.panel.JobRunner`'s Run button and wait for the job to end."""

    def failed() -> bool:
        return runner.worker is None and str(runner.status.value).startswith("error")

    runner.run_button.clicked.emit()
    wait_until(lambda: done() or failed(), what, timeout)
    if failed() and not done():
        raise RuntimeError(f"{what}: {runner.status.value}")
    wait_until(lambda: runner.worker is None, f"{what} (worker to finish)", 120)


def only_visible(viewer: Any, keep: Callable[[Any], bool]) -> None:
    """Show the layers ``keep`` accepts and hide the others (slides opened together sit on top of each other)."""
    for layer in viewer.layers:
        layer.visible = bool(keep(layer))


def save_shot(ctx: Context, viewer: Any, name: str) -> Path:
    """Screenshot the whole window, scale it to ``ctx.width`` and write an optimised palette PNG."""
    from PIL import Image

    process_events(1.0)
    array = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(array[..., :3])
    if image.width > ctx.width:
        height = round(image.height * ctx.width / image.width)
        image = image.resize((ctx.width, height), Image.Resampling.LANCZOS)
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
