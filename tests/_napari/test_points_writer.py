"""Lesion points leave napari: a Points layer saves as a CAMELYON16 CSV and as QuPath GeoJSON detections, in level-0
pixels, through napari's own save path (``viewer.layers.save(path, selected=True)``, what *File > Save Selected
Layers* calls with the writer chosen in the dialog).

The slide is a real synthetic pyramid opened with the plugin's reader; positions and probabilities are known, so
every written number is checked against its expected value and against where the viewer draws the point.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Layer

from napari_patchdx import ConfigError, read_annotations
from napari_patchdx.evaluation import PointsTable
from napari_patchdx.layerdata import points_layer

pytestmark = pytest.mark.gui

MPP = 0.5  # the slide's microns per level-0 pixel

# lesion points as (probability, (y, x)) in continuous level-0 pixels; written most probable first
POINTS = [(0.3, (100.25, 300.75)), (0.9, (900.5, 50.0)), (0.6, (37.0, 1500.9))]
GEOJSON_XY = [[50.0, 900.5], [1500.9, 37.0], [300.75, 100.25]]  # [x, y], most probable first
CSV_TEXT = "0.9,50,900\n0.6,1500,37\n0.3,300,100\n"  # probability,X,Y: the level-0 pixel holding each point


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024 x 1536 px synthetic slide at 0.5 um/px (no ground truth beside it)."""
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("points_writer")
    return make_slide(root / "case.tif", height=1024, width=1536, mpp=MPP, seed=1, tumor=False).path


@pytest.fixture(scope="module")
def fine_slide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second slide at 0.25 um/px (another pixel size)."""
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("points_writer_fine")
    return make_slide(root / "fine.tif", height=512, width=512, mpp=0.25, seed=2, tumor=False).path


def _viewer_with_slide(make_napari_viewer, slide: Path):
    viewer = make_napari_viewer()
    layer = viewer.open(str(slide), plugin="napari-patchdx")[0]
    assert layer.metadata["patchdx"]["kind"] == "slide" and layer.metadata["patchdx"]["mpp"] == MPP
    return viewer, layer


def _select(viewer, layer) -> None:
    viewer.layers.selection.clear()
    viewer.layers.selection.add(layer)


def _save(viewer, path: Path, **kwargs) -> list[str]:
    """napari's save path for the selected layer (``plugin`` picks our writer where napari has its own)."""
    return viewer.layers.save(str(path), selected=True, **kwargs)


def _detections(path: Path) -> list[dict]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["type"] == "FeatureCollection"
    for feature in document["features"]:
        assert feature["geometry"]["type"] == "Point"
        assert feature["properties"]["objectType"] == "detection"
        p = feature["properties"]["measurements"]["probability"]
        assert feature["properties"]["probability"] == p
    return document["features"]


def test_lesion_points_layer_saves_as_geojson_and_camelyon_csv(make_napari_viewer, slide_path, tmp_path) -> None:
    viewer, slide = _viewer_with_slide(make_napari_viewer, slide_path)
    table = PointsTable(
        y=[yx[0] for _, yx in POINTS], x=[yx[1] for _, yx in POINTS], probability=[p for p, _ in POINTS]
    )
    layer = viewer.add_layer(Layer.create(*points_layer(table, MPP, name="case lesion points")))
    _select(viewer, layer)

    geojson = tmp_path / "case.geojson"
    assert _save(viewer, geojson) == [str(geojson)]  # .geojson + a Points layer: our detections writer
    features = _detections(geojson)
    assert [f["geometry"]["coordinates"] for f in features] == GEOJSON_XY
    assert [f["properties"]["measurements"]["probability"] for f in features] == [0.9, 0.6, 0.3]
    assert {f["properties"]["classification"]["name"] for f in features} == {"Tumor"}

    csv = tmp_path / "case.csv"
    assert _save(viewer, csv, plugin="napari-patchdx") == [str(csv)]  # napari has a .csv points writer too
    assert csv.read_text() == CSV_TEXT

    # what is written is where the viewer draws it: a level-0 point (y, x) sits on slide pixel (y - 0.5, x - 0.5)
    for feature, point in zip(features, layer.data, strict=True):  # the layer holds them most probable first
        x, y = feature["geometry"]["coordinates"]
        on_slide = np.asarray(slide.world_to_data(layer.data_to_world(point)))[:2]
        np.testing.assert_allclose(on_slide, [y - 0.5, x - 0.5])


