"""Annotation I/O: ASAP / CAMELYON16 XML and QuPath GeoJSON, layer conversion, rasterisation, clipping."""

from __future__ import annotations

import json
import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import InputFileError
from napari_patchdx.io.annotations.asap import write_asap_xml
from napari_patchdx.io.annotations.geojson import write_geojson
from napari_patchdx.io.annotations.model import (
    CLASS_COLORS,
    EXCLUSION,
    NORMAL,
    TUMOR,
    AnnotationSet,
    Region,
    canonical_label,
    class_color,
)
from napari_patchdx.io.annotations.polygon import points_in_polygon, points_in_ring, polygon_area
from napari_patchdx.io.annotations.raster import fill_polygon
from napari_patchdx.io.annotations.read import read_annotations
from napari_patchdx.layerdata.shapes import from_layer_data, to_layer_data

CAMELYON_XML = """<?xml version="1.0"?>
<ASAP_Annotations>
\t<Annotations>
\t\t<Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="1000.5" Y="2000.25" />
\t\t\t\t<Coordinate Order="2" X="1600" Y="2600" />
\t\t\t\t<Coordinate Order="1" X="1600" Y="2000.25" />
\t\t\t\t<Coordinate Order="3" X="1000.5" Y="2600" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 1" Type="Spline" PartOfGroup="_1" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="5000" Y="100" />
\t\t\t\t<Coordinate Order="1" X="5300.125" Y="150" />
\t\t\t\t<Coordinate Order="2" X="5100" Y="420.75" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 2" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="1200" Y="2200" />
\t\t\t\t<Coordinate Order="1" X="1300" Y="2200" />
\t\t\t\t<Coordinate Order="2" X="1300" Y="2300" />
\t\t\t\t<Coordinate Order="3" X="1200" Y="2300" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 3" Type="Dot" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="7000" Y="7000" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 4" Type="Rectangle" PartOfGroup="Stroma" Color="#00FF00">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="10" Y="20" />
\t\t\t\t<Coordinate Order="1" X="60" Y="20" />
\t\t\t\t<Coordinate Order="2" X="60" Y="90" />
\t\t\t\t<Coordinate Order="3" X="10" Y="90" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t</Annotations>
\t<AnnotationGroups>
\t\t<Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
\t\t<Group Name="_1" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
\t\t<Group Name="_2" PartOfGroup="None" Color="#00ff00"><Attributes /></Group>
\t\t<Group Name="Stroma" PartOfGroup="None" Color="#00ff00"><Attributes /></Group>
\t</AnnotationGroups>
</ASAP_Annotations>
"""


def _ring_xy_closed(ring_yx: list[list[float]]) -> list[list[float]]:
    xy = [[x, y] for y, x in ring_yx]
    return [*xy, xy[0]]


OUTER = [[0.0, 0.0], [0.0, 400.0], [300.0, 400.0], [300.0, 0.0]]  # (y, x)
HOLE = [[100.0, 100.0], [200.0, 100.0], [200.0, 200.0], [100.0, 200.0]]
PART_A = [[1000.0, 1000.0], [1000.0, 1100.5], [1080.25, 1050.0]]
PART_B = [[2000.0, 2000.0], [2000.0, 2200.0], [2150.0, 2100.0]]

QUPATH_GEOJSON = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "a1",
            "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(OUTER), _ring_xy_closed(HOLE)]},
            "properties": {
                "objectType": "annotation",
                "name": "lesion 1",
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [[_ring_xy_closed(PART_A)], [_ring_xy_closed(PART_B)]],
            },
            "properties": {"objectType": "annotation", "classification": {"name": "Ignore*", "colorRGB": -1}},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [5.0, 6.0]},
            "properties": {"classification": {"name": "Tumor"}},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(PART_A)]},
            "properties": {"classification": "Stroma", "name": "s"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(PART_B)]},
            "properties": None,
        },
    ],
}


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def _same_regions(a: AnnotationSet, b: AnnotationSet, *, groups: bool = True) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a.regions, b.regions, strict=True):
        np.testing.assert_array_equal(ra.exterior, rb.exterior)
        assert len(ra.holes) == len(rb.holes)
        for ha, hb in zip(ra.holes, rb.holes, strict=True):
            np.testing.assert_array_equal(ha, hb)
        assert (ra.label, ra.name) == (rb.label, rb.name)
        if groups:
            assert ra.group == rb.group


