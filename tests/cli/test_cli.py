"""The napari-patchdx command: every subcommand's help, the pipeline commands, the demo, exit codes."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from napari_patchdx import cli
from napari_patchdx.cli import demo

# tiny models: one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMANDS = ("run", "sample", "train", "infer", "evaluate", "report", "demo", "synth", "info", "froc")


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], *([c, "--help"] for c in COMMANDS), ["--version"]):
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


def test_pipeline_usage_and_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml: no such configuration file" in capsys.readouterr().err
    config = tmp_path / "exp.yaml"
    config.write_text("track: cxr\ninput: cohort\nrun_dir: run\ninfer:\n  ttta: false\n")
    assert cli.main(["run", str(config)]) == 2
    assert "unknown key 'infer.ttta'; did you mean 'infer.tta'?" in capsys.readouterr().err
    config.write_text("track: cxr\ninput: cohort\nrun_dir: run\n")
    assert cli.main(["run", str(config)]) == 2  # the cohort folder is missing: listed, nothing started
    assert "cohort" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert cli.main(["train", str(tmp_path)]) == 2
    assert cli.main(["report", str(tmp_path / "no-run")]) == 2
    assert cli.main(["infer", str(tmp_path / "x.tif")]) == 2  # neither a configuration nor --checkpoint/--out
    with pytest.raises(SystemExit) as info:
        cli.main(["run"])
    assert info.value.code == 2


def test_processing_error_exit_1_and_interrupt_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "labels.csv").write_text("image,png\ncxr_0,images/cxr_0.png\n")  # no class columns
    config = tmp_path / "exp.yaml"
    config.write_text(f"track: cxr\ninput: {cohort}\nrun_dir: {tmp_path / 'run'}\n")
    assert cli.main(["run", str(config)]) == 1
    assert "labels.csv: has no class columns" in capsys.readouterr().err

    from napari_patchdx import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # a generator, like the real job

    monkeypatch.setattr(pipeline, "run_job", interrupted)
    assert cli.main(["run", str(config)]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """``napari-patchdx demo --quick``: the demo's own code path on its reduced sizes (demo.QUICK)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(["demo", "--quick", "--out", str(out)])
    return out, code, buf.getvalue()


def test_demo_quick_writes_report_and_metrics(quick_demo: tuple[Path, int, str]) -> None:
    out, code, printed = quick_demo
    assert code == 0
    assert f"report:  {out / 'report.html'}" in printed
    assert (out / "report.html").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"slides", "cxr-curriculum", "cxr-baseline", "curriculum_vs_baseline", "demo"} <= set(metrics)
    assert metrics["slides"]["track"] == "slides" and "froc" in metrics["slides"]
    assert metrics["cxr-curriculum"]["training"]["stages"] == ["patches", "whole"]
    assert metrics["cxr-baseline"]["training"]["stages"] == ["whole"]
    compared = metrics["curriculum_vs_baseline"]
    assert "mean_auroc.auc" in compared
    row = compared["mean_auroc.auc"]
    assert row["difference"] == pytest.approx(row["curriculum"] - row["baseline"])
    assert metrics["demo"]["sizes"] == json.loads(json.dumps(asdict(demo.QUICK)))
    for name in ("slides", "cxr-curriculum", "cxr-baseline"):
        assert (out / "configs" / f"{name}.yaml").is_file()
        assert all(v == "ran" for v in metrics["demo"]["runs"][name]["stages"].values())
    assert "curriculum vs baseline" in printed


def test_pipeline_commands_on_the_demo_runs(
    quick_demo: tuple[Path, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, code, _ = quick_demo
    assert code == 0
    capsys.readouterr()
    # the saved configuration repeats the run: every stage is current
    assert cli.main(["run", str(out / "configs" / "slides.yaml")]) == 0
    printed = capsys.readouterr().out
    assert all(f"{stage:<9} skipped" in printed for stage in ("sample", "train", "infer", "evaluate", "report"))
    assert "metrics: " in printed and "froc.score" in printed
    # one stage on a configuration, into a new run folder: infer needs sample and train first
    config = str(out / "configs" / "cxr-baseline.yaml")
    assert cli.main(["infer", config, "--run-dir", str(tmp_path / "run")]) == 2
    assert "the sample stage" in capsys.readouterr().err
    assert cli.main(["sample", config, "--run-dir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "sample" / "splits.csv").is_file() and not (tmp_path / "run" / "train").exists()
    # explicit files: a patch table, heatmaps, their evaluation, a report over two runs
    slide = out / "data" / "wsi" / "tumor_000.tif"
    table = tmp_path / "patches.csv"
    argv = ["sample", str(slide), "--out", str(table), "--n", "12", "--patch-size", "32", "--center-size", "16"]
    assert cli.main([*argv, "--patch-mpp", "4"]) == 0
    assert len(table.read_text().splitlines()) == 13
    checkpoint = out / "runs" / "slides" / "train" / "best.safetensors"
    heatmaps = tmp_path / "heatmaps"
    assert cli.main(["infer", "--checkpoint", str(checkpoint), "--out", str(heatmaps), "--no-tta", str(slide)]) == 0
    assert (heatmaps / "tumor_000.heatmap.ome.tif").is_file()
    assert cli.main(["evaluate", "--heatmaps", str(heatmaps), "--out", str(tmp_path / "ev"), str(slide)]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["track"] == "slides"
    page = tmp_path / "both.html"
    assert (
        cli.main(["report", str(out / "runs" / "slides"), str(out / "runs" / "cxr-baseline"), "--out", str(page)]) == 0
    )
    assert page.is_file() and "report: " in capsys.readouterr().out
