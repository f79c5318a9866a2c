"""The report's entry point: :func:`build_report` writes the HTML page, its images and ``metrics.json``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write_text
from ..errors import ConfigError
from ..jsonvalues import write_json
from .assets import Assets
from .formatting import CSS, escape, href
from .load import PathLike, ReportRun, load_run
from .sections import cxr_comparison, run_section, summary_table

__all__ = ["build_report"]


def _unique_names(paths: list[Path]) -> list[str]:
    """Run names from the folder names, made unique with ``-2``, ``-3``... suffixes."""
    names: list[str] = []
    for p in paths:
        base = p.resolve().name or str(p)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _metrics_of(run: ReportRun) -> dict[str, Any]:
    """What ``metrics.json`` holds for one run: its metrics, track, a training summary and the report notes."""
    out: dict[str, Any] = dict(run.metrics or {})
    out.setdefault("track", run.track or None)
    if run.history:
        aucs = [
            float(v)
            for h in run.history
            for k, v in (h.get("val_auroc") or {}).items()
            if k == "mean" and v is not None and math.isfinite(float(v))
        ]
        out["training"] = {
            "epochs": len(run.history),
            "stages": list(dict.fromkeys(str(h.get("stage", "")) for h in run.history)),
            "best_val_auroc_mean": max(aucs) if aucs else None,
        }
    if run.notes:
        out["report_notes"] = list(run.notes)
    return out


def build_report(
    runs: PathLike | Sequence[PathLike],
    out: PathLike | None = None,
    *,
    title: str = "napari-patchdx report",
) -> Path:
    """Write the HTML report of one run or several and ``metrics.json`` beside it; returns the HTML path.

    Args:
        runs: a run directory or several (see the module docstring for the layout). Each gets a section: its
            metrics (FROC score and sensitivities, slide AUC with its 95 % interval, or per-class AUROC with
            intervals, thresholds, sensitivity, specificity and pointing game), the FROC / ROC curves, the
            training curves when ``train/last.json`` holds a history, the per-slide / per-image table, the
            suspected label errors with their thumbnails and the heatmap / CAM thumbnails with ground-truth
            outlines. With two or more chest X-ray runs (e.g. curriculum and baseline) a table compares them side
            by side. Missing parts are skipped with a note.
        out: the HTML file to write (``.html`` / ``.htm``); a folder (any other path) means ``<folder>/report.html``,
            the folder created when missing. Default: ``report.html``
            in the run directory for one run, in the runs' common parent folder for several. Images go to
            ``<out stem>_files/`` beside it (files of an earlier report there that this one does not use are
            removed); the metrics to ``metrics.json`` beside it: the run's metrics for one run, one object keyed by
            run name for several (plus a ``training`` summary and any ``report_notes``).
        title: the page title (escaped).

    Raises:
        ConfigError: no run given.
        InputFileError: a run directory that does not exist or holds unreadable JSON.
    """
    paths = [Path(runs)] if isinstance(runs, str | os.PathLike) else [Path(r) for r in runs]
    if not paths:
        raise ConfigError("build_report: no run directories given")
    names = _unique_names(paths)
    loaded = [load_run(p, name) for p, name in zip(paths, names, strict=True)]
    if out is None:
        parent = paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p.resolve()) for p in paths]))
        page = parent / "report.html"
    else:
        page = Path(out)
        if page.is_dir() or page.suffix.lower() not in (".html", ".htm"):
            page = page / "report.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    assets = Assets(page.parent / f"{page.stem}_files", page.parent)
    sections = [run_section(run, i, assets) for i, run in enumerate(loaded)]
    from ..versions import __version__

    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>napari-patchdx {escape(__version__)}; {len(loaded)} run(s). Metrics: "
        f'<a href="{href("metrics.json")}">metrics.json</a>.</p>',
        summary_table(loaded),
        cxr_comparison(loaded),
        *sections,
        "</body></html>",
    ]
    if len(loaded) == 1:
        metrics: dict[str, Any] = _metrics_of(loaded[0])
    else:
        metrics = {run.name: _metrics_of(run) for run in loaded}
    write_json(page.parent / "metrics.json", metrics)
    atomic_write_text(page, "\n".join(body) + "\n")
    assets.prune()
    return page
