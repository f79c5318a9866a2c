"""Patch sampling: from slides / X-rays and their annotations to a patch table.

The patch table (a pandas DataFrame, saved as CSV or Parquet) has one row per patch:

=========  ==================================================================================================
``slide``  the image file (path as given)
``x, y``   level-0 top-left corner of the patch's read window, in pixels (continuous frame, integer valued)
``level``  the pyramid level the patch is read from
``size``   side of the read window in pixels of that level (it is resized to the patch size when they differ)
``label``  0 / 1 (slides: tumour if any pixel of the central region is tumour; X-rays: any lesion class)
``split``  ``train`` / ``val`` / ``test``, assigned per slide or image, never per patch
=========  ==================================================================================================

X-ray tables add one ``label_<class>`` 0/1 column per lesion class (multi-label targets).

Sampling never builds a full-resolution mask: positions are drawn on the tissue mask's low-resolution grid
(about 8 um/px), and the exact central-region label of each drawn patch is computed by rasterising the
annotations inside that one central region. Draw ``i`` of a sampler is a pure function of ``(seed, i)``, so a
stream can be resumed at any index and reproduced from its seed alone.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._fsutil import atomic_path
from ..errors import ConfigError, InputFileError
from ..io.annotations import AnnotationSet, read_annotations
from ..io.slides import Slide, open_slide
from ..progress import Job, Progress
from .tissue import TissueConfig, TissueMask, detect_tissue

__all__ = [
    "PATCH_COLUMNS",
    "SPLITS",
    "BalancedSampler",
    "CxrLesionSampler",
    "CxrSource",
    "PatchGeometry",
    "SlideSource",
    "assign_splits",
    "grid_table",
    "load_cxr_cohort",
    "read_cohort_labels",
    "read_patch_table",
    "sample_cxr_job",
    "sample_slides_job",
    "write_patch_table",
]

PATCH_COLUMNS = ("slide", "x", "y", "level", "size", "label", "split")
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------------------------
# geometry of a patch
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchGeometry:
    """Size and magnification of slide patches.

    Attributes:
        patch_size: side of the patch the model sees, in pixels (Liu et al.: 299).
        center_size: side of the central region that decides the label, in the same pixels (Liu et al.: 128).
        mpp: microns per patch pixel; None = the slide's level-0 resolution.
    """

    patch_size: int = 299
    center_size: int = 128
    mpp: float | None = None

    def __post_init__(self) -> None:
        if self.patch_size < 8:
            raise ConfigError(f"patch_size must be >= 8 pixels, got {self.patch_size}")
        if not 1 <= self.center_size <= self.patch_size:
            raise ConfigError(f"center_size must be in [1, patch_size={self.patch_size}], got {self.center_size}")
        if self.mpp is not None and not self.mpp > 0:
            raise ConfigError(f"mpp must be positive, got {self.mpp}")

    def plan(self, slide: Slide) -> tuple[int, int, float]:
        """How to read a patch from ``slide``: ``(level, read_size, scale)``.

        ``scale`` is level-0 pixels per patch pixel; the read window is ``read_size`` pixels of ``level``, covering
        ``patch_size * scale`` level-0 pixels. Raises when the patch does not fit in the level.
        """
        if self.mpp is None:
            level, read_size, scale = 0, self.patch_size, 1.0
        else:
            want = self.mpp / slide.require_mpp(f"patches at {self.mpp} um/px")
            level = slide.best_level_for_downsample(want)
            residual = want / slide.level_downsamples[level]
            read_size = self.patch_size if abs(residual - 1) < 0.02 else round(self.patch_size * residual)
            scale = slide.level_downsamples[level] * read_size / self.patch_size
        h, w = slide.level_shapes[level]
        if read_size > min(h, w):
            raise InputFileError(
                slide.path,
                f"a {read_size} px patch does not fit in level {level} ({h} x {w} px); use a smaller patch or mpp",
            )
        return level, read_size, scale


# ---------------------------------------------------------------------------------------------------------------
# slides ready for sampling
# ---------------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class SlideSource:
    """A slide with its tissue mask, annotations and split, ready for sampling.

    Attributes:
        path: the slide file.
        slide: the opened slide.
        tissue: its tissue mask (low resolution, with geometry).
        annotations: tumour annotations, or None for a normal slide.
        split: ``train`` / ``val`` / ``test``.
        tumor: tumour mask on the tissue mask's grid (pixel centre inside tumour).
    """

    path: Path
    slide: Slide
    tissue: TissueMask
    annotations: AnnotationSet | None = None
    split: str = "train"
    tumor: np.ndarray = field(init=False, repr=False)
    _tumor_integral: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grid = self.tissue.grid
        if self.annotations is not None and len(self.annotations.positives):
            self.tumor = self.annotations.rasterize(grid.shape, grid.spacing[0])
            outside = int((self.tumor & ~self.tissue.mask).sum())
            if outside > 0.2 * max(1, int(self.tumor.sum())):
                warnings.warn(
                    f"{self.path}: {100 * outside / self.tumor.sum():.0f}% of the annotated tumour lies outside "
                    "the detected tissue; it is sampled as tumour anyway",
                    UserWarning,
                    stacklevel=3,
                )
        else:
            self.tumor = np.zeros(grid.shape, dtype=bool)
        self._tumor_integral = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1), dtype=np.int64)
        self._tumor_integral[1:, 1:] = np.cumsum(np.cumsum(self.tumor, axis=0), axis=1)
        if not self.tissue.mask.any():
            warnings.warn(f"{self.path}: no tissue found; no patches come from this slide", UserWarning, stacklevel=3)

    @property
    def name(self) -> str:
        """The slide's file stem."""
        return self.path.stem

    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike[str],
        annotations: str | os.PathLike[str] | AnnotationSet | None = None,
        *,
        tissue: TissueMask | TissueConfig | None = None,
        split: str = "train",
        mpp: float | None = None,
    ) -> SlideSource:
        """Open ``path``, read its annotations (a path, a set, or None) and detect (or take) its tissue mask."""
        slide = open_slide(path, mpp=mpp)
        if isinstance(annotations, str | os.PathLike):
            annotations = read_annotations(annotations).clip(*slide.shape)
        if not isinstance(tissue, TissueMask):
            tissue = detect_tissue(slide, tissue or TissueConfig())
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        return cls(Path(path), slide, tissue, annotations, split)

    def center_labels(self, ys: np.ndarray, xs: np.ndarray, geometry: PatchGeometry, scale: float) -> np.ndarray:
        """Liu's label of patches with level-0 top-left ``(ys, xs)``: 1 if any central-region pixel is tumour.

        The central region is rasterised exactly (at the patch resolution) only for patches whose central region
        comes near tumour on the coarse grid; all others are 0 without any rasterisation.
        """
        ys = np.atleast_1d(np.asarray(ys, dtype=np.float64))
        xs = np.atleast_1d(np.asarray(xs, dtype=np.float64))
        labels = np.zeros(ys.shape, dtype=np.int8)
        if self.annotations is None or not self.tumor.any():
            return labels
        c0 = (geometry.patch_size - geometry.center_size) // 2 * scale
        side = geometry.center_size * scale
        near = self._near_tumor(ys + c0, xs + c0, side)
        for i in np.flatnonzero(near):
            window = self.annotations.rasterize(
                (geometry.center_size, geometry.center_size), scale, origin=(ys[i] + c0, xs[i] + c0)
            )
            labels[i] = 1 if window.any() else 0
        return labels

    def _near_tumor(self, y0: np.ndarray, x0: np.ndarray, side: float) -> np.ndarray:
        """Boxes whose grid footprint (grown by one grid cell) touches a tumour cell of the coarse mask."""
        grid = self.tissue.grid
        s = grid.spacing[0]
        rows, cols = self.tumor.shape
        integral = self._tumor_integral
        r0 = np.clip(np.floor(y0 / s).astype(np.int64) - 1, 0, rows)
        c0 = np.clip(np.floor(x0 / s).astype(np.int64) - 1, 0, cols)
        r1 = np.clip(np.ceil((y0 + side) / s).astype(np.int64) + 1, 0, rows)
        c1 = np.clip(np.ceil((x0 + side) / s).astype(np.int64) + 1, 0, cols)
        return (integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) > 0


