"""The one output-name rule (io.names): every stage names a file's outputs the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_patchdx.io.detect import annotations_beside
from napari_patchdx.io.names import (
    POINTS_FOLDER,
    annotation_candidates,
    cam_paths,
    file_name,
    float_map_name,
    float_map_sidecar,
    heatmap_paths,
    points_paths,
)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("a/case_01.svs", "case_01"),
        ("case_01.ome.tif", "case_01"),
        ("case_01.OME.TIFF", "case_01"),
        ("case.v2.tif", "case.v2"),
        ("x-ray.png", "x-ray"),
        ("scan.dcm", "scan"),
        (".ome.tif", ".ome"),  # nothing before the double suffix: treated as an ordinary name
    ],
)
def test_file_name_treats_ome_tif_as_one_suffix(path: str, name: str) -> None:
    assert file_name(path) == name


def test_outputs_are_named_after_the_file_name(tmp_path: Path) -> None:
    slide = tmp_path / "s1.ome.tiff"
    heat = heatmap_paths(tmp_path / "infer", file_name(slide))
    assert heat["final"].name == "s1.heatmap.ome.tif" and heat["sidecar"].name == "s1.heatmap.json"
    assert float_map_name(heat["final"]) == "s1.heatmap" and float_map_sidecar(heat["final"]) == heat["sidecar"]
    cams = cam_paths(tmp_path, "img")
    assert (cams["final"].name, cams["sidecar"].name) == ("img.cam.ome.tif", "img.cam.json")
    assert float_map_sidecar(cams["final"]) == cams["sidecar"]
    assert {k: p.name for k, p in points_paths(tmp_path, "s1").items()} == {"csv": "s1.csv", "geojson": "s1.geojson"}
    in_evaluation = points_paths(tmp_path / "evaluate" / POINTS_FOLDER, file_name(slide))
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in in_evaluation.items()} == {
        "csv": "evaluate/points/s1.csv",
        "geojson": "evaluate/points/s1.geojson",
    }
    assert float_map_name(tmp_path / "plain.tif") is None and float_map_sidecar(tmp_path / "plain.tif") is None


def test_ground_truth_beside_an_ome_tiff_slide(tmp_path: Path) -> None:
    slide = tmp_path / "s1.ome.tif"
    assert [p.name for p in annotation_candidates(slide)] == ["s1.xml", "s1.geojson"]
    assert annotations_beside(slide) is None
    (tmp_path / "s1.geojson").write_text("{}")
    assert annotations_beside(slide) == tmp_path / "s1.geojson"
    (tmp_path / "s1.xml").write_text("<ASAP_Annotations/>")
    assert annotations_beside(slide) == tmp_path / "s1.xml"  # ASAP XML first
