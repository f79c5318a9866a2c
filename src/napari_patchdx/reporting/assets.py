"""Images of the report: copied into the folder beside the page, or drawn there (the training curves).

:class:`Assets` writes every image atomically under ``<page stem>_files/<run>/`` and removes what an earlier
report left there; links are relative to the page so the page and its folder move together.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write_bytes

__all__ = ["Assets", "training_figure"]


class Assets:
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
        """Save matplotlib figure ``fig`` as PNG to ``<folder>/<run_slug>/<rel_name>``; returns the link."""
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


def training_figure(history: list[dict[str, Any]]) -> Any:
    """A matplotlib figure of the training curves of ``history`` (missing values drawn as gaps)."""
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
