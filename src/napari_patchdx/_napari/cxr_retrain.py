"""Retrain with corrections, in the "X-ray ground truth" widget: one button fine-tunes the X-ray model on the cohort
as corrected in the widget (boxes and labels saved into ``lesions.csv`` / ``labels.csv``) and shows before / after.

The round is the core's :func:`~napari_patchdx.training.xray_corrections.xray_corrections_job` (what
``napari_patchdx.retrain`` and the ``retrain`` command run on an X-ray pipeline run): it fine-tunes the checkpoint
Train wrote (or any chosen) on the cohort with the corrected training images weighted up, and writes
``<run folder>/rounds/<k>/``. The chosen X-ray's boxes and labels are saved first, so the round trains on what the
viewer shows. The corrected images are those saved with a change in this viewer since the last round (the widget
remembers them: a table saved more than once keeps only the last version in its ``.bak``), else those whose rows
differ from the previous round's tables or the backups. When it is done, the widget shows the validation AUROC per
class before and after and the corrected images' class probabilities before and after, and offers the new checkpoint
to the next round and to Run inference.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, Table

from ..errors import ConfigError
from ..training.retrain_settings import RetrainSettings
from .controls import control_value, setting_control
from .panel import JobRunner, StatusLine, show_table_rows
from .retrain import FINE_TUNE_LR
from .session import offer_files, session_of

__all__ = ["XrayRetrainPanel", "round_summary"]


def _path(edit: FileEdit) -> Path | None:
    value = edit.value
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return None if value is None or str(value) in ("", ".") else Path(value)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def round_summary(result: Any) -> str:
    """One line of an X-ray round's before -> after: its number and folder, the validation AUROC (mean, then per
    class, where the trainings recorded one) and each corrected image's probability of its present classes."""
    auroc = (result.metrics or {}).get("val_auroc") or {}
    before, after = auroc.get("before") or {}, auroc.get("after") or {}
    parts = [f"round {result.number} done ({result.folder})"]
    if before or after:
        classes = [c for c in dict.fromkeys([*before, *after]) if c != "mean"]
        per_class = ", ".join(f"{c} {_number(before.get(c))} -> {_number(after.get(c))}" for c in classes)
        mean = f"{_number(before.get('mean'))} -> {_number(after.get('mean'))}"
        parts.append(f"validation AUROC {mean} (per class: {per_class})")
    for image, row in result.images.items():
        present = [c for c, v in (row.get("labels") or {}).items() if v] or list(row.get("labels") or {})[:1]
        changes = ", ".join(
            f"p({c}) {_number((row.get('before') or {}).get(c))} -> {_number((row.get('after') or {}).get(c))}"
            for c in present
        )
        parts.append(f"{image} ({row.get('split')}, x{row.get('weight')}): {changes}")
    return "; ".join(parts)


