"""A slide's ground truth: its tumour and exclusion annotations, and the size and merge group of each lesion."""

from __future__ import annotations

from collections.abc import Sequence

from ...io.annotations.model import EXCLUSION, TUMOR, AnnotationSet, Region
from ...io.annotations.polygon import points_in_polygon, polygon_area
from .data_model import ITC_MAX_EXTENT_UM, MERGE_DISTANCE_UM, Lesion, SlideSpec
from .polygons import polygon_extent, polygon_gap


def slide_lesions(spec: SlideSpec, kinds: Sequence[str], contrast: Sequence[float] = ()) -> list[Lesion]:
    """One :class:`Lesion` per tumour polygon of ``spec`` (``kinds`` gives each one's kind, ``contrast`` its
    contrast, all 1 when empty), in order.

    Tumours whose edges are closer than :data:`MERGE_DISTANCE_UM` share a merge group.
    """
    um = 1.0 / spec.mpp
    n = len(spec.tumors)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if polygon_gap(spec.tumors[i], spec.tumors[j]) < MERGE_DISTANCE_UM * um:
                parent[find(i)] = find(j)
    roots: dict[int, int] = {}
    out = []
    for i, poly in enumerate(spec.tumors):
        group = roots.setdefault(find(i), len(roots))
        extent = polygon_extent(poly) * spec.mpp
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        out.append(
            Lesion(
                name=f"Annotation {i}",
                kind=kinds[i],
                centre=(float(poly[:, 0].mean()), float(poly[:, 1].mean())),
                bbox=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                extent_um=extent,
                area_um2=polygon_area(poly) * spec.mpp**2,
                is_itc=extent < ITC_MAX_EXTENT_UM,
                merge_group=group,
                has_exclusion=any(points_in_polygon(e, poly).all() for e in spec.exclusions),
                contrast=float(contrast[i]) if contrast else 1.0,
            )
        )
    return out


def slide_annotations(spec: SlideSpec) -> AnnotationSet:
    """The slide's annotations: tumours (group ``_0``) then exclusions (group ``_2``), as the XML holds them."""
    regions = [Region(p, label=TUMOR, name=f"Annotation {i}", group="_0") for i, p in enumerate(spec.tumors)]
    k = len(regions)
    regions += [
        Region(p, label=EXCLUSION, name=f"Annotation {k + i}", group="_2") for i, p in enumerate(spec.exclusions)
    ]
    return AnnotationSet(regions)
