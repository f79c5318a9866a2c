"""The npe2 plugin: manifest, reader routing, reading through npe2, writers and sample data (no viewer)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from npe2 import PluginManager, PluginManifest
from npe2.io_utils import read, write

from napari_patchdx import read_annotations
from napari_patchdx._napari.reader import napari_get_reader
from napari_patchdx.geometry import level0_to_world


@pytest.fixture(autouse=True, scope="module")
def _discover_plugins() -> None:
    """napari discovers plugins when it starts; tests that use npe2 directly must do it themselves."""
    PluginManager.instance().discover()
    assert "napari-patchdx" in PluginManager.instance()._manifests


def test_manifest_validates_and_every_command_imports() -> None:
    pm = PluginManifest.from_distribution("napari-patchdx")
    assert pm.name == "napari-patchdx"
    pm.validate_imports()
    for command in pm.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id
    assert {r.command for r in pm.contributions.readers} == {"napari-patchdx.get_reader"}
    assert {w.command for w in pm.contributions.writers} == {
        "napari-patchdx.write_asap_xml",
        "napari-patchdx.write_geojson",
        "napari-patchdx.write_float_ometiff",
        "napari-patchdx.write_points_csv",
        "napari-patchdx.write_points_geojson",
    }
    assert {s.key for s in pm.contributions.sample_data} == {"slide", "cxr"}


def test_get_reader_returns_none_and_never_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.xml").write_text("<root><child/></root>")
    (tmp_path / "dir.tif").mkdir()
    (tmp_path / "dir.heatmap.ome.tif").mkdir()
    (tmp_path / "map.heatmap.json").write_text("{not json")
    candidates = ["notes.txt", "other.xml", "missing.svs", "missing.png", "dir.tif", "missing.heatmap.ome.tif"]
    for candidate in [*candidates, "dir.heatmap.ome.tif", "map.heatmap.json", "missing.cam.ome.tif"]:
        assert napari_get_reader(str(tmp_path / candidate)) is None, candidate
    assert napari_get_reader([str(tmp_path / "notes.txt"), str(tmp_path / "other.xml")]) is None
    assert napari_get_reader(123) is None  # type: ignore[arg-type]
    assert napari_get_reader([]) is None


def test_tif_routed_by_content(tmp_path: Path, ihc_slide: Path) -> None:
    plain = tmp_path / "xray.tif"
    tifffile.imwrite(plain, (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16))
    [(data, kwargs, kind)] = read([plain], stack=False, plugin_name="napari-patchdx")
    assert kind == "image" and data.shape == (64, 64) and kwargs["metadata"]["patchdx"]["kind"] == "cxr"
    layers = read([ihc_slide], stack=False, plugin_name="napari-patchdx")
    assert layers[0][1]["multiscale"] is True and layers[0][1]["metadata"]["patchdx"]["kind"] == "slide"


def test_slide_with_ground_truth_through_npe2(wsi_cohort) -> None:
    slide = next(s for s in wsi_cohort.slides if s.label == "tumor")
    layers = read([slide.path], stack=False, plugin_name="napari-patchdx")
    assert [layer[2] for layer in layers] == ["image", "shapes"]
    pyramid, image_kwargs, _ = layers[0]
    assert image_kwargs["rgb"] and image_kwargs["multiscale"] and image_kwargs["contrast_limits"] == [0, 255]
    assert pyramid[0].shape == (slide.height, slide.width, 3)
    assert image_kwargs["scale"] == (slide.mpp, slide.mpp) and image_kwargs["units"] == ("um", "um")
    shapes, shape_kwargs, _ = layers[1]
    truth = read_annotations(slide.path.with_suffix(".xml"))
    assert len(shapes) >= len(truth.regions)
    np.testing.assert_allclose(shapes[0], truth.regions[0].exterior)
    # world coordinates of a vertex: slide pixel (i, j) is centred on world (i, j) * mpp
    vertex = truth.regions[0].exterior[0]
    world = np.asarray(shape_kwargs["scale"]) * vertex + np.asarray(shape_kwargs["translate"])
    np.testing.assert_allclose(world, level0_to_world(vertex, slide.mpp))


def test_annotation_file_alone_aligns_with_sibling_slide(wsi_cohort) -> None:
    slide = next(s for s in wsi_cohort.slides if s.label == "tumor")
    [(_, kwargs, kind)] = read([slide.path.with_suffix(".xml")], stack=False, plugin_name="napari-patchdx")
    assert kind == "shapes" and kwargs["scale"] == (slide.mpp, slide.mpp)


def test_writers_round_trip_through_npe2(tmp_path: Path, wsi_cohort) -> None:
    slide = next(s for s in wsi_cohort.slides if s.label == "tumor")
    shapes = read([slide.path], stack=False, plugin_name="napari-patchdx")[1]
    truth = read_annotations(slide.path.with_suffix(".xml"))
    for suffix in (".xml", ".geojson"):
        [written] = write(tmp_path / f"out{suffix}", [shapes], plugin_name="napari-patchdx")
        back = read_annotations(written)
        assert len(back.positives) == len(truth.positives)
        for a, b in zip(back.positives, truth.positives, strict=True):
            np.testing.assert_allclose(a.exterior, b.exterior)
            assert a.label == b.label


def test_sample_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from napari_patchdx._napari import sample_data

    monkeypatch.setattr(sample_data, "_cache_dir", lambda: tmp_path)
    slide_layers = sample_data.sample_slide()
    assert [layer[2] for layer in slide_layers] == ["image", "shapes"]
    assert len(slide_layers[1][0]) > 0
    cxr_layers = sample_data.sample_cxr()
    assert [layer[2] for layer in cxr_layers] == ["image", "shapes"]
    image = cxr_layers[0][0]
    assert image.dtype == np.float32 and image.shape == (1024, 1024) and 0 <= image.min() < image.max() <= 1
    assert set(cxr_layers[1][1]["features"]["class"]) == {"nodule", "pleural_effusion"}


def test_writer_refuses_layer_of_unknown_frame(tmp_path: Path) -> None:
    from napari_patchdx import ConfigError
    from napari_patchdx._napari.writers import shapes_to_annotations

    square = [np.array([[0.0, 0.0], [0.0, 100.0], [100.0, 100.0], [100.0, 0.0]])]
    with pytest.raises(ConfigError, match="cannot tell the level-0 pixel size"):
        shapes_to_annotations(square, {"name": "drawn", "scale": (0.5, 0.5), "metadata": {}})
    # world in micrometres with the slide's mpp given: 100 um = 200 level-0 px at 0.5 um/px
    ann = shapes_to_annotations(square, {"name": "drawn", "metadata": {"patchdx": {"mpp": 0.5}}})
    np.testing.assert_allclose(ann.regions[0].exterior.max(axis=0), [200.5, 200.5])


def test_points_only_geojson_is_a_clear_error(tmp_path: Path) -> None:
    from napari_patchdx import InputFileError

    path = tmp_path / "points.geojson"
    path.write_text('{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}}')
    with pytest.raises(InputFileError, match=r"points\.geojson: nothing usable: all 1 geometry enclose no area"):
        read([path], stack=False, plugin_name="napari-patchdx")


def test_slides_in_folder_pairs_ground_truth(wsi_cohort) -> None:
    from napari_patchdx.io.detect import slides_in_folder

    pairs = slides_in_folder(wsi_cohort.root)
    assert sorted(p.name for p, _ in pairs) == sorted(s.path.name for s in wsi_cohort.slides)
    truth = {p.stem: a for p, a in pairs}
    for s in wsi_cohort.slides:
        assert truth[s.path.stem] == (s.path.with_suffix(".xml") if s.label == "tumor" else None)


# ------------------------------------------------------------------------------------------ heatmaps and CAMs


class _DarkCentre(torch.nn.Module):
    """A cheap slide "model": a high logit where the patch centre is dark (no training, deterministic)."""

    def forward(self, x):
        c = x.shape[-1] // 4
        return ((0.6 - x[:, :, c:-c, c:-c].mean(dim=(1, 2, 3))) * 20)[:, None]


@pytest.fixture(scope="module")
def heatmap_file(tmp_path_factory: pytest.TempPathFactory):
    """A heatmap written by infer.slide_heatmap_job for a small synthetic slide (with NaN outside tissue)."""
    from napari_patchdx.inference.heatmaps import slide_heatmap_job
    from napari_patchdx.progress import run_job
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("heat")
    slide = make_slide(root / "tiny.tif", height=1024, width=1024, mpp=1.0, seed=2, tile=256, tumor=False)
    meta = {"input_size": 32, "center_size": 32, "mpp": None, "classes": ["tumor"], "normalization": {"mode": "unit"}}
    result = run_job(slide_heatmap_job(slide.path, (_DarkCentre(), meta), root / "infer", tta=False))
    assert np.isnan(result.heatmap).any() and np.isfinite(result.heatmap).any()
    return slide, result


def test_heatmap_from_infer_opens_aligned_through_npe2(heatmap_file) -> None:
    slide, result = heatmap_file
    assert napari_get_reader(str(result.path)) is not None
    [(data, kwargs, kind)] = read([result.path], stack=False, plugin_name="napari-patchdx")
    assert kind == "image" and kwargs["name"] == "tiny heatmap"
    np.testing.assert_array_equal(data, result.heatmap)
    [(_, slide_kwargs, _)] = read([slide.path], stack=False, plugin_name="napari-patchdx")[:1]
    # cell (r, c) centre == the slide layer's world coordinate of its level-0 block centre
    step = result.grid.spacing[0]
    for r, c in [(0, 0), (3, 11), (31, 31)]:
        cell = np.array([r, c]) * kwargs["scale"] + kwargs["translate"]
        block_centre = np.array([(r + 0.5) * step, (c + 0.5) * step])  # continuous level-0 (y, x)
        slide_index = block_centre - 0.5  # slide layer data index whose pixel centre is that point
        np.testing.assert_allclose(cell, slide_index * slide_kwargs["scale"] + slide_kwargs["translate"])


def test_heatmap_writer_round_trip_through_npe2(heatmap_file, tmp_path: Path) -> None:
    _, result = heatmap_file
    layer = read([result.path], stack=False, plugin_name="napari-patchdx")[0]
    written = write(tmp_path / "saved.ome.tif", [layer], plugin_name="napari-patchdx")
    assert [Path(p).name for p in written] == ["saved.ome.tif", "saved.json"]
    side = json.loads((tmp_path / "saved.json").read_text())
    assert side["format"] == "napari-patchdx-heatmap" and side["grid"] == result.grid.to_dict()
    with tifffile.TiffFile(tmp_path / "saved.ome.tif") as tif:  # the OME pixel size is the cell size in um
        assert f'PhysicalSizeX="{result.grid.spacing[1] * result.grid.mpp}"' in tif.ome_metadata
    [(data, kwargs, kind)] = read([tmp_path / "saved.ome.tif"], stack=False, plugin_name="napari-patchdx")
    assert kind == "image" and kwargs["metadata"]["patchdx"]["kind"] == "heatmap"
    np.testing.assert_array_equal(data, result.heatmap)  # NaN where it was NaN, the same values elsewhere
    assert kwargs["scale"] == layer[1]["scale"] and kwargs["translate"] == layer[1]["translate"]


def test_moved_heatmap_layer_is_saved_where_it_is_shown(heatmap_file, tmp_path: Path) -> None:
    from napari_patchdx._napari.writers import write_float_ometiff

    _, result = heatmap_file
    data, kwargs, _ = read([result.path], stack=False, plugin_name="napari-patchdx")[0]
    moved = dict(kwargs, translate=(kwargs["translate"][0] + 8.0, kwargs["translate"][1] - 4.0))
    write_float_ometiff(str(tmp_path / "moved.ome.tif"), data, moved)
    [(_, back, _)] = read([tmp_path / "moved.ome.tif"], stack=False, plugin_name="napari-patchdx")
    np.testing.assert_allclose(back["translate"], moved["translate"])
    np.testing.assert_allclose(back["scale"], kwargs["scale"])
    # a float layer of our own making: world in micrometres at a given mpp
    plain = {"name": "mine", "scale": (16.0, 16.0), "translate": (7.875, 7.875), "metadata": {"patchdx": {"mpp": 0.25}}}
    write_float_ometiff(str(tmp_path / "mine.ome.tif"), np.ones((3, 4), np.float32), plain)
    [(_, mine, _)] = read([tmp_path / "mine.ome.tif"], stack=False, plugin_name="napari-patchdx")
    assert mine["metadata"]["patchdx"]["grid"] == {"shape": [3, 4], "spacing": [64.0, 64.0], "origin": [0.0, 0.0],
                                                   "mpp": 0.25}  # fmt: skip
    np.testing.assert_allclose(mine["translate"], plain["translate"])


def test_cam_writer_round_trip_through_npe2(tmp_path: Path) -> None:
    from napari_patchdx.inference.xray import CxrPrediction
    from napari_patchdx.layerdata import cam_layers

    cams = np.random.default_rng(5).normal(size=(2, 30, 20)).astype(np.float32)
    prediction = CxrPrediction(("nodule", "mass"), np.array([0.1, 0.7], np.float32), cams, (30, 20), None)
    layers = cam_layers(prediction, name="chest", spacing=(0.15, 0.15))
    [written, sidecar] = write(tmp_path / "mass.ome.tif", [layers[1]], plugin_name="napari-patchdx")
    side = json.loads(Path(sidecar).read_text())
    assert side["classes"] == ["mass"] and side["probabilities"] == [pytest.approx(0.7)]
    [(data, kwargs, _)] = read([written], stack=False, plugin_name="napari-patchdx")
    np.testing.assert_array_equal(data, cams[1])
    meta = kwargs["metadata"]["patchdx"]
    assert meta["kind"] == "cam" and meta["class"] == "mass" and meta["probability"] == pytest.approx(0.7)
    assert kwargs["scale"] == (0.15, 0.15)


def test_float_writer_refuses_what_it_cannot_place(tmp_path: Path) -> None:
    from napari_patchdx import ConfigError
    from napari_patchdx._napari.writers import write_float_ometiff

    out = str(tmp_path / "x.ome.tif")
    with pytest.raises(ConfigError, match=r"'labels'.*uint8 data is not a float map"):
        write_float_ometiff(out, np.zeros((4, 4), np.uint8), {"name": "labels"})
    with pytest.raises(ConfigError, match=r"'drawn'.*place on a slide is unknown"):
        write_float_ometiff(out, np.zeros((4, 4), np.float32), {"name": "drawn", "metadata": {}})
    with pytest.raises(ConfigError, match=r"'rgb'.*RGB"):
        write_float_ometiff(out, np.zeros((4, 4, 3), np.float32), {"name": "rgb", "rgb": True})
    with pytest.raises(ConfigError, match=r"'h'.*<name>\.ome\.tif"):
        write_float_ometiff(str(tmp_path / "x.tif"), np.zeros((4, 4), np.float32), {"name": "h"})
    with pytest.raises(ConfigError, match=r"'cam'.*'class' and 'probability'"):
        write_float_ometiff(
            out, np.zeros((4, 4), np.float32), {"name": "cam", "metadata": {"patchdx": {"kind": "cam"}}}
        )
    assert not list(tmp_path.iterdir())  # nothing written
