"""The HTML sections of the report: the summary, the X-ray comparison and one section per run.

Each function returns a piece of HTML; images go through :class:`~napari_patchdx.reporting.assets.Assets`.
"""

from __future__ import annotations

import math
from typing import Any

from .assets import Assets, training_figure
from .formatting import escape, fmt_ci, fmt_num, href, slugify, table_cell
from .load import ReportRun

__all__ = ["MAX_TABLE_ROWS", "MAX_THUMBNAILS", "cxr_comparison", "run_section", "summary_table"]

#: At most this many rows of a per-slide / per-image table are shown (the CSV holds them all).
MAX_TABLE_ROWS = 500
#: At most this many thumbnails are shown per run besides those of suspects (suspects first, then table order).
MAX_THUMBNAILS = 60


def _img(link: str | None, alt: str) -> str:
    """An ``<img>`` of ``link`` (relative to the page), or nothing when there is no link."""
    return f'<img src="{href(link)}" alt="{escape(alt)}">' if link else ""


def _slides_metrics(m: dict[str, Any]) -> str:
    """The metrics table of a slide run (FROC, slide AUC, lesion points) with its notes and settings."""
    froc = m.get("froc") or {}
    auc = m.get("slide_auc") or {}
    rows = [
        (
            "slides",
            f"{fmt_num(m.get('n_slides'))} ({fmt_num(m.get('n_tumor'))} tumour, {fmt_num(m.get('n_normal'))} normal)",
        ),
        ("FROC score (mean sensitivity at 1/4 ... 8 FPs per slide)", fmt_num(froc.get("score"), 4)),
    ]
    for rate, sens in (froc.get("sensitivity_at") or {}).items():
        rows.append((f"sensitivity at {rate} FPs per slide", fmt_num(sens, 4)))
    rows += [
        ("lesions to find (ITCs excluded)", fmt_num(froc.get("n_lesions"))),
        ("isolated-tumour-cell regions (ignored)", fmt_num(froc.get("n_itc"))),
        ("slide-level ROC AUC [95% CI]", fmt_ci(auc)),
    ]
    points = m.get("points") or {}
    if points:
        rows.append(
            (
                "lesion points: hits / false positives / on ITCs",
                f"{fmt_num(points.get('hit'))} / {fmt_num(points.get('false_positive'))} / "
                f"{fmt_num(points.get('itc_ignored'))}",
            )
        )
    rows.append(("suspected label errors", fmt_num(m.get("suspects"))))
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    notes = ""
    for part, label in ((froc, "FROC"), (auc, "slide AUC")):
        if part.get("skipped"):
            notes += f'<p class="note">{escape(label)} not computed: {escape(part["skipped"])}</p>'
        if part.get("note"):
            notes += f'<p class="note">{escape(label)}: {escape(part["note"])}</p>'
    settings = m.get("settings") or {}
    if settings:
        notes += "<p>Settings: " + escape(", ".join(f"{k} = {v}" for k, v in settings.items())) + "</p>"
    return f"<table>{body}</table>{notes}"