def _star(cy: float, cx: float, r: float, n: int = 720, wobble: float = 0.25, seed: int = 0) -> np.ndarray:
    """A large irregular (non-convex) polygon, (y, x)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    rad = r * (1 + wobble * np.sin(7 * t) + 0.05 * rng.standard_normal(n).cumsum() / np.sqrt(n))
    return np.c_[cy + rad * np.sin(t), cx + rad * np.cos(t)]


@pytest.fixture
def camelyon_xml(tmp_path: Path) -> Path:
    return _write(tmp_path / "tumor_001.xml", CAMELYON_XML)


@pytest.fixture
def qupath_geojson(tmp_path: Path) -> Path:
    return _write(tmp_path / "qupath.geojson", json.dumps(QUPATH_GEOJSON))


# ------------------------------------------------------------------------------------------- reading


def test_read_camelyon_xml(camelyon_xml: Path) -> None:
    with pytest.warns(UserWarning, match=r"tumor_001\.xml: skipped 1 annotation"):
        ann = read_annotations(camelyon_xml)
    assert ann.source == camelyon_xml
    assert len(ann) == 4
    r0, r1, r2, r4 = ann.regions
    # Sorted by Order and converted to (y, x).
    np.testing.assert_array_equal(
        r0.exterior, [[2000.25, 1000.5], [2000.25, 1600.0], [2600.0, 1600.0], [2600.0, 1000.5]]
    )
    np.testing.assert_array_equal(r1.exterior, [[100.0, 5000.0], [150.0, 5300.125], [420.75, 5100.0]])
    np.testing.assert_array_equal(r2.exterior, [[2200.0, 1200.0], [2200.0, 1300.0], [2300.0, 1300.0], [2300.0, 1200.0]])
    np.testing.assert_array_equal(r4.exterior, [[20.0, 10.0], [20.0, 60.0], [90.0, 60.0], [90.0, 10.0]])
    assert r0.exterior.dtype == np.float64 and r0.holes == ()
    assert [(r.label, r.name, r.group) for r in ann.regions] == [
        (TUMOR, "Annotation 0", "_0"),
        (TUMOR, "Annotation 1", "_1"),
        (EXCLUSION, "Annotation 2", "_2"),
        ("stroma", "Annotation 4", "Stroma"),
    ]
    assert [r.name for r in ann.positives] == ["Annotation 0", "Annotation 1", "Annotation 4"]
    assert [r.name for r in ann.exclusions] == ["Annotation 2"]
    assert ann.bounds() == (20.0, 10.0, 2600.0, 5300.125)
    np.testing.assert_allclose(ann.area(), [599.75 * 599.5, 0.5 * abs(300.125 * 320.75 - 100 * 50), 1e4, 3500.0])
    assert ann.labels == (TUMOR, EXCLUSION, "stroma")


def test_xml_group_hierarchy_missing_group_and_decimal_comma(tmp_path: Path) -> None:
    xml = """<ASAP_Annotations><Annotations>
      <Annotation Name="a" Type="Polygon" PartOfGroup="lesion A">
        <Coordinates><Coordinate Order="0" X="0,5" Y="0"/><Coordinate Order="1" X="10" Y="0"/>
        <Coordinate Order="2" X="10" Y="10"/></Coordinates></Annotation>
      <Annotation Name="b" Type="Polygon" PartOfGroup="None">
        <Coordinates><Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="10" Y="0"/>
        <Coordinate Order="2" X="10" Y="10"/><Coordinate Order="3" X="0" Y="0"/></Coordinates></Annotation>
      <Annotation Name="c" Type="Polygon" PartOfGroup="metastases">
        <Coordinates><Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="10" Y="0"/>
        <Coordinate Order="2" X="20" Y="0"/></Coordinates></Annotation>
    </Annotations><AnnotationGroups>
      <Group Name="lesion A" PartOfGroup="Exclusion"/><Group Name="Exclusion" PartOfGroup="None"/>
    </AnnotationGroups></ASAP_Annotations>"""
    path = _write(tmp_path / "groups.xml", xml)
    with pytest.warns(UserWarning) as record:
        ann = read_annotations(path)
    messages = [str(w.message) for w in record]
    assert any("groups.xml" in m and "decimal comma" in m for m in messages)
    assert any("groups.xml: skipped 1 annotation" in m for m in messages)  # c is collinear: zero area
    assert [(r.label, r.group) for r in ann.regions] == [(EXCLUSION, "lesion A"), (TUMOR, "None")]
    np.testing.assert_array_equal(ann.regions[0].exterior[0], [0.0, 0.5])
    assert len(ann.regions[1].exterior) == 3  # closing duplicate vertex dropped


def test_read_geojson_qupath(qupath_geojson: Path) -> None:
    with pytest.warns(UserWarning, match=r"qupath\.geojson: skipped 1 .*Point: 1"):
        ann = read_annotations(qupath_geojson)
    assert len(ann) == 5
    lesion, part_a, part_b, stroma, unclassified = ann.regions
    np.testing.assert_array_equal(lesion.exterior, OUTER)
    assert len(lesion.holes) == 1
    np.testing.assert_array_equal(lesion.holes[0], HOLE)
    assert (lesion.label, lesion.name, lesion.group) == (TUMOR, "lesion 1", "Tumor")
    assert lesion.area == pytest.approx(300 * 400 - 100 * 100)
    np.testing.assert_array_equal(part_a.exterior, PART_A)
    np.testing.assert_array_equal(part_b.exterior, PART_B)
    assert (part_a.label, part_a.group) == (part_b.label, part_b.group) == (EXCLUSION, "Ignore*")
    assert (stroma.label, stroma.name, stroma.group) == ("stroma", "s", "Stroma")
    assert (unclassified.label, unclassified.group) == (TUMOR, "")


def test_read_geojson_list_feature_geometry_and_other_class_keys(tmp_path: Path) -> None:
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(PART_A)]},
         "properties": {"class": "Metastasis"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(PART_B)]},
         "properties": {"label": "Exclusion"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(PART_B)]},
         "properties": {"classification": {"names": ["Tumour", "Positive"]}}},
    ]  # fmt: skip
    ann = read_annotations(_write(tmp_path / "list.json", json.dumps(features)))
    assert [(r.label, r.group) for r in ann.regions] == [
        (TUMOR, "Metastasis"),
        (EXCLUSION, "Exclusion"),
        (TUMOR, "Tumour: Positive"),
    ]
    single = read_annotations(_write(tmp_path / "single.geojson", json.dumps(features[1])))
    assert [r.label for r in single.regions] == [EXCLUSION]
    collection = {"type": "GeometryCollection", "geometries": [features[0]["geometry"], {"type": "LineString"}]}
    with pytest.warns(UserWarning, match=r"gc\.geojson: skipped 1 non-polygon geometry \(LineString: 1\)"):
        nested = read_annotations(_write(tmp_path / "gc.geojson", json.dumps(collection)))
    assert [r.label for r in nested.regions] == [TUMOR]
    bare = read_annotations(_write(tmp_path / "bare.geojson", json.dumps(features[0]["geometry"])))
    assert [r.label for r in bare.regions] == [TUMOR]
    np.testing.assert_array_equal(bare.regions[0].exterior, PART_A)


def test_format_is_decided_by_content_then_extension(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"really_xml\.json: skipped 1"):
        xml_as_json = read_annotations(_write(tmp_path / "really_xml.json", "\ufeff  \n" + CAMELYON_XML[22:]))
    assert len(xml_as_json) == 4
    json_as_txt = read_annotations(_write(tmp_path / "a.txt", "\n " + json.dumps(QUPATH_GEOJSON["features"][3])))
    assert [r.label for r in json_as_txt.regions] == ["stroma"]
    with pytest.raises(InputFileError, match=r"notes\.txt: not an annotation file"):
        read_annotations(_write(tmp_path / "notes.txt", "hello"))
    assert canonical_label(" TUMOUR ") == TUMOR and canonical_label("Ignore*") == EXCLUSION
    assert canonical_label("Immune cells") == "immune cells" and canonical_label("") == TUMOR


# -------------------------------------------------------------------------------------- round trips


def test_xml_layer_roundtrip_is_exact(camelyon_xml: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        original = read_annotations(camelyon_xml)
    data, features = to_layer_data(original)
    assert features["role"] == ["exterior"] * 4 and features["region"] == [0, 1, 2, 3]
    assert all(d.flags.writeable for d in data)
    rebuilt = from_layer_data(data, features, shape_types="polygon", source=camelyon_xml)
    _same_regions(original, rebuilt)
    out = write_asap_xml(rebuilt, tmp_path / "out.xml")
    assert out == tmp_path / "out.xml"
    again = read_annotations(out)
    _same_regions(original, again)


def test_geojson_roundtrip_is_exact(qupath_geojson: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        original = read_annotations(qupath_geojson)
    written = json.loads(write_geojson(original, tmp_path / "out.geojson").read_text())
    first = written["features"][0]
    assert first["properties"] == {
        "objectType": "annotation",
        "name": "lesion 1",
        "classification": {"name": "Tumor", "color": [200, 0, 0]},
    }
    assert first["geometry"]["coordinates"][0] == _ring_xy_closed(OUTER)
    assert written["features"][1]["properties"]["classification"]["name"] == "Exclusion"
    again = read_annotations(tmp_path / "out.geojson")
    _same_regions(original, again, groups=False)
    assert [r.group for r in again.regions] == ["Tumor", "Exclusion", "Exclusion", "Stroma", "Tumor"]
    # Irrational coordinates survive exactly (repr precision).
    ring = _star(500.0, 700.0, 300.0, n=50)
    exact = AnnotationSet([Region(ring, label="necrosis", name="n")])
    back = read_annotations(write_geojson(exact, tmp_path / "exact.geojson"))
    _same_regions(exact, back, groups=False)
    assert back.regions[0].group == "Necrosis"
    back_xml = read_annotations(write_asap_xml(exact, tmp_path / "exact.xml"))
    _same_regions(exact, back_xml, groups=False)


def test_xml_to_geojson_keeps_geometry(camelyon_xml: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        original = read_annotations(camelyon_xml)
    again = read_annotations(write_geojson(original, tmp_path / "c.geojson"))
    _same_regions(original, again, groups=False)
    assert [r.group for r in again.regions] == ["Tumor", "Tumor", "Exclusion", "Stroma"]


def test_asap_writer_turns_holes_into_exclusions(qupath_geojson: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        original = read_annotations(qupath_geojson)
    text = write_asap_xml(original, tmp_path / "h.xml").read_text()
    assert '<Group Name="_2" PartOfGroup="None"' in text and "lesion 1 hole 0" in text
    again = read_annotations(tmp_path / "h.xml")
    assert len(again) == len(original) + 1
    hole_region = again.regions[1]
    assert (hole_region.label, hole_region.group, hole_region.name) == (EXCLUSION, "_2", "lesion 1 hole 0")
    np.testing.assert_array_equal(hole_region.exterior, HOLE)
    assert [r.name for r in again.regions[2:]] == ["Annotation 1", "Annotation 2", "s", "Annotation 4"]
    np.testing.assert_array_equal(original.rasterize((600, 600), 4.0), again.rasterize((600, 600), 4.0))


# ---------------------------------------------------------------------------------- layer conversion


def test_layer_data_holes_user_shapes_ellipse_and_lines() -> None:
    region = Region(OUTER, (HOLE,), TUMOR, "r", "Tumor")
    data, features = to_layer_data(AnnotationSet([region]))
    assert features == {
        "label": [TUMOR, TUMOR],
        "name": ["r", "r"],
        "group": ["Tumor", "Tumor"],
        "role": ["exterior", "hole"],
        "region": [0, 0],
    }
    # The user draws more shapes; napari fills their features with the defaults we recommend.
    ellipse = np.array([[0.0, 0.0], [0.0, 200.0], [100.0, 200.0], [100.0, 0.0]])  # box corners (y, x)
    rect = np.array([[500.0, 500.0], [500.0, 510.0], [520.0, 510.0], [520.0, 500.0]])
    line = np.array([[0.0, 0.0], [50.0, 50.0]])
    orphan_hole = np.array([[1.0, 1.0], [1.0, 3.0], [3.0, 3.0]])
    data3d = [np.c_[np.zeros(len(a)), a] for a in [*data, ellipse, rect, line, orphan_hole]]  # (z, y, x)
    for key, default in {"label": "tumor", "name": "", "group": "", "role": "exterior", "region": -1}.items():
        features[key] += [default] * 4
    features["role"][-1] = "hole"
    features["region"][-1] = 7
    features["label"][3] = "Stroma"
    types = ["polygon", "polygon", "ellipse", "rectangle", "line", "polygon"]
    with pytest.warns(UserWarning) as record:
        ann = from_layer_data(data3d, features, types)
    messages = " | ".join(str(w.message) for w in record)
    assert "shapes layer: skipped 1 shape" in messages and "dropped 1 hole" in messages
    assert len(ann) == 3
    back, ell, box = ann.regions
    np.testing.assert_array_equal(back.exterior, OUTER)
    np.testing.assert_array_equal(back.holes[0], HOLE)
    assert len(ell.exterior) == 64 and ell.label == TUMOR
    np.testing.assert_allclose(ell.bounds, (0.0, 0.0, 100.0, 200.0))
    assert ell.area == pytest.approx(np.pi * 50 * 100, rel=2e-3)
    assert box.label == "stroma" and box.area == pytest.approx(200.0)

    # Without features every shape is a tumour region; a pandas DataFrame works as the features table.
    plain = from_layer_data([rect])
    assert [(r.label, r.holes) for r in plain.regions] == [(TUMOR, ())]
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(to_layer_data(AnnotationSet([region]))[1])
    _same_regions(AnnotationSet([region]), from_layer_data(data, df))
    with pytest.raises(ValueError, match="unsupported shape type"):
        from_layer_data([rect], shape_types=["star"])


# ----------------------------------------------------------------------------------- rasterisation


def test_rasterized_area_matches_polygon_area() -> None:
    ring = _star(700.0, 650.0, 500.0)
    ann = AnnotationSet([Region(ring)])
    area = ann.area()[0]
    assert area > 5e5
    full = ann.rasterize((1400, 1300), 1.0)
    assert full.dtype == bool and full.shape == (1400, 1300)
    assert full.sum() == pytest.approx(area, rel=0.01)
    coarse = ann.rasterize((350, 325), 4.0)
    assert coarse.sum() == pytest.approx(area / 16, rel=0.01)
    # A pixel is set exactly when its centre is inside: compare against an independent point test.
    ii, jj = np.mgrid[0:350:3, 0:325:3]
    centres = np.c_[(ii.ravel() + 0.5) * 4, (jj.ravel() + 0.5) * 4]
    inside = points_in_ring(centres, ring).reshape(ii.shape)
    assert inside.sum() > 1000
    assert (inside != coarse[::3, ::3]).sum() <= 1  # only centres lying exactly on an edge may differ


def test_rasterize_agrees_with_skimage_polygon_at_pixel_centres() -> None:
    from skimage.draw import polygon

    rng = np.random.default_rng(7)
    for _ in range(60):
        ring = rng.uniform(-50.0, 400.0, (int(rng.integers(3, 30)), 2))  # random, often self-intersecting
        ds = float(rng.choice([1.0, 2.5, 4.0, 16.0]))
        origin = (float(rng.uniform(-30, 30)), float(rng.uniform(-30, 30)))
        shape = (int(rng.integers(1, 100)), int(rng.integers(1, 100)))
        ours = AnnotationSet([Region(ring)]).rasterize(shape, ds, origin)
        rr, cc = polygon((ring[:, 0] - origin[0]) / ds - 0.5, (ring[:, 1] - origin[1]) / ds - 0.5, shape)
        ref = np.zeros(shape, dtype=bool)
        ref[rr, cc] = True
        np.testing.assert_array_equal(ours, ref)


def test_holes_and_exclusions_remove_their_area() -> None:
    outer = np.array([[0.0, 0.0], [0.0, 2000.0], [2000.0, 2000.0], [2000.0, 0.0]])
    hole = _star(600.0, 600.0, 300.0, seed=1)
    excl = _star(1400.0, 1300.0, 250.0, seed=2)
    solid = AnnotationSet([Region(outer)]).rasterize((2000, 2000), 1.0)
    holed = AnnotationSet([Region(outer, (hole,))])
    both = AnnotationSet([Region(outer, (hole,)), Region(excl, label=EXCLUSION)])
    assert solid.sum() == 4_000_000
    with_hole = holed.rasterize((2000, 2000), 1.0)
    assert solid.sum() - with_hole.sum() == pytest.approx(polygon_area(hole), rel=0.01)
    with_excl = both.rasterize((2000, 2000), 1.0)
    assert with_hole.sum() - with_excl.sum() == pytest.approx(polygon_area(excl), rel=0.01)
    assert not with_excl[1400, 1300] and not with_excl[600, 600] and with_excl[100, 1900]
    # Exclusions are removed from every class; asking for them gives their own mask.
    only_excl = both.rasterize((2000, 2000), 1.0, labels=["Exclusion"])
    assert only_excl.sum() == pytest.approx(polygon_area(excl), rel=0.01)
    assert not both.rasterize((2000, 2000), 1.0, labels=["stroma"]).any()


def test_origin_offset_moves_the_mask() -> None:
    ann = AnnotationSet([Region(_star(300.0, 400.0, 200.0))])
    ref = ann.rasterize((200, 250), 4.0)
    shifted = ann.rasterize((150, 150), 4.0, origin=(40.0, 80.0))
    np.testing.assert_array_equal(shifted, ref[10:160, 20:170])
    negative = ann.rasterize((220, 260), 4.0, origin=(-40.0, -32.0))
    np.testing.assert_array_equal(negative[10:210, 8:258], ref)
    assert not negative[:10].any() and not negative[:, :8].any()


def test_rasterize_memory_is_bounded_by_the_output() -> None:
    huge = AnnotationSet([Region(_star(5e5, 5e5, 4e5, n=200))])  # an 800k x 800k px region
    _ = huge.regions[0].bounds
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        far = huge.rasterize((512, 512), 1.0, origin=(5e7, 5e7))
        peak_far = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        inside = huge.rasterize((512, 512), 1.0, origin=(5e5, 5e5))
        peak_inside = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert not far.any()
    assert peak_far < far.nbytes + 8_000  # nothing but the output
    assert inside.all()
    # The output, one window (clipped to the output), one 64 KiB block and the per-vertex arrays.
    assert peak_inside < 3 * inside.nbytes + 65_536


def test_rasterize_labels_later_classes_win() -> None:
    tumor = Region([[0.0, 0.0], [0.0, 40.0], [40.0, 40.0], [40.0, 0.0]])
    stroma = Region([[20.0, 20.0], [20.0, 60.0], [60.0, 60.0], [60.0, 20.0]], label="stroma")
    excl = Region([[30.0, 0.0], [30.0, 10.0], [40.0, 10.0], [40.0, 0.0]], label=EXCLUSION)
    ann = AnnotationSet([stroma, tumor, excl])
    lab = ann.rasterize_labels((64, 64), 1.0, classes=["Tumor", "Stroma"])
    assert lab.dtype == np.uint8
    assert lab[5, 5] == 1 and lab[30, 30] == 2 and lab[50, 50] == 2 and lab[35, 5] == 0 and lab[62, 62] == 0
    assert np.count_nonzero(lab == 1) == 40 * 40 - 20 * 20 - 100
    np.testing.assert_array_equal(lab > 0, ann.rasterize((64, 64), 1.0))
    with pytest.raises(ValueError, match="downsample"):
        ann.rasterize((4, 4), 0.0)


def test_polygon_helpers_follow_the_rasterize_boundary_rule() -> None:
    square = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])
    # centre, top, left, top-left corner | bottom, right, bottom-right, top-right, bottom-left, outside
    points = [[5, 5], [0, 5], [5, 0], [0, 0], [10, 5], [5, 10], [10, 10], [0, 10], [10, 0], [-1, 5]]
    inside = points_in_polygon(points, square)
    assert inside.dtype == bool and inside.shape == (10,)
    assert inside.tolist() == [True] * 4 + [False] * 6
    np.testing.assert_array_equal(points_in_polygon(points, square[::-1]), inside)  # orientation is irrelevant
    assert points_in_polygon(np.empty((0, 2)), square).shape == (0,)
    assert polygon_area(square) == polygon_area(square[::-1]) == 100.0
    assert polygon_area(square[:2]) == 0.0
    assert polygon_area(square + 1e9) == 100.0  # relative coordinates keep far-away polygons exact

    # Integer vertices, horizontal / vertical / 45-degree edges, sampled at integer points: many samples lie
    # exactly on an edge, and the point test, the one-polygon fill and AnnotationSet.rasterize agree on all.
    rectilinear = np.array([[2, 2], [2, 9], [6, 9], [6, 15], [12, 15], [12, 5], [16, 5], [16, 2]], dtype=float)
    diagonal = np.array([[2, 2], [2, 9], [6, 13], [6, 17], [12, 17], [12, 11], [9, 8], [16, 8], [16, 2]], dtype=float)
    ii, jj = np.mgrid[0:20, 0:20]
    grid = np.c_[ii.ravel(), jj.ravel()]
    for ring in (rectilinear, diagonal):
        filled = fill_polygon(ring, (20, 20), 1.0, origin=(-0.5, -0.5))  # pixel (i, j) is centred on (i, j)
        assert filled.dtype == bool and filled.shape == (20, 20)
        np.testing.assert_array_equal(filled, AnnotationSet([Region(ring)]).rasterize((20, 20), 1.0, (-0.5, -0.5)))
        np.testing.assert_array_equal(filled, points_in_polygon(grid, ring).reshape(20, 20))
        np.testing.assert_array_equal(fill_polygon(ring * 4.0, (20, 20), 4.0, origin=(-2.0, -2.0)), filled)
        np.testing.assert_array_equal(fill_polygon(ring[::-1], (20, 20), 1.0, origin=(-0.5, -0.5)), filled)
    assert fill_polygon(rectilinear, (20, 20), 1.0, origin=(-0.5, -0.5)).sum() == polygon_area(rectilinear)
    assert not fill_polygon(square, (8, 8), 1.0, origin=(100.0, 0.0)).any()
    with pytest.raises(ValueError, match="N >= 3"):
        fill_polygon(square[:2], (4, 4))


# --------------------------------------------------------------------------------------- bad inputs

_BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ASAP_Annotations><Annotations><Annotation Name="&lol9;"/></Annotations></ASAP_Annotations>
"""
_XXE = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<ASAP_Annotations><Annotations><Annotation Name="&e;"/></Annotations></ASAP_Annotations>
"""
_BAD_COORD_XML = CAMELYON_XML.replace('X="5300.125"', 'X="abc"')


def _geo(ring: list, hole: list | None = None) -> str:
    feature_ok = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring_xy_closed(PART_A)]}}
    coords = [ring] if hole is None else [ring, hole]
    bad = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": coords}, "properties": {}}
    return json.dumps({"type": "FeatureCollection", "features": [feature_ok, bad]})


_SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]

BAD_FILES = {
    "empty.xml": (b"", "empty file"),
    "blank.geojson": (b"  \n\t", "white space"),
    "malformed.xml": ("<ASAP_Annotations><Annotations></ASAP_Annotations>", "malformed XML"),
    "xxe.xml": (_XXE, "refused"),
    "bomb.xml": (_BILLION_LAUGHS, "refused"),
    "wrong_root.xml": ("<svg><g/></svg>", "root element <svg>"),
    "coord.xml": (_BAD_COORD_XML, r"annotation 1 \('Annotation 1'\).*non-numeric X='abc'"),
    "invalid.json": ('{"type": "FeatureCollection", "features": [', "invalid JSON"),
    "not_geojson.geojson": ('{"hello": 1}', "not GeoJSON"),
    "member.geojson": ('{"type": "FeatureCollection", "features": [{"type": "Feature"}, 7]}', "feature 1 is not"),
    "unclosed.geojson": (_geo([[0, 0], [10, 0], [10, 10], [0, 10]]), "feature 1: .*not closed"),
    "few.geojson": (_geo([[0, 0], [10, 0], [0, 0]]), "feature 1: .*3 positions.*at least 4"),
    "nan.geojson": (_geo(_SQUARE).replace("[10, 10]", "[NaN, 10]"), "feature 1: .*non-finite"),
    "string.geojson": (_geo([[0, 0], [10, 0], ["10", 10], [0, 0]]), "feature 1: .*non-numeric"),
    "flat.geojson": (_geo([[0, 0], [10, 0], [20, 0], [0, 0]]), "feature 1: .*zero area"),
    "nesting.geojson": (_geo(_SQUARE, [[20, 20], [30, 20], [30, 30], [20, 20]]), "feature 1: .*wrong nesting"),
    "depth.geojson": (_geo([0, 0, 10, 0]), "feature 1: .*wrong nesting"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_input_file_error(tmp_path: Path, name: str) -> None:
    content, pattern = BAD_FILES[name]
    path = _write(tmp_path / name, content)
    with pytest.raises(InputFileError, match=pattern) as info:
        read_annotations(path)
    assert str(path) in str(info.value) and info.value.path == path


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.xml: file not found"):
        read_annotations(tmp_path / "nope.xml")
    with pytest.raises(InputFileError, match="directory"):
        read_annotations(tmp_path)


def test_region_validates_its_arrays() -> None:
    with pytest.raises(ValueError, match="finite"):
        Region([[0.0, 0.0], [0.0, np.nan], [1.0, 1.0]])
    with pytest.raises(ValueError, match="shape"):
        Region([[0.0, 0.0], [1.0, 1.0]])
    region = Region([[0, 0], [0, 1], [1, 1]])
    assert region.exterior.dtype == np.float64 and not region.exterior.flags.writeable


# ------------------------------------------------------------------------------------------ writers


def test_writer_into_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    ann = AnnotationSet([Region(OUTER)])
    for writer, name in ((write_asap_xml, "a.xml"), (write_geojson, "a.geojson")):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            writer(ann, tmp_path / "missing" / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", [write_asap_xml, write_geojson])
def test_failed_write_keeps_existing_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer) -> None:
    target = tmp_path / "keep.out"
    target.write_bytes(b"precious")
    ann = AnnotationSet([Region(OUTER), Region(HOLE), Region(PART_A)])
    writer_module = sys.modules[writer.__module__]  # each writer holds its own reference to ring_xy
    real = writer_module.ring_xy
    calls = {"n": 0}

    def failing(ring: np.ndarray) -> list[list[float]]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(ring)

    monkeypatch.setattr(writer_module, "ring_xy", failing)
    with pytest.raises(OSError, match="disk full"):
        writer(ann, target)
    assert calls["n"] == 2  # it failed mid-way, after writing part of the file
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.out"]
    monkeypatch.undo()
    with pytest.raises(FileExistsError):
        writer(ann, target, overwrite=False)
    writer(ann, target)
    assert len(read_annotations(target)) == 3


# --------------------------------------------------------------------------------------------- clip


def test_clip_to_image(tmp_path: Path) -> None:
    half_out = [[-100.0, 50.0], [-100.0, 150.0], [100.0, 150.0], [100.0, 50.0]]
    inside = Region([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0]])
    outside = Region([[2000.0, 2000.0], [2000.0, 2100.0], [2100.0, 2100.0]])
    path = tmp_path / "slide_7.geojson"
    ann = AnnotationSet([Region(half_out, label="stroma", name="h"), inside, outside], source=path)
    with pytest.warns(UserWarning, match=r"slide_7\.geojson: 2 of 3 .*1 clipped, 1 dropped"):
        clipped = ann.clip(1000, 1000)
    assert len(clipped) == 2 and clipped.source == path
    assert clipped.regions[1] is inside
    part = clipped.regions[0]
    assert (part.label, part.name) == ("stroma", "h")
    assert sorted(map(tuple, part.exterior.tolist())) == [(0.0, 50.0), (0.0, 150.0), (100.0, 50.0), (100.0, 150.0)]
    assert part.area == pytest.approx(100 * 100)
    assert clipped.bounds() == (0.0, 10.0, 100.0, 150.0)
    # A concave region clipped by the right edge keeps exactly its inside area.
    star = Region(_star(500.0, 950.0, 200.0))
    with pytest.warns(UserWarning, match="annotations \\(no file\\): 1 of 1"):
        (cut,) = AnnotationSet([star]).clip(1000, 1000).regions
    expected = AnnotationSet([star]).rasterize((1000, 1000), 1.0).sum()
    assert cut.area == pytest.approx(expected, rel=0.01)
    assert cut.bounds[3] == 1000.0


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "dots.xml",
            '<ASAP_Annotations><Annotations><Annotation Name="a" Type="Dot" PartOfGroup="_0"><Coordinates>'
            '<Coordinate Order="0" X="1" Y="2"/></Coordinates></Annotation></Annotations></ASAP_Annotations>',
        ),
        (
            "line.geojson",
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
            '"geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}}]}',
        ),
    ],
)
def test_a_file_with_nothing_usable_is_refused(tmp_path: Path, name: str, text: str) -> None:
    """Loaded as an empty ground truth, a tumour slide would train as normal: refuse, naming the file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputFileError, match=rf"{re.escape(name)}: nothing usable: all 1 .*enclose no area"):
        read_annotations(path)
    empty = tmp_path / "empty.xml"  # no annotation at all: an explicitly empty ground truth
    empty.write_text("<ASAP_Annotations><Annotations/></ASAP_Annotations>")
    assert len(read_annotations(empty).regions) == 0


