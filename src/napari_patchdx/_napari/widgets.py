"""Dock widgets. Thin: they collect parameters, run a core job in a napari worker and show its results.

Every dock widget is a :class:`Panel` (scrolls vertically, never widens: :class:`StatusLine` text wraps), shows
tables with :func:`show_table_rows`, and runs its job through a :class:`JobRunner` (input errors in its status line,
a job stopped when its layers are deleted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QSizePolicy

from ..errors import ConfigError
from ..io.cohort import cohort_folder
from ..io.detect import slides_in_folder
from ..io.names import file_name
from ..layerdata import boxes_layer, patches_layer, tissue_layer
from ..progress import Progress
from ..sampling.settings import SAMPLE_METHODS, SampleSettings
from ..sampling.splits import hold_out_slides
from .controls import control_value, setting_control
from .panel import INPUT_ERRORS, JobRunner, Panel, StatusLine, layers_of_kind
from .session import session_of
from .slide_inputs import SlideInputs, Truth
from .viewer import add_layers


class SamplePatchesWidget(Panel):
    """Sample patches from slide layers (or a folder of slides) with their ground truth, show them as boxes."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.inputs = SlideInputs(viewer)
        self.folder = FileEdit(label="or folder", mode="d", value="")
        self.method = setting_control(SampleSettings, "method", "sampler", choices=SAMPLE_METHODS)
        self.n = setting_control(SampleSettings, "n", "patches", min=1, max=1_000_000)
        self.patch_size = SpinBox(label="patch size (px)", min=16, max=2048, value=299)
        self.center_size = SpinBox(label="centre region (px)", min=1, max=2048, value=128)
        self.patch_mpp = FloatSpinBox(label="patch um/px (0 = level 0)", min=0.0, max=64.0, step=0.05, value=0.0)
        self.patch_mpp.tooltip = "magnification of the patches: micrometres per patch pixel (0: the slide's level 0)"
        self.jitter = FloatSpinBox(label="jitter (px)", min=0.0, max=128.0, value=8.0)
        self.min_tissue = setting_control(
            SampleSettings, "min_tissue", "min tissue (grid)", min=0.0, max=1.0, step=0.05
        )
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.runner = JobRunner("Sample")
        self.counts = StatusLine()
        self.export_path = FileEdit(label="export table", mode="w", filter="*.csv *.parquet", value="")
        self.export_images = CheckBox(label="also patch PNGs (first 200)", value=False)
        self.export_button = PushButton(text="Export")
        super().__init__(
            viewer,
            [
                self.inputs,
                self.folder,
                self.method,
                self.n,
                self.patch_size,
                self.center_size,
                self.patch_mpp,
                self.jitter,
                self.min_tissue,
                self.seed,
                self.runner,
                self.counts,
                self.export_path,
                self.export_images,
                self.export_button,
            ],
        )
        self.table: Any = None
        self._mpp: Any = None
        self.runner.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self.export)

    def _folder_of_slides(self) -> Path | None:
        folder = Path(str(self.folder.value)) if str(self.folder.value) not in ("", ".") else None
        return folder if folder is not None and folder.is_dir() else None

    def _inputs(self) -> list[tuple[Path, Truth]]:
        """(slide path, ground truth) pairs from the chosen layers, or from the folder."""
        folder = self._folder_of_slides()
        if folder is not None:
            return list(slides_in_folder(folder))
        if not self.inputs.chosen_slides():
            raise ConfigError("choose slide layers or a folder of slides first")
        return self.inputs.pairs()

    def _cxr_folder(self) -> Path | None:
        folder = str(self.folder.value)
        return cohort_folder(folder) if folder not in ("", ".") else None

    def run(self) -> None:
        """Start sampling in a worker: slides (layers or a folder), or a chest X-ray cohort folder (labels.csv).

        Input errors go to the status line (and a notification); nothing starts.
        """
        self.runner.attempt(self._start)

    def _start(self) -> None:
        from ..sampling.job import sample_cxr_job, sample_slides_job
        from ..sampling.patches import PatchGeometry

        cxr_root = self._cxr_folder()
        if cxr_root is not None:
            kwargs_cxr = {
                "n": int(self.n.value),
                "patch_size": int(self.patch_size.value),
                "seed": int(self.seed.value),
            }
            self.table = None
            self.runner.start(lambda: sample_cxr_job(cxr_root, **kwargs_cxr), self._on_done)
            return
        pairs = self._inputs()
        if not pairs:
            raise ConfigError("choose slide layers or a folder of slides first")
        geometry = PatchGeometry(
            int(self.patch_size.value), int(self.center_size.value), float(self.patch_mpp.value) or None
        )
        method = str(self.method.value)
        try:  # per-slide splits as the Train widget and the core choose them, so the table trains and validates
            splits = {file_name(p): split for p, _, split in hold_out_slides(pairs, seed=int(self.seed.value))}
        except ConfigError:  # fewer than two slides with ground truth: every patch is a training patch
            splits = None
        kwargs = {
            "method": method,
            "n": int(self.n.value),
            "geometry": geometry,
            "seed": int(self.seed.value),
            "jitter": float(self.jitter.value),
            "min_tissue": float(self.min_tissue.value),
            "splits": splits,
            "mpp": self.inputs.mpp_value(),
        }
        self.table = None
        self._mpp = kwargs["mpp"]
        self.runner.start(lambda: sample_slides_job(pairs, **kwargs), self._on_done, self._on_partial)
        chosen = self.inputs.chosen_slides()
        if chosen and not self._folder_of_slides():
            self.runner.stop_when_removed(self.viewer, chosen)

    def _on_partial(self, report: Progress) -> None:
        from ..sampling.tissue_mask import TissueMask

        if isinstance(report.partial, TissueMask):  # show each slide's tissue mask as soon as it is known
            name = f"{file_name(str(report.partial.source))} tissue"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            add_layers(self.viewer, [tissue_layer(report.partial, name=name)])

    def _on_done(self, table: Any) -> None:
        from ..io.slides.open import open_slide
        from ..sampling.sources import slide_mpp

        self.table = table
        n_pos = int((table["label"] > 0).sum())
        classes = [c for c in table.columns if c.startswith("label_")]
        if classes:  # chest X-rays: counts per class, boxes over the X-ray layers that are open
            per_class = ", ".join(f"{c[6:]} {int(table[c].sum())}" for c in classes)
            self.counts.value = f"{len(table)} patches: {n_pos} lesion ({per_class}), {len(table) - n_pos} normal"
            self._show_cxr_boxes(table, classes)
            return
        by_split = table["split"].value_counts()
        held = f"{int(by_split.get('val', 0))} validation" if "val" in by_split else "no validation slide"
        self.counts.value = f"{len(table)} patches: {n_pos} tumour, {len(table) - n_pos} normal; {held}"
        for path, rows in table.groupby("slide", sort=False):
            with open_slide(path, mpp=slide_mpp(self._mpp, path)) as slide:
                layer = patches_layer(rows, slide.level_downsamples, slide.mpp, name=f"{file_name(path)} patches")
            name = layer[1]["name"]
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            add_layers(self.viewer, [layer])

    def _show_cxr_boxes(self, table: Any, classes: list[str]) -> None:
        import numpy as np

        for layer in layers_of_kind(self.viewer, "cxr"):
            rows = table[table["slide"] == layer.metadata["patchdx"].get("path")]
            if rows.empty:
                continue
            boxes = np.stack([rows.y, rows.x, rows.y + rows["size"], rows.x + rows["size"]], axis=1)
            names = [
                "+".join(c[6:] for c in classes if getattr(r, c)) or "normal" for r in rows.itertuples(index=False)
            ]
            spacing = tuple(layer.scale[-2:]) if layer.metadata["patchdx"].get("path") else None
            name = f"{layer.name} patches"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            add_layers(self.viewer, [boxes_layer(boxes, names, spacing=spacing, name=name)])

    def export(self) -> None:
        """Save the last table (CSV or Parquet by suffix) and optionally patch PNGs beside it."""
        from ..sampling.datasets import export_patch_images
        from ..sampling.tables import write_patch_table

        if self.table is None:
            self.runner.fail("sample patches first")
            return
        if str(self.export_path.value) in ("", "."):
            self.runner.fail("choose a file to export the table to first")
            return
        path = Path(str(self.export_path.value))
        if path.suffix.lower() not in (".csv", ".parquet"):
            path = path.with_suffix(".csv")
        try:
            write_patch_table(self.table, path)
            if self.export_images.value:
                export_patch_images(self.table, path.with_suffix(""), int(self.patch_size.value), limit=200)
        except INPUT_ERRORS as exc:
            self.runner.fail(exc)
            return
        self.runner.status.value = f"wrote {path}"
        show_info(f"napari-patchdx: wrote {path}")