def _cxr_metrics(m: dict[str, Any]) -> str:
    """The per-class metrics table of a chest X-ray run with its notes."""
    classes = [str(c) for c in m.get("classes") or []]
    head = (
        "<tr><th>class</th><th>positives</th><th>AUROC [95% CI]</th><th>threshold (source)</th>"
        "<th>sensitivity</th><th>specificity</th><th>pointing game (pairs)</th></tr>"
    )
    body = ""
    for c in classes:
        source = (m.get("threshold_source") or {}).get(c, "")
        body += (
            f"<tr><th>{escape(c)}</th><td class='num'>{fmt_num((m.get('n_positive') or {}).get(c))}</td>"
            f"<td class='num'>{fmt_ci((m.get('auroc') or {}).get(c))}</td>"
            f"<td>{fmt_num((m.get('thresholds') or {}).get(c))} ({escape(source)})</td>"
            f"<td class='num'>{fmt_num((m.get('sensitivity') or {}).get(c))}</td>"
            f"<td class='num'>{fmt_num((m.get('specificity') or {}).get(c))}</td>"
            f"<td class='num'>{fmt_num((m.get('pointing_game') or {}).get(c))} "
            f"({fmt_num((m.get('pointing_pairs') or {}).get(c))})</td></tr>"
        )
    mean = m.get("mean_auroc") or {}
    body += f"<tr><th>mean</th><td></td><td class='num'>{fmt_ci(mean)}</td><td colspan='4'></td></tr>"
    notes = f"<p>{fmt_num(m.get('n_images'))} images; suspected label errors: {fmt_num(m.get('suspects'))}.</p>"
    for key in ("thresholds_note", "pointing_note"):
        if m.get(key):
            notes += f"<p>{escape(m[key])}.</p>"
    if mean.get("skipped"):
        notes += f'<p class="note">AUROC not computed: {escape(mean["skipped"])}</p>'
    return f"<table>{head}{body}</table>{notes}"


def _table_html(columns: list[str], rows: list[dict[str, str]]) -> str:
    """The per-case table (at most :data:`MAX_TABLE_ROWS` rows; suspects' rows flagged)."""
    if not columns:
        return ""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cls = ' class="suspect"' if str(row.get("suspect", "")) in ("1", "True", "true") else ""
        body.append(f"<tr{cls}>" + "".join(table_cell(c, row.get(c, "") or "") for c in columns) + "</tr>")
    more = ""
    if len(rows) > MAX_TABLE_ROWS:
        more = f'<p class="note">{len(rows) - MAX_TABLE_ROWS} more rows in the CSV file.</p>'
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>{more}'


def _thumb_caption(run: ReportRun, name: str, row: dict[str, str] | None) -> str:
    """The caption of a thumbnail: its name and, from the table row, its label(s) and score."""
    if row is None:
        return escape(name)
    if run.track == "slides":
        return f"{escape(name)}: {escape(row.get('label', ''))}, score {fmt_num(row.get('score'))}"
    return f"{escape(name)}: {escape(row.get('labels', ''))}"


