"""The annotation data model: :class:`Region`, :class:`AnnotationSet`, the canonical class labels and their colours.

All geometry is in level-0 pixel coordinates, ordered (row, col) = (y, x). :func:`canonical_label` maps every
source class name onto a label (see the package docstring of :mod:`napari_patchdx.io.annotations`).

Three classes have a meaning of their own: ``"tumor"`` (a lesion), ``"exclusion"`` (an area left out: removed from
every positive region when rasterised, e.g. an ASAP ``_2`` hole) and ``"normal"`` (tissue the annotator says is
not tumour: never counted as tumour, removed from the positives like an exclusion, and kept for sampling hard
negatives). Every other label counts as a positive.

:data:`CLASS_COLORS` / :func:`class_color` are the one rule for the colour a class is drawn in (the napari layers
and the evaluation thumbnails).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .polygon import clip_ring, polygon_area
from .raster import check_raster_args, fill_window

__all__ = [
    "CLASS_COLORS",
    "CLASS_SYNONYMS",
    "EXCLUSION",
    "NORMAL",
    "NOT_TUMOR",
    "TUMOR",
    "AnnotationSet",
    "PathLike",
    "Region",
    "as_tumour_truth",
    "canonical_label",
    "class_color",
    "warn_user",
]

TUMOR = "tumor"
EXCLUSION = "exclusion"
NORMAL = "normal"
#: labels that never count as tumour: removed from the positives wherever they are not asked for themselves
NOT_TUMOR = (EXCLUSION, NORMAL)

#: Colours (hex RGB) classes are drawn in: tumour cyan, exclusion yellow, normal green; other classes get
#: matplotlib's tab10 colour picked by :func:`class_color`.
CLASS_COLORS: dict[str, str] = {TUMOR: "#00e5ff", EXCLUSION: "#ffd400", NORMAL: "#34c759"}

PathLike = str | os.PathLike[str]

#: Lower-cased source class names with a canonical label. "" and "none" mean "no class" (see module doc).
CLASS_SYNONYMS: dict[str, str] = {
    "": TUMOR,
    "none": TUMOR,
    "_0": TUMOR,
    "_1": TUMOR,
    "tumor": TUMOR,
    "tumour": TUMOR,
    "metastasis": TUMOR,
    "metastases": TUMOR,
    "_2": EXCLUSION,
    "exclusion": EXCLUSION,
    "ignore": EXCLUSION,
    "ignore*": EXCLUSION,
    "normal": NORMAL,
    "negative": NORMAL,
    "non-tumor": NORMAL,
    "non-tumour": NORMAL,
    "benign": NORMAL,
}

_BLOCK_ELEMENTS = 1 << 16  # window elements combined into the output at once


def canonical_label(name: str) -> str:
    """The canonical label of a source class / group name.

    ``"tumor"`` for CAMELYON tumour groups (``_0``, ``_1``, ``Tumor``, ``metastases``) and the QuPath classes
    ``Tumor`` / ``Tumour`` / ``Metastasis``; ``"exclusion"`` for ``_2``, ``Exclusion`` and ``Ignore*``;
    ``"normal"`` for ``Normal``, ``Negative``, ``Non-tumor`` / ``Non-tumour`` and ``Benign``; ``"tumor"`` for no class
    at all (``""`` or ``"None"``); otherwise the stripped, lower-cased name. A QuPath
    derived class (``"Tumor: Positive"``) takes the label of its base class when that has one.
    """
    low = str(name).strip().lower()
    if low in CLASS_SYNONYMS:
        return CLASS_SYNONYMS[low]
    base = low.split(":", 1)[0].strip()
    if base and base in CLASS_SYNONYMS:
        return CLASS_SYNONYMS[base]
    return low


def as_tumour_truth(truth: Any) -> Any:
    """A slide's ground truth as the evaluation and the splits read it: None (a normal slide) for an
    :class:`AnnotationSet` without a tumour region (none at all, or only normal / exclusion regions, e.g. an empty
    layer drawn in a viewer); anything else (a set with tumour, an annotation file, a tumour mask) as given."""
    if isinstance(truth, AnnotationSet) and not truth.positives:
        return None
    return truth


def class_color(label: str) -> str:
    """The hex RGB colour ``label`` (any class name, see :func:`canonical_label`) is drawn in: :data:`CLASS_COLORS`
    for tumour, exclusion and normal, else a tab10 colour that depends only on the name."""
    canonical = canonical_label(label)
    if canonical in CLASS_COLORS:
        return CLASS_COLORS[canonical]
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return str(to_hex(colormaps["tab10"](sum(canonical.encode()) % 10)))


def warn_user(message: str, stacklevel: int = 3) -> None:
    """Issue ``message`` as a UserWarning attributed to the caller's caller (``stacklevel`` 3) or further up."""
    warnings.warn(message, UserWarning, stacklevel=stacklevel)