# --------------------------------------------------------------------------------------- the "normal" class


def _square(y0: float, x0: float, side: float) -> np.ndarray:
    return np.array([[y0, x0], [y0, x0 + side], [y0 + side, x0 + side], [y0 + side, x0]])


def _three_classes() -> AnnotationSet:
    """A 40 x 40 tumour square (1600 px) overlapped by a 10 x 10 normal square (100 px) and a 10 x 20 exclusion
    (200 px), and a separate 20 x 20 normal square (400 px): pixel counts known exactly."""
    return AnnotationSet(
        [
            Region(_square(0.0, 0.0, 40.0), label=TUMOR, name="lesion"),
            Region(_square(0.0, 0.0, 10.0), label=NORMAL, name="inside"),  # 100 px of the tumour
            Region(np.array([[30.0, 0.0], [30.0, 20.0], [40.0, 20.0], [40.0, 0.0]]), label=EXCLUSION, name="cut"),
            Region(_square(60.0, 60.0, 20.0), label=NORMAL, name="apart"),
        ]
    )


def test_normal_synonyms_and_colours() -> None:
    for name in ("Normal", "negative", "Non-tumor", "NON-TUMOUR", " benign ", "Negative: Stroma"):
        assert canonical_label(name) == NORMAL, name
    assert canonical_label("Tumor: Negative") == TUMOR  # a QuPath derived class takes its base class
    assert CLASS_COLORS == {TUMOR: "#00e5ff", EXCLUSION: "#ffd400", NORMAL: "#34c759"}
    assert class_color("Benign") == class_color(NORMAL) == "#34c759" and class_color("_2") == "#ffd400"
    assert class_color("") == "#00e5ff"  # no class is tumour
    other = class_color("stroma")
    assert re.fullmatch("#[0-9a-f]{6}", other) and other == class_color("Stroma")
    assert other not in CLASS_COLORS.values()


