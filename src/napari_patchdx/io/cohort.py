"""A chest X-ray cohort's tables: ``labels.csv`` and ``lesions.csv`` (one parser each, used everywhere), and the
writers that edit them.

* ``labels.csv``: one row per image: ``image`` (its id), ``png`` (the image file, relative to the cohort folder),
  optional ``dcm`` and ``split``, and one 0 / 1 column per class (every other column, in file order).
* ``lesions.csv``: one row per lesion box: ``image``, ``class`` (one of the label columns), ``y0, x0, y1, x1`` —
  a half-open box in native pixels ordered (row, col); other columns (e.g. ``lesion``) are ignored.

**Editing** (:func:`write_lesion_boxes`, :func:`write_image_labels`, :func:`save_image_truth`): one image's rows
are replaced; every other row keeps its bytes, the columns their order and the ids their text (``001`` stays
``001``). Each file is written atomically and its previous version kept as ``<name>.bak``; a file whose content
would not change is not rewritten. A cohort with pixel masks (``masks/<id>.png``) keeps its mask in step with the
image's boxes (:func:`mask_for_boxes`), since lesion patches are drawn from the mask when there is one.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._fsutil import atomic_write_bytes, atomic_write_text, keep_backup
from ..errors import InputFileError

__all__ = [
    "LABELS_NAME",
    "LESIONS_NAME",
    "MASKS_FOLDER",
    "BoxLike",
    "LesionBox",
    "box_pixels",
    "cohort_folder",
    "cohort_image",
    "mask_for_boxes",
    "read_labels",
    "read_lesions",
    "save_image_truth",
    "write_cohort_tables",
    "write_image_labels",
    "write_lesion_boxes",
]

LABELS_NAME = "labels.csv"
LESIONS_NAME = "lesions.csv"
#: columns of ``labels.csv`` that are not classes
LABEL_RESERVED = ("image", "png", "dcm", "split")
LESION_COLUMNS = ("image", "class", "y0", "x0", "y1", "x1")
#: the header of a ``lesions.csv`` this package creates (the synthetic cohort's layout)
NEW_LESIONS_HEADER = ("image", "lesion", "class", "y0", "x0", "y1", "x1")
#: the folder of a cohort's class bitmasks ``<id>.png`` (bit k = class k of ``labels.csv``)
MASKS_FOLDER = "masks"


def cohort_folder(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Path | None:
    """The chest X-ray cohort folder when ``inputs`` is one folder holding ``labels.csv``, else None (slides)."""
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if len(paths) == 1 and (Path(paths[0]) / LABELS_NAME).is_file():
        return Path(paths[0])
    return None


@dataclass(frozen=True)
class LesionBox:
    """One row of ``lesions.csv``: a half-open box ``[y0, y1) x [x0, x1)`` in native pixels of ``image``."""

    image: str
    cls: str
    class_index: int
    y0: float
    x0: float
    y1: float
    x1: float


def read_labels(root: str | os.PathLike[str]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A cohort's ``labels.csv`` (in folder ``root``), checked; returns the table and the class names.

    ``image``, ``png``, ``dcm`` and ``split`` are read as text (an id ``001`` stays ``001``, as in ``lesions.csv``).

    Raises:
        InputFileError: naming ``labels.csv`` (and the line): missing or unreadable, no ``image`` / ``png``
            column, no class column, an empty image id or png, or a class value other than 0 / 1.
    """
    labels_csv = Path(root) / LABELS_NAME
    if not labels_csv.is_file():
        raise InputFileError(labels_csv, "no such file (a chest X-ray cohort needs labels.csv)")
    try:
        table = pd.read_csv(labels_csv, dtype={c: str for c in LABEL_RESERVED})
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(labels_csv, f"not a readable CSV table ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for col in ("image", "png"):
        if col not in table.columns:
            raise InputFileError(labels_csv, f"missing column {col!r} (has {', '.join(table.columns) or 'none'})")
    for col in ("image", "png"):
        blank = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if blank.any():
            lineno = int(np.flatnonzero(blank.to_numpy())[0]) + 2
            raise InputFileError(labels_csv, f"line {lineno}: empty {col!r}")
    classes = tuple(str(c) for c in table.columns if c not in LABEL_RESERVED)
    if not classes:
        raise InputFileError(labels_csv, "has no class columns besides image, png, dcm and split")
    values = table[list(classes)]
    numbers = values.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() | ~numbers.isin([0, 1])
    if bad.any().any():
        row = int(np.flatnonzero(bad.any(axis=1).to_numpy())[0])
        col = str(bad.columns[bad.iloc[row].to_numpy()][0])
        value = values.iloc[row][col]
        shown = "empty" if pd.isna(value) else repr(str(value))
        raise InputFileError(
            labels_csv,
            f"line {row + 2}: class {col!r} is {shown}; class columns {list(classes)} must hold 0 or 1 in every row",
        )
    return table, classes


def read_lesions(path: str | os.PathLike[str], classes: tuple[str, ...] | list[str]) -> dict[str, list[LesionBox]]:
    """``lesions.csv`` as ``{image id: [LesionBox, ...]}`` (file order), every row checked.

    Raises:
        InputFileError: naming the file (and the line): unreadable, a missing column, an unknown class, a
            coordinate that is not a number, or an empty / non-finite box.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a readable lesion table (image, class, y0, x0, y1, x1): {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in LESION_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing columns {', '.join(missing)} (has {', '.join(table.columns) or 'none'})")
    classes = tuple(classes)
    out: dict[str, list[LesionBox]] = {}
    rows = table[list(LESION_COLUMNS)].itertuples(index=False, name=None)
    for lineno, (image, cls, *coords) in enumerate(rows, start=2):
        image, cls = str(image).strip(), str(cls).strip()
        if not image:
            raise InputFileError(path, f"line {lineno}: empty 'image'")
        if cls not in classes:
            raise InputFileError(path, f"line {lineno}: unknown class {cls!r} (the labels have {', '.join(classes)})")
        try:
            y0, x0, y1, x1 = (float(str(v).strip()) for v in coords)
        except ValueError:
            raise InputFileError(path, f"line {lineno}: box coordinates must be numbers") from None
        if not all(math.isfinite(v) for v in (y0, x0, y1, x1)) or y1 <= y0 or x1 <= x0:
            raise InputFileError(path, f"line {lineno}: box ({y0:g}, {x0:g}, {y1:g}, {x1:g}) is empty or not finite")
        out.setdefault(image, []).append(LesionBox(image, cls, classes.index(cls), y0, x0, y1, x1))
    return out


# ---------------------------------------------------------------------------------------------------------------
# finding an image's cohort
# ---------------------------------------------------------------------------------------------------------------


def cohort_image(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(cohort folder, image id)`` of an X-ray file that belongs to a cohort, else None.

    A file belongs to a cohort when a ``labels.csv`` in its folder or the folder above (``<cohort>/images/``) lists
    it: a row's ``png`` or ``dcm`` (relative to the cohort folder) is this file.

    Raises:
        InputFileError: that ``labels.csv`` is broken (see :func:`read_labels`).
    """
    target = Path(path).resolve()
    for root in dict.fromkeys((target.parent, target.parent.parent)):
        if not (root / LABELS_NAME).is_file():
            continue
        table, _ = read_labels(root)
        for column in ("png", "dcm"):
            if column not in table.columns:
                continue
            for image, value in zip(table["image"], table[column], strict=True):
                if isinstance(value, str) and value.strip() and (root / value.strip()).resolve() == target:
                    return root, str(image).strip()
    return None


# ---------------------------------------------------------------------------------------------------------------
# editing: one image's rows, every other row kept byte for byte
# ---------------------------------------------------------------------------------------------------------------

#: a box to write: a :class:`LesionBox` or ``(class, y0, x0, y1, x1)`` (half-open, native pixels, (row, col))
BoxLike = LesionBox | tuple[str, float, float, float, float]


@dataclass
class _Table:
    """A CSV file split into records: the header's fields, and each record's fields with its exact text."""

    header: list[str]
    header_text: str
    records: list[tuple[list[str], str]]
    newline: str

    @classmethod
    def read(cls, path: Path) -> _Table:
        try:
            text = _text(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(path, f"cannot be read ({exc})") from None
        lines = text.splitlines(keepends=True)
        newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
        reader = csv.reader(iter(lines))
        chunks: list[tuple[list[str], str]] = []
        start = 0
        try:
            for fields in reader:
                chunks.append((fields, "".join(lines[start : reader.line_num])))
                start = reader.line_num
        except csv.Error as exc:
            raise InputFileError(path, f"line {reader.line_num}: not a readable CSV table ({exc})") from None
        if not chunks:
            raise InputFileError(path, "is empty (no header)")
        header = [f.strip().lstrip("\ufeff").strip() for f in chunks[0][0]]
        return cls(header, chunks[0][1], chunks[1:], newline)

    def column(self, name: str, path: Path) -> int:
        if name not in self.header:
            raise InputFileError(path, f"missing column {name!r} (has {', '.join(self.header) or 'none'})")
        return self.header.index(name)

    def row_text(self, fields: Sequence[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=self.newline).writerow(list(fields))
        return buffer.getvalue()

    def text(self, rows: Iterable[str]) -> str:
        out = [self.header_text]
        for row in rows:
            if not out[-1].endswith(("\n", "\r")):
                out.append(self.newline)
            out.append(row)
        return "".join(out)


def _text(path: Path) -> str:
    """A file's text exactly (line ends as they are: ``\r\n`` stays)."""
    return path.read_bytes().decode("utf-8")


def _number(value: float) -> str:
    """A coordinate as written: whole numbers without a decimal point (``12``), others exactly (``12.5``)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _write_if_changed(path: Path, old: str | None, new: str) -> bool:
    """Write ``new`` to ``path`` atomically (the previous file kept as ``.bak``) unless it equals ``old``."""
    if old == new:
        return False
    keep_backup(path)
    atomic_write_text(path, new)
    return True


def _image_listed(root: Path, image_id: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``labels.csv`` read and checked to list ``image_id``."""
    table, classes = read_labels(root)
    ids = {str(i).strip() for i in table["image"]}
    if image_id not in ids:
        raise InputFileError(root / LABELS_NAME, f"lists no image {image_id!r}: add its row before its lesions")
    return table, classes


def _check_classes(path: Path, labels: Mapping[str, bool], classes: Sequence[str]) -> None:
    unknown = [c for c in labels if c not in classes]
    if unknown:
        raise InputFileError(path, f"has no class column {unknown[0]!r} (its classes: {', '.join(classes)})")


def _checked_boxes(path: Path, image_id: str, boxes: Iterable[BoxLike], classes: Sequence[str]) -> list[LesionBox]:
    out = []
    for k, box in enumerate(boxes):
        if isinstance(box, LesionBox):
            cls, coords = box.cls, (box.y0, box.x0, box.y1, box.x1)
        else:
            cls, *coords = box
        cls = str(cls).strip()
        if cls not in classes:
            raise InputFileError(
                path, f"box {k + 1} of image {image_id!r}: unknown class {cls!r} (the labels have {', '.join(classes)})"
            )
        try:
            y0, x0, y1, x1 = (float(v) for v in coords)
        except (TypeError, ValueError):
            raise InputFileError(
                path, f"box {k + 1} of image {image_id!r}: needs four numbers y0, x0, y1, x1"
            ) from None
        if not all(math.isfinite(v) for v in (y0, x0, y1, x1)) or y1 <= y0 or x1 <= x0:
            raise InputFileError(
                path, f"box {k + 1} of image {image_id!r}: ({y0:g}, {x0:g}, {y1:g}, {x1:g}) is empty or not finite"
            )
        out.append(LesionBox(image_id, cls, list(classes).index(cls), y0, x0, y1, x1))
    return out


def write_lesion_boxes(root: str | os.PathLike[str], image_id: str, boxes: Iterable[BoxLike]) -> list[Path]:
    """Replace image ``image_id``'s rows of the cohort's ``lesions.csv`` by ``boxes``; returns the files written.

    ``boxes`` are half-open ``[y0, y1) x [x0, x1)`` boxes in the image's native pixels, (row, col) order
    (:data:`BoxLike`); none removes the image's rows. The new rows take the place of the image's first old row
    (the end of the file when it had none) and follow the file's columns: a ``lesion`` column numbers them 0, 1, ...,
    other extra columns stay empty. Without a ``lesions.csv`` one is created (``image, lesion, class, y0, x0, y1,
    x1``). When the cohort has the image's mask (``masks/<id>.png``), the mask follows the boxes
    (:func:`mask_for_boxes`, previous mask kept as ``<id>.png.bak``).

    Raises:
        InputFileError: naming the file: ``labels.csv`` broken or not listing the image, ``lesions.csv`` broken,
            or a box of an unknown class, not four numbers, empty or not finite.
    """
    root, image_id = Path(root), str(image_id).strip()
    _, classes = _image_listed(root, image_id)
    path = root / LESIONS_NAME
    checked = _checked_boxes(path, image_id, boxes, classes)
    if path.is_file():
        read_lesions(path, classes)  # a broken file is refused before it is touched
        table, old = _Table.read(path), _text(path)
    else:
        table = _Table(list(NEW_LESIONS_HEADER), ",".join(NEW_LESIONS_HEADER) + "\n", [], "\n")
        old = None
    where = {name: table.column(name, path) for name in LESION_COLUMNS}
    lesion_col = table.header.index("lesion") if "lesion" in table.header else None
    new_rows = []
    for k, box in enumerate(checked):
        fields = [""] * len(table.header)
        values = {"image": image_id, "class": box.cls, "y0": box.y0, "x0": box.x0, "y1": box.y1, "x1": box.x1}
        for name, value in values.items():
            fields[where[name]] = value if isinstance(value, str) else _number(value)
        if lesion_col is not None:
            fields[lesion_col] = str(k)
        new_rows.append(table.row_text(fields))
    rows: list[str] = []
    placed = False
    for fields, text in table.records:
        mine = len(fields) > where["image"] and fields[where["image"]].strip() == image_id
        if not mine:
            rows.append(text)
        elif not placed:
            rows.extend(new_rows)
            placed = True
    if not placed:
        rows.extend(new_rows)
    written = [path] if _write_if_changed(path, old, table.text(rows)) else []
    mask_path = root / MASKS_FOLDER / f"{image_id}.png"
    if mask_path.is_file():
        written.extend(_update_mask(mask_path, checked, classes))
    return written


def write_image_labels(root: str | os.PathLike[str], image_id: str, labels: Mapping[str, bool]) -> list[Path]:
    """Set image ``image_id``'s class columns of the cohort's ``labels.csv`` (class -> present); returns the files
    written (none when nothing changes). Classes not in ``labels`` keep their values; the row's other cells and
    every other row keep their text.

    Raises:
        InputFileError: naming ``labels.csv``: broken, not listing the image, or without a column for a class.
    """
    root, image_id = Path(root), str(image_id).strip()
    path = root / LABELS_NAME
    _, classes = _image_listed(root, image_id)
    _check_classes(path, labels, classes)
    table = _Table.read(path)
    image_col = table.column("image", path)
    rows = []
    for fields, text in table.records:
        if len(fields) > image_col and fields[image_col].strip() == image_id:
            new = list(fields) + [""] * (len(table.header) - len(fields))
            for cls, present in labels.items():
                new[table.header.index(cls)] = "1" if present else "0"
            if [f.strip() for f in new] != [f.strip() for f in fields] + [""] * (len(new) - len(fields)):
                ended = text.endswith(("\n", "\r"))
                text = table.row_text(new)
                if not ended:  # the file's last line had no line end: neither has its new text
                    text = text[: -len(table.newline)]
        rows.append(text)
    old = _text(path)
    return [path] if _write_if_changed(path, old, table.text(rows)) else []


def save_image_truth(
    root: str | os.PathLike[str],
    image_id: str,
    boxes: Iterable[BoxLike],
    labels: Mapping[str, bool] | None = None,
) -> list[Path]:
    """Save one image's ground truth: its boxes into ``lesions.csv`` (:func:`write_lesion_boxes`) and its labels
    into ``labels.csv`` (:func:`write_image_labels`), a class with a box always present; returns the files written.

    ``labels``: class -> present for the classes to set (None: only the classes with a box are set, present).
    Everything is checked before anything is written, so a bad box leaves both tables as they were.
    """
    root, image_id = Path(root), str(image_id).strip()
    _, classes = _image_listed(root, image_id)
    checked = _checked_boxes(root / LESIONS_NAME, image_id, list(boxes), classes)
    merged = dict(labels or {})
    _check_classes(root / LABELS_NAME, merged, classes)
    for box in checked:
        merged[box.cls] = True
    return [*write_lesion_boxes(root, image_id, checked), *write_image_labels(root, image_id, merged)]


# ---------------------------------------------------------------------------------------------------------------
# masks that follow the boxes
# ---------------------------------------------------------------------------------------------------------------


def box_pixels(box: LesionBox, shape: Sequence[int]) -> tuple[slice, slice]:
    """The pixels a box covers in an image of ``shape`` (rows, cols): rows ``int(y0) .. int(y1)``, columns
    ``int(x0) .. int(x1)`` (coordinates truncated to whole pixels, as lesion patches read boxes), clipped to the
    image."""
    rows, cols = int(shape[0]), int(shape[1])
    y0, y1 = min(rows, max(0, int(box.y0))), min(rows, max(0, int(box.y1)))
    x0, x1 = min(cols, max(0, int(box.x0))), min(cols, max(0, int(box.x1)))
    return slice(y0, y1), slice(x0, x1)


def mask_for_boxes(bits: np.ndarray, boxes: Sequence[LesionBox], classes: Sequence[str]) -> np.ndarray:
    """A class bitmask (bit k = class k) made to agree with an image's boxes.

    Per class: the old mask's pixels inside the class's boxes are kept (a kept box keeps its lesion's outline),
    pixels outside every box of the class are cleared (a deleted box deletes its lesion), and a box holding no pixel
    of its class is filled whole (a drawn box is a new lesion covering its box, the rule for cohorts without masks).
    """
    bits = np.asarray(bits)
    if len(classes) > 8 * bits.dtype.itemsize:
        raise ValueError(f"a {bits.dtype} mask holds at most {8 * bits.dtype.itemsize} classes, not {len(classes)}")
    out = np.zeros_like(bits)
    for k in range(len(classes)):
        bit = bits.dtype.type(1 << k)
        old = (bits & bit) != 0
        keep = np.zeros(bits.shape, bool)
        fills = []
        for box in (b for b in boxes if b.class_index == k):
            where = box_pixels(box, bits.shape)
            keep[where] = True
            if not old[where].any():
                fills.append(where)
        keep &= old
        for where in fills:
            keep[where] = True
        out[keep] |= bit
    return out


def _update_mask(path: Path, boxes: Sequence[LesionBox], classes: Sequence[str]) -> list[Path]:
    """Rewrite the mask at ``path`` to follow ``boxes`` (previous kept as ``.bak``) when that changes it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            bits = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"is not a readable mask image ({exc})") from None
    if bits.ndim != 2 or bits.dtype != np.uint8:
        raise InputFileError(path, f"is not a uint8 class bitmask (shape {bits.shape}, {bits.dtype})")
    try:
        new = mask_for_boxes(bits, boxes, classes)
    except ValueError as exc:
        raise InputFileError(path, str(exc)) from None
    if np.array_equal(new, bits):
        return []
    buffer = io.BytesIO()
    Image.fromarray(new).save(buffer, format="PNG")
    keep_backup(path)
    atomic_write_bytes(path, buffer.getvalue())
    return [path]


# ---------------------------------------------------------------------------------------------------------------
# a whole cohort's tables (derived cohorts, e.g. a training round's weighted view)
# ---------------------------------------------------------------------------------------------------------------


def write_cohort_tables(
    folder: str | os.PathLike[str],
    table: pd.DataFrame,
    classes: Sequence[str],
    boxes: Mapping[str, Sequence[LesionBox]] | None = None,
) -> list[Path]:
    """Write ``labels.csv`` (and ``lesions.csv`` when ``boxes`` is given) of a cohort in ``folder`` (created),
    atomically; returns the files.

    ``table`` has ``image`` and ``png`` columns, optional ``dcm`` and ``split``, and a 0 / 1 column per class;
    they are written as ``image, <classes>, png[, dcm][, split]``. ``boxes`` maps an image id to its boxes
    (written ``image, lesion, class, y0, x0, y1, x1``, in the table's image order).
    """
    folder = Path(folder)
    columns = ["image", *classes, "png", *(c for c in ("dcm", "split") if c in table.columns)]
    labels = io.StringIO()
    writer = csv.writer(labels, lineterminator="\n")
    writer.writerow(columns)
    for record in table.to_dict("records"):
        writer.writerow(
            [str(record["image"]), *(int(float(record[c])) for c in classes)]
            + ["" if pd.isna(record[c]) else str(record[c]) for c in columns[1 + len(classes) :]]
        )
    written = [atomic_write_text(folder / LABELS_NAME, labels.getvalue(), mkdir=True)]
    if boxes is not None:
        lesions = io.StringIO()
        writer = csv.writer(lesions, lineterminator="\n")
        writer.writerow(NEW_LESIONS_HEADER)
        for image in dict.fromkeys(str(i) for i in table["image"]):
            for k, box in enumerate(boxes.get(image, ())):
                writer.writerow([image, k, box.cls, *(_number(v) for v in (box.y0, box.x0, box.y1, box.x1))])
        written.append(atomic_write_text(folder / LESIONS_NAME, lesions.getvalue(), mkdir=True))
    return written
