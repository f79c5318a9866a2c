"""ASAP / CAMELYON16 XML annotations: reading (with ``defusedxml`` only) and writing.

XML is parsed with ``defusedxml``; DTDs, entity declarations and external references are refused, never
expanded. (x, y) appears only here, at the format boundary; regions hold level-0 (y, x).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import quoteattr

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np

from ..._fsutil import atomic_write_text
from ...errors import InputFileError
from .model import (
    CLASS_SYNONYMS,
    EXCLUSION,
    NORMAL,
    TUMOR,
    AnnotationSet,
    PathLike,
    Region,
    canonical_label,
    warn_user,
)
from .polygon import is_degenerate, open_ring
from .writing import check_finite, hash_color, ring_xy

__all__ = ["parse_asap", "write_asap_xml"]

_ASAP_POINT_TYPES = frozenset({"dot", "pointset", "measurement"})
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d+,\d+\s*")
_XML_INVALID_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: ASAP group colours: CAMELYON16's tumour yellow and exclusion green, and blue for normal tissue
_ASAP_COLORS = {TUMOR: "#F4FA58", EXCLUSION: "#64FE2E", NORMAL: "#2E9AFE"}


def parse_asap(data: bytes, path: Path) -> list[Region]:
    """The regions of ASAP XML ``data`` read from ``path`` (see :func:`~.read.read_annotations`)."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise InputFileError(
            path,
            f"XML refused: {exc!r}; annotation files may not declare a DTD, entities or external references "
            "(they are never expanded)",
        ) from None
    except ParseError as exc:
        raise InputFileError(path, f"malformed XML: {exc}") from None
    if root.tag != "ASAP_Annotations":
        raise InputFileError(
            path, f"not an ASAP annotation file: root element <{root.tag}>, expected <ASAP_Annotations>"
        )

    parents = {g.get("Name", ""): g.get("PartOfGroup", "None") for g in root.iterfind("AnnotationGroups/Group")}
    regions: list[Region] = []
    skipped = 0
    comma_decimals = False
    for index, ann in enumerate(root.iterfind("Annotations/Annotation")):
        name = ann.get("Name", "")
        group = ann.get("PartOfGroup", "")
        if ann.get("Type", "Polygon").strip().lower() in _ASAP_POINT_TYPES:
            skipped += 1
            continue
        ring, used_comma = _asap_coordinates(ann, index, name, path)
        comma_decimals |= used_comma
        ring = open_ring(ring)
        if is_degenerate(ring):
            skipped += 1
            continue
        regions.append(Region(ring, (), _asap_label(group, parents), name, group))
    if skipped and not regions:
        raise InputFileError(
            path,
            f"nothing usable: all {skipped} annotation(s) enclose no area (Dot / PointSet / Measurement, fewer than "
            "3 distinct vertices, or zero area); read as an empty ground truth, a tumour slide would train as "
            "normal. Draw the tumour as polygons",
        )
    if skipped:
        warn_user(
            f"{path}: skipped {skipped} annotation(s) that enclose no area (Dot / PointSet / Measurement, "
            "fewer than 3 distinct vertices, or zero area)",
            stacklevel=4,
        )
    if comma_decimals:
        warn_user(f"{path}: coordinates written with a decimal comma were read with a decimal point", stacklevel=4)
    return regions


def _asap_coordinates(ann: Element, index: int, name: str, path: Path) -> tuple[np.ndarray, bool]:
    """(N, 2) (y, x) vertices of one ASAP annotation sorted by Order, and whether decimal commas were seen."""
    where = f"annotation {index} ({name!r})"
    coords = ann.findall("Coordinates/Coordinate")
    values = np.empty((len(coords), 2), dtype=np.float64)
    orders = np.empty(len(coords), dtype=np.float64)
    have_order = True
    used_comma = False
    for k, c in enumerate(coords):
        for col, attr in ((1, "X"), (0, "Y")):
            text = c.get(attr)
            if text is None:
                raise InputFileError(path, f"{where}: coordinate {k} has no {attr} attribute")
            value, comma = _parse_number(text)
            if value is None:
                raise InputFileError(path, f"{where}: coordinate {k} has a non-numeric {attr}={text!r}")
            if not math.isfinite(value):
                raise InputFileError(path, f"{where}: coordinate {k} has a non-finite {attr}={text!r}")
            values[k, col] = value
            used_comma |= comma
        order_text = c.get("Order")
        if order_text is None:
            have_order = False
            continue
        order, _ = _parse_number(order_text)
        if order is None or not math.isfinite(order):
            raise InputFileError(path, f"{where}: coordinate {k} has a non-numeric Order={order_text!r}")
        orders[k] = order
    if have_order and len(coords):
        values = values[np.argsort(orders, kind="stable")]
    return values, used_comma


