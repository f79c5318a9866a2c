"""Layer builders for heatmaps and CAMs (no viewer): placement, metadata, and reading the files infer writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx.errors import InputFileError
from napari_patchdx.geometry import Grid, level0_to_world
from napari_patchdx.io.detect import detect_kind, float_map_kind
from napari_patchdx.io.float_maps import write_float_image
from napari_patchdx.io.names import float_map_sidecar
from napari_patchdx.layerdata import cam_file_layers, cam_layers, heatmap_file_layers, heatmap_layer, layers_for_paths


def _world(kwargs: dict, index: tuple[float, float]) -> np.ndarray:
    """World coordinate of data index ``index`` of a layer built with ``kwargs`` (napari: index * scale + translate)."""
    scale = np.asarray(kwargs.get("scale", (1.0, 1.0)), dtype=np.float64)
    translate = np.asarray(kwargs.get("translate", (0.0, 0.0)), dtype=np.float64)
    return np.asarray(index, dtype=np.float64) * scale + translate


def test_heatmap_layer_cells_land_on_their_level0_blocks() -> None:
    grid = Grid((5, 7), (96.0, 96.0), (32.0, 16.0), 0.25)
    heatmap = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    heatmap[0, 0] = np.nan
    data, kwargs, kind = heatmap_layer(heatmap, grid, slide=Path("/data/case_001.tif"))
    assert kind == "image" and data is heatmap  # float32 is used as is (a widget fills it in place)
    assert kwargs["name"] == "case_001 heatmap"
    assert kwargs["contrast_limits"] == [0.0, 1.0] and kwargs["colormap"] == "inferno" and kwargs["opacity"] == 0.5
    assert kwargs["units"] == ("um", "um")
    meta = kwargs["metadata"]["patchdx"]
    assert meta["kind"] == "heatmap" and Grid.from_dict(meta["grid"]) == grid and meta["slide"] == "/data/case_001.tif"
    for r, c in [(0, 0), (2, 5), (4, 6)]:
        centre = np.array([32.0 + (r + 0.5) * 96.0, 16.0 + (c + 0.5) * 96.0])  # level-0 (y, x) of the block centre
        np.testing.assert_allclose(_world(kwargs, (r, c)), level0_to_world(centre, 0.25))
    with pytest.raises(ValueError, match="does not match its grid"):
        heatmap_layer(heatmap[:4], grid)


def test_heatmap_layer_without_mpp_is_in_level0_pixels() -> None:
    grid = Grid((3, 3), (64.0, 64.0))
    _, kwargs, _ = heatmap_layer(np.zeros((3, 3), np.float32), grid)
    assert kwargs["units"] == ("pixel", "pixel") and kwargs["name"] == "heatmap"
    np.testing.assert_allclose(_world(kwargs, (1, 2)), level0_to_world([96.0, 160.0]))


class _Prediction:
    def __init__(self, cams: np.ndarray, probabilities: list[float], classes: tuple[str, ...], source: Path | None):
        self.cams, self.probabilities, self.classes, self.source = cams, np.asarray(probabilities), classes, source


def test_cam_layers_one_per_class_with_probabilities() -> None:
    cams = np.stack([np.full((6, 4), v, np.float32) + np.arange(4) for v in (0.0, 1.0, 2.0)])
    prediction = _Prediction(cams, [0.2, 0.9, 0.5], ("nodule", "effusion", "mass"), Path("/x/img_7.png"))
    layers = cam_layers(prediction, spacing=(0.2, 0.3))
    assert [layer[2] for layer in layers] == ["image"] * 3
    names = [layer[1]["name"] for layer in layers]
    assert names == ["img_7 CAM nodule (p=0.20)", "img_7 CAM effusion (p=0.90)", "img_7 CAM mass (p=0.50)"]
    assert [layer[1]["visible"] for layer in layers] == [False, True, False]  # the most probable class shows
    for k, (data, kwargs, _) in enumerate(layers):
        np.testing.assert_array_equal(data, cams[k])
        meta = kwargs["metadata"]["patchdx"]
        assert meta["kind"] == "cam" and meta["class"] == prediction.classes[k]
        assert meta["probability"] == pytest.approx(prediction.probabilities[k])
        assert meta["probabilities"] == pytest.approx({"nodule": 0.2, "effusion": 0.9, "mass": 0.5})
        assert kwargs["scale"] == (0.2, 0.3) and "translate" not in kwargs  # the X-ray layer's frame
        assert kwargs["contrast_limits"] == [float(cams[k].min()), float(cams[k].max())]
    flat = cam_layers(_Prediction(np.zeros((1, 3, 3), np.float32), [0.5], ("a",), None))
    assert flat[0][1]["contrast_limits"] == [0.0, 1.0] and "scale" not in flat[0][1]
    assert flat[0][1]["name"] == "x-ray CAM a (p=0.50)"
    with pytest.raises(ValueError, match="2 classes"):
        cam_layers(_Prediction(np.zeros((1, 3, 3), np.float32), [0.5, 0.5], ("a", "b"), None))


def _write_heatmap_pair(folder: Path, name: str, heatmap: np.ndarray, grid: Grid, **extra) -> Path:
    path = folder / f"{name}.ome.tif"
    write_float_image(path, heatmap)
    sidecar = {"format": "napari-patchdx-heatmap", "version": 1, "grid": grid.to_dict(), **extra}
    (folder / f"{name}.json").write_text(json.dumps(sidecar))
    return path


def test_float_maps_routed_by_name_and_sidecar(tmp_path: Path) -> None:
    grid = Grid((4, 6), (128.0, 128.0), (0.0, 0.0), 0.5)
    heatmap = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    named = _write_heatmap_pair(tmp_path, "slide_a.heatmap", heatmap, grid, slide="/s/slide_a.tif")
    custom = _write_heatmap_pair(tmp_path, "my map", heatmap, grid)
    plain = tmp_path / "plain.ome.tif"
    write_float_image(plain, heatmap)
    assert float_map_sidecar(named) == tmp_path / "slide_a.heatmap.json"
    assert float_map_sidecar(tmp_path / "x.OME.TIFF") == tmp_path / "x.json"
    assert float_map_sidecar(tmp_path / "x.tif") is None
    assert detect_kind(named) == "heatmap" and detect_kind(custom) == "heatmap"
    assert float_map_kind(plain) is None and detect_kind(plain) == "cxr"  # a float TIFF without sidecar
    [(data, kwargs, kind)] = layers_for_paths([named])
    assert kind == "image" and kwargs["name"] == "slide_a heatmap"
    np.testing.assert_array_equal(data, heatmap)
    assert Grid.from_dict(kwargs["metadata"]["patchdx"]["grid"]) == grid
    assert kwargs["metadata"]["patchdx"]["slide"] == "/s/slide_a.tif"
    assert kwargs["scale"] == grid.napari()["scale"] and kwargs["translate"] == grid.napari()["translate"]
    assert heatmap_file_layers(custom)[0][1]["name"] == "my map heatmap"


def test_broken_float_maps_are_named_errors(tmp_path: Path) -> None:
    heatmap = np.zeros((4, 6), np.float32)
    lonely = tmp_path / "lonely.heatmap.ome.tif"
    write_float_image(lonely, heatmap)
    assert detect_kind(lonely) == "heatmap"  # named like a heatmap: its reader explains what is missing
    with pytest.raises(InputFileError, match=r"lonely\.heatmap\.ome\.tif.*lonely\.heatmap\.json is missing"):
        heatmap_file_layers(lonely)
    wrong = _write_heatmap_pair(tmp_path, "wrong.heatmap", heatmap, Grid((5, 6), (8.0, 8.0)))
    with pytest.raises(InputFileError, match=r"wrong\.heatmap\.ome\.tif.*does not match its grid"):
        heatmap_file_layers(wrong)
    (tmp_path / "nogrid.heatmap.json").write_text('{"format": "napari-patchdx-heatmap"}')
    write_float_image(tmp_path / "nogrid.heatmap.ome.tif", heatmap)
    with pytest.raises(InputFileError, match=r"nogrid\.heatmap\.json.*no valid heatmap grid"):
        heatmap_file_layers(tmp_path / "nogrid.heatmap.ome.tif")
    cam = tmp_path / "img.cam.ome.tif"
    write_float_image(cam, np.zeros((2, 5, 5), np.float32))
    with pytest.raises(InputFileError, match=r"img\.cam\.json is missing"):
        cam_file_layers(cam)
    (tmp_path / "img.cam.json").write_text(
        json.dumps({"format": "napari-patchdx-cam", "classes": ["a"], "probabilities": [0.5], "shape": [5, 5]})
    )
    with pytest.raises(InputFileError, match=r"img\.cam\.ome\.tif.*1 classes"):
        cam_file_layers(cam)


def test_cam_file_from_infer_opens_aligned_to_its_xray(tmp_path: Path) -> None:
    from napari_patchdx.inference.xray import CxrPrediction, save_cxr_prediction
    from napari_patchdx.io import detect
    from napari_patchdx.io.names import CAM_FORMAT, HEATMAP_FORMAT
    from napari_patchdx.layerdata import cxr_file_layers
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    assert (detect.HEATMAP_FORMAT, detect.CAM_FORMAT) == (HEATMAP_FORMAT, CAM_FORMAT)  # one format, two modules
    cohort = make_cxr_cohort(tmp_path / "cxr", n=1, seed=4, size=96, dicom=False)
    png = cohort.png_path(cohort.images[0])
    (image, xray_kwargs, _), _truth = cxr_file_layers(png)
    assert xray_kwargs["metadata"]["patchdx"]["spacing"] is not None  # the synthetic PNGs carry pHYs spacing
    cams = np.random.default_rng(2).normal(size=(2, *image.shape)).astype(np.float32)
    prediction = CxrPrediction(("nodule", "mass"), np.array([0.3, 0.8], np.float32), cams, image.shape, png)
    saved = save_cxr_prediction(prediction, tmp_path / "infer")
    assert detect_kind(saved) == "cam"
    layers = layers_for_paths([saved])
    assert [kw["metadata"]["patchdx"]["class"] for _, kw, _ in layers] == ["nodule", "mass"]
    for k, (data, kwargs, _) in enumerate(layers):
        np.testing.assert_array_equal(data, cams[k])
        assert kwargs["scale"] == xray_kwargs["scale"]  # the spacing comes from the source X-ray
        assert kwargs["metadata"]["patchdx"]["probability"] == pytest.approx(float(prediction.probabilities[k]))
    assert layers[1][1]["name"] == f"{png.name.split('.')[0]} CAM mass (p=0.80)"


# --------------------------------------------------------------------------------------- ground-truth layers


def test_annotation_layer_offers_the_classes_and_colours_each_shape() -> None:
    from napari_patchdx.io.annotations.model import AnnotationSet, Region
    from napari_patchdx.layerdata import CLASS_COLORS, DRAW_CLASSES, annotation_layer, class_color

    square = np.array([[0.0, 0.0], [0.0, 800.0], [400.0, 800.0], [400.0, 0.0]])
    regions = [
        Region(square, label="tumor"),
        Region(square + 1000, label="normal"),
        Region(square + 2000, label="exclusion"),
        Region(square + 3000, label="stroma"),
    ]
    data, kwargs, kind = annotation_layer(AnnotationSet(regions), 0.25, name="gt", slide_path=Path("/s/a.tif"))
    assert kind == "shapes" and len(data) == 4 and kwargs["ndim"] == 2
    labels = kwargs["features"]["label"]
    assert str(labels.dtype) == "category" and list(labels) == ["tumor", "normal", "exclusion", "stroma"]
    assert tuple(labels.cat.categories) == (*DRAW_CLASSES, "stroma") == ("tumor", "exclusion", "normal", "stroma")
    assert kwargs["feature_defaults"]["label"] == "tumor" and kwargs["feature_defaults"]["region"] == -1
    assert kwargs["edge_color"] == ["#00e5ff", "#34c759", "#ffd400", class_color("stroma")]
    assert CLASS_COLORS["normal"] == "#34c759"
    assert kwargs["edge_width"] == pytest.approx(3800 / 400)  # 1/400 of the annotations' extent
    meta = kwargs["metadata"]["patchdx"]
    assert meta == {"kind": "annotations", "frame": "level0", "mpp": 0.25, "source": None, "slide": "/s/a.tif"}
    np.testing.assert_allclose(_world(kwargs, (400.0, 800.0)), level0_to_world([400.0, 800.0], 0.25))
    assert annotation_layer(AnnotationSet(regions[:1]), None)[1]["metadata"]["patchdx"]["slide"] is None


def test_unannotated_slide_opens_with_an_empty_ground_truth_layer(tmp_path: Path) -> None:
    from napari_patchdx.io.slides.open import open_slide
    from napari_patchdx.layerdata import empty_annotation_layer, slide_file_layers
    from napari_patchdx.synth.wsi.slide import make_slide

    plain = make_slide(tmp_path / "plain.tif", height=1200, width=2000, mpp=0.5, seed=1, tumor=False).path
    assert not plain.with_suffix(".xml").exists()
    (_, slide_kwargs, _), (data, kwargs, kind) = slide_file_layers(plain)
    assert kind == "shapes" and data == [] and kwargs["name"] == "plain ground truth"
    assert kwargs["ndim"] == 2 and kwargs["shape_type"] == "polygon"
    assert len(kwargs["features"]) == 0 and str(kwargs["features"]["label"].dtype) == "category"
    assert tuple(kwargs["features"]["label"].cat.categories) == ("tumor", "exclusion", "normal")
    assert kwargs["feature_defaults"]["label"] == "tumor" and kwargs["edge_color"] == "#00e5ff"
    assert kwargs["edge_width"] == pytest.approx(2000 / 400)
    meta = kwargs["metadata"]["patchdx"]
    assert meta == {"kind": "annotations", "frame": "level0", "mpp": 0.5, "source": None, "slide": str(plain)}
    # the slide's frame: the continuous level-0 centre (y + 0.5, x + 0.5) of pixel (y, x) lands on that pixel
    for y, x in ((0, 0), (1199, 1999)):
        np.testing.assert_allclose(_world(kwargs, (y + 0.5, x + 0.5)), _world(slide_kwargs, (y, x)))
        np.testing.assert_allclose(_world(kwargs, (y + 0.5, x + 0.5)), level0_to_world([y + 0.5, x + 0.5], 0.5))
    with open_slide(plain, mpp=0.25) as slide:
        named = empty_annotation_layer(slide, "mine")[1]
    assert named["name"] == "mine" and named["metadata"]["patchdx"]["mpp"] == 0.25
    # a broken annotation file beside the slide: a warning names it, and the layer is still there to draw in
    plain.with_suffix(".xml").write_text("<ASAP_Annotations><Annotations>")
    with pytest.warns(UserWarning, match=r"plain\.xml: ground truth not shown"):
        layers = slide_file_layers(plain)
    assert [kw["name"] for _, kw, _ in layers] == ["plain", "plain ground truth"] and layers[1][0] == []


def test_annotated_slide_opens_with_its_ground_truth(tmp_path: Path) -> None:
    from napari_patchdx.io.annotations.read import read_annotations
    from napari_patchdx.layerdata import slide_file_layers
    from napari_patchdx.synth.wsi.slide import make_slide

    made = make_slide(tmp_path / "case.tif", height=1536, width=1536, mpp=0.5, seed=2, tumor=True)
    (_, (data, kwargs, _)) = slide_file_layers(made.path)
    truth = read_annotations(made.path.with_suffix(".xml"))
    assert len(data) == len(truth.regions) and kwargs["name"] == "case ground truth"
    meta = kwargs["metadata"]["patchdx"]
    assert meta["slide"] == str(made.path) and meta["source"] == str(made.path.with_suffix(".xml"))
