"""Thumbnails of evaluated cases: a slide with its heatmap, ground truth and points by outcome
(:func:`slide_thumbnail`), an X-ray with its CAM, lesion boxes and CAM peak (:func:`cxr_thumbnail`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import Grid
from ..io.annotations.model import TUMOR, AnnotationSet, class_color
from .figures import new_figure, save_figure
from .files import PathLike
from .masks import CAMELYON_LEVEL
from .outcomes import OUTCOME_COLORS, OUTCOME_FALSE_POSITIVE, OUTCOMES, PointOutcomes
from .points import PointsTable


def _draw_truth(ax: Any, truth: AnnotationSet | np.ndarray | None, ds: int) -> None:
    """Ground-truth outlines in level-0 (x, y) axes: annotation rings in their class colour
    (:func:`~napari_patchdx.io.annotations.class_color`, as the ground-truth layers), or the contour of a
    level-``ds`` tumour mask in the tumour colour."""
    if truth is None:
        return
    if isinstance(truth, AnnotationSet):
        for region in truth.regions:
            color = class_color(region.label)
            for k, ring in enumerate((region.exterior, *region.holes)):
                closed = np.vstack([ring, ring[:1]])
                ax.plot(closed[:, 1], closed[:, 0], "-" if k == 0 else "--", color=color, lw=1.0)
        return
    mask = np.asarray(truth) != 0
    if mask.any():
        ys = (np.arange(mask.shape[0]) + 0.5) * ds
        xs = (np.arange(mask.shape[1]) + 0.5) * ds
        ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors=[class_color(TUMOR)], linewidths=1.0)


def _draw_points(ax: Any, points: PointsTable, outcomes: PointOutcomes | None, limit: int = 300) -> None:
    """The ``limit`` most probable points as open circles coloured by outcome (level-0 (x, y) axes)."""
    n = min(len(points), limit)
    if n == 0:
        return
    kinds = outcomes.outcome[:n] if outcomes is not None else np.full(n, OUTCOME_FALSE_POSITIVE, dtype=object)
    for kind in OUTCOMES:
        sel = np.flatnonzero(kinds == kind)
        if sel.size:
            ax.scatter(
                points.x[sel],
                points.y[sel],
                s=28,
                facecolors="none",
                edgecolors=OUTCOME_COLORS[kind],
                linewidths=1.3,
                label=kind.replace("_", " "),
            )


def slide_thumbnail(
    path: PathLike,
    image: np.ndarray,
    level0_shape: tuple[int, int],
    *,
    heatmap: np.ndarray | None = None,
    grid: Grid | None = None,
    truth: AnnotationSet | np.ndarray | None = None,
    points: PointsTable | None = None,
    outcomes: PointOutcomes | None = None,
    title: str = "",
    level: int = CAMELYON_LEVEL,
) -> Path:
    """Save a slide thumbnail PNG with the heatmap, the ground-truth outlines and the points by outcome, atomically.

    Args:
        path: the PNG to write.
        image: (h, w, 3) uint8 thumbnail of the whole slide (e.g. :meth:`Slide.thumbnail`).
        level0_shape: the slide's level-0 (height, width); the thumbnail is stretched over it.
        heatmap, grid: tumour probabilities (NaN transparent) and where they lie, drawn with ``inferno``, alpha 0.5.
        truth: annotations (each class in its colour: tumour cyan, exclusions yellow, normal green; holes dashed)
            or a tumour mask at level ``level``.
        points, outcomes: lesion points as circles coloured by outcome (:data:`OUTCOME_COLORS`).
        title: text above the image.
        level: the pyramid level of a mask ``truth``.
    """
    h0, w0 = (int(v) for v in level0_shape)
    width_in = 4.0
    fig = new_figure((width_in, max(1.2, width_in * h0 / w0) + 0.35))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))
    ax.imshow(np.asarray(image), extent=(0, w0, h0, 0), interpolation="bilinear")
    if heatmap is not None and grid is not None:
        y0, x0, y1, x1 = grid.extent
        ax.imshow(
            np.ma.masked_invalid(np.asarray(heatmap, dtype=np.float32)),
            extent=(x0, x1, y1, y0),
            cmap="inferno",
            vmin=0.0,
            vmax=1.0,
            alpha=0.5,
            interpolation="nearest",
        )
    _draw_truth(ax, truth, 2**level)
    if points is not None and len(points):
        _draw_points(ax, points, outcomes)
        ax.legend(loc="lower right", fontsize=6, framealpha=0.6)
    ax.set_xlim(0, w0)
    ax.set_ylim(h0, 0)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8, y=0.995, va="top")
    return save_figure(fig, path)


def class_colors(n: int) -> list[str]:
    """``n`` distinct colours (matplotlib's tab10, repeating), as hex strings."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10"]
    return [to_hex(cmap(k % 10)) for k in range(n)]


def cxr_thumbnail(
    path: PathLike,
    image: np.ndarray,
    *,
    cam: np.ndarray | None = None,
    boxes: Sequence[tuple[str, float, float, float, float]] = (),
    peak: tuple[float, float] | None = None,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    max_side: int = 256,
) -> Path:
    """Save an X-ray thumbnail PNG with a CAM overlay, the ground-truth lesion boxes and the CAM peak, atomically.

    Args:
        path: the PNG to write.
        image: (H, W) grey image (any range; shown min to max).
        cam: (H, W) class activation map at the image's native size (shown min-max normalised, ``jet``, alpha
            0.35), or None.
        boxes: ``(class, y0, x0, y1, x1)`` half-open native-pixel boxes, drawn as rectangles with the class name.
        peak: (y, x) native-pixel position marked with a white cross (the CAM's maximum).
        title: text above the image.
        colors: class -> colour of its boxes (default tab10 in order of appearance).
        max_side: the image is subsampled to at most about this many pixels across.
    """
    from matplotlib.patches import Rectangle

    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    step = max(1, math.ceil(max(h, w) / max(1, int(max_side))))
    fig = new_figure((3.0, 3.0 * h / w + 0.35))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))
    ax.imshow(img[::step, ::step], cmap="gray", extent=(0, w, h, 0), interpolation="bilinear")
    if cam is not None:
        c = np.asarray(cam, dtype=np.float32)[::step, ::step]
        finite = c[np.isfinite(c)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            c = (c - lo) / (hi - lo) if hi > lo else np.zeros_like(c)
            ax.imshow(np.ma.masked_invalid(c), cmap="jet", alpha=0.35, vmin=0, vmax=1, extent=(0, w, h, 0))
    palette = dict(colors or {})
    defaults = iter(class_colors(10))
    for cls, y0, x0, y1, x1 in boxes:
        if cls not in palette:
            palette[cls] = next(defaults)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=palette[cls], lw=1.3))
        ax.text(x0, y0, str(cls), color=palette[cls], fontsize=6, va="bottom", ha="left")
    if peak is not None:
        ax.plot([peak[1]], [peak[0]], "x", color="white", ms=8, mew=2)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=7, y=0.995, va="top")
    return save_figure(fig, path)