def _parse_number(text: str) -> tuple[float | None, bool]:
    """float(text), accepting a decimal comma; (None, False) when not a number."""
    try:
        return float(text), False
    except ValueError:
        if _DECIMAL_COMMA.fullmatch(text):
            return float(text.replace(",", ".")), True
        return None, False


def _asap_label(group: str, parents: Mapping[str, str]) -> str:
    """Label of an ASAP group: the first known class name up its PartOfGroup chain, else its own name."""
    seen: set[str] = set()
    g = group
    while g.strip() and g.strip().lower() != "none" and g not in seen:
        low = g.strip().lower()
        if low in CLASS_SYNONYMS:
            return CLASS_SYNONYMS[low]
        seen.add(g)
        g = parents.get(g, "")
    return canonical_label(group)


# writing


def _fmt(value: float) -> str:
    return repr(float(value))


def _xml_text(text: str) -> str:
    return _XML_INVALID_CHARS.sub("\ufffd", text)


def _asap_group(region: Region) -> str:
    """The group to write: the region's own when it maps back to its label, else _0 / _2 / the label
    (``"normal"`` for normal tissue)."""
    if region.group and canonical_label(region.group) == region.label:
        return region.group
    return {TUMOR: "_0", EXCLUSION: "_2"}.get(region.label, region.label)


def write_asap_xml(annotations: AnnotationSet, path: PathLike, *, overwrite: bool = True) -> Path:
    """Write ASAP / CAMELYON16 XML, atomically; returns the path written.

    Every region becomes one ``Type="Polygon"`` annotation (so Rectangle and Spline types are not kept) in
    group ``Region.group`` when set and consistent with its label, else ``_0`` (tumour), ``_2`` (exclusion)
    or the label itself (``normal`` for normal tissue, read back as normal); the ``AnnotationGroups`` section
    lists every group used. Regions without a name are written as ``"Annotation <index>"``. ASAP has no holes:
    each hole is written as a separate ``_2`` exclusion annotation named ``"<name> hole <k>"``. (An exclusion
    removes its area from every positive region when rasterised, a hole only from its own region; for
    non-overlapping regions this is the same.) Coordinates are level-0 pixels written as X (column), Y (row)
    with full float precision.

    Raises:
        FileNotFoundError: the target directory does not exist. FileExistsError: the target exists and
        ``overwrite`` is False. ValueError: a vertex is not finite. Nothing is written in any of these cases.
    """
    check_finite(annotations)
    entries: list[tuple[str, str, str, np.ndarray]] = []  # name, group, label, ring
    for index, region in enumerate(annotations.regions):
        name = region.name or f"Annotation {index}"
        entries.append((name, _asap_group(region), region.label, region.exterior))
        for k, hole in enumerate(region.holes):
            entries.append((f"{name} hole {k}", "_2", EXCLUSION, hole))
    groups: dict[str, str] = {}
    for _, group, label, _ in entries:
        if group.strip() and group.strip().lower() != "none" and group not in groups:
            groups[group] = _ASAP_COLORS.get(label, "#{:02X}{:02X}{:02X}".format(*hash_color(group)))

    def write(fh: TextIO) -> None:
        fh.write('<?xml version="1.0"?>\n<ASAP_Annotations>\n\t<Annotations>\n')
        for name, group, label, ring in entries:
            color = _ASAP_COLORS.get(label, groups.get(group, "#F4FA58"))
            fh.write(
                f'\t\t<Annotation Name={quoteattr(_xml_text(name))} Type="Polygon" '
                f'PartOfGroup={quoteattr(_xml_text(group))} Color="{color}">\n\t\t\t<Coordinates>\n'
            )
            for order, (x, y) in enumerate(ring_xy(ring)):
                fh.write(f'\t\t\t\t<Coordinate Order="{order}" X="{_fmt(x)}" Y="{_fmt(y)}" />\n')
            fh.write("\t\t\t</Coordinates>\n\t\t</Annotation>\n")
        fh.write("\t</Annotations>\n\t<AnnotationGroups>\n")
        for group, color in groups.items():
            fh.write(
                f'\t\t<Group Name={quoteattr(_xml_text(group))} PartOfGroup="None" Color="{color}">\n'
                "\t\t\t<Attributes />\n\t\t</Group>\n"
            )
        fh.write("\t</AnnotationGroups>\n</ASAP_Annotations>\n")

    return atomic_write_text(path, write, overwrite=overwrite)
