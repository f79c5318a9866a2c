"""Figures of the evaluation: matplotlib figures drawn with Agg (no display), saved as PNG, and ROC curves.

:func:`new_figure` and :func:`save_figure` are the figure helpers every evaluation plot uses; :func:`draw_roc`
draws ROC curves into an Axes (the FROC curve is :func:`~napari_patchdx.evaluation.froc_result.draw_froc`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .files import PathLike, atomic_write


def new_figure(size: tuple[float, float], dpi: int = 100) -> Any:
    """A matplotlib Figure drawn with Agg (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: PathLike, overwrite: bool = True) -> Path:
    """Write a Figure as PNG, atomically; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(path, buf.getvalue(), overwrite)


def draw_roc(
    ax: Any,
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    title: str = "ROC",
) -> dict[str, float]:
    """Draw ROC curves (true against false positive rate) into a matplotlib Axes; returns each curve's AUC.

    Args:
        ax: the Axes.
        curves: legend name -> ``(labels, scores)``, 0 / 1 labels and finite scores of the same length. A curve
            whose labels are all one class is skipped (its AUC is NaN).
        title: the Axes title.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    aucs: dict[str, float] = {}
    for name, (labels, scores) in curves.items():
        y = np.asarray(labels).astype(bool).reshape(-1)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if y.all() or not y.any():
            aucs[name] = math.nan
            continue
        fpr, tpr, _ = roc_curve(y, s)
        aucs[name] = float(roc_auc_score(y, s))
        ax.plot(fpr, tpr, "-", drawstyle="steps-post", label=f"{name} (AUC {aucs[name]:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.02)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if any(math.isfinite(v) for v in aucs.values()):
        ax.legend(loc="lower right", fontsize=7)
    return aucs
