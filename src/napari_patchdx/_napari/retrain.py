"""Retrain with corrections, in the Evaluate widget: one button fine-tunes the model from the corrections made in
the review (rejected false positives as normal regions, accepted or drawn lesions as tumour) and shows before /
after on the corrected slides.

The round is the core's :func:`~napari_patchdx.training.corrections.corrections_round_job` (what
``napari_patchdx.retrain`` and the ``retrain`` command run on a pipeline run): it fine-tunes the checkpoint Train
wrote (or any chosen) with patches from the corrected regions weighted up, re-infers only the corrected slides and
writes ``<run>/rounds/<k>/`` (corrected ground truth first, then the fine-tuning, the heatmaps before and after,
their difference and ``round.json``). The training run's ``train_manifest.json`` gives its training slides (trained
on again, the corrected slides' ground truth replacing theirs) and its validation slides. When it is done, the
widget shows false positives per slide, FROC and slide AUC before and after, adds each slide's heatmap difference
(after - before) as a layer, and offers the new checkpoint to the next round and to Run inference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox

from ..errors import ConfigError
from ..training.retrain_settings import RetrainSettings
from .controls import control_value, setting_control
from .panel import JobRunner, StatusLine
from .review import ReviewPanel
from .session import offer_files, session_of
from .viewer import add_layers

#: the widget's default fine-tuning learning rate (RetrainSettings' default, None, keeps the training's)
FINE_TUNE_LR = 1e-4


def slide_file(slide: Any) -> Path:
    """A slide layer's file."""
    from .truth import slide_path

    return slide_path(slide)


def _path(edit: FileEdit) -> Path | None:
    value = edit.value
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return None if value is None or str(value) in ("", ".") else Path(value)


