"""Lesion points leave the evaluate stage twice: the CAMELYON16 CSV and, beside it, QuPath GeoJSON detections.

The evaluate stage (:func:`napari_patchdx.evaluation.evaluate_slides`, the pipeline's stage and the
``napari-patchdx evaluate`` command all run the same job) writes ``points/<name>.csv`` and ``points/<name>.geojson``
for every slide; both hold the same points, most probable first, in level-0 pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from napari_patchdx.evaluation import PointsTable, evaluate_slides, read_camelyon_csv
from napari_patchdx.io.names import POINTS_FOLDER, points_paths

from .test_evaluate import build_slide_case

# tumor_a's lesion points (build_slide_case): the centres of its hot heatmap cells, (y, x) in level-0 pixels
TUMOR_A_YX = [(448.0, 448.0), (1600.0, 1600.0), (1856.0, 320.0), (704.0, 704.0)]
TUMOR_A_P = [float(np.float32(p)) for p in (0.9, 0.8, 0.7, 0.6)]


def _detections(path: Path) -> list[dict]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["type"] == "FeatureCollection"
    return document["features"]


def _assert_geojson_matches_csv(geojson: Path, csv: Path) -> None:
    """Same points in the same order: the CSV holds the level-0 pixel holding each GeoJSON point."""
    features = _detections(geojson)
    table = read_camelyon_csv(csv)
    assert len(features) == len(table)
    for feature, p, x, y in zip(features, table.probability, table.x, table.y, strict=True):
        gx, gy = feature["geometry"]["coordinates"]
        assert feature["geometry"]["type"] == "Point"
        assert (math.floor(gx), math.floor(gy)) == (x, y)
        props = feature["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Tumor"
        assert props["measurements"] == {"probability": p} and props["probability"] == p


def test_evaluate_writes_geojson_beside_the_csv(tmp_path: Path) -> None:
    case = build_slide_case(tmp_path)
    out = tmp_path / "evaluate"
    metrics = evaluate_slides(case["slides"], case["heatmaps"], out, n_boot=10, thumbnails=False)
    for name in ("tumor_a", "normal_a", "normal_b"):
        where = points_paths(out / POINTS_FOLDER, name)
        assert where["geojson"].is_file(), name
        _assert_geojson_matches_csv(where["geojson"], where["csv"])
        assert metrics["files"]["points"][name] == f"points/{name}.csv"
        assert metrics["files"]["points_geojson"][name] == f"points/{name}.geojson"

    tumour = _detections(out / "points" / "tumor_a.geojson")
    assert [f["geometry"]["coordinates"] for f in tumour] == [[x, y] for y, x in TUMOR_A_YX]  # [x, y]
    assert [f["properties"]["measurements"]["probability"] for f in tumour] == TUMOR_A_P
    # the edge cell's point, moved onto the slide (the middle of the cell's on-slide part), in both files
    [edge] = _detections(out / "points" / "normal_a.geojson")
    assert edge["geometry"]["coordinates"] == [960.0, 1940.0]
    assert (out / "points" / "normal_a.csv").read_text() == f"{float(np.float32(0.55))!r},960,1940\n"
    assert json.loads((out / "metrics.json").read_text())["files"]["points_geojson"]["normal_b"] == (
        "points/normal_b.geojson"
    )
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_empty_table_writes_an_empty_collection(tmp_path: Path) -> None:
    path = PointsTable.empty().to_geojson(tmp_path / "none.geojson")
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}


def test_cli_evaluate_writes_the_same_geojson(tmp_path: Path) -> None:
    from napari_patchdx import cli

    case = build_slide_case(tmp_path)
    api_out, cli_out = tmp_path / "api", tmp_path / "cli"
    evaluate_slides(case["slides"], case["heatmaps"], api_out, thumbnails=False)
    argv = ["evaluate", "--heatmaps", str(case["heatmaps"]), "--out", str(cli_out), *map(str, case["slides"])]
    assert cli.main(argv) == 0
    for name in ("tumor_a", "normal_a", "normal_b"):
        made = points_paths(cli_out / POINTS_FOLDER, name)
        assert made["geojson"].read_bytes() == points_paths(api_out / POINTS_FOLDER, name)["geojson"].read_bytes()
        _assert_geojson_matches_csv(made["geojson"], made["csv"])
