"""Chest X-ray lesion patches (curriculum step 1, Park et al. 2019): cohorts, their labels and lesion masks, and
:class:`CxrLesionSampler`.

A cohort folder holds ``labels.csv`` (:func:`napari_patchdx.io.cohort.read_labels`), ``masks/<id>.png`` class
bitmasks or a ``lesions.csv`` of boxes (:func:`napari_patchdx.io.cohort.read_lesions`), and optionally
``lungs/<id>.png``; :func:`load_cxr_cohort` turns it into :class:`CxrSource` objects. Draw ``i`` of the
sampler is a pure function of ``(seed, i)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputFileError
from ..io.cohort import LESIONS_NAME, read_labels, read_lesions
from .tables import patch_frame

__all__ = ["CxrLesionSampler", "CxrSource", "load_cxr_cohort"]


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


def load_cxr_cohort(root: str | os.PathLike[str], splits: Mapping[str, str] | None = None) -> list[CxrSource]:
    """Sources for a cohort laid out like :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes it.

    Needs ``labels.csv`` (image, class columns, png) and either ``masks/<id>.png`` (class bitmask) or, for
    cohorts with boxes only, ``lesions.csv`` (each lesion then covers its whole box); ``lungs/<id>.png`` is used
    when present.
    """
    from PIL import Image

    root = Path(root)
    table, classes = read_labels(root)
    lesions_csv = root / LESIONS_NAME
    boxes = read_lesions(lesions_csv, classes) if lesions_csv.is_file() else None
    sources = []
    for row in table.itertuples(index=False):
        image_id = str(row.image)
        mask_path = root / "masks" / f"{image_id}.png"
        if mask_path.is_file():
            bits = np.asarray(Image.open(mask_path))
        elif boxes is not None:  # boxes only: each lesion is its whole box
            with Image.open(root / str(row.png)) as im:
                bits = np.zeros((im.height, im.width), np.uint8)
            for box in boxes.get(image_id, []):  # native pixels, truncated to whole rows / columns
                y0, x0, y1, x1 = int(box.y0), int(box.x0), int(box.y1), int(box.x1)
                bits[y0:y1, x0:x1] |= np.uint8(1 << box.class_index)
        else:
            raise InputFileError(mask_path, "no such file, and no lesions.csv with boxes beside labels.csv")
        lung_path = root / "lungs" / f"{image_id}.png"
        lungs = np.asarray(Image.open(lung_path)) > 0 if lung_path.is_file() else None
        split = (splits or {}).get(image_id, getattr(row, "split", "train"))
        sources.append(
            CxrSource(image_id, root / str(row.png), bits.shape, bits.astype(np.uint8), lungs, classes, str(split))
        )
    return sources


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
        return patch_frame([self.draw(i) for i in range(start, start + int(n))])
