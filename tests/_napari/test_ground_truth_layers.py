"""napari builds the ground-truth layers the reader returns: an unannotated slide opens with an empty, correctly framed
Shapes layer; what is drawn in it saves in level-0 pixels, and a shape whose class is set to "normal" in the layer's
features saves as a normal region that never counts as tumour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx.geometry import level0_to_world
from napari_patchdx.io.annotations.model import NORMAL, TUMOR
from napari_patchdx.io.annotations.raster import fill_polygon
from napari_patchdx.io.annotations.read import read_annotations

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("error:Private attribute access")]

MPP = 0.5


@pytest.fixture(scope="module")
def plain_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic slide without tumour, so without an annotation file: 640 x 896 px at 0.5 um/px."""
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("plain")
    path = make_slide(root / "plain.tif", height=640, width=896, mpp=MPP, seed=7, tile=128, tumor=False).path
    assert not path.with_suffix(".xml").exists() and not path.with_suffix(".geojson").exists()
    return path


def _save_selected(viewer, layer, path: Path) -> None:
    viewer.layers.selection.clear()
    viewer.layers.selection.add(layer)
    written = viewer.layers.save(str(path), selected=True, plugin="napari-patchdx")
    assert [Path(p) for p in written] == [path] and path.is_file()


def test_unannotated_slide_opens_with_an_empty_framed_ground_truth_layer(
    make_napari_viewer, plain_slide: Path, tmp_path: Path
) -> None:
    from napari.layers import Image, Shapes

    viewer = make_napari_viewer()
    opened = viewer.open(str(plain_slide), plugin="napari-patchdx")
    assert [layer.name for layer in opened] == ["plain", "plain ground truth"]
    slide, truth = viewer.layers["plain"], viewer.layers["plain ground truth"]
    assert isinstance(slide, Image) and isinstance(truth, Shapes)
    assert truth.nshapes == 0 and truth.ndim == 2
    assert truth.metadata["patchdx"]["slide"] == str(plain_slide) and truth.metadata["patchdx"]["mpp"] == MPP
    assert truth.current_edge_width == pytest.approx(896 / 400)  # level-0 pixels, 1/400 of the longer side
    assert str(truth.features["label"].dtype) == "category"
    assert list(truth.features["label"].cat.categories) == ["tumor", "exclusion", "normal"]

    # The slide's frame: level-0 pixel (y, x), centred on continuous (y + 0.5, x + 0.5), lands on the slide's pixel.
    for y, x in ((0, 0), (639, 895), (100, 700)):
        np.testing.assert_allclose(truth.data_to_world([y + 0.5, x + 0.5]), slide.data_to_world([y, x]))
    np.testing.assert_allclose(slide.extent.world[1] - slide.extent.world[0], [640 * MPP, 896 * MPP], atol=MPP)

    # Draw a tumour polygon in DATA coordinates (level-0 pixels): the world is micrometres, px * mpp.
    tumour = np.array([[100.0, 120.0], [100.0, 360.0], [300.0, 360.0], [300.0, 120.0]])
    truth.add_polygons([tumour])
    assert truth.nshapes == 1 and truth.features["label"].tolist() == [TUMOR]  # a new shape is tumour
    world = np.array([truth.data_to_world(v) for v in tumour])
    np.testing.assert_allclose(world, level0_to_world(tumour, MPP))  # (px - 0.5) * mpp: the pixel-centre rule
    np.testing.assert_allclose(world[2] - world[0], [200 * MPP, 240 * MPP])  # 200 x 240 px = 100 x 120 um

    _save_selected(viewer, truth, tmp_path / "x.xml")
    (region,) = read_annotations(tmp_path / "x.xml").regions
    assert region.label == TUMOR
    np.testing.assert_array_equal(region.exterior, tumour)  # level-0 pixels, exactly

    # A second shape, set to "normal" through the layer's features (what the Features table's drop-down does).
    normal = np.array([[400.0, 500.0], [400.0, 800.0], [600.0, 800.0], [600.0, 500.0]])
    truth.add_polygons([normal])
    features = truth.features.copy()
    features.loc[1, "label"] = NORMAL
    truth.features = features
    assert truth.features["label"].tolist() == [TUMOR, NORMAL]
    _save_selected(viewer, truth, tmp_path / "y.xml")
    saved = read_annotations(tmp_path / "y.xml")
    assert [r.label for r in saved.regions] == [TUMOR, NORMAL] and len(saved.normals) == 1
    np.testing.assert_array_equal(saved.normals[0].exterior, normal)
    mask = saved.rasterize((640, 896), 1.0)
    np.testing.assert_array_equal(mask, fill_polygon(tumour, (640, 896)))  # the normal region is not tumour
    assert mask.sum() == 200 * 240 and not mask[500, 650]
    assert saved.rasterize((640, 896), 1.0, labels=[NORMAL]).sum() == 200 * 300

    _save_selected(viewer, truth, tmp_path / "y.geojson")  # QuPath GeoJSON: classification "Normal"
    classes = [
        f["properties"]["classification"]["name"] for f in json.loads((tmp_path / "y.geojson").read_text())["features"]
    ]
    assert classes == ["Tumor", "Normal"]
    assert [r.label for r in read_annotations(tmp_path / "y.geojson").regions] == [TUMOR, NORMAL]