# ---------------------------------------------------------------------------------------------------------------
# Liu et al.'s balanced sampler
# ---------------------------------------------------------------------------------------------------------------


class BalancedSampler:
    """Liu et al. 2017: tumour or normal with probability ``p_tumor`` / 1 - ``p_tumor``, then a slide holding that
    class uniformly, then a patch position of that class uniformly on it.

    Positions are drawn uniformly inside the grid cells of the class (tumour cells, or tissue cells that are not
    tumour), optionally shifted by a uniform positional jitter of up to ``jitter`` patch pixels, then labelled
    exactly by the central-region rule; a draw whose exact label differs from the chosen class is redrawn (up to
    ``max_tries`` times). Draw ``i`` depends only on ``(seed, i)``.
    """

    def __init__(
        self,
        sources: Sequence[SlideSource],
        geometry: PatchGeometry | None = None,
        *,
        seed: int = 0,
        jitter: float = 8.0,
        p_tumor: float = 0.5,
        max_tries: int = 32,
    ) -> None:
        self.geometry = geometry or PatchGeometry()
        self.seed = int(seed)
        self.jitter = float(jitter)
        self.p_tumor = float(p_tumor)
        self.max_tries = int(max_tries)
        if not 0.0 <= self.p_tumor <= 1.0:
            raise ConfigError(f"p_tumor must be in [0, 1], got {p_tumor}")
        self.sources = [s for s in sources if s.tissue.mask.any() or s.tumor.any()]
        if not self.sources:
            names = ", ".join(s.name for s in sources) or "(none given)"
            raise ConfigError(f"no slide has tissue to sample from: {names}")
        self._plans = [self.geometry.plan(s.slide) for s in self.sources]
        self._cells: dict[int, list[tuple[int, np.ndarray]]] = {1: [], 0: []}
        for k, s in enumerate(self.sources):
            tumor_cells = np.flatnonzero(s.tumor)
            normal_cells = np.flatnonzero(s.tissue.mask & ~s.tumor)
            if tumor_cells.size:
                self._cells[1].append((k, tumor_cells))
            if normal_cells.size:
                self._cells[0].append((k, normal_cells))
        if self.p_tumor > 0 and not self._cells[1]:
            names = ", ".join(s.name for s in self.sources)
            raise ConfigError(
                "balanced sampling needs at least one slide with tumour annotations inside it; "
                f"none of these has any: {names} (give each tumour slide its .xml / .geojson ground truth)"
            )
        if self.p_tumor < 1 and not self._cells[0]:
            raise ConfigError("balanced sampling needs normal tissue on at least one slide; none was found")
        self.mismatches = 0

    def draw(self, index: int) -> dict[str, Any]:
        """Patch number ``index`` of the stream: a dict with the patch-table columns."""
        rng = np.random.default_rng([self.seed, int(index)])
        label = int(rng.random() < self.p_tumor)
        k, cells = self._cells[label][int(rng.integers(len(self._cells[label])))]
        source = self.sources[k]
        level, read_size, scale = self._plans[k]
        spacing = source.tissue.grid.spacing
        cols = source.tissue.mask.shape[1]
        foot = self.geometry.patch_size * scale
        h0, w0 = source.slide.shape
        y = x = 0.0
        got = -1
        for _ in range(self.max_tries):
            cell = int(cells[int(rng.integers(cells.size))])
            r, c = divmod(cell, cols)
            cy = (r + rng.random()) * spacing[0]
            cx = (c + rng.random()) * spacing[1]
            if self.jitter > 0:
                cy += rng.uniform(-self.jitter, self.jitter) * scale
                cx += rng.uniform(-self.jitter, self.jitter) * scale
            y = float(np.clip(np.floor(cy - foot / 2 + 0.5), 0, max(0.0, np.floor(h0 - foot))))
            x = float(np.clip(np.floor(cx - foot / 2 + 0.5), 0, max(0.0, np.floor(w0 - foot))))
            got = int(source.center_labels(np.array([y]), np.array([x]), self.geometry, scale)[0])
            if got == label:
                break
        else:
            self.mismatches += 1
        return {
            "slide": str(source.path),
            "x": int(x),
            "y": int(y),
            "level": level,
            "size": read_size,
            "label": got,
            "split": source.split,
        }

    def stream(self, start: int = 0, step: int = 1) -> Iterator[dict[str, Any]]:
        """Endless draws ``start, start + step, ...`` (``step`` > 1 shards the stream across loader workers)."""
        i = int(start)
        while True:
            yield self.draw(i)
            i += step

    def table(self, n: int, start: int = 0) -> pd.DataFrame:
        """A fixed table of draws ``start .. start + n - 1`` (for inspection and export)."""
        rows = [self.draw(i) for i in range(start, start + int(n))]
        return _frame(rows)


