"""Lesion annotations: ASAP / CAMELYON16 XML and QuPath GeoJSON, in and out, and rasterisation.

All geometry is in level-0 pixel coordinates, ordered (row, col) = (y, x). (x, y) appears only inside
the file readers and writers, at the format boundary.

Reading
    :func:`read_annotations` decides the format from the content (first non-space byte ``<`` is XML,
    ``{`` or ``[`` is JSON) and falls back to the extension. XML is parsed with ``defusedxml`` only;
    DTDs, entity declarations and external references are refused, never expanded. Every bad file raises
    :class:`~napari_patchdx.errors.InputFileError` naming the file; recoverable problems (annotations that
    enclose no area, GeoJSON geometries that are not polygons) are skipped with one ``UserWarning`` per file.

Class names
    :func:`canonical_label` maps every source class name onto a label: CAMELYON / ASAP groups ``_0``, ``_1``,
    ``Tumor``, ``metastases`` and QuPath classes ``Tumor``, ``Tumour``, ``Metastasis`` become ``"tumor"``;
    ``_2``, ``Exclusion``, ``Ignore`` / ``Ignore*`` become ``"exclusion"``; ``Normal``, ``Negative``,
    ``Non-tumor`` / ``Non-tumour`` and ``Benign`` become ``"normal"``; anything else is lower-cased. A region
    without any class (no ASAP group or ``PartOfGroup="None"``, no GeoJSON classification) is ``"tumor"``: in
    CAMELYON-style data an outline without a class is a lesion outline.

    ``"exclusion"`` and ``"normal"`` regions never count as tumour (:attr:`AnnotationSet.positives` leaves them
    out and rasterising removes them from the positives); a ``"normal"`` region is tissue the annotator says is
    not tumour (:attr:`AnnotationSet.normals`). Every other class counts as tumour. :func:`class_color` gives the
    one colour each class is drawn in.

Writing
    :func:`write_asap_xml` and :func:`write_geojson` write atomically (:func:`napari_patchdx._fsutil.atomic_path`:
    a temporary file in the target's folder, then ``os.replace``): on any error nothing is left behind and an
    existing target is untouched.
    Coordinates are written with ``repr`` precision, so reading a written file gives the same float64 values.

Rasterisation
    :meth:`AnnotationSet.rasterize` and :meth:`AnnotationSet.rasterize_labels` fill polygons directly at the
    target resolution with an even-odd scanline fill evaluated at output pixel centres, one region's bounding
    box window at a time, so memory is the output array plus one window however large the slide.

Polygon helpers
    :func:`points_in_polygon`, :func:`fill_polygon` and :func:`polygon_area` are the single implementation of
    the inside rule and the area used here and by the synthetic slides (:mod:`napari_patchdx.synth.wsi`), so
    whatever is drawn from a polygon is exactly what :meth:`AnnotationSet.rasterize` gives for it.

Modules
    :mod:`.model` (Region, AnnotationSet, canonical labels), :mod:`.polygon` (ring geometry), :mod:`.raster`
    (polygon fill), :mod:`.asap` and :mod:`.geojson` (one file format each, read and write), :mod:`.writing`
    (what the two writers share) and :mod:`.read` (:func:`read_annotations`). The conversion to and from napari
    Shapes layer data lives in :mod:`napari_patchdx.layerdata.shapes`.
"""

from __future__ import annotations

from .asap import write_asap_xml
from .geojson import write_geojson
from .model import CLASS_COLORS, EXCLUSION, NORMAL, TUMOR, AnnotationSet, Region, canonical_label, class_color
from .polygon import points_in_polygon, polygon_area
from .raster import fill_polygon
from .read import read_annotations

__all__ = [
    "CLASS_COLORS",
    "EXCLUSION",
    "NORMAL",
    "TUMOR",
    "AnnotationSet",
    "Region",
    "canonical_label",
    "class_color",
    "fill_polygon",
    "points_in_polygon",
    "polygon_area",
    "read_annotations",
    "write_asap_xml",
    "write_geojson",
]