def test_normal_regions_never_count_as_tumour() -> None:
    ann = _three_classes()
    assert [r.name for r in ann.positives] == ["lesion"]
    assert [r.name for r in ann.normals] == ["inside", "apart"]
    assert len(ann.exclusions) == 1
    tumour = ann.rasterize((100, 100), 1.0)
    assert tumour.sum() == 1600 - 100 - 200
    assert not tumour[5, 5] and not tumour[35, 5] and tumour[20, 20] and not tumour[70, 70]
    normal = ann.rasterize((100, 100), 1.0, labels=["Normal"])  # asked for: painted, exclusions still cut out
    assert normal.sum() == 100 + 400 and normal[5, 5] and normal[70, 70]
    both = ann.rasterize((100, 100), 1.0, labels=[TUMOR, NORMAL])
    assert both.sum() == 1600 - 200 + 400
    assert ann.rasterize((100, 100), 1.0, labels=[TUMOR, EXCLUSION]).sum() == 1600 - 100  # normal still cut
    # at downsample 10 each output pixel is one 10 x 10 block: the normal block (0, 0) is no tumour
    coarse = ann.rasterize((10, 10), 10.0)
    assert coarse.sum() == 16 - 1 - 2 and not coarse[0, 0]


def test_rasterize_labels_treats_normal_like_exclusion_unless_asked() -> None:
    ann = _three_classes()
    lab = ann.rasterize_labels((100, 100), 1.0, classes=[TUMOR])
    np.testing.assert_array_equal(lab == 1, ann.rasterize((100, 100), 1.0))
    lab = ann.rasterize_labels((100, 100), 1.0, classes=["tumor", "normal"])
    assert (lab == 1).sum() == 1600 - 100 - 200 and (lab == 2).sum() == 100 + 400
    assert lab[5, 5] == 2 and lab[35, 5] == 0 and lab[70, 70] == 2