# ---------------------------------------------------------------------------------------------------------------
# grid sampler (inference, exhaustive sets)
# ---------------------------------------------------------------------------------------------------------------


def grid_table(
    source: SlideSource,
    geometry: PatchGeometry | None = None,
    *,
    stride: int | None = None,
    min_tissue: float = 0.25,
    labels: bool = True,
) -> pd.DataFrame:
    """Every patch on a regular grid whose cell holds at least ``min_tissue`` tissue.

    The grid has one cell per ``stride`` patch pixels (default: the central region, 128), so cell ``(row, col)``
    covers level-0 ``[row, row + 1) * stride * scale`` (same for columns) — exactly the cells of a heatmap — and its
    patch is centred on the cell's centre (patches at the border extend past the slide and read white there).
    Adds ``row`` and ``col`` columns to the patch table.
    """
    geometry = geometry or PatchGeometry()
    stride = int(stride or geometry.center_size)
    if stride < 1:
        raise ConfigError(f"stride must be >= 1 patch pixel, got {stride}")
    level, read_size, scale = geometry.plan(source.slide)
    h0, w0 = source.slide.shape
    step = stride * scale
    rows, cols = int(np.ceil(h0 / step)), int(np.ceil(w0 / step))
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    frac = source.tissue.boxes_fraction(rr * step, cc * step, step, step)
    keep = frac >= min_tissue
    rr, cc = rr[keep], cc[keep]
    foot = geometry.patch_size * scale
    # round half up: with stride == center_size the central region is exactly the cell
    ys = np.floor((rr + 0.5) * step - foot / 2 + 0.5)
    xs = np.floor((cc + 0.5) * step - foot / 2 + 0.5)
    lab = source.center_labels(ys, xs, geometry, scale) if labels else np.zeros(ys.shape, np.int8)
    table = _frame(
        [
            {
                "slide": str(source.path),
                "x": int(x),
                "y": int(y),
                "level": level,
                "size": read_size,
                "label": int(v),
                "split": source.split,
            }
            for y, x, v in zip(ys, xs, lab, strict=True)
        ]
    )
    table["row"] = rr.astype(np.int64)
    table["col"] = cc.astype(np.int64)
    return table


