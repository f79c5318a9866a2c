"""The result of a CAMELYON16 FROC evaluation: per-slide counts (:class:`SlideFroc`), the curve and score
(:class:`FrocResult`, with its JSON and PNG) and :func:`draw_froc`, which draws the curve into an Axes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .figures import new_figure, save_figure
from .files import PathLike, atomic_write
from .masks import CAMELYON_LEVEL, CAMELYON_MPP


@dataclass(frozen=True)
class SlideFroc:
    """Per-slide counts of a FROC evaluation.

    Attributes:
        slide: the slide name.
        is_tumor: whether the slide has ground truth (False: a normal slide, every detection a false positive).
        n_lesions: lesions to find (labels of the evaluation mask that are not ITCs).
        n_itc: ITC labels (neither to find nor false positives).
        n_detections: detections on the slide.
        hits: lesions hit by at least one detection with probability > 0 (at any threshold).
        false_positives: detections on non-tumour pixels (all of them on a normal slide), at any threshold.
        ignored: detections on an ITC (neither hit nor false positive).
    """

    slide: str
    is_tumor: bool
    n_lesions: int
    n_itc: int
    n_detections: int
    hits: int
    false_positives: int
    ignored: int


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


@dataclass(frozen=True, eq=False)
class FrocResult:
    """A CAMELYON16 FROC evaluation.

    Attributes:
        score: mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false positives per slide.
        sensitivity_at: false positives per slide -> sensitivity read off the curve (linear interpolation).
        fps_per_slide: float64 (m,) false positives per slide of each curve point, in the official order:
            thresholds increasing, then the closing (0, 0) point.
        sensitivity: float64 (m,) lesion sensitivity of each curve point.
        thresholds: float64 (m,) probability threshold of each point (a detection counts when its probability
            is >= it); ``inf`` for the closing (0, 0) point.
        slides: per-slide counts, in slide order.
        level: pyramid level of the evaluation mask.
        mpp: level-0 microns per pixel assumed by the protocol.
    """

    score: float
    sensitivity_at: dict[float, float]
    fps_per_slide: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    slides: list[SlideFroc] = field(default_factory=list)
    level: int = CAMELYON_LEVEL
    mpp: float = CAMELYON_MPP

    @property
    def n_slides(self) -> int:
        """Number of slides evaluated (the FPs-per-slide denominator)."""
        return len(self.slides)

    @property
    def n_lesions(self) -> int:
        """Number of non-ITC lesions over all slides (the sensitivity denominator)."""
        return sum(s.n_lesions for s in self.slides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: score, sensitivity_at, the curve (lists), counts and per-slide rows."""
        return {
            "score": float(self.score),
            "sensitivity_at": {_rate_key(k): float(v) for k, v in self.sensitivity_at.items()},
            "fps_per_slide": [float(v) for v in self.fps_per_slide],
            "sensitivity": [float(v) for v in self.sensitivity],
            "thresholds": [None if not math.isfinite(v) else float(v) for v in self.thresholds],
            "n_slides": self.n_slides,
            "n_lesions": self.n_lesions,
            "n_itc": sum(s.n_itc for s in self.slides),
            "level": int(self.level),
            "mpp": float(self.mpp),
            "slides": [
                {
                    "slide": s.slide,
                    "is_tumor": s.is_tumor,
                    "n_lesions": s.n_lesions,
                    "n_itc": s.n_itc,
                    "n_detections": s.n_detections,
                    "hits": s.hits,
                    "false_positives": s.false_positives,
                    "ignored": s.ignored,
                }
                for s in self.slides
            ],
        }

    def to_json(self, path: PathLike, *, overwrite: bool = True) -> Path:
        """Write :meth:`to_dict` as JSON, atomically; returns the path written."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        return atomic_write(path, (text + "\n").encode("utf-8"), overwrite)

    def plot(self, path: PathLike, *, overwrite: bool = True) -> Path:
        """Save the FROC curve as a PNG (matplotlib, Agg; no display needed), atomically; returns the path."""
        fig = new_figure((6.0, 4.5))
        draw_froc(fig.add_subplot(1, 1, 1), self)
        return save_figure(fig, path, overwrite)


def draw_froc(
    ax: Any, froc_result: FrocResult | Mapping[str, Any], *, label: str = "FROC", color: str = "tab:blue"
) -> None:
    """Draw a FROC curve (lesion sensitivity against false positives per slide) into a matplotlib Axes.

    Args:
        ax: the Axes.
        froc_result: a :class:`FrocResult` or its :meth:`FrocResult.to_dict` (as in ``froc.json``).
        label, color: legend label and colour of the curve.
    """
    if isinstance(froc_result, FrocResult):
        fps, sens = froc_result.fps_per_slide, froc_result.sensitivity
        at = {float(k): float(v) for k, v in froc_result.sensitivity_at.items()}
        score, n_slides, n_lesions = froc_result.score, froc_result.n_slides, froc_result.n_lesions
    else:
        fps = np.asarray(froc_result["fps_per_slide"], dtype=np.float64)
        sens = np.asarray(froc_result["sensitivity"], dtype=np.float64)
        at = {float(k): float(v) for k, v in froc_result["sensitivity_at"].items()}
        score = float(froc_result["score"])
        n_slides, n_lesions = froc_result.get("n_slides", "?"), froc_result.get("n_lesions", "?")
    order = np.lexsort((sens, fps))  # by FPs per slide, then sensitivity: a monotone staircase
    ax.plot(fps[order], sens[order], "-", color=color, label=label)
    ax.plot(list(at), list(at.values()), "o", color="tab:red", label="scored points")
    right = max(8.5, float(np.max(fps)) * 1.05 if len(fps) else 8.5)
    ax.set_xlim(0.0, right)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("average false positives per slide")
    ax.set_ylabel("lesion sensitivity")
    ax.set_title(f"CAMELYON16 FROC: score {score:.4f} ({n_slides} slides, {n_lesions} lesions)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