class XrayRetrainPanel(Container):
    """The "Retrain with corrections" part of the X-ray ground truth widget (see the module docstring).

    ``truth_widget`` is the :class:`~napari_patchdx._napari.cxr_truth_widget.XrayTruthWidget` it belongs to: its
    chosen X-ray's cohort, its ``save`` and the images it saved (``corrected_images`` / ``forget_corrected``).
    """

    def __init__(self, viewer: napari.Viewer, truth_widget: Any) -> None:
        from ..devices import available_devices

        self.viewer = viewer
        self.truth_widget = truth_widget
        self.session = session_of(viewer)
        self.checkpoint = FileEdit(label="start from", mode="r", filter="*.json *.safetensors", value="")
        self.checkpoint.tooltip = "the X-ray checkpoint to fine-tune: the one Train wrote, or a round's"
        self.run_dir = FileEdit(label="run folder", mode="d", value="")
        self.run_dir.tooltip = "the folder Train wrote (its splits validate the round); rounds go in rounds/<k>/"
        self.epochs = setting_control(RetrainSettings, "epochs", "fine-tuning epochs (0 = as trained)", min=0, max=999)
        self.lr = setting_control(RetrainSettings, "lr", "learning rate (0 = as trained)", min=0.0, max=1.0, step=1e-5)
        self.lr.native.setDecimals(6)
        self.lr.value = FINE_TUNE_LR
        self.lr.tooltip = (
            f"{self.lr.tooltip}; a small rate keeps one round from undoing what the model knew (the slide rounds' "
            "benchmark: 1e-4 was steady, 1e-3 sometimes doubled the false positives)"
        )
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.device.tooltip = "where the fine-tuning and the class activation maps before and after run"
        self.runner = JobRunner("Retrain with corrections")
        self.summary = StatusLine()
        self.table = Table(value={"data": [], "index": [], "columns": ["class", "label", "before", "after"]})
        self.table.visible = False
        super().__init__(
            widgets=[
                self.checkpoint,
                self.run_dir,
                self.epochs,
                self.lr,
                self.device,
                self.runner,
                self.summary,
                self.table,
            ]
        )
        self.margins = (0, 0, 0, 0)
        #: the last round (an XrayRound)
        self.result: Any = None
        #: the cohort and the corrected images the running round was given
        self._round_inputs: tuple[Path, list[str]] = (Path(), [])
        self.runner.run_button.changed.connect(self.run)
        offer_files(self.session, {"checkpoint": (self.checkpoint, Path), "run_dir": (self.run_dir, Path)})

    def run(self) -> None:
        """Save the chosen X-ray's ground truth, then start a corrections round in a worker; input errors go to the
        status line."""
        self.runner.attempt(self._start)

    def _start(self) -> None:
        from ..devices import resolve_device
        from ..models.checkpoint import read_checkpoint_meta
        from ..training.config import TrainConfig
        from ..training.xray_corrections import xray_corrections_job

        checkpoint, run = _path(self.checkpoint), _path(self.run_dir)
        if checkpoint is None or run is None:
            raise ConfigError("choose the checkpoint to start from and the run folder (Train offers both)")
        if self.truth_widget.cohort is None:
            raise ConfigError("choose an X-ray of the cohort to retrain on (open it from the cohort's images folder)")
        root = Path(self.truth_widget.cohort[0])
        if self.truth_widget.save() is None:  # on disk before the round starts; the status line says what failed
            raise ConfigError(f"the ground truth of the chosen X-ray was not saved: {self.truth_widget.status.value}")
        images = self.truth_widget.corrected_images(root) or None
        self._round_inputs = (root, images or [])
        settings = RetrainSettings(
            epochs=control_value(self.epochs, RetrainSettings, "epochs"),
            lr=control_value(self.lr, RetrainSettings, "lr"),
        )
        device = str(resolve_device(str(self.device.value)))
        recorded = TrainConfig.from_dict(read_checkpoint_meta(checkpoint).get("config") or {})
        config = dataclasses.replace(recorded, device=device)
        self.result = None
        self.summary.value = ""
        self.table.visible = False
        self.runner.start(
            lambda: xray_corrections_job(
                config,
                root,
                checkpoint,
                run,
                images=images,
                epochs=settings.epochs,
                lr=settings.lr,
                device=device,
                stop=lambda: self.runner.stop_requested,
            ),
            self._on_done,
            graceful_stop=True,
        )

    def _on_done(self, result: Any) -> None:
        self.result = result
        if result.cancelled or result.checkpoint is None:
            self.runner.status.value = f"round {result.number} stopped: run it again to resume"
            return
        self.truth_widget.forget_corrected(*self._round_inputs)  # the next round compares with this one's tables
        self.summary.value = round_summary(result)
        rows, index = [], []
        for image, row in result.images.items():
            for cls, label in (row.get("labels") or {}).items():
                index.append(image)
                rows.append([cls, int(label), (row.get("before") or {}).get(cls), (row.get("after") or {}).get(cls)])
        self.table.value = {"data": rows, "index": index, "columns": ["class", "label", "before", "after"]}
        self.table.visible = True
        show_table_rows(self.table, max_rows=10, digits=3)
        self.runner.status.value = f"done: {result.checkpoint}"
        self.session.set("checkpoint", Path(result.checkpoint))  # the next round, and Run inference, start from it