def _as_ring(values: ArrayLike, what: str) -> np.ndarray:
    """A read-only float64 (N, 2) copy of ``values``; ValueError unless N >= 3 and every value is finite."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(f"{what}: expected an (N >= 3, 2) array of (y, x) vertices, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: vertices must be finite")
    arr.flags.writeable = False
    return arr


# ------------------------------------------------------------------------------------------- data model


@dataclass(frozen=True, eq=False)
class Region:
    """One annotated polygon.

    Attributes:
        exterior: (N, 2) float64 vertices in level-0 pixels, (y, x), open ring (first vertex not repeated).
        holes: interior rings, each (M, 2) float64 (y, x), open.
        label: canonical class: ``"tumor"`` for CAMELYON tumour groups, ``"exclusion"`` for regions removed
            from the positives (ASAP ``_2`` / ``Exclusion``), ``"normal"`` for tissue annotated as not tumour,
            otherwise the lower-cased class name.
        name: the annotation's own name in its source file ("" if none).
        group: the group / classification name exactly as written in the source file ("" if none).

    The arrays are copied to read-only float64 on construction; a ValueError is raised unless every ring is
    (N >= 3, 2) and finite.
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    label: str = TUMOR
    name: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "exterior", _as_ring(self.exterior, "exterior"))
        holes = tuple(_as_ring(h, f"hole {k}") for k, h in enumerate(self.holes))
        object.__setattr__(self, "holes", holes)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(ymin, xmin, ymax, xmax) of the exterior, level-0 pixels."""
        lo = self.exterior.min(axis=0)
        hi = self.exterior.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    @property
    def area(self) -> float:
        """Polygon area in level-0 px² (shoelace area of the exterior minus its holes')."""
        return max(0.0, polygon_area(self.exterior) - sum(polygon_area(h) for h in self.holes))


@dataclass(eq=False)
class AnnotationSet:
    """All regions of one file (or made in memory): positives, exclusions and normal regions together.

    Attributes:
        regions: every region in file order.
        source: the file they came from, or None.
    """

    regions: list[Region] = field(default_factory=list)
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(self.regions)

    @property
    def positives(self) -> list[Region]:
        """Regions that count as tumour: every label but ``"exclusion"`` and ``"normal"`` (:data:`NOT_TUMOR`).

        A slide whose annotations have no positive is a normal slide."""
        return [r for r in self.regions if r.label not in NOT_TUMOR]

    @property
    def exclusions(self) -> list[Region]:
        """Regions labelled ``"exclusion"`` (removed from every positive when rasterised)."""
        return [r for r in self.regions if r.label == EXCLUSION]

    @property
    def normals(self) -> list[Region]:
        """Regions labelled ``"normal"``: tissue annotated as not tumour (removed from every positive when
        rasterised, like exclusions; a place to sample hard negatives from)."""
        return [r for r in self.regions if r.label == NORMAL]

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels, in order of first appearance."""
        return tuple(dict.fromkeys(r.label for r in self.regions))

    def area(self) -> np.ndarray:
        """Area of every region (exterior minus holes), level-0 px², float64 of shape (len(self),)."""
        return np.array([r.area for r in self.regions], dtype=np.float64)

    def bounds(self) -> tuple[float, float, float, float]:
        """(ymin, xmin, ymax, xmax) over every region's exterior, level-0 pixels; ValueError when empty."""
        if not self.regions:
            raise ValueError(f"{self._where()}: no regions, so no bounds")
        b = np.array([r.bounds for r in self.regions])
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def rasterize(
        self,
        shape: tuple[int, int],
        downsample: float,
        origin: tuple[float, float] = (0.0, 0.0),
        labels: Iterable[str] | None = None,
    ) -> np.ndarray:
        """Boolean mask of the positive regions at a target resolution.

        Output pixel (i, j) covers level-0 ``[origin_y + i*ds, origin_y + (i+1)*ds) x [origin_x + j*ds, ...)``
        and is True when its centre ``(origin_y + (i + 0.5)*ds, origin_x + (j + 0.5)*ds)`` lies inside (even-odd
        rule; a centre exactly on a left / top edge counts as inside, on a right / bottom edge as outside).

        Args:
            shape: (rows, cols) of the output.
            downsample: level-0 pixels per output pixel (> 0).
            origin: level-0 (y, x) of the output's top-left corner.
            labels: labels counted as positive (case-insensitive class names are accepted); default every label
                except ``"exclusion"`` and ``"normal"`` (:attr:`positives`).

        Returns:
            bool array of ``shape``: union of the selected regions minus their holes, minus every exclusion
            and every normal region (unless ``"exclusion"`` / ``"normal"`` itself is among ``labels``). Only the
            output and one region's bounding-box window (clipped to the output) are ever allocated.
        """
        out_shape, ds, org = check_raster_args(shape, downsample, origin)
        if isinstance(labels, str):
            labels = [labels]
        wanted = None if labels is None else {canonical_label(lab) for lab in labels}
        out = np.zeros(out_shape, dtype=bool)
        for region in self.regions:
            selected = region.label not in NOT_TUMOR if wanted is None else region.label in wanted
            if selected:
                for sl, block in _region_blocks(region, out_shape, ds, org):
                    np.logical_or(out[sl], block == 1, out=out[sl])
        for region in self._removed(wanted or ()):
            for sl, block in _region_blocks(region, out_shape, ds, org):
                np.logical_and(out[sl], block != 1, out=out[sl])
        return out

    def rasterize_labels(
        self,
        shape: tuple[int, int],
        downsample: float,
        origin: tuple[float, float] = (0.0, 0.0),
        classes: Sequence[str] = (TUMOR,),
    ) -> np.ndarray:
        """uint8 label image: value k + 1 where a region of ``classes[k]`` covers the pixel centre, else 0.

        Same pixel geometry as :meth:`rasterize` (level-0 ``downsample`` and (y, x) ``origin``). Later classes
        win where regions overlap; holes, exclusion and normal regions are 0 (unless ``"exclusion"`` /
        ``"normal"`` is itself one of ``classes``, in which case it is painted like any other class). At most 255
        classes.
        """
        out_shape, ds, org = check_raster_args(shape, downsample, origin)
        wanted = [canonical_label(c) for c in ([classes] if isinstance(classes, str) else classes)]
        if len(wanted) > 255:
            raise ValueError(f"at most 255 classes fit in uint8, got {len(wanted)}")
        out = np.zeros(out_shape, dtype=np.uint8)
        for value, label in enumerate(wanted, start=1):
            for region in self.regions:
                if region.label == label:
                    for sl, block in _region_blocks(region, out_shape, ds, org):
                        out[sl][block == 1] = value
        for region in self._removed(wanted):
            for sl, block in _region_blocks(region, out_shape, ds, org):
                out[sl][block == 1] = 0
        return out

    def clip(self, height: int, width: int) -> AnnotationSet:
        """Clip every region to the level-0 image rectangle [0, height) x [0, width) (Sutherland–Hodgman).

        Regions entirely inside are kept as the same objects; regions that vanish are dropped, and so are holes
        that vanish. One UserWarning names the file and counts the regions outside or partly outside.
        """
        h, w = float(height), float(width)
        if not (h > 0 and w > 0):
            raise ValueError(f"clip needs a positive height and width, got {height} x {width}")
        kept: list[Region] = []
        clipped = dropped = 0
        for region in self.regions:
            ymin, xmin, ymax, xmax = region.bounds
            if (
                ymin >= 0
                and xmin >= 0
                and ymax <= h
                and xmax <= w
                and all(h_.min() >= 0 and h_[:, 0].max() <= h and h_[:, 1].max() <= w for h_ in region.holes)
            ):
                kept.append(region)
                continue
            exterior = clip_ring(region.exterior, h, w)
            if exterior is None:
                dropped += 1
                continue
            holes = []
            for hole in region.holes:
                hb = (hole.min(axis=0), hole.max(axis=0))
                if hb[0].min() >= 0 and hb[1][0] <= h and hb[1][1] <= w:
                    holes.append(hole)
                elif (clipped_hole := clip_ring(hole, h, w)) is not None:
                    holes.append(clipped_hole)
            kept.append(Region(exterior, tuple(holes), region.label, region.name, region.group))
            clipped += 1
        if clipped or dropped:
            warn_user(
                f"{self._where()}: {clipped + dropped} of {len(self.regions)} annotation regions lie outside or "
                f"partly outside the {height} x {width} px level-0 image; {clipped} clipped, {dropped} dropped"
            )
        return AnnotationSet(kept, source=self.source)

    def _removed(self, wanted: Iterable[str]) -> list[Region]:
        """Exclusion and normal regions whose label is not among ``wanted``: cut out of a rasterised mask."""
        keep = set(wanted)
        return [r for r in self.regions if r.label in NOT_TUMOR and r.label not in keep]

    def _where(self) -> str:
        return str(self.source) if self.source is not None else "annotations (no file)"


def _region_blocks(
    region: Region, out_shape: tuple[int, int], ds: float, origin: tuple[float, float]
) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """Fill one region (:func:`~.raster.fill_window`) and yield ``(output slices, block)`` in row blocks."""
    filled = fill_window(region.exterior, region.holes, region.bounds, out_shape, ds, origin)
    if filled is None:
        return
    r0, c0, win = filled
    step = max(1, _BLOCK_ELEMENTS // win.shape[1])
    for s in range(0, win.shape[0], step):
        block = win[s : s + step]
        yield (slice(r0 + s, r0 + s + block.shape[0]), slice(c0, c0 + win.shape[1])), block
