"""The HTML report of one run or several: curves, metrics, per-case tables, thumbnails, suspected label errors.

:func:`build_report` reads run directories laid out as the pipeline writes them (see ``docs/architecture.md``)::

    RUN_DIR/
      train/last.json        checkpoint sidecar whose "metrics" list is the training history (optional)
      evaluate/metrics.json  written by napari_patchdx.evaluation.evaluate_slides / evaluate_cxr
      evaluate/froc.png, roc.png, slides.csv | images.csv, thumbs/<name>.png, suspects.json

and writes one self-contained HTML page: every image is copied into a folder beside the page
(``<page stem>_files/``) and linked relatively, so the page and its folder can be moved or zipped together; no
script, no external resource. Every piece of text that comes from a file (run, slide, image and class names,
notes) is escaped with :func:`html.escape`. A part a run lacks (no training history, no evaluation yet) is skipped
with a note saying what is missing. ``metrics.json`` beside the page holds the metrics of the run, or, for several
runs, one object keyed by run name. Every file is written atomically (:mod:`napari_patchdx._fsutil`).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._fsutil import atomic_write_bytes, atomic_write_text
from ..errors import ConfigError, InputFileError

__all__ = ["ReportRun", "build_report", "load_run"]

PathLike = str | os.PathLike[str]

#: At most this many rows of a per-slide / per-image table are shown (the CSV holds them all).
MAX_TABLE_ROWS = 500
#: At most this many thumbnails are shown per run besides those of suspects (suspects first, then table order).
MAX_THUMBNAILS = 60


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


# --------------------------------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    """Text escaped for HTML (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "n/a"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if not math.isfinite(f):
        return "n/a"
    if f == int(f) and abs(f) < 1e9 and not isinstance(value, float):
        return str(int(f))
    return f"{f:.{digits}f}"


def _ci(entry: Any) -> str:
    """``0.912 [0.85, 0.96]`` from an ``{"auc", "lo", "hi"}`` dict."""
    if not isinstance(entry, dict) or entry.get("auc") is None:
        return "n/a"
    text = _num(entry["auc"])
    if entry.get("lo") is not None and entry.get("hi") is not None:
        text += f" [{_num(entry['lo'])}, {_num(entry['hi'])}]"
    return text


def _href(rel: str) -> str:
    return _e(quote(rel.replace(os.sep, "/")))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"


def _cell(column: str, value: str) -> str:
    if value in ("", None):
        return "<td></td>"
    try:
        f = float(value)
    except ValueError:
        return f"<td>{_e(value)}</td>"
    if column.endswith(("_label", "_predicted", "_peak_in_box")) or column in (
        "detections",
        "lesions",
        "lesions_detected",
        "itc_lesions",
        "itc_detections",
        "false_positives",
    ):
        return f'<td class="num">{_e(value)}</td>'
    if column == "suspect":
        return '<td class="flag">yes</td>' if f else "<td>no</td>"
    return f'<td class="num">{_num(f, 4)}</td>'


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #aaa; }
table { border-collapse: collapse; margin: .6em 0; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.flag, tr.suspect td { background: #fff1e6; }
.note { color: #8a5a00; background: #fff8e1; border-left: 4px solid #f0b400; padding: .3em .6em; margin: .4em 0; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
.figs img { max-width: 560px; border: 1px solid #ddd; }
.thumbs { display: flex; flex-wrap: wrap; gap: .6em; }
.thumbs figure { margin: 0; width: 260px; }
.thumbs img { width: 260px; border: 1px solid #ddd; }
figcaption { font-size: 80%; color: #444; }
.scroll { max-height: 32em; overflow: auto; }
"""


# --------------------------------------------------------------------------------------------------- assets


class _Assets:
    """Copies images into the folder beside the page and remembers what it wrote (stale files are removed)."""

    def __init__(self, folder: Path, page_dir: Path) -> None:
        self.folder = folder
        self.page_dir = page_dir
        self.written: set[Path] = set()

    def copy(self, src: Path, run_slug: str, rel_name: str) -> str | None:
        """Copy ``src`` to ``<folder>/<run_slug>/<rel_name>``; returns the link relative to the page, or None."""
        if not src.is_file():
            return None
        dest = self.folder / run_slug / rel_name
        atomic_write_bytes(dest, src.read_bytes(), mkdir=True)
        self.written.add(dest)
        return os.path.relpath(dest, self.page_dir)

    def figure(self, fig: Any, run_slug: str, rel_name: str) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        dest = self.folder / run_slug / rel_name
        atomic_write_bytes(dest, buf.getvalue(), mkdir=True)
        self.written.add(dest)
        return os.path.relpath(dest, self.page_dir)

    def prune(self) -> None:
        """Remove files in the assets folder that this report did not write (left from an earlier report)."""
        if not self.folder.is_dir():
            return
        for p in sorted(self.folder.rglob("*"), reverse=True):
            if p.is_file() and p not in self.written:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def _training_figure(history: list[dict[str, Any]]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..plots import draw_training_curves

    clean = []
    for entry in history:
        item = dict(entry)
        for key in ("train_loss", "val_loss", "val_accuracy"):
            if item.get(key) is None:
                item[key] = math.nan
        item["val_auroc"] = {k: (math.nan if v is None else v) for k, v in (item.get("val_auroc") or {}).items()}
        clean.append(item)
    fig = Figure(figsize=(9.0, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    draw_training_curves(fig, clean)
    return fig


# --------------------------------------------------------------------------------------------------- sections


def _img(link: str | None, alt: str) -> str:
    return f'<img src="{_href(link)}" alt="{_e(alt)}">' if link else ""


def _slides_metrics(m: dict[str, Any]) -> str:
    froc = m.get("froc") or {}
    auc = m.get("slide_auc") or {}
    rows = [
        ("slides", f"{_num(m.get('n_slides'))} ({_num(m.get('n_tumor'))} tumour, {_num(m.get('n_normal'))} normal)"),
        ("FROC score (mean sensitivity at 1/4 ... 8 FPs per slide)", _num(froc.get("score"), 4)),
    ]
    for rate, sens in (froc.get("sensitivity_at") or {}).items():
        rows.append((f"sensitivity at {rate} FPs per slide", _num(sens, 4)))
    rows += [
        ("lesions to find (ITCs excluded)", _num(froc.get("n_lesions"))),
        ("isolated-tumour-cell regions (ignored)", _num(froc.get("n_itc"))),
        ("slide-level ROC AUC [95% CI]", _ci(auc)),
    ]
    points = m.get("points") or {}
    if points:
        rows.append(
            (
                "lesion points: hits / false positives / on ITCs",
                f"{_num(points.get('hit'))} / {_num(points.get('false_positive'))} / {_num(points.get('itc_ignored'))}",
            )
        )
    rows.append(("suspected label errors", _num(m.get("suspects"))))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    notes = ""
    for part, label in ((froc, "FROC"), (auc, "slide AUC")):
        if part.get("skipped"):
            notes += f'<p class="note">{_e(label)} not computed: {_e(part["skipped"])}</p>'
        if part.get("note"):
            notes += f'<p class="note">{_e(label)}: {_e(part["note"])}</p>'
    settings = m.get("settings") or {}
    if settings:
        notes += "<p>Settings: " + _e(", ".join(f"{k} = {v}" for k, v in settings.items())) + "</p>"
    return f"<table>{body}</table>{notes}"


def _cxr_metrics(m: dict[str, Any]) -> str:
    classes = [str(c) for c in m.get("classes") or []]
    head = (
        "<tr><th>class</th><th>positives</th><th>AUROC [95% CI]</th><th>threshold (source)</th>"
        "<th>sensitivity</th><th>specificity</th><th>pointing game (pairs)</th></tr>"
    )
    body = ""
    for c in classes:
        source = (m.get("threshold_source") or {}).get(c, "")
        body += (
            f"<tr><th>{_e(c)}</th><td class='num'>{_num((m.get('n_positive') or {}).get(c))}</td>"
            f"<td class='num'>{_ci((m.get('auroc') or {}).get(c))}</td>"
            f"<td>{_num((m.get('thresholds') or {}).get(c))} ({_e(source)})</td>"
            f"<td class='num'>{_num((m.get('sensitivity') or {}).get(c))}</td>"
            f"<td class='num'>{_num((m.get('specificity') or {}).get(c))}</td>"
            f"<td class='num'>{_num((m.get('pointing_game') or {}).get(c))} "
            f"({_num((m.get('pointing_pairs') or {}).get(c))})</td></tr>"
        )
    mean = m.get("mean_auroc") or {}
    body += f"<tr><th>mean</th><td></td><td class='num'>{_ci(mean)}</td><td colspan='4'></td></tr>"
    notes = f"<p>{_num(m.get('n_images'))} images; suspected label errors: {_num(m.get('suspects'))}.</p>"
    for key in ("thresholds_note", "pointing_note"):
        if m.get(key):
            notes += f"<p>{_e(m[key])}.</p>"
    if mean.get("skipped"):
        notes += f'<p class="note">AUROC not computed: {_e(mean["skipped"])}</p>'
    return f"<table>{head}{body}</table>{notes}"


def _table_html(columns: list[str], rows: list[dict[str, str]]) -> str:
    if not columns:
        return ""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cls = ' class="suspect"' if str(row.get("suspect", "")) in ("1", "True", "true") else ""
        body.append(f"<tr{cls}>" + "".join(_cell(c, row.get(c, "") or "") for c in columns) + "</tr>")
    more = ""
    if len(rows) > MAX_TABLE_ROWS:
        more = f'<p class="note">{len(rows) - MAX_TABLE_ROWS} more rows in the CSV file.</p>'
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>{more}'


def _thumb_caption(run: ReportRun, name: str, row: dict[str, str] | None) -> str:
    if row is None:
        return _e(name)
    if run.track == "slides":
        return f"{_e(name)}: {_e(row.get('label', ''))}, score {_num(row.get('score'))}"
    return f"{_e(name)}: {_e(row.get('labels', ''))}"


def _run_section(run: ReportRun, index: int, assets: _Assets) -> str:
    slug = f"run{index}_{_slug(run.name)}"
    track_label = {"slides": "whole-slide images", "cxr": "chest X-rays"}.get(run.track, "unknown track")
    parts = [f'<section id="{_e(slug)}"><h2>{_e(run.name)} <small>({_e(track_label)})</small></h2>']
    parts.append(f"<p>Run folder: <code>{_e(run.path)}</code></p>")
    for note in run.notes:
        parts.append(f'<p class="note">{_e(note)}</p>')
    m = run.metrics
    if m is not None:
        parts.append("<h3>Metrics</h3>")
        parts.append(_slides_metrics(m) if run.track == "slides" else _cxr_metrics(m))
        figs = []
        for file, alt in (("froc.png", "FROC curve"), ("roc.png", "ROC curve")):
            link = assets.copy(run.evaluate_dir / file, slug, file)
            if link:
                figs.append(f"<figure>{_img(link, alt)}<figcaption>{_e(alt)}</figcaption></figure>")
            elif run.track == "slides" or file == "roc.png":
                parts.append(f'<p class="note">{_e(alt)} missing: evaluate/{_e(file)} not found.</p>')
        if figs:
            parts.append("<h3>Curves</h3><div class='figs'>" + "".join(figs) + "</div>")
    if run.history:
        link = assets.figure(_training_figure(run.history), slug, "training.png")
        stages = ", ".join(dict.fromkeys(str(h.get("stage", "")) for h in run.history))
        aucs = [
            float(v)
            for h in run.history
            if isinstance(h.get("val_auroc"), dict)
            for k, v in h["val_auroc"].items()
            if k == "mean" and v is not None and math.isfinite(float(v))
        ]
        best = f"; best validation mean AUROC {max(aucs):.3f}" if aucs else ""
        parts.append(
            "<h3>Training</h3><div class='figs'>"
            f"<figure>{_img(link, 'training curves')}<figcaption>{len(run.history)} epochs ({_e(stages)}){best}"
            "</figcaption></figure></div>"
        )
    columns, rows = run.table
    key = "slide" if "slide" in columns else "image"
    by_name = {r.get(key, ""): r for r in rows}
    if columns:
        title = "Per-slide table" if key == "slide" else "Per-image table"
        parts.append(f"<h3>{title}</h3>" + _table_html(columns, rows))
    thumbs_dir = run.evaluate_dir / "thumbs"
    suspects = (run.suspects or {}).get("suspects") or []
    parts.append("<h3>Suspected label errors</h3>")
    if run.suspects is None:
        parts.append('<p class="note">no evaluate/suspects.json: suspected label errors not listed.</p>')
    else:
        parts.append(f"<p>{_e(run.suspects.get('rule', ''))}</p>")
        if not suspects:
            parts.append("<p>None.</p>")
        else:
            items = []
            for s in suspects:
                name = str(s.get("name", ""))
                link = assets.copy(thumbs_dir / f"{name}.png", slug, f"thumbs/{name}.png")
                caption = f"{_e(name)} ({_e(s.get('class', ''))}): {_e(s.get('reason', ''))}"
                items.append(f"<figure>{_img(link, name)}<figcaption>{caption}</figcaption></figure>")
            parts.append("<div class='thumbs'>" + "".join(items) + "</div>")
    if thumbs_dir.is_dir():
        names = [r.get(key, "") for r in rows] or sorted(p.stem for p in thumbs_dir.glob("*.png"))
        shown = [n for n in names if (thumbs_dir / f"{n}.png").is_file()]
        items = []
        for name in shown[:MAX_THUMBNAILS]:
            link = assets.copy(thumbs_dir / f"{name}.png", slug, f"thumbs/{name}.png")
            items.append(
                f"<figure>{_img(link, name)}<figcaption>{_thumb_caption(run, name, by_name.get(name))}"
                "</figcaption></figure>"
            )
        if run.track == "slides":
            legend = (
                "Heatmaps over the slides; ground truth outlined (cyan: tumour, yellow: exclusion); lesion points "
                "by outcome (green: hit, red: false positive, orange: on an isolated-tumour-cell region, ignored)."
            )
        else:
            legend = "Class activation maps over the X-rays; ground-truth lesion boxes outlined; white cross: CAM peak."
        parts.append(f"<h3>Thumbnails</h3><p>{_e(legend)}</p><div class='thumbs'>" + "".join(items) + "</div>")
        if len(shown) > MAX_THUMBNAILS:
            parts.append(f'<p class="note">{len(shown) - MAX_THUMBNAILS} more thumbnails in evaluate/thumbs/.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _headline(run: ReportRun) -> str:
    m = run.metrics or {}
    if run.track == "slides":
        return f"FROC {_num((m.get('froc') or {}).get('score'), 4)}, slide AUC {_ci(m.get('slide_auc'))}"
    if run.track == "cxr":
        return f"mean AUROC {_ci(m.get('mean_auroc'))}"
    return "n/a"


def _summary(runs: list[ReportRun]) -> str:
    rows = "".join(
        f"<tr><td><a href='#run{i}_{_e(_slug(r.name))}'>{_e(r.name)}</a></td><td>{_e(r.track or 'unknown')}</td>"
        f"<td>{_headline(r)}</td><td class='num'>{_num((r.metrics or {}).get('suspects'))}</td></tr>"
        for i, r in enumerate(runs)
    )
    return (
        "<h2>Summary</h2><table><tr><th>run</th><th>track</th><th>headline metrics</th>"
        f"<th>suspected label errors</th></tr>{rows}</table>"
    )


def _cxr_comparison(runs: list[ReportRun]) -> str:
    cxr = [r for r in runs if r.track == "cxr" and r.metrics is not None]
    if len(cxr) < 2:
        return ""
    classes: list[str] = []
    for r in cxr:
        for c in (r.metrics or {}).get("classes") or []:
            if c not in classes:
                classes.append(str(c))
    head = "<tr><th>metric</th>" + "".join(f"<th>{_e(r.name)}</th>" for r in cxr) + "</tr>"

    def row(label: str, get: Any) -> str:
        return (
            f"<tr><th>{_e(label)}</th>" + "".join(f"<td class='num'>{get(r.metrics or {})}</td>" for r in cxr) + "</tr>"
        )

    body = [row("mean AUROC [95% CI]", lambda m: _ci(m.get("mean_auroc")))]
    for c in classes:
        body.append(row(f"AUROC {c}", lambda m, c=c: _ci((m.get("auroc") or {}).get(c))))
    for c in classes:
        body.append(
            row(
                f"sensitivity / specificity {c}",
                lambda m, c=c: (
                    f"{_num((m.get('sensitivity') or {}).get(c))} / {_num((m.get('specificity') or {}).get(c))}"
                ),
            )
        )
    for c in classes:
        body.append(row(f"pointing game {c}", lambda m, c=c: _num((m.get("pointing_game") or {}).get(c))))
    body.append(row("images", lambda m: _num(m.get("n_images"))))
    best_auc = []
    for r in cxr:
        aucs = [
            float(v)
            for h in r.history
            for k, v in (h.get("val_auroc") or {}).items()
            if k == "mean" and v is not None and math.isfinite(float(v))
        ]
        best_auc.append(f"{max(aucs):.3f}" if aucs else "n/a")
    body.append(
        "<tr><th>best validation mean AUROC</th>" + "".join(f"<td class='num'>{v}</td>" for v in best_auc) + "</tr>"
    )
    body.append(
        "<tr><th>training epochs</th>" + "".join(f"<td class='num'>{len(r.history)}</td>" for r in cxr) + "</tr>"
    )
    return "<h2>Chest X-ray runs side by side</h2><table>" + head + "".join(body) + "</table>"


def _unique_names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = p.resolve().name or str(p)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _metrics_of(run: ReportRun) -> dict[str, Any]:
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
    assets = _Assets(page.parent / f"{page.stem}_files", page.parent)
    sections = [_run_section(run, i, assets) for i, run in enumerate(loaded)]
    from .. import __version__

    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>napari-patchdx {_e(__version__)}; {len(loaded)} run(s). Metrics: "
        f'<a href="{_href("metrics.json")}">metrics.json</a>.</p>',
        _summary(loaded),
        _cxr_comparison(loaded),
        *sections,
        "</body></html>",
    ]
    if len(loaded) == 1:
        metrics: dict[str, Any] = _metrics_of(loaded[0])
    else:
        metrics = {run.name: _metrics_of(run) for run in loaded}
    from ..evaluation import _json_value

    atomic_write_text(page.parent / "metrics.json", json.dumps(_json_value(metrics), indent=2, allow_nan=False) + "\n")
    atomic_write_text(page, "\n".join(body) + "\n")
    assets.prune()
    return page