def run_section(run: ReportRun, index: int, assets: Assets) -> str:
    """The ``<section>`` of one run: notes, metrics, curves, training, table, suspects and thumbnails."""
    slug = f"run{index}_{slugify(run.name)}"
    track_label = {"slides": "whole-slide images", "cxr": "chest X-rays"}.get(run.track, "unknown track")
    parts = [f'<section id="{escape(slug)}"><h2>{escape(run.name)} <small>({escape(track_label)})</small></h2>']
    parts.append(f"<p>Run folder: <code>{escape(run.path)}</code></p>")
    for note in run.notes:
        parts.append(f'<p class="note">{escape(note)}</p>')
    m = run.metrics
    if m is not None:
        parts.append("<h3>Metrics</h3>")
        parts.append(_slides_metrics(m) if run.track == "slides" else _cxr_metrics(m))
        figs = []
        for file, alt in (("froc.png", "FROC curve"), ("roc.png", "ROC curve")):
            link = assets.copy(run.evaluate_dir / file, slug, file)
            if link:
                figs.append(f"<figure>{_img(link, alt)}<figcaption>{escape(alt)}</figcaption></figure>")
            elif run.track == "slides" or file == "roc.png":
                parts.append(f'<p class="note">{escape(alt)} missing: evaluate/{escape(file)} not found.</p>')
        if figs:
            parts.append("<h3>Curves</h3><div class='figs'>" + "".join(figs) + "</div>")
    if run.history:
        link = assets.figure(training_figure(run.history), slug, "training.png")
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
            f"<figure>{_img(link, 'training curves')}<figcaption>{len(run.history)} epochs ({escape(stages)}){best}"
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
        parts.append(f"<p>{escape(run.suspects.get('rule', ''))}</p>")
        if not suspects:
            parts.append("<p>None.</p>")
        else:
            items = []
            for s in suspects:
                name = str(s.get("name", ""))
                link = assets.copy(thumbs_dir / f"{name}.png", slug, f"thumbs/{name}.png")
                caption = f"{escape(name)} ({escape(s.get('class', ''))}): {escape(s.get('reason', ''))}"
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
                "Heatmaps over the slides; ground truth outlined (cyan: tumour, yellow: exclusion, green: normal); "
                "lesion points by outcome (green: hit, red: false positive, orange: on an isolated-tumour-cell region, "
                "ignored)."
            )
        else:
            legend = "Class activation maps over the X-rays; ground-truth lesion boxes outlined; white cross: CAM peak."
        parts.append(f"<h3>Thumbnails</h3><p>{escape(legend)}</p><div class='thumbs'>" + "".join(items) + "</div>")
        if len(shown) > MAX_THUMBNAILS:
            parts.append(f'<p class="note">{len(shown) - MAX_THUMBNAILS} more thumbnails in evaluate/thumbs/.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _headline(run: ReportRun) -> str:
    """The run's headline metrics for the summary table."""
    m = run.metrics or {}
    if run.track == "slides":
        return f"FROC {fmt_num((m.get('froc') or {}).get('score'), 4)}, slide AUC {fmt_ci(m.get('slide_auc'))}"
    if run.track == "cxr":
        return f"mean AUROC {fmt_ci(m.get('mean_auroc'))}"
    return "n/a"


def summary_table(runs: list[ReportRun]) -> str:
    """The summary table at the top of the page: one row per run, linked to its section."""
    rows = "".join(
        f"<tr><td><a href='#run{i}_{escape(slugify(r.name))}'>{escape(r.name)}</a></td>"
        f"<td>{escape(r.track or 'unknown')}</td>"
        f"<td>{_headline(r)}</td><td class='num'>{fmt_num((r.metrics or {}).get('suspects'))}</td></tr>"
        for i, r in enumerate(runs)
    )
    return (
        "<h2>Summary</h2><table><tr><th>run</th><th>track</th><th>headline metrics</th>"
        f"<th>suspected label errors</th></tr>{rows}</table>"
    )


def cxr_comparison(runs: list[ReportRun]) -> str:
    """The side-by-side table of two or more evaluated chest X-ray runs; empty with fewer."""
    cxr = [r for r in runs if r.track == "cxr" and r.metrics is not None]
    if len(cxr) < 2:
        return ""
    classes: list[str] = []
    for r in cxr:
        for c in (r.metrics or {}).get("classes") or []:
            if c not in classes:
                classes.append(str(c))
    head = "<tr><th>metric</th>" + "".join(f"<th>{escape(r.name)}</th>" for r in cxr) + "</tr>"

    def row(label: str, get: Any) -> str:
        return (
            f"<tr><th>{escape(label)}</th>"
            + "".join(f"<td class='num'>{get(r.metrics or {})}</td>" for r in cxr)
            + "</tr>"
        )

    body = [row("mean AUROC [95% CI]", lambda m: fmt_ci(m.get("mean_auroc")))]
    for c in classes:
        body.append(row(f"AUROC {c}", lambda m, c=c: fmt_ci((m.get("auroc") or {}).get(c))))
    for c in classes:
        body.append(
            row(
                f"sensitivity / specificity {c}",
                lambda m, c=c: (
                    f"{fmt_num((m.get('sensitivity') or {}).get(c))} / {fmt_num((m.get('specificity') or {}).get(c))}"
                ),
            )
        )
    for c in classes:
        body.append(row(f"pointing game {c}", lambda m, c=c: fmt_num((m.get("pointing_game") or {}).get(c))))
    body.append(row("images", lambda m: fmt_num(m.get("n_images"))))
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