def test_an_annotation_set_of_only_normal_regions_has_no_positives() -> None:
    only_normal = AnnotationSet([Region(_square(0.0, 0.0, 40.0), label=NORMAL)])
    assert only_normal.positives == [] and len(only_normal.normals) == 1
    assert not only_normal.rasterize((50, 50), 1.0).any()


@pytest.mark.parametrize(
    ("suffix", "writer", "written_class"), [(".xml", write_asap_xml, "normal"), (".geojson", write_geojson, "Normal")]
)
def test_normal_class_round_trips_through_both_formats(tmp_path: Path, suffix: str, writer, written_class) -> None:
    ann = _three_classes()
    path = writer(ann, tmp_path / f"truth{suffix}")
    text = path.read_text()
    if suffix == ".xml":
        assert text.count('PartOfGroup="normal"') == 2 and '<Group Name="normal"' in text
        assert 'Color="#2E9AFE"' in text  # normal is blue in ASAP (tumour yellow, exclusion green)
    else:
        classes = [f["properties"]["classification"] for f in json.loads(text)["features"]]
        assert [c["name"] for c in classes] == ["Tumor", written_class, "Exclusion", written_class]
        assert classes[1]["color"] == [52, 199, 89]
    back = read_annotations(path)
    assert [r.label for r in back.regions] == [TUMOR, NORMAL, EXCLUSION, NORMAL]
    assert [r.name for r in back.normals] == ["inside", "apart"]
    _same_regions(ann, back, groups=False)
    np.testing.assert_array_equal(back.rasterize((100, 100), 1.0), ann.rasterize((100, 100), 1.0))
    # a QuPath file naming the class "Negative" or "Benign" reads as normal and writes back its own name
    other = tmp_path / f"benign{suffix}"
    writer(AnnotationSet([Region(_square(0.0, 0.0, 5.0), label=NORMAL, group="Benign")]), other)
    (region,) = read_annotations(other).regions
    assert (region.label, region.group) == (NORMAL, "Benign")


def test_layer_features_may_be_categorical() -> None:
    """napari's features table edits the class in a categorical column; a missing class is tumour."""
    pd = pytest.importorskip("pandas")
    data, features = to_layer_data(_three_classes())
    frame = pd.DataFrame(features)
    frame["label"] = pd.Categorical(frame["label"], categories=["tumor", "exclusion", "normal"])
    frame.loc[0, "label"] = "normal"  # the user turns the lesion into normal tissue
    frame.loc[3, "label"] = np.nan  # and clears a class
    back = from_layer_data(data, frame)
    assert [r.label for r in back.regions] == [NORMAL, NORMAL, EXCLUSION, TUMOR]
    as_mapping = {k: (pd.Categorical(v) if k == "label" else v) for k, v in features.items()}
    assert [r.label for r in from_layer_data(data, as_mapping).regions] == [TUMOR, NORMAL, EXCLUSION, NORMAL]
    with_na = pd.DataFrame({"label": pd.array([pd.NA, "Benign"], dtype="string")})
    squares = [_square(0.0, 0.0, 5.0), _square(10.0, 10.0, 5.0)]
    assert [r.label for r in from_layer_data(squares, with_na).regions] == [TUMOR, NORMAL]