class RetrainPanel(Container):
    """The "Retrain with corrections" part of the Evaluate widget (see the module docstring)."""

    def __init__(self, viewer: napari.Viewer, review: ReviewPanel) -> None:
        from ..devices import available_devices

        self.viewer = viewer
        self.review = review
        self.session = session_of(viewer)
        self.checkpoint = FileEdit(label="start from", mode="r", filter="*.json *.safetensors", value="")
        self.checkpoint.tooltip = "the checkpoint to fine-tune: the one Train wrote, or a round's (rounds/<k>/train)"
        self.run_dir = FileEdit(label="training run folder", mode="d", value="")
        self.run_dir.tooltip = "the folder Train wrote (train_manifest.json): its validation slides; rounds go in it"
        self.fraction = setting_control(
            RetrainSettings, "fraction", "share from corrected regions", min=0.05, max=1.0, step=0.05
        )
        self.epochs = setting_control(RetrainSettings, "epochs", "fine-tuning epochs (0 = as trained)", min=0, max=999)
        self.steps = setting_control(
            RetrainSettings, "steps_per_epoch", "steps per epoch (0 = as trained)", min=0, max=100_000
        )
        self.lr = FloatSpinBox(label="learning rate (0 = as trained)", min=0.0, max=1.0, step=1e-5, value=FINE_TUNE_LR)
        self.lr.native.setDecimals(6)
        self.lr.tooltip = (
            "fine-tuning learning rate; a tenth of a typical training rate keeps one round from undoing what the "
            "model knew (benchmarks/corrections.py: 1e-3 sometimes doubled the false positives, 1e-4 was steady)"
        )
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.runner = JobRunner("Retrain with corrections")
        self.summary = StatusLine()
        super().__init__(
            widgets=[
                self.checkpoint,
                self.run_dir,
                self.fraction,
                self.epochs,
                self.steps,
                self.lr,
                self.device,
                self.runner,
                self.summary,
            ]
        )
        self.margins = (0, 0, 0, 0)
        #: the last round (a CorrectionRound)
        self.result: Any = None
        self.runner.run_button.changed.connect(self.run)
        offer_files(self.session, {"checkpoint": (self.checkpoint, Path), "run_dir": (self.run_dir, Path)})

    def run(self) -> None:
        """Start a corrections round in a worker; input errors go to the status line."""
        self.runner.attempt(self._start)

    def _start(self) -> None:
        from ..devices import resolve_device
        from ..training.corrections import corrections_round_job, recorded_slides

        checkpoint, run = _path(self.checkpoint), _path(self.run_dir)
        if checkpoint is None or run is None:
            raise ConfigError("choose the checkpoint to start from and the training run folder (Train offers both)")
        corrections = [c for c in self.review.corrections() if c.changed]
        if not corrections:
            raise ConfigError(
                "no correction yet: reject or accept false positives in the review, or draw missed lesions into the "
                "ground-truth layers, then retrain"
            )
        train, val = recorded_slides(run)
        corrections = self._save_corrected(corrections)
        settings = RetrainSettings(
            fraction=float(self.fraction.value),
            epochs=control_value(self.epochs, RetrainSettings, "epochs"),
            steps_per_epoch=control_value(self.steps, RetrainSettings, "steps_per_epoch"),
            lr=float(self.lr.value) or None,
        )
        device = str(resolve_device(str(self.device.value)))
        mpp = self.session.get("slide_mpp") or None
        self.result = None
        self.summary.value = ""
        self.runner.start(
            lambda: corrections_round_job(
                None,
                corrections,
                checkpoint,
                run,
                val=val,
                train_slides=train,
                mpp=mpp,
                device=device,
                stop=lambda: self.runner.stop_requested,
                **settings.job_options(),
            ),
            self._on_done,
            graceful_stop=True,
        )

    def _save_corrected(self, corrections: list[Any]) -> list[Any]:
        """Save every corrected slide's ground-truth layer to its file (as the review does after each decision), so
        shapes drawn by hand since are on disk before the retraining starts; the round then trains on exactly what
        the files hold (the same round as ``napari_patchdx.retrain`` or the command given those files)."""
        import dataclasses

        from ..io.annotations.read import read_annotations
        from .truth import save_truth, truth_file

        by_path = {c.slide: c for c in corrections}
        saved = []
        for slide, layer, _, _ in self.review.slides.values():
            change = by_path.get(slide_file(slide))
            if layer is not None and change is not None:
                path, _ = save_truth(layer, self.viewer, truth_file(layer, slide))
                saved.append(dataclasses.replace(change, truth=read_annotations(path)))
        return saved

    def _on_done(self, result: Any) -> None:
        self.result = result
        if result.cancelled or result.checkpoint is None:
            self.runner.status.value = f"round {result.number} stopped: run it again to resume"
            return
        before, after = result.metrics.get("before", {}), result.metrics.get("after", {})

        def fmt(values: dict[str, Any], key: str) -> str:
            value = values.get(key)
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            return "n/a" if value is None else f"{float(value):.3f}"

        parts = [f"round {result.number} done ({result.folder})"]
        for key, label in (("fp_per_slide", "false positives / slide"), ("froc", "FROC"), ("slide_auc", "slide AUC")):
            parts.append(f"{label}: {fmt(before, key)} -> {fmt(after, key)}")
        self.summary.value = "; ".join(parts)
        self.runner.status.value = f"done: {result.checkpoint}"
        self._show_differences(result)
        self.session.set("checkpoint", Path(result.checkpoint))  # the next round, and Run inference, start from it

    def _show_differences(self, result: Any) -> None:
        """Add each corrected slide's heatmap difference (after - before) as a layer ``"<slide> difference (round
        k)"`` over its slide (diverging colours, -1 to 1)."""
        from ..layerdata import layers_for_paths

        for slide, info in result.slides.items():
            path = Path(info["difference"]) if info.get("difference") else None
            if path is None or not path.is_file():
                continue
            name = f"{slide} difference (round {result.number})"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            for data, kwargs, kind in layers_for_paths([path]):
                add_layers(self.viewer, [(data, {**kwargs, "name": name}, kind)])  # the reader's diverging colours