class TrainWidget(Panel):
    """Train a model on slides in the viewer, a patch table or a chest X-ray cohort, with live curves and Stop."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        from ..devices import available_devices
        from ..models.nets import ARCHITECTURES
        from ..training.config import DEFAULT_PATCH_SIZE, TrainConfig
        from ..transforms.compose import STAIN_MODES

        self.viewer = viewer
        self.source = ComboBox(
            label="data",
            choices=["slides in the viewer", "patch table", "X-ray cohort folder"],
            value="slides in the viewer",
        )
        self.inputs = SlideInputs(viewer)
        self.table = FileEdit(label="patch table", mode="r", filter="*.csv *.parquet", value="")
        self.cohort = FileEdit(label="X-ray cohort", mode="d", value="")
        self.arch = ComboBox(label="model", choices=list(ARCHITECTURES), value="small")
        self.stage = ComboBox(label="stage", choices=["patches", "whole", "curriculum", "baseline"], value="patches")
        self.epochs = SpinBox(label="epochs (per stage)", min=1, max=10_000, value=5)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=32)
        self.steps = SpinBox(label="steps per epoch (slides)", min=1, max=1_000_000, value=50)
        self.patch_size = SpinBox(label="patch size (px)", min=32, max=2048, value=DEFAULT_PATCH_SIZE["slide"])
        self.patch_mpp = setting_control(TrainConfig, "mpp", "patch um/px (0 = level 0)", min=0.0, max=64.0, step=0.25)
        self.working_size = SpinBox(label="X-ray working size (px)", min=64, max=4096, value=TrainConfig.working_size)
        self.working_size.tooltip = (
            "side of a whole X-ray after resizing (Park et al.: 1024). Smaller trains much faster: 40 images, 1 epoch "
            "per stage, take about 50 s at 256 px (patch 128) and 145 s at 1024 px on 2 CPU cores"
        )
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.workers = SpinBox(label="loader workers", min=0, max=64, value=2)
        self.stain = ComboBox(label="colour augmentation", choices=list(STAIN_MODES), value=TrainConfig.stain)
        self.stain.tooltip = "liu: Liu et al.'s colour jitter; hed: HED stain jitter; macenko: stain normalisation"
        self.deterministic = CheckBox(label="deterministic (bit-exact resume)", value=TrainConfig.deterministic)
        self.out_dir = FileEdit(label="run folder", mode="d", value="")
        self.runner = JobRunner("Train")
        self.figure = Figure(figsize=(4, 2.4), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.canvas.setMinimumSize(200, 220)
        super().__init__(
            viewer,
            [
                self.source,
                self.inputs,
                self.table,
                self.cohort,
                self.arch,
                self.stage,
                self.epochs,
                self.batch_size,
                self.steps,
                self.patch_size,
                self.patch_mpp,
                self.working_size,
                self.stain,
                self.device,
                self.workers,
                self.deterministic,
                self.out_dir,
                self.runner,
            ],
        )
        self.source.changed.connect(self._show_controls)
        self._show_controls()
        self.add_native(self.canvas)
        self.history: list[dict[str, Any]] = []
        self.result: Any = None
        self.session = session_of(viewer)
        self.runner.run_button.changed.connect(self.run)

    def _show_controls(self, _: Any = None) -> None:
        """Show the controls that apply to the chosen data, and only those (and the track's default patch size
        while the other track's default is shown)."""
        from ..training.config import DEFAULT_PATCH_SIZE

        source = str(self.source.value)
        xray = source == "X-ray cohort folder"
        self.inputs.visible = source == "slides in the viewer"
        self.table.visible = source == "patch table"
        self.cohort.visible = xray
        for control in (self.stage, self.working_size):
            control.visible = xray
        for control in (self.steps, self.stain, self.patch_mpp):
            control.visible = not xray
        track, other = ("cxr", "slide") if xray else ("slide", "cxr")
        if int(self.patch_size.value) == DEFAULT_PATCH_SIZE[other]:  # still the other track's default: this one's
            self.patch_size.value = DEFAULT_PATCH_SIZE[track]

    def config(self, track: str) -> Any:
        """The training settings the controls give for ``track`` (``"slide"`` or ``"cxr"``)."""
        from ..training.config import TrainConfig

        xray = track == "cxr"
        return TrainConfig(
            track=track,
            stage=str(self.stage.value) if xray else "patches",
            arch=str(self.arch.value),
            epochs=int(self.epochs.value),
            batch_size=int(self.batch_size.value),
            steps_per_epoch=None if xray else int(self.steps.value),
            patch_size=int(self.patch_size.value),
            mpp=None if xray else control_value(self.patch_mpp, TrainConfig, "mpp"),
            working_size=int(self.working_size.value),
            stain="liu" if xray else str(self.stain.value),
            device=str(self.device.value),
            num_workers=int(self.workers.value),
            deterministic=bool(self.deterministic.value),
        )

    def _data(self) -> tuple[str, Any]:
        """The track and the training data (the training job saves ground-truth layers into the run folder,
        :data:`~napari_patchdx.io.names.TRUTH_FOLDER`, so the run records what it was trained on)."""
        from ..training.inputs import TrainData

        source = str(self.source.value)
        if source == "X-ray cohort folder":
            return "cxr", TrainData(cxr_root=Path(str(self.cohort.value)))
        if source == "patch table":
            return "slide", TrainData(patch_table=Path(str(self.table.value)), mpp=self.inputs.mpp_value())
        return "slide", TrainData(slides=hold_out_slides(self.inputs.pairs()), mpp=self.inputs.mpp_value())

    def run(self) -> None:
        """Start training in a worker; curves update after every epoch. Input errors go to the status line."""
        self.runner.attempt(self._start)

    def _start(self) -> None:
        from ..training.job import train_job

        track, data = self._data()
        if str(self.out_dir.value) in ("", "."):
            raise ConfigError("choose a run folder first")
        out = Path(str(self.out_dir.value))
        config = self.config(track)
        self.history = []
        self.result = None
        self.runner.start(
            lambda: train_job(config, data, out, stop=lambda: self.runner.stop_requested),
            self._on_done,
            self._on_partial,
            graceful_stop=True,
        )

    def _on_partial(self, report: Progress) -> None:
        from ..plots import draw_training_curves

        if isinstance(report.partial, dict) and report.partial.get("event") == "epoch":
            self.history.append(report.partial)
            draw_training_curves(self.figure, self.history)
            self.canvas.draw_idle()

    def _on_done(self, result: Any) -> None:
        self.result = result
        state = "stopped; resumable checkpoint" if result.cancelled else "done"
        self.runner.status.value = f"{state}: {result.last}"
        checkpoint = result.best or result.last
        if checkpoint is not None and not result.cancelled:  # Run inference picks it up
            self.session.set("run_dir", Path(result.out_dir))
            self.session.set("checkpoint", Path(checkpoint))
