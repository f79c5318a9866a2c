"""A synthetic slide cohort: tumour and normal slides with per-slide seeds, listed in ``slides.csv``.

The ``"hard"`` profile alternates the two centres within each label (``tumor_000`` A, ``tumor_001`` B, ...,
likewise for the normal slides), so each centre holds tumour and normal slides, and records the profile and
centre of each slide in two more columns.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..._fsutil import atomic_write_text
from ...io.annotations.model import TUMOR
from .data_model import CENTRES, WsiCohort
from .noise import derive_key
from .slide import make_slide

_CSV_COLUMNS = ("slide", "label", "file", "annotation", "height", "width", "mpp", "n_lesions", "n_itc")
_PROFILE_COLUMNS = ("profile", "centre")  # after _CSV_COLUMNS, written for a non-default profile only


def _slide_seed(seed: int, label: str, index: int) -> int:
    return derive_key(seed, f"cohort:{label}:{index}") & 0x7FFFFFFF


def make_wsi_cohort(
    out_dir: str | os.PathLike[str],
    *,
    n_tumor: int = 4,
    n_normal: int = 4,
    seed: int = 0,
    height: int = 8192,
    width: int = 8192,
    mpp: float = 0.5,
    tissue_fraction: float = 0.4,
    pen_marks: bool = False,
    overwrite: bool = False,
    profile: str = "default",
) -> WsiCohort:
    """Write a cohort: ``tumor_000.tif``... (with ``.xml``), ``normal_000.tif``..., and ``slides.csv``.

    Each slide gets its own seed derived from ``seed``, its label and its index, so the same arguments give
    byte-identical files. ``slides.csv`` (written last, atomically) has one row per slide: slide (file stem),
    label (``tumor`` / ``normal``), file and annotation (relative to ``out_dir``; annotation empty for normal
    slides), height, width (level-0 px), mpp, n_lesions (tumour polygons), n_itc (those under 200 um), and
    for a non-default profile also profile and centre (``A`` / ``B``).

    Args:
        out_dir: directory to write into (created if missing).
        n_tumor, n_normal: number of tumour and normal slides.
        seed: cohort seed.
        height, width: level-0 size of every slide, pixels (rows, cols).
        mpp: microns per level-0 pixel.
        tissue_fraction: fraction of each slide covered by tissue.
        pen_marks: draw marker strokes on every slide.
        overwrite: replace existing files. Without it, slides already written by the same arguments are
            reused (an interrupted cohort resumes where it stopped) and any other file in the way raises
            FileExistsError.
        profile: ``"default"``, or ``"hard"``: tumour mimics, micro-metastases and ITCs, low-contrast tumour,
            artefacts, and two staining / scanning centres (see :func:`~.slide.make_slide`); slide ``i`` of each
            label comes from centre A when ``i`` is even, B when odd.
    """
    if n_tumor < 0 or n_normal < 0 or n_tumor + n_normal == 0:
        raise ValueError(f"need a non-negative number of slides and at least one, got {n_tumor} + {n_normal}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "slides.csv"
    plan = [(TUMOR, i) for i in range(n_tumor)] + [("normal", i) for i in range(n_normal)]
    slides = []
    for label, i in plan:
        slides.append(
            make_slide(
                root / f"{label}_{i:03d}.tif",
                height=height,
                width=width,
                mpp=mpp,
                seed=_slide_seed(seed, label, i),
                tumor=label == TUMOR,
                tissue_fraction=tissue_fraction,
                pen_marks=pen_marks,
                overwrite=overwrite,
                profile=profile,
                centre=None if profile == "default" else CENTRES[i % len(CENTRES)],
            )
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extra = profile != "default"
    writer.writerow(_CSV_COLUMNS + _PROFILE_COLUMNS if extra else _CSV_COLUMNS)
    for s in slides:
        writer.writerow(
            [
                s.path.stem,
                s.label,
                s.path.name,
                s.annotation_path.name if s.annotation_path is not None else "",
                s.height,
                s.width,
                repr(s.mpp),
                len(s.lesions),
                s.n_itc,
            ]
            + ([s.spec.profile, s.spec.centre] if extra else [])
        )
    text = buf.getvalue()
    if csv_path.exists() and not overwrite:
        if csv_path.read_text(encoding="utf-8") != text:
            raise FileExistsError(f"{csv_path}: already exists and differs (pass overwrite=True to replace it)")
        return WsiCohort(root=root, slides=slides, csv=csv_path)
    atomic_write_text(csv_path, text)
    return WsiCohort(root=root, slides=slides, csv=csv_path)
