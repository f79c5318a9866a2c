"""Reading an annotation file of either format: :func:`read_annotations` sniffs the format and parses it."""

from __future__ import annotations

from pathlib import Path

from ...errors import InputFileError
from .asap import parse_asap
from .geojson import parse_geojson
from .model import AnnotationSet, PathLike

__all__ = ["read_annotations"]


def read_annotations(path: PathLike) -> AnnotationSet:
    """Read an ASAP / CAMELYON16 XML or QuPath GeoJSON annotation file.

    The format is decided by the content (first non-space byte ``<``: XML; ``{`` or ``[``: JSON), else by the
    extension (``.xml``; ``.geojson`` / ``.json``). Regions come back in file order with level-0 (y, x)
    float64 vertices as open rings.

    ASAP: annotations of type Polygon, Rectangle and Spline become regions (a Spline's control points are
    used as polygon vertices); Dot, PointSet, Measurement and any annotation with fewer than 3 distinct
    vertices or zero area are skipped with one warning. Coordinates are sorted by ``Order``. The label
    follows the annotation's group (and the group's parent groups), see :func:`canonical_label`.

    GeoJSON: a FeatureCollection, a single Feature, a bare geometry or a JSON list of Features. Polygon and
    MultiPolygon geometries (each part one Region with the feature's name and class, holes kept) and those
    inside a GeometryCollection are read; other geometries are skipped with one warning. The class comes from
    ``properties.classification.name`` (QuPath), ``properties.classification`` as a string,
    ``properties.class`` or ``properties.label``; a feature without one is ``"tumor"``.

    Raises:
        InputFileError: missing, empty, unreadable, malformed or unsafe file (DTD / entities in XML), a file whose
            every annotation was skipped (nothing usable: as an empty ground truth it would make a tumour slide
            normal; a file with no annotation at all is an empty ground truth), invalid
            geometry (ring with fewer than 4 positions, unclosed, non-numeric or non-finite coordinates, zero
            area, hole outside its exterior); the message names the file and the annotation / feature index.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(p, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(p, "is a directory, not an annotation file") from None
    except OSError as exc:
        raise InputFileError(p, f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise InputFileError(p, "empty file (0 bytes); expected ASAP XML or GeoJSON annotations")
    if _sniff_format(data, p) == "xml":
        regions = parse_asap(data, p)
    else:
        regions = parse_geojson(data, p)
    return AnnotationSet(regions, source=p)


def _sniff_format(data: bytes, path: Path) -> str:
    head = data[:65536]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        head = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
    first = head.lstrip()[:1]
    if first == b"<":
        return "xml"
    if first in (b"{", b"["):
        return "json"
    if not first and not data.strip():
        raise InputFileError(path, "contains only white space; expected ASAP XML or GeoJSON annotations")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "xml"
    if suffix in (".geojson", ".json"):
        return "json"
    raise InputFileError(
        path, "not an annotation file: expected ASAP / CAMELYON16 XML (.xml) or QuPath GeoJSON (.geojson, .json)"
    )
