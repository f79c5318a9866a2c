"""HTML text of the report: escaping, number and interval formatting, links, table cells and the stylesheet.

Every piece of text that comes from a file goes through :func:`escape` (:func:`html.escape`, quotes too).
"""

from __future__ import annotations

import html
import math
import os
import re
from typing import Any
from urllib.parse import quote

from ..evaluation.slides import SLIDES_COUNT_COLUMNS

__all__ = ["CSS", "escape", "fmt_ci", "fmt_num", "href", "slugify", "table_cell"]


def escape(value: Any) -> str:
    """Text escaped for HTML (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number for a table cell: "n/a" for missing / non-finite, integers as such, else ``digits`` decimals."""
    if value is None or value == "":
        return "n/a"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return escape(value)
    if not math.isfinite(f):
        return "n/a"
    if f == int(f) and abs(f) < 1e9 and not isinstance(value, float):
        return str(int(f))
    return f"{f:.{digits}f}"


def fmt_ci(entry: Any) -> str:
    """``0.912 [0.85, 0.96]`` from an ``{"auc", "lo", "hi"}`` dict."""
    if not isinstance(entry, dict) or entry.get("auc") is None:
        return "n/a"
    text = fmt_num(entry["auc"])
    if entry.get("lo") is not None and entry.get("hi") is not None:
        text += f" [{fmt_num(entry['lo'])}, {fmt_num(entry['hi'])}]"
    return text


def href(rel: str) -> str:
    """A relative file path as an escaped, URL-quoted link target (``/`` separators)."""
    return escape(quote(rel.replace(os.sep, "/")))


def slugify(text: str) -> str:
    """``text`` reduced to letters, digits and ``._-`` for HTML ids and folder names ("run" if nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"


def table_cell(column: str, value: str) -> str:
    """One ``<td>`` of a per-case table: counts and labels as given, flags as yes / no, scores to 4 decimals."""
    if value in ("", None):
        return "<td></td>"
    try:
        f = float(value)
    except ValueError:
        return f"<td>{escape(value)}</td>"
    if column.endswith(("_label", "_predicted", "_peak_in_box")) or column in SLIDES_COUNT_COLUMNS:
        return f'<td class="num">{escape(value)}</td>'
    if column == "suspect":
        return '<td class="flag">yes</td>' if f else "<td>no</td>"
    return f'<td class="num">{fmt_num(f, 4)}</td>'


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
