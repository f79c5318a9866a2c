"""FROC from folders (the ``froc`` command): :func:`froc_from_dirs` reads a folder of CAMELYON16 detection CSVs, a
folder of annotations, and optionally a slide list and a CSV of level-0 shapes, then runs
:func:`~napari_patchdx.evaluation.froc.froc`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import InputFileError
from ..io.annotations.model import AnnotationSet
from ..io.annotations.read import read_annotations
from .files import PathLike, read_text
from .froc import froc
from .froc_result import FrocResult
from .masks import CAMELYON_LEVEL, CAMELYON_MPP
from .messages import name_list
from .points import read_camelyon_csv


def _read_slide_list(path: Path) -> list[str]:
    """Slide names from a text file (one per line, ``#`` comments) or a CSV with a ``slide`` column."""
    text = read_text(path, "a slide list (one name per line, or a CSV with a 'slide' column)")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, "the slide list is empty")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "slide" in header and (len(header) > 1 or path.suffix.lower() == ".csv"):
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        key = next(k for k in reader.fieldnames or [] if k.strip().lower() == "slide")
        names = []
        for lineno, row in enumerate(reader, start=2):
            value = (row.get(key) or "").strip()
            if not value:
                raise InputFileError(path, f"line {lineno}: empty slide name")
            names.append(value)
    else:
        names = [ln.strip() for ln in lines]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InputFileError(path, f"slides listed more than once: {name_list(dupes)}")
    if not names:
        raise InputFileError(path, "the slide list is empty")
    return names


def _read_shapes(path: Path) -> dict[str, tuple[int, int]] | None:
    """slide -> (height, width) from a CSV with columns slide, height, width; None when it lacks them."""
    text = read_text(path, "a CSV with columns slide, height, width")
    reader = csv.DictReader(io.StringIO(text))
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    if not {"slide", "height", "width"} <= set(fields):
        return None
    shapes: dict[str, tuple[int, int]] = {}
    for lineno, row in enumerate(reader, start=2):
        name = (row.get(fields["slide"]) or "").strip()
        if not name:
            continue
        try:
            h = float(row.get(fields["height"]) or "")
            w = float(row.get(fields["width"]) or "")
        except ValueError:
            raise InputFileError(path, f"line {lineno}: height and width of {name!r} must be numbers") from None
        if not (h > 0 and w > 0 and h == int(h) and w == int(w)):
            raise InputFileError(path, f"line {lineno}: height and width of {name!r} must be positive integers")
        shapes[name] = (int(h), int(w))
    return shapes


def _annotation_file(folder: Path, name: str) -> Path | None:
    found = [p for p in (folder / f"{name}.xml", folder / f"{name}.geojson") if p.is_file()]
    if len(found) > 1:
        raise InputFileError(folder, f"slide {name!r} has two annotation files ({found[0].name}, {found[1].name})")
    return found[0] if found else None


def froc_from_dirs(
    detections_dir: PathLike,
    annotations_dir: PathLike,
    *,
    slides_file: PathLike | None = None,
    shapes_csv: PathLike | None = None,
    level: int = CAMELYON_LEVEL,
    mpp: float = CAMELYON_MPP,
) -> FrocResult:
    """FROC of a folder of CAMELYON16 detection CSVs against a folder of annotations (the ``froc`` command).

    Rules:

    * Detections: one ``<slide>.csv`` per slide in ``detections_dir`` (:func:`read_camelyon_csv`).
    * Ground truth: a slide is a tumour slide when ``<slide>.xml`` or ``<slide>.geojson`` is in
      ``annotations_dir``, otherwise normal.
    * Slide set: the names listed in ``slides_file`` (one per line, or a CSV with a ``slide`` column) when given,
      else the detection CSV names. With a list, a listed slide without a CSV has no detections, annotation files
      of unlisted slides are ignored, and a CSV of an unlisted slide is an error. Without one, an annotation file
      whose slide has no CSV is an error (a tumour slide would silently drop out).
    * Level-0 shapes: ``shapes_csv`` (columns slide, height, width) when given, else ``slides.csv`` in
      ``annotations_dir`` when it has those columns (our synthetic cohorts write one); either must cover every
      slide. Failing both, the extent of annotations and detections is used and detections are not checked
      against the slide (a warning says so).

    Raises:
        InputFileError: a missing folder, a bad CSV / slide list / shapes file, a detection off the slide, an
            annotated slide without a CSV (when no slide list is given).
        ConfigError: no lesion to find.
    """
    det_dir, ann_dir = Path(detections_dir), Path(annotations_dir)
    for folder, what in ((det_dir, "detections"), (ann_dir, "annotations")):
        if not folder.is_dir():
            raise InputFileError(folder, f"the {what} folder does not exist or is not a folder")
    csvs = {p.stem: p for p in sorted(det_dir.glob("*.csv")) if p.is_file()}
    if slides_file is not None:
        slide_list: list[str] = _read_slide_list(Path(slides_file))
        unlisted = set(csvs) - set(slide_list)
        if unlisted:
            raise InputFileError(
                det_dir, f"detection CSVs of slides not in the slide list {slides_file}: {name_list(unlisted)}"
            )
    else:
        if not csvs:
            raise InputFileError(det_dir, "no detection CSVs (<slide>.csv) in the folder")
        slide_list = list(csvs)
        annotated = {p.stem for p in ann_dir.iterdir() if p.suffix.lower() in (".xml", ".geojson") and p.is_file()}
        missing = annotated - set(slide_list)
        if missing:
            raise InputFileError(
                det_dir,
                f"annotated slides without a detection CSV here: {name_list(missing)}; add empty CSVs or list every "
                "slide with --slides so they count as slides without detections",
            )
    shapes: dict[str, tuple[int, int]] | None = None
    shapes_path = Path(shapes_csv) if shapes_csv is not None else None
    if shapes_path is not None:
        shapes = _read_shapes(shapes_path)
        if shapes is None:
            raise InputFileError(shapes_path, "needs the columns slide, height, width (level-0 pixels)")
    elif (ann_dir / "slides.csv").is_file():
        shapes_path = ann_dir / "slides.csv"
        shapes = _read_shapes(shapes_path)
    if shapes is not None:
        assert shapes_path is not None
        lacking = set(slide_list) - set(shapes)
        if lacking:
            raise InputFileError(shapes_path, f"no level-0 height and width for slides: {name_list(lacking)}")
    detections = {name: read_camelyon_csv(csvs[name]) for name in slide_list if name in csvs}
    truths: dict[str, AnnotationSet | None] = {}
    for name in slide_list:
        ann = _annotation_file(ann_dir, name)
        truths[name] = read_annotations(ann) if ann is not None else None
    return froc(detections, truths, shapes, level, mpp, slides=slide_list)
