"""Reading run directories: :func:`load_run` gathers what the report shows of one run into a :class:`ReportRun`.

Reads ``evaluate/metrics.json``, the training history in ``train/last.json`` (or ``best.json``), the per-case
table (``evaluate/slides.csv`` / ``images.csv``) and ``evaluate/suspects.json``; a missing part becomes a note,
an unreadable JSON file an :class:`~napari_patchdx.errors.InputFileError`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputFileError

__all__ = ["PathLike", "ReportRun", "load_run"]

PathLike = str | os.PathLike[str]


@dataclass
class ReportRun:
    """What the report shows of one run directory.

    Attributes:
        name: the run's name in the report (its folder name, made unique).
        path: the run directory.
        track: ``"slides"``, ``"cxr"`` or ``""`` when unknown.
        metrics: ``evaluate/metrics.json``, or None.
        history: the training history (one dict per epoch), empty without one.
        table: the per-slide or per-image rows (``evaluate/slides.csv`` / ``images.csv``) and their columns.
        suspects: ``evaluate/suspects.json``, or None.
        notes: what is missing, one sentence each.
    """

    name: str
    path: Path
    track: str = ""
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    table: tuple[list[str], list[dict[str, str]]] = field(default_factory=lambda: ([], []))
    suspects: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def evaluate_dir(self) -> Path:
        """``RUN_DIR/evaluate``."""
        return self.path / "evaluate"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(path, f"is not readable JSON ({exc})") from None


def _read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(path, "is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = [dict(r) for r in reader]
    return list(reader.fieldnames or []), rows


def _history(path: Path) -> list[dict[str, Any]]:
    """The training history in ``train/last.json`` (or ``best.json``): a list of per-epoch dicts."""
    for name in ("last.json", "best.json"):
        meta = _read_json(path / name)
        if isinstance(meta, dict) and isinstance(meta.get("metrics"), list):
            return [e for e in meta["metrics"] if isinstance(e, dict)]
    return []


def load_run(path: PathLike, name: str | None = None) -> ReportRun:
    """Read what the report needs from one run directory; missing parts become notes, bad files errors.

    Raises:
        InputFileError: the run directory does not exist, or one of its JSON files is not readable JSON.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(root, "the run folder does not exist or is not a folder")
    run = ReportRun(name=name or root.resolve().name or str(root), path=root)
    metrics = _read_json(run.evaluate_dir / "metrics.json")
    if isinstance(metrics, dict):
        run.metrics = metrics
        run.track = str(metrics.get("track", ""))
    else:
        run.notes.append("not evaluated yet: evaluate/metrics.json is missing, so there are no metrics or curves")
    run.history = _history(root / "train")
    if not run.history:
        run.notes.append("no training history (train/last.json with a metrics history): training curves skipped")
    if not run.track:  # not evaluated: the training config says which track
        sidecar = _read_json(root / "train" / "last.json")
        task = sidecar.get("task") if isinstance(sidecar, dict) else None
        run.track = {"slide": "slides", "cxr": "cxr"}.get(str(task), "")
    for table_name in ("slides.csv", "images.csv"):
        table_path = run.evaluate_dir / table_name
        if table_path.is_file():
            run.table = _read_table(table_path)
            break
    else:
        if run.metrics is not None:
            run.notes.append("no per-case table (evaluate/slides.csv or evaluate/images.csv)")
    suspects = _read_json(run.evaluate_dir / "suspects.json")
    run.suspects = suspects if isinstance(suspects, dict) else None
    return run
