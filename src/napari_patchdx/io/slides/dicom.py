"""DICOM whole-slide images: telling a slide from a radiograph by its header, and grouping files into series.

A ``.dcm`` file is a whole-slide image when its SOP Class UID (the file meta's Media Storage SOP Class UID, else the
data set's SOP Class UID) is VL Whole Slide Microscopy Image Storage (:data:`WSI_SOP_CLASS`); every other DICOM is
left to the chest X-ray reader. Only the header is read (pydicom, ``stop_before_pixels`` and the few tags needed).

A DICOM-WSI *series* (one Series Instance UID) is one slide stored as several files (instances): one per pyramid
level (``ImageType`` value 3 ``VOLUME``), plus label / overview / thumbnail images. OpenSlide opens the series from
any one of its files by scanning that file's folder for files of the same Series Instance UID, so every instance
must sit in the same folder; files of other series in that folder are ignored. The series is known here by its
**representative** file, the level-0 instance (the largest Total Pixel Matrix), so a folder lists each series
once and opening any file of a series names the slide the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DICOM_SUFFIXES",
    "WSI_SOP_CLASS",
    "DicomHeader",
    "dicom_slide_problem",
    "dicom_wsi_series",
    "is_dicom_file",
    "one_per_series",
    "read_dicom_header",
    "series_representative",
]

#: VL Whole Slide Microscopy Image Storage
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: the suffixes of DICOM files we route by content
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
#: the tags read from a header (besides the file meta)
_HEADER_TAGS = ("SOPClassUID", "SeriesInstanceUID", "ImageType", "TotalPixelMatrixRows", "TotalPixelMatrixColumns")
_PREAMBLE = 128


@dataclass(frozen=True)
class DicomHeader:
    """What routing needs from a DICOM file's header.

    Attributes:
        path: the file.
        sop_class: the SOP Class UID ("" when the file names none).
        series_uid: the Series Instance UID ("" when absent).
        image_type: the ImageType values (e.g. ``("ORIGINAL", "PRIMARY", "VOLUME", "NONE")``).
        total_shape: Total Pixel Matrix (rows, columns) in pixels of this instance's level, or None.
    """

    path: Path
    sop_class: str
    series_uid: str
    image_type: tuple[str, ...]
    total_shape: tuple[int, int] | None

    @property
    def is_wsi(self) -> bool:
        """True for a VL Whole Slide Microscopy Image."""
        return self.sop_class == WSI_SOP_CLASS

    @property
    def is_level(self) -> bool:
        """True for a pyramid level (ImageType value 3 ``VOLUME``), False for a label, overview or thumbnail."""
        return len(self.image_type) >= 3 and self.image_type[2].upper() == "VOLUME"

    @property
    def sop_class_name(self) -> str:
        """The SOP class in words (``"Computed Radiography Image Storage"``); its UID when pydicom does not know it,
        ``"(none)"`` when the file names none."""
        from pydicom.uid import UID

        return UID(self.sop_class).name if self.sop_class else "(none)"


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a DICOM Part-10 file (``DICM`` after the 128-byte preamble). Never raises."""
    try:
        with open(path, "rb") as f:
            f.seek(_PREAMBLE)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_header(path: str | os.PathLike[str]) -> DicomHeader | None:
    """The header of a DICOM Part-10 file (no pixel data is read), or None when ``path`` is not one. Never raises."""
    import pydicom

    p = Path(path)
    if not p.is_file() or not is_dicom_file(p):
        return None
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        meta = getattr(ds, "file_meta", None)
        sop_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", "") or "")
        image_type = ds.get("ImageType", None)
        if image_type is None:
            types: tuple[str, ...] = ()
        elif isinstance(image_type, str):
            types = (image_type,)
        else:
            types = tuple(str(v) for v in image_type)
        rows, cols = ds.get("TotalPixelMatrixRows", None), ds.get("TotalPixelMatrixColumns", None)
        total = (int(rows), int(cols)) if rows is not None and cols is not None else None
        return DicomHeader(p, sop_class.strip(), str(ds.get("SeriesInstanceUID", "") or "").strip(), types, total)
    except Exception:
        return None


def dicom_wsi_series(folder: str | os.PathLike[str]) -> dict[str, list[DicomHeader]]:
    """The DICOM-WSI instances of ``folder`` (files with a :data:`DICOM_SUFFIXES` suffix), by Series Instance UID,
    each list in file-name order. Unreadable files and other DICOMs are skipped."""
    series: dict[str, list[DicomHeader]] = {}
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return series
    for p in entries:
        if p.suffix.lower() not in DICOM_SUFFIXES:
            continue
        header = read_dicom_header(p)
        if header is not None and header.is_wsi and header.series_uid:
            series.setdefault(header.series_uid, []).append(header)
    return series


def _representative(instances: Sequence[DicomHeader]) -> Path:
    """The level-0 instance: the pyramid level with the largest Total Pixel Matrix (ties: first file name)."""
    levels = [h for h in instances if h.is_level and h.total_shape is not None] or list(instances)
    best = max(levels, key=lambda h: (h.total_shape[0] * h.total_shape[1]) if h.total_shape else -1)
    return best.path


def series_representative(path: str | os.PathLike[str]) -> Path:
    """The file that stands for ``path``'s DICOM-WSI series (its level-0 instance in the same folder); ``path``
    itself when it is not a DICOM-WSI file or its series has no other file."""
    return one_per_series([path])[0]


def one_per_series(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """``paths`` with every DICOM-WSI file replaced by its series' representative
    (:func:`series_representative`) and repeats dropped, order kept: the files of one series are one slide."""
    out: list[Path] = []
    folders: dict[Path, dict[str, list[DicomHeader]]] = {}
    for raw in paths:
        p = Path(raw)
        if p.suffix.lower() in DICOM_SUFFIXES:
            header = read_dicom_header(p)
            if header is not None and header.is_wsi and header.series_uid:
                if p.parent not in folders:
                    folders[p.parent] = dicom_wsi_series(p.parent)
                instances = folders[p.parent].get(header.series_uid, [])
                p = _representative(instances if any(h.path == p for h in instances) else [*instances, header])
        if p not in out:
            out.append(p)
    return out


def dicom_slide_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the DICOM file ``path`` cannot open as a slide (a sentence for
    :class:`~napari_patchdx.errors.InputFileError`), or None when it is a DICOM-WSI whose series has a pyramid level
    in its folder."""
    header = read_dicom_header(path)
    if header is None:
        return "not a readable DICOM Part-10 file (no 'DICM' marker after the 128-byte preamble, or a broken header)"
    if not header.is_wsi:
        name = header.sop_class_name
        named = f"{name} ({header.sop_class})" if header.sop_class and name != header.sop_class else name
        return (
            f"a DICOM of SOP class {named}, not a whole-slide image (VL Whole Slide Microscopy Image Storage, "
            f"{WSI_SOP_CLASS}); chest X-rays open with read_cxr"
        )
    if not header.series_uid:
        return "a DICOM whole-slide image without a Series Instance UID (OpenSlide needs it to find the series)"
    if header.is_level:
        return None
    instances = dicom_wsi_series(Path(path).parent).get(header.series_uid, [])
    if not any(h.is_level for h in instances):
        kind = header.image_type[2].lower() if len(header.image_type) >= 3 else "non-pyramid"
        return (
            f"a DICOM-WSI {kind} image whose series ({header.series_uid}) has no pyramid level in this folder; "
            "every file (instance) of a series must sit in the same folder"
        )
    return None
