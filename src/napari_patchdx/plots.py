"""Matplotlib figures shared by the widgets and the report (no pyplot state: figures are drawn into)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

STAGE_COLORS = {"patches": "#1f77b4", "whole": "#d62728"}


def draw_training_curves(figure: Any, history: Sequence[dict[str, Any]]) -> None:
    """Loss (train and validation) and mean validation AUROC per epoch, stages in their own colours.

    ``figure`` is a matplotlib ``Figure``; it is cleared and gets two axes. Epochs are numbered over all stages so
    a curriculum's patch and whole-image stages follow each other on one axis.
    """
    figure.clear()
    ax_loss, ax_auc = figure.subplots(1, 2)
    x = np.arange(1, len(history) + 1)
    stages = [str(h.get("stage", "patches")) for h in history]
    for stage in dict.fromkeys(stages):
        idx = np.array([i for i, s in enumerate(stages) if s == stage])
        color = STAGE_COLORS.get(stage, "#2ca02c")
        train = [float(history[i].get("train_loss", np.nan)) for i in idx]
        val = [float(history[i].get("val_loss", np.nan) or np.nan) for i in idx]
        auc = [float((history[i].get("val_auroc") or {}).get("mean", np.nan) or np.nan) for i in idx]
        ax_loss.plot(x[idx], train, "-o", color=color, ms=3, label=f"{stage} train")
        ax_loss.plot(x[idx], val, "--s", color=color, ms=3, label=f"{stage} val")
        ax_auc.plot(x[idx], auc, "-o", color=color, ms=3, label=stage)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_auc.set_xlabel("epoch")
    ax_auc.set_ylabel("validation AUROC (mean)")
    ax_auc.set_ylim(0.0, 1.02)
    for ax in (ax_loss, ax_auc):
        ax.grid(alpha=0.3)
        if history:
            ax.legend(fontsize=7)
    figure.tight_layout()