def test_a_layer_showing_the_top_points_warns_and_writes_what_it_shows(
    make_napari_viewer, slide_path, tmp_path
) -> None:
    viewer, _ = _viewer_with_slide(make_napari_viewer, slide_path)
    table = PointsTable(
        y=[yx[0] for _, yx in POINTS], x=[yx[1] for _, yx in POINTS], probability=[p for p, _ in POINTS]
    )
    layer = viewer.add_layer(Layer.create(*points_layer(table, MPP, top_k=2, name="top two")))
    _select(viewer, layer)
    csv = tmp_path / "top.csv"
    with pytest.warns(UserWarning, match=r"holds 2 of its slide's 3 lesion points"):
        assert _save(viewer, csv, plugin="napari-patchdx") == [str(csv)]
    assert csv.read_text() == "".join(CSV_TEXT.splitlines(keepends=True)[:2])


def test_points_added_by_hand_over_a_slide_save_in_its_pixels(make_napari_viewer, slide_path, tmp_path) -> None:
    """A Points layer the user adds (no plugin metadata, its own scale and translate) takes the frame of the slide
    it lies over: world micrometres / 0.5 um/px -> level-0 pixels; probability 1.0 without a probability feature.
    The frame is recorded when the layer is inserted (so it saves after the slide is closed), and found from the
    slide it lies over when it was not."""
    viewer, slide = _viewer_with_slide(make_napari_viewer, slide_path)
    marks = viewer.add_points(
        np.array([[400.0, 800.0], [10.0, 20.0]]), scale=(0.25, 0.25), translate=(10.0, 20.0), name="my marks"
    )
    assert marks.metadata["patchdx"] == {"mpp": MPP, "slide": str(slide_path)}  # tagged when inserted
    marks.metadata = {}  # as a layer added before the plugin was active: found at saving time
    _select(viewer, marks)
    geojson, csv = tmp_path / "marks.geojson", tmp_path / "marks.csv"
    assert _save(viewer, geojson) == [str(geojson)]
    assert _save(viewer, csv, plugin="napari-patchdx") == [str(csv)]
    # world (400 * 0.25 + 10, 800 * 0.25 + 20) = (110, 220) um -> level-0 (220.5, 440.5); (12.5, 25) -> (25.5, 50.5)
    features = _detections(geojson)
    assert [f["geometry"]["coordinates"] for f in features] == [[440.5, 220.5], [50.5, 25.5]]
    assert [f["properties"]["measurements"]["probability"] for f in features] == [1.0, 1.0]
    assert csv.read_text() == "1.0,440,220\n1.0,50,25\n"
    on_slide = np.asarray(slide.world_to_data(marks.data_to_world(marks.data[0])))[:2]
    np.testing.assert_allclose(on_slide, [220.0, 440.0])  # slide pixel (220, 440), centre (220.5, 440.5)

    # napari's "new points layer" from the selected slide copies its scale (0.5 um); with a probability feature
    picked = viewer.add_points(
        np.array([[100.0, 200.0]]), scale=slide.scale, translate=slide.translate, features={"probability": [0.7]}
    )
    _select(viewer, picked)
    assert _save(viewer, tmp_path / "picked.csv", plugin="napari-patchdx")
    assert (tmp_path / "picked.csv").read_text() == "0.7,200,100\n"  # pixel (row 100, col 200) of the slide