# ---------------------------------------------------------------------------------------------------------------
# chest X-ray lesion sampler (curriculum step 1)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class CxrSource:
    """One chest X-ray for patch sampling.

    Attributes:
        image_id: its id.
        path: the image file (PNG / DICOM / ...).
        shape: native (rows, cols).
        lesion_bits: uint8 (rows, cols) bitmask, bit k = class k of ``classes`` present.
        lungs: bool (rows, cols) lung fields, or None (then negatives come from anywhere lesion-free).
        classes: the class names of the bits.
        split: ``train`` / ``val`` / ``test``.
    """

    image_id: str
    path: Path
    shape: tuple[int, int]
    lesion_bits: np.ndarray
    lungs: np.ndarray | None
    classes: tuple[str, ...]
    split: str = "train"


def read_cohort_labels(root: str | os.PathLike[str]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A chest X-ray cohort's ``labels.csv`` (image, png, optional dcm / split, one 0/1 column per class), checked.

    Returns the table and the class names (every column besides image, png, dcm and split, in file order).
    """
    labels_csv = Path(root) / "labels.csv"
    if not labels_csv.is_file():
        raise InputFileError(labels_csv, "no such file (a chest X-ray cohort needs labels.csv)")
    table = pd.read_csv(labels_csv)
    for col in ("image", "png"):
        if col not in table.columns:
            raise InputFileError(labels_csv, f"missing column {col!r}")
    classes = tuple(str(c) for c in table.columns if c not in ("image", "png", "dcm", "split"))
    if not classes:
        raise InputFileError(labels_csv, "has no class columns besides image, png, dcm and split")
    values = table[list(classes)]
    if values.isna().any().any() or not values.isin([0, 1]).all().all():
        raise InputFileError(labels_csv, f"class columns {list(classes)} must hold 0 or 1 in every row")
    return table, classes


def load_cxr_cohort(root: str | os.PathLike[str], splits: Mapping[str, str] | None = None) -> list[CxrSource]:
    """Sources for a cohort laid out like :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes it.

    Needs ``labels.csv`` (image, class columns, png) and either ``masks/<id>.png`` (class bitmask) or, for
    cohorts with boxes only, ``lesions.csv`` (each lesion then covers its whole box); ``lungs/<id>.png`` is used
    when present.
    """
    from PIL import Image

    root = Path(root)
    table, classes = read_cohort_labels(root)
    boxes = _lesion_boxes(root / "lesions.csv", classes)
    sources = []
    for row in table.itertuples(index=False):
        image_id = str(row.image)
        mask_path = root / "masks" / f"{image_id}.png"
        if mask_path.is_file():
            bits = np.asarray(Image.open(mask_path))
        elif boxes is not None:  # boxes only: each lesion is its whole box
            with Image.open(root / str(row.png)) as im:
                bits = np.zeros((im.height, im.width), np.uint8)
            for k, y0, x0, y1, x1 in boxes.get(image_id, []):
                bits[y0:y1, x0:x1] |= np.uint8(1 << k)
        else:
            raise InputFileError(mask_path, "no such file, and no lesions.csv with boxes beside labels.csv")
        lung_path = root / "lungs" / f"{image_id}.png"
        lungs = np.asarray(Image.open(lung_path)) > 0 if lung_path.is_file() else None
        split = (splits or {}).get(image_id, getattr(row, "split", "train"))
        sources.append(
            CxrSource(image_id, root / str(row.png), bits.shape, bits.astype(np.uint8), lungs, classes, str(split))
        )
    return sources


def _lesion_boxes(path: Path, classes: tuple[str, ...]) -> dict[str, list[tuple[int, ...]]] | None:
    """``lesions.csv`` (image, class, y0, x0, y1, x1 in native pixels, half-open) as per-image box lists."""
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    missing = [c for c in ("image", "class", "y0", "x0", "y1", "x1") if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing columns {missing}")
    out: dict[str, list[tuple[int, ...]]] = {}
    for image, cls, y0, x0, y1, x1 in table[["image", "class", "y0", "x0", "y1", "x1"]].itertuples(
        index=False, name=None
    ):
        if cls not in classes:
            raise InputFileError(path, f"unknown class {cls!r} (labels.csv has {classes})")
        out.setdefault(str(image), []).append((classes.index(cls), int(y0), int(x0), int(y1), int(x1)))
    return out


class CxrLesionSampler:
    """Curriculum step 1 (Park et al. 2019): patches around lesions (positive) and from lesion-free lung (negative).

    Patches are ``patch_size`` pixels at the working resolution (``working_size`` px across the image, default
    256 of 1024), i.e. ``patch_size * native / working_size`` native pixels. A positive draw picks a class
    uniformly among those present, then a lesion pixel of that class uniformly, and centres the patch there with
    up to ``jitter`` working pixels of shift; its multi-label target holds every class with a lesion pixel in the
    patch's central half. A negative draw picks an image, then a lung pixel, and keeps the patch only if no
    lesion pixel falls inside it. ``positive_fraction`` sets the class balance. Draw ``i`` depends only on
    ``(seed, i)``.
    """

    def __init__(
        self,
        sources: Sequence[CxrSource],
        *,
        patch_size: int = 256,
        working_size: int = 1024,
        positive_fraction: float = 0.5,
        jitter: float = 32.0,
        seed: int = 0,
        max_tries: int = 64,
    ) -> None:
        if not sources:
            raise ConfigError("no chest X-rays to sample from")
        if not 0 < patch_size <= working_size:
            raise ConfigError(f"patch_size must be in (0, working_size={working_size}], got {patch_size}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ConfigError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.sources = list(sources)
        self.classes = self.sources[0].classes
        self.patch_size = int(patch_size)
        self.working_size = int(working_size)
        self.positive_fraction = float(positive_fraction)
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.max_tries = int(max_tries)
        self._by_class: dict[int, list[int]] = {}
        for k, s in enumerate(self.sources):
            present = np.bitwise_or.reduce(s.lesion_bits, axis=None) if s.lesion_bits.size else 0
            for c in range(len(self.classes)):
                if int(present) >> c & 1:
                    self._by_class.setdefault(c, []).append(k)
        if self.positive_fraction > 0 and not self._by_class:
            raise ConfigError("positive lesion patches were asked for, but no image has a lesion mask")
        self.mismatches = 0

    def _native_size(self, source: CxrSource) -> int:
        return max(1, round(self.patch_size * max(source.shape) / self.working_size))

    def draw(self, index: int) -> dict[str, Any]:
        """Patch number ``index``: patch-table columns plus one ``label_<class>`` column per class."""
        rng = np.random.default_rng([self.seed, int(index)])
        positive = bool(rng.random() < self.positive_fraction) and bool(self._by_class)
        if positive:
            classes = sorted(self._by_class)
            c = classes[int(rng.integers(len(classes)))]
            options = self._by_class[c]
            source = self.sources[options[int(rng.integers(len(options)))]]
            where = np.flatnonzero(source.lesion_bits.ravel() & np.uint8(1 << c))
        else:
            source = self.sources[int(rng.integers(len(self.sources)))]
            pool = source.lungs if source.lungs is not None else np.ones(source.shape, bool)
            where = np.flatnonzero((pool & (source.lesion_bits == 0)).ravel())
        size = self._native_size(source)
        rows, cols = source.shape
        shift = self.jitter * max(source.shape) / self.working_size
        y = x = 0
        targets = np.zeros(len(self.classes), np.int8)
        for _ in range(self.max_tries):
            if where.size == 0:
                break
            cy, cx = divmod(int(where[int(rng.integers(where.size))]), cols)
            if positive and shift > 0:
                cy += round(rng.uniform(-shift, shift))
                cx += round(rng.uniform(-shift, shift))
            y = int(np.clip(cy - size // 2, 0, max(0, rows - size)))
            x = int(np.clip(cx - size // 2, 0, max(0, cols - size)))
            window = source.lesion_bits[y : y + size, x : x + size]
            if positive:
                q = size // 4
                centre = window[q : size - q, q : size - q]
                bits = int(np.bitwise_or.reduce(centre, axis=None)) if centre.size else 0
                targets = np.array([(bits >> k) & 1 for k in range(len(self.classes))], np.int8)
                if targets.any():
                    break
            elif not window.any():
                break
        else:
            self.mismatches += 1
        row = {
            "slide": str(source.path),
            "x": x,
            "y": y,
            "level": 0,
            "size": size,
            "label": int(targets.any()),
            "split": source.split,
        }
        row.update({f"label_{name}": int(t) for name, t in zip(self.classes, targets, strict=True)})
        return row

    def table(self, n: int, start: int = 0) -> pd.DataFrame:
        """A fixed table of draws ``start .. start + n - 1``."""
        return _frame([self.draw(i) for i in range(start, start + int(n))])


# ---------------------------------------------------------------------------------------------------------------
# splits and tables
# ---------------------------------------------------------------------------------------------------------------


def assign_splits(
    names: Sequence[str],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    *,
    seed: int = 0,
    strata: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Assign each slide / image (never a patch) to train, val or test, reproducibly from ``seed``.

    Within each stratum (e.g. tumour vs normal) the names are shuffled and cut by ``fractions`` using the
    largest-remainder rule, so the proportions hold per stratum and every name gets exactly one split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ConfigError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if len(set(names)) != len(names):
        raise ConfigError("split names must be unique (one entry per slide or image)")
    groups: dict[Any, list[str]] = {}
    for name in sorted(names):
        groups.setdefault((strata or {}).get(name), []).append(name)
    out: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for key in sorted(groups, key=str):
        members = list(groups[key])
        rng.shuffle(members)
        raw = np.array(fractions) * len(members)
        counts = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - counts), kind="stable")[: len(members) - counts.sum()]:
            counts[i] += 1
        start = 0
        for split, count in zip(SPLITS, counts, strict=True):
            for name in members[start : start + count]:
                out[name] = split
            start += count
    return out


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(PATCH_COLUMNS))
    for col in ("x", "y", "level", "size"):
        table[col] = table[col].astype(np.int64)
    table["label"] = table["label"].astype(np.int8)
    return table


def write_patch_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Save a patch table as CSV (``.csv``) or Parquet (``.parquet``), atomically."""
    path = Path(path)
    missing = [c for c in PATCH_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"patch table lacks columns {missing}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{path}: patch tables are saved as .csv or .parquet")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return path


def read_patch_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load a patch table saved by :func:`write_patch_table` (or written by hand), checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise InputFileError(path, f"not a readable patch table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in PATCH_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(path, f"patch table lacks columns {missing}; needs {list(PATCH_COLUMNS)}")
    bad = ~table["split"].isin(SPLITS)
    if bad.any():
        raise InputFileError(path, f"row {int(np.flatnonzero(bad)[0]) + 2}: split must be one of {SPLITS}")
    return table


# ---------------------------------------------------------------------------------------------------------------
# the sampling job (shared by the widget, the command line and run())
# ---------------------------------------------------------------------------------------------------------------


def sample_slides_job(
    slides: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str] | AnnotationSet | None]],
    *,
    method: str = "balanced",
    n: int = 1000,
    geometry: PatchGeometry | None = None,
    seed: int = 0,
    jitter: float = 8.0,
    stride: int | None = None,
    min_tissue: float = 0.25,
    tissue: TissueConfig | None = None,
    splits: Mapping[str, str] | None = None,
    chunk: int = 64,
) -> Job[pd.DataFrame]:
    """Prepare ``slides`` (path, annotations) and sample a patch table, yielding progress.

    ``method`` is ``"balanced"`` (``n`` patches by Liu's sampler) or ``"grid"`` (every tissue cell). Slides are
    split by ``splits`` (stem -> split) or all ``train``. A progress report's ``partial`` holds each slide's
    :class:`TissueMask` once detected, then the rows drawn since the previous report, so a viewer can show them as
    they come.
    """
    if method not in ("balanced", "grid"):
        raise ConfigError(f"method must be 'balanced' or 'grid', got {method!r}")
    geometry = geometry or PatchGeometry()
    total = len(slides) + (int(n) if method == "balanced" else len(slides))
    sources = []
    for k, (path, truth) in enumerate(slides):
        yield Progress(k, total, f"tissue detection: {Path(path).name}")
        split = (splits or {}).get(Path(path).stem, "train")
        sources.append(SlideSource.prepare(path, truth, tissue=tissue, split=split))
        yield Progress(k + 1, total, f"tissue: {Path(path).name}", partial=sources[-1].tissue)
    done = len(slides)
    parts: list[pd.DataFrame] = []
    if method == "grid":
        for source in sources:
            part = grid_table(source, geometry, stride=stride, min_tissue=min_tissue)
            parts.append(part)
            done += 1
            yield Progress(done, total, f"grid: {source.name}: {len(part)} patches", partial=part)
    else:
        sampler = BalancedSampler(sources, geometry, seed=seed, jitter=jitter)
        for start in range(0, int(n), chunk):
            part = sampler.table(min(chunk, int(n) - start), start=start)
            parts.append(part)
            done += len(part)
            yield Progress(done, total, f"sampled {start + len(part)} of {n} patches", partial=part)
    return pd.concat(parts, ignore_index=True) if parts else _frame([])


def sample_cxr_job(
    root: str | os.PathLike[str],
    *,
    n: int = 1000,
    patch_size: int = 256,
    working_size: int = 1024,
    positive_fraction: float = 0.5,
    jitter: float = 32.0,
    seed: int = 0,
    splits: Mapping[str, str] | None = None,
    chunk: int = 64,
) -> Job[pd.DataFrame]:
    """Sample ``n`` lesion / normal-lung patches from a chest X-ray cohort folder (curriculum step 1), with progress.

    Images are split by ``splits`` (image id -> split), else by a ``split`` column in ``labels.csv``, else train.
    """
    yield Progress(0, int(n), f"reading masks in {Path(root).name}")
    sampler = CxrLesionSampler(
        load_cxr_cohort(root, splits),
        patch_size=patch_size,
        working_size=working_size,
        positive_fraction=positive_fraction,
        jitter=jitter,
        seed=seed,
    )
    parts = []
    for start in range(0, int(n), chunk):
        part = sampler.table(min(chunk, int(n) - start), start=start)
        parts.append(part)
        yield Progress(start + len(part), int(n), f"sampled {start + len(part)} of {n} patches", partial=part)
    return pd.concat(parts, ignore_index=True) if parts else _frame([])
