"""What a run produced: :class:`RunResult`, its napari layers, its metrics and their headline numbers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputFileError
from ..io.cohort import LESIONS_NAME, LesionBox, read_labels, read_lesions
from ..io.names import POINTS_FOLDER, cam_paths, heatmap_paths, points_paths
from .config import RunConfig
from .manifest import MANIFEST_NAME, REPORT_NAME, read_manifest


@dataclass
class RunResult:
    """What a pipeline run produced.

    Attributes:
        run_dir: the run directory.
        track: ``"slides"`` or ``"cxr"``.
        config: the configuration that ran.
        manifest: ``manifest.json``.
        artifacts: stage -> the files it wrote (absolute paths).
        metrics: the evaluation's metrics (``evaluate/metrics.json``; empty when evaluation did not run).
        report: ``report.html``, or None.
        stages: stage -> what happened in this call: ``"ran"``, ``"resumed"``, ``"skipped"`` (its artifacts were
            current), ``"cancelled"``, ``"disabled"`` or ``"not run"``.
        timings: stage -> seconds this call spent on it.
        cancelled: True when ``stop`` ended the run (a stage left resumable state; the next run goes on).
        notes: remarks about the inputs (e.g. an undefined AUC).
    """

    run_dir: Path
    track: str
    config: RunConfig
    manifest: Path
    artifacts: dict[str, list[Path]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    stages: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)

    def layers(self, *, max_items: int | None = None) -> list[tuple[Any, dict[str, Any], str]]:
        """napari layer-data tuples of the results (no napari import): for every predicted slide the slide, its
        ground truth, its heatmap and its lesion points; for every predicted X-ray the image, its lesion boxes
        and one CAM layer per class. Layers of all but the first slide / image start hidden."""
        return result_layers(self.run_dir, max_items=max_items)


def splits_table(run_dir: Path) -> pd.DataFrame:
    """A run's ``sample/splits.csv`` (name, split, label, path, truth; slides: mpp), as the sample stage wrote it;
    empty cells are "" (a slide without ground truth)."""
    path = run_dir / "sample" / "splits.csv"
    if not path.is_file():
        raise InputFileError(path, "no such file: the run's sample stage has not finished")
    return pd.read_csv(path, keep_default_na=False)


def result_layers(run_dir: str | os.PathLike[str], *, max_items: int | None = None) -> list[tuple[Any, dict, str]]:
    """Layer-data tuples of a run directory's results (see :meth:`RunResult.layers`)."""
    from .. import layerdata as L

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir / MANIFEST_NAME)
    if manifest is None:
        raise InputFileError(run_dir / MANIFEST_NAME, "not a napari-patchdx run (no manifest)")
    track = manifest["config"]["track"]
    infer_dir = run_dir / "infer"
    table = splits_table(run_dir)
    out: list[tuple[Any, dict, str]] = []
    shown = 0
    lesions = _cohort_lesions(Path(manifest["config"]["input"])) if track != "slides" else None
    for row in table.itertuples(index=False):
        name = str(row.name)
        result = (heatmap_paths if track == "slides" else cam_paths)(infer_dir, name)["final"]
        if not result.is_file():
            continue
        if max_items is not None and shown >= max_items:
            break
        group: list[tuple[Any, dict, str]] = []
        if track == "slides":
            mpp = ((manifest.get("mpp") or {}).get(name) or {}).get("mpp")  # the run's, also for a file without it
            group.extend(L.slide_file_layers(Path(row.path), mpp=mpp))
            group.extend(L.heatmap_file_layers(result))
            points = points_paths(run_dir / "evaluate" / POINTS_FOLDER, name)["csv"]
            if points.is_file():
                from ..evaluation.points import read_camelyon_csv

                mpp = group[0][1]["metadata"]["patchdx"].get("mpp")
                group.append(L.points_layer(read_camelyon_csv(points), mpp, name=f"{name} lesion points"))
        else:
            image = L.cxr_file_layers(Path(row.path))[0]
            image[1]["name"] = name
            group.append(image)
            spacing = image[1].get("scale")
            boxes = _image_boxes(lesions, name)
            if boxes is not None:
                group.append(L.boxes_layer(boxes[0], boxes[1], spacing=spacing, name=f"{name} lesions"))
            group.extend(L.cam_file_layers(result))
        if shown:
            for _, kwargs, _ in group:
                kwargs["visible"] = False
        out.extend(group)
        shown += 1
    return out


def _cohort_lesions(root: Path) -> dict[str, list[LesionBox]] | None:
    """The cohort's lesion boxes by image (:func:`~napari_patchdx.io.cohort.read_lesions`), or None without a
    ``lesions.csv``."""
    path = root / LESIONS_NAME
    if not path.is_file():
        return None
    _, classes = read_labels(root)
    return read_lesions(path, classes)


def _image_boxes(lesions: dict[str, list[LesionBox]] | None, image: str) -> tuple[np.ndarray, list[str]] | None:
    """One image's boxes for a napari shapes layer: (n, 4) ``y0, x0, y1, x1`` and the class names; None if none."""
    boxes = (lesions or {}).get(image)
    if not boxes:
        return None
    return np.array([(b.y0, b.x0, b.y1, b.x1) for b in boxes], np.float64), [b.cls for b in boxes]


_NOT_HEADLINE = frozenset(
    {
        "settings",
        "inputs",
        "files",
        "confidence",
        "lo",
        "hi",
        "level",
        "mpp",
        "thresholds",
        "pointing_pairs",
        "pointing_unboxed_positives",
        "moved_onto_slide",
    }
)


def headline(metrics: Any, prefix: str = "", _depth: int = 0) -> dict[str, str]:
    """The headline numbers of a metrics dict for a status line: its finite scalar numbers one level deep (e.g.
    ``froc.score``, ``slide_auc.auc``, ``mean_auroc.auc``), formatted to 4 significant digits, at most 10 (counts,
    settings, interval bounds and thresholds left out)."""
    out: dict[str, str] = {}
    if not isinstance(metrics, Mapping):
        return out
    for key, value in metrics.items():
        if key in _NOT_HEADLINE or str(key).startswith("n_") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            if np.isfinite(value):
                out[f"{prefix}{key}"] = f"{value:.4g}"
        elif isinstance(value, Mapping) and _depth == 0:
            out.update(headline(value, f"{prefix}{key}.", 1))
    return dict(list(out.items())[:10])


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``evaluate/metrics.json``, or an empty dict when it is missing or unreadable."""
    path = run_dir / "evaluate" / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def fill_result(result: RunResult, manifest: Mapping[str, Any], root: Path) -> None:
    """Set ``result``'s artifacts, metrics and report from the stages ``manifest`` records as complete."""
    for s, entry in (manifest.get("stages") or {}).items():
        if isinstance(entry, Mapping) and entry.get("status") == "complete":
            result.artifacts[s] = [root / p for p in entry.get("artifacts", [])]
    result.metrics = (
        read_metrics(root) if (manifest.get("stages") or {}).get("evaluate", {}).get("status") == "complete" else {}
    )
    report_entry = (manifest.get("stages") or {}).get("report") or {}
    current = report_entry.get("status") == "complete" and result.config.report.enabled
    result.report = root / REPORT_NAME if current else None
