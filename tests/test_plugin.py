"""The npe2 plugin: manifest, reader routing, reading through npe2, writers and sample data (no viewer)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
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
    }
    assert {s.key for s in pm.contributions.sample_data} == {"slide", "cxr"}


def test_get_reader_returns_none_and_never_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.xml").write_text("<root><child/></root>")
    (tmp_path / "dir.tif").mkdir()
    for candidate in ["notes.txt", "other.xml", "missing.svs", "missing.png", "dir.tif"]:
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
    with pytest.warns(UserWarning), pytest.raises(InputFileError, match=r"points\.geojson.*no polygon"):
        read([path], stack=False, plugin_name="napari-patchdx")


def test_slides_in_folder_pairs_ground_truth(wsi_cohort) -> None:
    from napari_patchdx.io.detect import slides_in_folder

    pairs = slides_in_folder(wsi_cohort.root)
    assert sorted(p.name for p, _ in pairs) == sorted(s.path.name for s in wsi_cohort.slides)
    truth = {p.stem: a for p, a in pairs}
    for s in wsi_cohort.slides:
        assert truth[s.path.stem] == (s.path.with_suffix(".xml") if s.label == "tumor" else None)