def test_shapes_and_points_route_to_their_own_geojson_writer(make_napari_viewer, slide_path, tmp_path) -> None:
    """One extension, two writers: a Shapes layer becomes polygon annotations, a Points layer detections."""
    viewer, _ = _viewer_with_slide(make_napari_viewer, slide_path)
    square = np.array([[10.0, 10.0], [10.0, 60.0], [60.0, 60.0], [60.0, 10.0]])  # world um
    drawn = viewer.add_shapes([square], shape_type="polygon", name="drawn")
    _select(viewer, drawn)
    assert _save(viewer, tmp_path / "drawn.geojson") == [str(tmp_path / "drawn.geojson")]
    regions = read_annotations(tmp_path / "drawn.geojson").regions
    np.testing.assert_allclose(regions[0].exterior.min(axis=0), [20.5, 20.5])  # 10 um / 0.5 um/px + 0.5
    np.testing.assert_allclose(regions[0].exterior.max(axis=0), [120.5, 120.5])
    marks = viewer.add_points(square, name="corners")
    _select(viewer, marks)
    assert _save(viewer, tmp_path / "corners.geojson") == [str(tmp_path / "corners.geojson")]
    assert len(_detections(tmp_path / "corners.geojson")) == 4


def test_points_of_unknown_frame_are_refused_with_the_reason(
    make_napari_viewer, slide_path, fine_slide_path, tmp_path
) -> None:
    from napari_patchdx._napari.writers import points_to_table

    viewer, _ = _viewer_with_slide(make_napari_viewer, slide_path)
    far = viewer.add_points(np.array([[1e6, 1e6]]), name="far away")
    _select(viewer, far)
    target = tmp_path / "far.geojson"
    # napari's save path reports a writer's ValueError as "no data written"; the reason comes as a warning
    with (
        pytest.warns(UserWarning, match="No data written"),
        pytest.warns(UserWarning, match=r"layer 'far away'.* lies over no slide"),
    ):
        assert _save(viewer, target) == []
    assert not target.exists()

    turned = viewer.add_points(np.array([[10.0, 10.0]]), rotate=30, name="turned")
    with pytest.raises(ConfigError, match=r"layer 'turned' is rotated"):
        points_to_table(turned.data, turned.as_layer_data_tuple()[1], viewer)

    viewer.open(str(fine_slide_path), plugin="napari-patchdx")  # 0.25 um/px, over the same world origin
    both = viewer.add_points(np.array([[20.0, 20.0]]), name="on both")
    with pytest.raises(ConfigError, match=r"different pixel sizes \('case': 0.5 um/px, 'fine': 0.25 um/px\)"):
        points_to_table(both.data, both.as_layer_data_tuple()[1], viewer)
    # the layer's own metadata settles it
    both.metadata = {"patchdx": {"mpp": 0.25}}
    np.testing.assert_allclose(points_to_table(both.data, both.as_layer_data_tuple()[1], viewer).yx, [[80.5, 80.5]])


def test_points_outside_a_viewer_are_refused(tmp_path) -> None:
    from napari_patchdx._napari.writers import write_points_csv

    attributes = {"name": "loose", "scale": (1.0, 1.0), "translate": (0.0, 0.0), "metadata": {}}
    with pytest.warns(UserWarning, match="cannot tell the level-0 pixel size"), pytest.raises(ConfigError):
        write_points_csv(str(tmp_path / "loose.csv"), np.array([[1.0, 2.0]]), attributes)
    assert not (tmp_path / "loose.csv").exists()
    # a layer that says its frame needs no viewer: world in level-0 pixels
    attributes["metadata"] = {"patchdx": {"frame": "world_px"}}
    write_points_csv(str(tmp_path / "px.csv"), np.array([[1.0, 2.0]]), attributes)
    assert (tmp_path / "px.csv").read_text() == "1.0,2,1\n"  # world (1, 2) px -> level-0 (1.5, 2.5)
