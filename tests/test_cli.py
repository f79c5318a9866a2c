"""The napari-patchdx command: synth, info, demo, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from napari_patchdx import cli, demo


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["synth", "--help"], ["demo", "--help"], ["info", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
    assert "napari-patchdx" in capsys.readouterr().out


def test_usage_error_exit_code_2() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["synth", "pet", "--out", "x"])
    assert info.value.code == 2


def test_synth_cxr_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["synth", "cxr", "--out", str(tmp_path), "--n", "4", "--size", "128", "--seed", "2"]) == 0
    with open(tmp_path / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    capsys.readouterr()
    assert cli.main(["info", str(tmp_path / rows[0]["dcm"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [128, 128] and summary["format"] == "DICOM"


def test_synth_wsi_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "wsi", "--out", str(tmp_path), "--n", "2", "--size", "1536", "--mpp", "1.0", "--seed", "1"]
    assert cli.main(argv) == 0
    assert (tmp_path / "slides.csv").is_file()
    tumour = tmp_path / "tumor_000.tif"
    capsys.readouterr()
    assert cli.main(["info", str(tumour), str(tumour.with_suffix(".xml"))]) == 0
    out = capsys.readouterr().out
    assert '"mpp": 1.0' in out and '"tumor":' in out


def test_bad_input_exit_code_1_names_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"\x00" * 100)
    assert cli.main(["info", str(bad)]) == 1
    assert cli.main(["info", str(tmp_path / "missing.dcm")]) == 1
    err = capsys.readouterr().err
    assert "broken.svs" in err and "missing.dcm: no such file" in err


def test_demo_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "DEMO_WSI", {"n_tumor": 1, "n_normal": 1, "height": 1536, "width": 1536, "mpp": 1.0})
    monkeypatch.setattr(demo, "DEMO_CXR", {"n": 4, "size": 128})
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["label"] for s in summary["slides"]] == ["tumor", "normal"]
    assert summary["slides"][0]["ground_truth_regions"] > 0 and summary["slides"][1]["ground_truth_regions"] == 0
    assert len(summary["cxr"]) == 4
    assert all(c["dicom_vs_png_max_abs_diff"] < 0.01 for c in summary["cxr"])
    assert "summary written to" in capsys.readouterr().out
